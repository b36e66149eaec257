//! Enqueues one job and prints its id: a small producer for scripts and cross-language tests.
//!
//! ```sh
//! cargo run -q --example enqueue -- --target 127.0.0.1:50051 --queue emails \
//!     --payload-file job.json --header tenant=acme \
//!     --traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//! ```
//!
//! `--traceparent` is extracted with the W3C propagator and attached as the current
//! OpenTelemetry context, so the client injects it like any active span.

use std::collections::HashMap;
use std::io::Read;
use std::process::ExitCode;

use jobwire::{Client, EnqueueOptions};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;

const USAGE: &str = "usage: enqueue --queue NAME [--target HOST:PORT] [--payload-file PATH|-] \
                     [--content-type TYPE] [--header K=V]... [--traceparent TP] [--tracestate TS]";

struct Args {
    target: String,
    queue: String,
    payload: Vec<u8>,
    options: EnqueueOptions,
    trace_headers: HashMap<String, String>,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut target = "127.0.0.1:50051".to_owned();
    let mut queue = None;
    let mut payload = Vec::new();
    let mut options = EnqueueOptions::new();
    let mut trace_headers = HashMap::new();
    while let Some(flag) = argv.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = argv.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => target = value,
            "--queue" => queue = Some(value),
            "--content-type" => options = options.content_type(value),
            "--payload-file" if value == "-" => {
                std::io::stdin()
                    .read_to_end(&mut payload)
                    .map_err(|e| format!("cannot read stdin: {e}"))?;
            }
            "--payload-file" => {
                payload = std::fs::read(&value).map_err(|e| format!("cannot read {value}: {e}"))?;
            }
            "--header" => {
                let (key, val) = value
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or(format!("--header wants KEY=VALUE, got {value}"))?;
                options = options.header(key, val);
            }
            "--traceparent" => {
                trace_headers.insert("traceparent".to_owned(), value);
            }
            "--tracestate" => {
                trace_headers.insert("tracestate".to_owned(), value);
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        target,
        queue: queue.ok_or("--queue is required")?,
        payload,
        options,
        trace_headers,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(problem) => {
            if !problem.is_empty() {
                eprintln!("enqueue: {problem}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let _attached = TraceContextPropagator::new()
        .extract(&args.trace_headers)
        .attach();
    let result = async {
        let client = Client::connect(args.target).await?;
        client
            .enqueue(&args.queue, args.payload, args.options)
            .await
    }
    .await;
    match result {
        Ok(enqueued) => {
            println!("{}", enqueued.job_id);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("enqueue: {err}");
            ExitCode::FAILURE
        }
    }
}
