//! Drives every ErrorReason through the Rust client and prints the error class it raised,
//! one JSON line per case, for the cross-language test (tests/test_error_classes.py):
//!
//! ```sh
//! cargo run -q --example errors -- --target HOST:PORT [--dead-target HOST:PORT] [--queue PREFIX]
//! ```
//!
//! Every reason the broker can send is triggered for real (`--dead-target`: a broker whose
//! Redis is down), the AdminService's `QUEUE_NOT_FOUND`, `WRONG_STATE` and `QUEUE_BUSY`
//! through the generated `AdminServiceClient`, since the crate has no admin client; the
//! ones it cannot be made to send, and a few fallbacks, are statuses built here. Every
//! status is mapped with `Error::from`, as a call's error is. Each line:
//! `{"case", "code", "reason", "class" (the most specific), "is" (every class it belongs to,
//! sorted), "retry_delay_ms" (null when none), "fields"}`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use jobwire::proto::v1::admin_service_client::AdminServiceClient;
use jobwire::proto::v1::{
    CompleteRequest, DeleteQueueRequest, GetQueueRequest, LeaseRequest, PromoteJobsRequest,
};
use jobwire::{code_name, Client, EnqueueOptions, Error, CONNECT_TIMEOUT, ERROR_DOMAIN};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The class in the shared vocabulary, and every class the error belongs to.
fn classes(err: &Error) -> (&'static str, Vec<&'static str>) {
    let class = match err {
        Error::InvalidArgument(_) => "invalid_argument",
        Error::NotFound(_) => "not_found",
        Error::AlreadyExists(_) => "already_exists",
        Error::FailedPrecondition(_) => "failed_precondition",
        Error::LeaseLost(_) => "lease_lost",
        Error::JobFinished(_) => "job_finished",
        Error::ResourceExhausted(_) => "resource_exhausted",
        Error::Unavailable(_) => "unavailable",
        Error::Unauthenticated(_) => "unauthenticated",
        Error::PermissionDenied(_) => "permission_denied",
        Error::Internal(_) => "internal",
        _ => "error",
    };
    let mut is = match class {
        "error" => vec![],
        c => vec![c],
    };
    if err.is_failed_precondition() && class != "failed_precondition" {
        is.push("failed_precondition");
    }
    is.sort_unstable();
    (class, is)
}

fn describe<T>(name: &str, result: Result<T, Error>) -> Value {
    let Err(err) = result else {
        return json!({"case": name, "class": "ok"});
    };
    let (class, is) = classes(&err);
    json!({
        "case": name,
        "code": code_name(err.code()),
        "reason": err.reason().as_str_name(),
        "class": class,
        "is": is,
        "retry_delay_ms": err.retry_delay().map(|d| d.as_millis() as u64),
        "fields": err.field_violations().iter().map(|v| v.field.as_str()).collect::<Vec<_>>(),
    })
}

/// A status as the broker would send it, through the client's mapping.
fn built(
    code: Code,
    reason: Option<&str>,
    domain: &str,
    retry: Option<Duration>,
) -> Result<(), Error> {
    let mut details = ErrorDetails::new();
    if let Some(reason) = reason {
        details.set_error_info(reason, domain, HashMap::new());
    }
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    Err(Error::from(Status::with_error_details(
        code,
        "built by the errors example",
        details,
    )))
}

