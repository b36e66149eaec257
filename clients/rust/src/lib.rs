//! Producer client for the [Jobwire](https://github.com/jobwire/jobwire) job broker.
//!
//! ```no_run
//! use jobwire::{Client, EnqueueOptions};
//!
//! # async fn run() -> Result<(), jobwire::Error> {
//! let client = Client::connect("127.0.0.1:50051").await?;
//! let job = client
//!     .enqueue("emails", br#"{"to":"a@b.c"}"#.to_vec(),
//!              EnqueueOptions::new().content_type("application/json"))
//!     .await?;
//! let stored = client.get_job(&job.job_id).await?;
//! println!("{} is {:?}", stored.id, stored.state());
//! # Ok(())
//! # }
//! ```
//!
//! Errors are [`Error`] values, one variant per error class, chosen from the broker's
//! [`ErrorReason`] first, then from the gRPC code. Retries and timeouts follow the gRPC
//! service config shipped with the protos ([`ServiceConfig`]). The wire types are
//! the generated [`proto::v1`] messages, re-exported at the crate root where a caller
//! meets them.

mod client;
mod error;
mod options;
mod service_config;
mod trace;

/// The `jobwire.v1` messages and gRPC stub, generated at build time from `protos/`.
pub mod proto {
    /// Package `jobwire.v1`.
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("jobwire.v1");
    }
}

pub use client::{Client, ClientBuilder, Enqueued, CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_BYTES};
pub use error::{Error, ErrorDetails, FieldViolation, ERROR_DOMAIN};
pub use options::{Backoff, EnqueueOptions};
pub use proto::v1::{
    DependencyFailurePolicy, ErrorReason, IdempotencyMode, Job, JobSpec, JobState, TraceContext,
};
pub use service_config::{code_name, MethodPolicy, RetryPolicy, ServiceConfig, ServiceConfigError};
