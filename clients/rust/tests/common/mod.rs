//! One real broker per test binary, shared by its tests.
//!
//! The broker runs under a tiny `sh` supervisor that holds our end of a pipe on its stdin:
//! when this process exits, however it exits, the pipe closes and the supervisor stops the
//! broker with SIGTERM and removes its data directory. libtest has no "after all tests"
//! hook, so this is how the broker is stopped without leaking.
//!
//! The interpreter is $JOBWIRE_PYTHON, by default the repository's .venv. A test that
//! needs other broker flags starts its own with [`start`]; dropping it stops it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

const SUPERVISOR: &str = r#"
python=$1; dir=$2; shift 2
"$python" -m jobwire_broker serve --listen 127.0.0.1:0 --redis-url "" \
    --data-dir "$dir" "$@" 2>"$dir/broker.log" &
pid=$!
read -r _ || true
kill -TERM "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir"
"#;

pub struct Broker {
    pub target: String,
    // Held until this process exits: closing the supervisor's stdin is what stops the
    // broker, and the supervisor reaps it.
    _supervisor: Mutex<Child>,
    _stdout: Mutex<BufReader<ChildStdout>>,
}

/// The broker of this test binary, started on first use.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| start(&[]))
}

// The supervisor is never waited for on purpose: it must outlive every test, and it exits
// (reaping the broker) only when this process does.
/// Starts a broker with more `serve` flags (`["--max-payload-bytes", "6291456"]`).
#[allow(clippy::zombie_processes)]
pub fn start(serve_args: &[&str]) -> Broker {
    use std::sync::atomic::{AtomicU32, Ordering};
    static STARTED: AtomicU32 = AtomicU32::new(0);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("JOBWIRE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".venv/bin/python"));
    let dir = std::env::temp_dir().join(format!(
        "jobwire-rust-{}-{}",
        std::process::id(),
        STARTED.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create the broker's data dir");

    let mut child = Command::new("sh")
        .args(["-c", SUPERVISOR, "sh"])
        .arg(&python)
        .arg(&dir)
        .args(serve_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sh");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());

    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let mut log = String::new();
            let _ = std::fs::File::open(dir.join("broker.log"))
                .and_then(|mut f| f.read_to_string(&mut log));
            panic!(
                "broker ({}) did not start; its log:\n{log}",
                python.display()
            );
        }
        if let Some(port) = parse_port(&line) {
            return Broker {
                target: format!("127.0.0.1:{port}"),
                _supervisor: Mutex::new(child),
                _stdout: Mutex::new(stdout),
            };
        }
    }
}

/// The port from `jobwire: serving on 127.0.0.1:0 (port N)`.
fn parse_port(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("jobwire: serving on ")?;
    let port = rest.split("(port ").nth(1)?.trim_end().strip_suffix(')')?;
    port.parse().ok()
}

/// A queue name no other test uses.
pub fn unique_queue(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