/// The AdminService's own reasons, each from the call that sends it.
async fn admin_errors(
    client: &Client,
    channel: Channel,
    queue: &str,
    lines: &mut Vec<Value>,
) -> Result<(), Error> {
    let mut admin = AdminServiceClient::new(channel);
    lines.push(describe(
        "QUEUE_NOT_FOUND",
        admin
            .get_queue(GetQueueRequest {
                queue: format!("{queue}-never"),
            })
            .await
            .map_err(Error::from),
    ));

    let ready = format!("{queue}-ready");
    let job = client
        .enqueue(&ready, b"x".to_vec(), EnqueueOptions::new())
        .await?;
    // PromoteJobs by ids applies only to scheduled jobs; this one is ready.
    lines.push(describe(
        "WRONG_STATE",
        admin
            .promote_jobs(PromoteJobsRequest {
                queue: ready,
                job_ids: vec![job.job_id],
            })
            .await
            .map_err(Error::from),
    ));

    let busy = format!("{queue}-busy");
    client
        .enqueue(&busy, b"x".to_vec(), EnqueueOptions::new())
        .await?;
    let leased = client
        .raw()
        .lease(LeaseRequest {
            queue: busy.clone(),
            wait: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .map_err(Error::from)?
        .into_inner()
        .jobs;
    assert_eq!(leased.len(), 1, "could not lease the job of {busy}");
    lines.push(describe(
        "QUEUE_BUSY",
        admin
            .delete_queue(DeleteQueueRequest {
                queue: busy,
                force: false,
            })
            .await
            .map_err(Error::from),
    ));
    Ok(())
}

async fn run(target: String, dead: Option<String>, queue: String) -> Result<Vec<Value>, Error> {
    let mut lines = Vec::new();
    // One channel for both services, as a user of both would share it.
    let channel = Endpoint::from_shared(format!("http://{target}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .connect_lazy();
    let client = Client::builder(target).with_channel(channel.clone());
    let mut raw = client.raw();
    lines.push(describe(
        "INVALID_ARGUMENT",
        client
            .enqueue("bad queue!", Vec::new(), EnqueueOptions::new())
            .await,
    ));
    lines.push(describe(
        "PAYLOAD_TOO_LARGE",
        client
            .enqueue(&queue, vec![0u8; (1 << 20) + 1], EnqueueOptions::new())
            .await,
    ));
    lines.push(describe(
        "JOB_NOT_FOUND",
        client.get_job(&format!("{queue}:999999")).await,
    ));

    let job = client
        .enqueue(&queue, b"x".to_vec(), EnqueueOptions::new())
        .await?;
    let leased = raw
        .lease(LeaseRequest {
            queue: queue.clone(),
            wait: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .map_err(Error::from)?
        .into_inner()
        .jobs
        .remove(0);
    let complete = |token: &str| CompleteRequest {
        job_id: job.job_id.clone(),
        lease_token: token.to_owned(),
        ..Default::default()
    };
    lines.push(describe(
        "LEASE_LOST",
        raw.complete(complete("not-the-token"))
            .await
            .map_err(Error::from),
    ));
    raw.complete(complete(&leased.lease_token))
        .await
        .map_err(Error::from)?;
    lines.push(describe("JOB_FINISHED", client.cancel(&job.job_id).await));

    let big = format!("{queue}-big");
    client
        .enqueue(
            &big,
            b"a job larger than one byte".to_vec(),
            EnqueueOptions::new(),
        )
        .await?;
    lines.push(describe(
        "JOB_TOO_LARGE",
        raw.lease(LeaseRequest {
            queue: big,
            max_response_bytes: 1,
            ..Default::default()
        })
        .await
        .map_err(Error::from),
    ));
    admin_errors(&client, channel, &queue, &mut lines).await?;

    if let Some(dead) = dead {
        let down = Client::builder(dead).connect_lazy()?;
        lines.push(describe(
            "STORE_UNAVAILABLE",
            down.get_job(&format!("{queue}:1")).await,
        ));
    }
    let d = ERROR_DOMAIN;
    let second = Some(Duration::from_secs(1));
    for (name, code, reason, domain, retry) in [
        (
            "SHUTTING_DOWN",
            Code::Unavailable,
            Some("SHUTTING_DOWN"),
            d,
            second,
        ),
        ("INTERNAL", Code::Internal, Some("INTERNAL"), d, None),
        (
            "UNAUTHENTICATED",
            Code::Unauthenticated,
            Some("UNAUTHENTICATED"),
            d,
            None,
        ),
        (
            "PERMISSION_DENIED",
            Code::PermissionDenied,
            Some("PERMISSION_DENIED"),
            d,
            None,
        ),
        ("NO_DETAILS", Code::FailedPrecondition, None, d, None),
        (
            "UNKNOWN_REASON",
            Code::NotFound,
            Some("SOMETHING_NEW"),
            d,
            None,
        ),
        (
            "FOREIGN_DOMAIN",
            Code::FailedPrecondition,
            Some("LEASE_LOST"),
            "example.com",
            None,
        ),
        (
            "REASON_OVER_CODE",
            Code::Unknown,
            Some("JOB_FINISHED"),
            d,
            None,
        ),
        ("ABORTED", Code::Aborted, None, d, None),
        // TODO(broker sends them): trigger these three with real calls instead, as above.
        (
            "CROSS_SLOT",
            Code::FailedPrecondition,
            Some("CROSS_SLOT"),
            d,
            None,
        ),
        (
            "SCHEDULE_NOT_FOUND",
            Code::NotFound,
            Some("SCHEDULE_NOT_FOUND"),
            d,
            None,
        ),
        (
            "SCHEDULE_EXISTS",
            Code::AlreadyExists,
            Some("SCHEDULE_EXISTS"),
            d,
            None,
        ),
    ] {
        lines.push(describe(name, built(code, reason, domain, retry)));
    }
    Ok(lines)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut target = "127.0.0.1:50051".to_owned();
    let mut dead = None;
    let mut queue = "rust-errors".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--target", Some(v)) => target = v,
            ("--dead-target", Some(v)) => dead = Some(v),
            ("--queue", Some(v)) => queue = v,
            _ => {
                eprintln!(
                    "usage: errors --target HOST:PORT [--dead-target HOST:PORT] [--queue PREFIX]"
                );
                return ExitCode::from(2);
            }
        }
    }
    match run(target, dead, queue).await {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("errors: {err}");
            ExitCode::FAILURE
        }
    }
}
