//! The client retries and times out calls as protos/jobwire/v1/service_config.json says.

#[allow(dead_code)] // only the shared broker is used here
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jobwire::{Client, EnqueueOptions, Error, ServiceConfig};
use tokio::net::{TcpListener, TcpStream};

/// A loopback port nothing listens on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// From `delay` on, forwards connections to `port` to the test broker.
async fn forward_after(delay: Duration, port: u16, to: String) {
    tokio::time::sleep(delay).await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    loop {
        let (mut inbound, _) = listener.accept().await.unwrap();
        let to = to.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(to).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn the_shipped_config_is_the_protos_file() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../protos/jobwire/v1/service_config.json");
    let text = std::fs::read_to_string(file).unwrap();
    assert_eq!(ServiceConfig::SHIPPED_JSON, text);
    let client = Client::builder("127.0.0.1:1").connect_lazy().unwrap();
    assert_eq!(
        client.service_config(),
        &ServiceConfig::from_json(&text).unwrap()
    );
}

/// GetJob is retried while nothing listens, and gets through once the broker is there.
#[tokio::test]
async fn get_job_is_retried_until_the_broker_answers() {
    let broker = common::broker().target.clone();
    let port = free_port();
    let client = Client::builder(format!("127.0.0.1:{port}"))
        .connect_lazy()
        .unwrap();
    let started = Instant::now();
    let forwarder = tokio::spawn(forward_after(Duration::from_millis(250), port, broker));
    let err = client.get_job("rust-nowhere:424242").await.unwrap_err();
    forwarder.abort();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

/// Where nothing ever listens: the calls the config retries give up after its backoff
/// (about 1.5 s, at least 1.2 s with the jitter), the others at once.
#[tokio::test]
async fn only_the_calls_the_config_retries_wait() {
    let policy = ServiceConfig::shipped()
        .method("GetJob")
        .retry
        .clone()
        .unwrap();
    let backoff: Duration = (1..policy.max_attempts)
        .map(|n| {
            policy
                .initial_backoff
                .mul_f64(policy.backoff_multiplier.powi(n as i32 - 1))
                .min(policy.max_backoff)
        })
        .sum();
    let client = Client::builder(format!("127.0.0.1:{}", free_port()))
        .connect_lazy()
        .unwrap();
    let timed = |started: Instant, err: Error| {
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        started.elapsed()
    };

    let started = Instant::now();
    let once = timed(
        started,
        client
            .enqueue("q", Vec::new(), EnqueueOptions::new())
            .await
            .unwrap_err(),
    );
    assert!(
        once < backoff.mul_f64(0.5),
        "enqueue without a key took {once:?}"
    );

    for (what, keyed) in [("get_job", false), ("enqueue with a key", true)] {
        let started = Instant::now();
        let err = if keyed {
            client
                .enqueue("q", Vec::new(), EnqueueOptions::new().idempotency_key("k"))
                .await
                .unwrap_err()
        } else {
            client.get_job("q:1").await.unwrap_err()
        };
        let took = timed(started, err);
        assert!(
            took >= backoff.mul_f64(0.8) && took < backoff.mul_f64(1.2) + Duration::from_secs(2),
            "{what} took {took:?}, want about {backoff:?}"
        );
    }
}

/// A deadline shorter than the config's timeout wins, across attempts.
#[tokio::test]
async fn a_shorter_deadline_wins() {
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = Client::builder(silent.local_addr().unwrap().to_string())
        .deadline(Duration::from_millis(300))
        .connect_lazy()
        .unwrap();
    let started = Instant::now();
    let err = client.get_job("q:1").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
