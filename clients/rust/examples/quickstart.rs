//! Enqueue a job, read it back, and see a rejected request's field violations.
//!
//! With a broker on 127.0.0.1:50051 (`make serve` at the repo root):
//! `cargo run -q --example quickstart [-- HOST:PORT]`

use jobwire::{Client, EnqueueOptions, Error};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50051".into());
    let client = Client::connect(target).await?;

    let options = EnqueueOptions::new()
        .content_type("application/json")
        .priority(10)
        .max_attempts(5)
        .header("tenant", "acme");
    let job = client
        .enqueue("emails", br#"{"to":"a@b.c"}"#.to_vec(), options)
        .await?;
    println!("enqueued {} ({:?})", job.job_id, job.state);

    let stored = client.get_job(&job.job_id).await?;
    let payload = stored
        .spec
        .as_ref()
        .map(|s| s.payload.clone())
        .unwrap_or_default();
    println!(
        "{} is {:?}, payload {}",
        stored.id,
        stored.state(),
        String::from_utf8_lossy(&payload)
    );

    match client
        .enqueue("emails", Vec::new(), EnqueueOptions::new().priority(5000))
        .await
    {
        Err(Error::InvalidArgument(details)) => {
            for v in details.field_violations {
                println!("rejected: {} {}", v.field, v.description);
            }
        }
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
