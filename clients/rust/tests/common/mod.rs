//! One real broker per test binary, shared by its tests.
//!
//! The broker runs under a tiny `sh` supervisor that holds our end of a pipe on its stdin:
//! when this process exits, however it exits, the pipe closes and the supervisor stops the
//! broker with SIGTERM and removes its data directory. libtest has no "after all tests"
//! hook, so this is how the broker is stopped without leaking. The broker says it serves,
//! and on which port, in its ready file (`--ready-file`); if it exits first, the
//! supervisor writes its exit status beside it, so a failed start is reported at once.
//!
//! The interpreter is $JOBWIRE_PYTHON, by default the repository's .venv. A test that
//! needs other broker flags starts its own with [`start`]; dropping it stops it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

// An asynchronous list's stdin is /dev/null unless redirected, hence fd 3.
const SUPERVISOR: &str = r#"
python=$1; dir=$2; shift 2
"$python" -m jobwire_broker serve --listen 127.0.0.1:0 --redis-url "" \
    --data-dir "$dir/data" --ready-file "$dir/ready.json" "$@" >"$dir/broker.log" 2>&1 &
pid=$!
exec 3<&0
{ read -r _ <&3 || true; kill -TERM "$pid" 2>/dev/null; } &
wait "$pid"
echo "$?" >"$dir/exit-status"
wait
rm -rf "$dir"
"#;

pub struct Broker {
    pub target: String,
    // Held until this process exits: closing the supervisor's stdin is what stops the
    // broker, and the supervisor reaps it.
    _supervisor: Mutex<Child>,
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
    std::fs::create_dir_all(&dir).expect("create the broker's directory");

    let child = Command::new("sh")
        .args(["-c", SUPERVISOR, "sh"])
        .arg(&python)
        .arg(&dir)
        .args(serve_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sh");

    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        // The broker renames the file into place whole: once it exists, it is complete.
        if let Ok(ready) = std::fs::read_to_string(dir.join("ready.json")) {
            let port =
                grpc_port(&ready).unwrap_or_else(|| panic!("unexpected ready file: {ready}"));
            return Broker {
                target: format!("127.0.0.1:{port}"),
                _supervisor: Mutex::new(child),
            };
        }
        let exited = std::fs::read_to_string(dir.join("exit-status")).ok();
        if exited.is_some() || Instant::now() > deadline {
            let why = match exited {
                Some(status) => format!("exited with {} before it was ready", status.trim()),
                None => format!("was not ready after {READY_TIMEOUT:?}"),
            };
            panic!(
                "broker ({}) {why}; its log:\n{}",
                python.display(),
                log_of(&dir)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default()
}

/// `grpc_port` of a version 1 ready file: `{"version": 1, ..., "grpc_port": N, ...}`. The
/// file is one flat JSON object of the broker's making, so two fields need no JSON crate.
fn grpc_port(ready: &str) -> Option<u16> {
    let field = |name: &str| -> Option<&str> {
        let rest = ready.split(&format!("\"{name}\"")).nth(1)?;
        let rest = rest.trim_start().strip_prefix(':')?.trim_start();
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        Some(&rest[..end])
    };
    if field("version")? != "1" {
        return None;
    }
    field("grpc_port")?.parse().ok()
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
