//! The client against a real broker over real gRPC.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use jobwire::proto::v1::{CompleteRequest, LeaseRequest};
use jobwire::{Backoff, Client, EnqueueOptions, Error, ErrorReason, JobState};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

async fn client() -> Client {
    Client::connect(common::broker().target.clone())
        .await
        .expect("connect to the test broker")
}

#[tokio::test]
async fn enqueue_and_get_round_trip() {
    let client = client().await;
    let queue = common::unique_queue("rust");
    let payload = vec![0u8, 1, 2, 0xff, 0xfe, b'j', b'w', 0];
    let options = EnqueueOptions::new()
        .content_type("application/octet-stream")
        .header("tenant", "acme")
        .header("städte", "Zürich, Kraków, 東京 ✓")
        .priority(7)
        .max_attempts(5)
        .delay(Duration::from_secs(3600))
        .backoff(Backoff::linear(Duration::from_secs(2), Duration::from_secs(60)).with_jitter(0.5))
        .lease_duration(Duration::from_secs(45));

    let enqueued = client
        .enqueue(&queue, payload.clone(), options)
        .await
        .unwrap();

    assert!(enqueued.job_id.starts_with(&format!("{queue}:")));
    assert!(!enqueued.duplicate);
    assert_eq!(enqueued.state, JobState::Scheduled);

    let job = client.get_job(&enqueued.job_id).await.unwrap();
    assert_eq!(job.id, enqueued.job_id);
    assert_eq!(job.queue, queue);
    assert_eq!(job.state(), JobState::Scheduled);
    let spec = job.spec.unwrap();
    assert_eq!(spec.payload, payload);
    assert_eq!(spec.content_type, "application/octet-stream");
    let expected: HashMap<String, String> =
        [("tenant", "acme"), ("städte", "Zürich, Kraków, 東京 ✓")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    assert_eq!(spec.headers, expected);
    assert_eq!(spec.priority, 7);
    assert_eq!(spec.max_attempts, 5);
    let backoff = spec.backoff.unwrap();
    assert_eq!(backoff.jitter, 0.5);
    assert_eq!(backoff.initial_delay.unwrap().seconds, 2);
    assert_eq!(spec.lease_duration.unwrap().seconds, 45);
}

#[tokio::test]
async fn idempotency_key_returns_the_first_job() {
    let client = client().await;
    let queue = common::unique_queue("rust");
    let options = EnqueueOptions::new().idempotency_key("order-42");
    let first = client
        .enqueue(&queue, b"a".to_vec(), options.clone())
        .await
        .unwrap();
    let second = client
        .enqueue(&queue, b"b".to_vec(), options)
        .await
        .unwrap();
    assert_eq!(first.job_id, second.job_id);
    assert!(second.duplicate);
    assert_eq!(first.state, JobState::Ready);
}

#[tokio::test]
async fn unknown_job_is_not_found() {
    let client = client().await;
    let queue = common::unique_queue("rust");
    let err = client
        .get_job(&format!("{queue}:424242"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let err = client.cancel(&format!("{queue}:424242")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn invalid_enqueue_names_every_bad_field() {
    let client = client().await;
    let options = EnqueueOptions::new().priority(5000).max_attempts(-1);
    let err = client
        .enqueue("not a queue!", vec![1], options)
        .await
        .unwrap_err();
    let Error::InvalidArgument(details) = &err else {
        panic!("expected InvalidArgument, got {err:?}");
    };
    assert_eq!(details.reason, ErrorReason::InvalidArgument);
    let violations = &details.field_violations;
    let fields: BTreeSet<&str> = violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        fields,
        BTreeSet::from(["queue", "job.priority", "job.max_attempts"])
    );
    assert!(violations.iter().all(|v| !v.description.is_empty()));
    assert!(err.to_string().contains("job.priority"), "{err}");
}

#[tokio::test]
async fn stale_lease_is_lease_lost_and_finished_job_cannot_be_cancelled() {
    let client = client().await;
    let queue = common::unique_queue("rust");
    let job = client
        .enqueue(&queue, vec![42], EnqueueOptions::new())
        .await
        .unwrap();
    let mut raw = client.raw();
    let leased = raw
        .lease(LeaseRequest {
            queue: queue.clone(),
            max_jobs: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .remove(0);
    let complete = CompleteRequest {
        job_id: job.job_id.clone(),
        lease_token: leased.lease_token,
        ..Default::default()
    };
    raw.complete(complete.clone()).await.unwrap();
    // The same Complete again (its reply lost) is answered as the first time; another
    // token is a stale lease.
    raw.complete(complete.clone()).await.unwrap();
    let stale = CompleteRequest {
        lease_token: format!("{}x", complete.lease_token),
        ..complete
    };

    let again = Error::from(raw.complete(stale).await.unwrap_err());
    assert!(matches!(again, Error::LeaseLost(_)), "{again:?}");
    assert!(again.is_failed_precondition());

    let finished = client.cancel(&job.job_id).await.unwrap_err();
    assert!(matches!(finished, Error::JobFinished(_)), "{finished:?}");
    assert!(finished.is_failed_precondition());
    assert_eq!(finished.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        Error::reason_of(finished.status().unwrap()),
        ErrorReason::JobFinished
    );
}

#[tokio::test]
async fn cancel_stops_a_pending_job() {
    let client = client().await;
    let queue = common::unique_queue("rust");
    let job = client
        .enqueue(&queue, Vec::new(), EnqueueOptions::new())
        .await
        .unwrap();
    assert_eq!(
        client.cancel(&job.job_id).await.unwrap(),
        JobState::Cancelled
    );
    assert_eq!(
        client.get_job(&job.job_id).await.unwrap().state(),
        JobState::Cancelled
    );
}

#[tokio::test]
async fn traceparent_from_the_context_reaches_the_job() {
    let client = client().await;
    let queue = common::unique_queue("rust-trace");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let incoming: HashMap<String, String> =
        HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&incoming);

    let job_id = {
        let _attached = cx.attach();
        client
            .enqueue(&queue, b"x".to_vec(), EnqueueOptions::new())
            .await
            .unwrap()
            .job_id
    };

    let carried = client
        .get_job(&job_id)
        .await
        .unwrap()
        .spec
        .unwrap()
        .trace_context
        .unwrap();
    assert_eq!(carried.traceparent, traceparent);
    assert_eq!(carried.baggage, "");
}

#[tokio::test]
async fn active_span_and_baggage_reach_the_job() {
    let client = client().await;
    let queue = common::unique_queue("rust-trace");
    let provider = SdkTracerProvider::builder().build();
    let span = provider.tracer("test").start("checkout");
    let expected = span.span_context().clone();
    let cx = Context::current_with_span(span).with_baggage(vec![KeyValue::new("tenant", "acme")]);

    let job_id = {
        let _attached = cx.attach();
        client
            .enqueue(&queue, b"x".to_vec(), EnqueueOptions::new())
            .await
            .unwrap()
            .job_id
    };

    let carried = client
        .get_job(&job_id)
        .await
        .unwrap()
        .spec
        .unwrap()
        .trace_context
        .unwrap();
    let received = TraceContextPropagator::new()
        .extract(&HashMap::from([(
            "traceparent".to_owned(),
            carried.traceparent.clone(),
        )]))
        .span()
        .span_context()
        .clone();
    assert_eq!(received.trace_id(), expected.trace_id(), "{carried:?}");
    assert_eq!(received.span_id(), expected.span_id());
    assert_eq!(carried.baggage, "tenant=acme");
}

#[tokio::test]
async fn no_active_span_means_no_trace_context() {
    let client = client().await;
    let queue = common::unique_queue("rust-trace");
    let job_id = client
        .enqueue(&queue, Vec::new(), EnqueueOptions::new())
        .await
        .unwrap()
        .job_id;
    let spec = client.get_job(&job_id).await.unwrap().spec.unwrap();
    assert_eq!(
        spec.trace_context.unwrap_or_default().traceparent,
        "",
        "nothing to propagate"
    );
}

const MIB: usize = 1 << 20;

#[tokio::test]
async fn default_message_limit_is_64_mib() {
    assert_eq!(jobwire::DEFAULT_MAX_MESSAGE_BYTES, 64 * MIB);
    let client = Client::builder("127.0.0.1:1").connect_lazy().unwrap();
    assert_eq!(client.max_message_bytes(), 64 * MIB);
    let client = Client::builder("127.0.0.1:1")
        .max_message_bytes(8 * MIB)
        .connect_lazy()
        .unwrap();
    assert_eq!(client.max_message_bytes(), 8 * MIB);
}

/// At the default broker limit (1 MiB): GetJob returns a 1 MiB payload and result intact.
#[tokio::test]
async fn one_mib_payload_and_result_come_back_intact() {
    let client = client().await;
    let queue = common::unique_queue("rust-big");
    let payload = vec![0xa5u8; MIB];
    let result = vec![0x5au8; MIB];
    let job = client
        .enqueue(&queue, payload.clone(), EnqueueOptions::new())
        .await
        .unwrap();
    let stored = client.get_job(&job.job_id).await.unwrap();
    assert!(stored.spec.unwrap().payload == payload, "payload changed");

    let mut raw = client.raw();
    let leased = raw
        .lease(LeaseRequest {
            queue: queue.clone(),
            max_jobs: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .jobs
        .remove(0);
    assert!(leased.job.unwrap().spec.unwrap().payload == payload);
    raw.complete(CompleteRequest {
        job_id: job.job_id.clone(),
        lease_token: leased.lease_token,
        result: result.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    let done = client.get_job(&job.job_id).await.unwrap();
    assert_eq!(done.state(), JobState::Completed);
    assert!(done.result == result, "result changed");
    assert!(done.spec.unwrap().payload == payload, "payload changed");
}

/// A broker with a 6 MiB payload limit (its own message limit is 28 MiB), so the client's
/// limit is what decides: 64 MiB by default takes a 5 MiB GetJob reply, more than tonic's
/// 4 MiB default; `max_message_bytes(4 MiB)` refuses it (tonic says OUT_OF_RANGE).
#[tokio::test]
async fn default_limit_takes_replies_beyond_4_mib() {
    let big = common::start(&["--max-payload-bytes", &(6 * MIB).to_string()]);
    let client = Client::connect(big.target.clone()).await.unwrap();
    let small = Client::builder(big.target.clone())
        .max_message_bytes(4 * MIB)
        .connect()
        .await
        .unwrap();
    let queue = common::unique_queue("rust-big");
    let payload = vec![7u8; 5 * MIB];
    let job = client
        .enqueue(&queue, payload.clone(), EnqueueOptions::new())
        .await
        .unwrap();
    let stored = client.get_job(&job.job_id).await.unwrap();
    assert!(stored.spec.unwrap().payload == payload, "payload changed");

    for (what, err) in [
        ("get_job", small.get_job(&job.job_id).await.unwrap_err()),
        (
            "enqueue",
            small
                .enqueue(&queue, payload.clone(), EnqueueOptions::new())
                .await
                .unwrap_err(),
        ),
    ] {
        match err {
            Error::Other(d) => {
                assert_eq!(d.code, tonic::Code::OutOfRange, "{what}: {d:?}");
                assert!(d.message.contains("too large"), "{what}: {d:?}");
            }
            other => panic!("{what}: expected OUT_OF_RANGE, got {other:?}"),
        }
    }
}
