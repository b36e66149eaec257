//! The producer client: deadlines, retries of idempotent calls, error mapping, tracing.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::error::Error;
use crate::options::EnqueueOptions;
use crate::proto::v1::broker_service_client::BrokerServiceClient;
use crate::proto::v1::{CancelJobRequest, EnqueueRequest, GetJobRequest, Job, JobState};
use crate::trace;

/// Deadline of each call unless [`ClientBuilder::deadline`] sets another.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Largest message a client sends or receives unless [`ClientBuilder::max_message_bytes`]
/// sets another: 64 MiB, as in the Python SDK (tonic's own decoding limit is 4 MiB). A
/// job's payload and result are each up to the broker's payload limit (1 MiB by default).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// What [`Client::enqueue`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The new job's id (`<queue>:<n>`), or the first job's when `duplicate`.
    pub job_id: String,
    /// True when the idempotency key matched an earlier job and nothing was created.
    pub duplicate: bool,
    /// The job's state right after the call: scheduled or ready for a new job.
    pub state: JobState,
}

/// A producer's connection to a Jobwire broker. Cheap to clone; clones share the
/// connection.
///
/// Every call has a deadline (10 s by default). Calls that are safe to repeat
/// ([`get_job`](Client::get_job), [`cancel`](Client::cancel), and
/// [`enqueue`](Client::enqueue) with an idempotency key) are retried on `UNAVAILABLE` with
/// exponential backoff and jitter, honouring the broker's `RetryInfo`.
#[derive(Debug, Clone)]
pub struct Client {
    stub: BrokerServiceClient<Channel>,
    deadline: Duration,
    retry: Retry,
    max_message_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    max_retries: u32,
    initial: Duration,
    max: Duration,
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    target: String,
    deadline: Duration,
    retry: Retry,
    max_message_bytes: usize,
}

impl ClientBuilder {
    /// Deadline of each call (each retry gets a fresh one). Default 10 s.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How often an idempotent call is retried on `UNAVAILABLE` (default 4; 0 turns
    /// retries off), and the backoff between retries: exponential from `initial` up to
    /// `max`, with jitter (defaults 100 ms and 5 s).
    pub fn retries(mut self, max_retries: u32, initial: Duration, max: Duration) -> Self {
        self.retry = Retry {
            max_retries,
            initial,
            max,
        };
        self
    }

    /// Largest message the client sends or receives, in bytes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], 64 MiB). A larger message fails with [`Error::Other`]
    /// and tonic's `OUT_OF_RANGE` ("message length too large"). It applies to
    /// [`Client::raw`] too.
    pub fn max_message_bytes(mut self, max_message_bytes: usize) -> Self {
        self.max_message_bytes = max_message_bytes;
        self
    }

    /// Connects now; fails if the broker cannot be reached. The connection is re-established
    /// by itself if it drops later.
    pub async fn connect(self) -> Result<Client, Error> {
        let channel = self.endpoint()?.connect().await?;
        Ok(self.with_channel(channel))
    }

    /// Connects on first use, so this never fails for an unreachable broker.
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let channel = self.endpoint()?.connect_lazy();
        Ok(self.with_channel(channel))
    }

    /// A client over an existing channel.
    pub fn with_channel(self, channel: Channel) -> Client {
        Client {
            stub: BrokerServiceClient::new(channel)
                .max_decoding_message_size(self.max_message_bytes)
                .max_encoding_message_size(self.max_message_bytes),
            deadline: self.deadline,
            retry: self.retry,
            max_message_bytes: self.max_message_bytes,
        }
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        let uri = if self.target.contains("://") {
            self.target.clone()
        } else {
            format!("http://{}", self.target)
        };
        Ok(Endpoint::from_shared(uri)?.connect_timeout(self.deadline))
    }
}

impl Client {
    /// Connects to the broker at `target`: `host:port`, or a URI such as
    /// `http://jobwire.internal:50051`, with the default deadline and retries.
    pub async fn connect(target: impl Into<String>) -> Result<Self, Error> {
        Self::builder(target).connect().await
    }

    /// A builder for a client of the broker at `target`.
    pub fn builder(target: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            target: target.into(),
            deadline: DEFAULT_DEADLINE,
            retry: Retry {
                max_retries: 4,
                initial: Duration::from_millis(100),
                max: Duration::from_secs(5),
            },
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// Adds a job to `queue`. Queues exist as soon as a job names them.
    ///
    /// When the current OpenTelemetry context holds a span (or baggage), its W3C trace
    /// context travels with the job, so the worker's span joins the producer's trace. To
    /// use a context other than the current one, wrap the call in
    /// `opentelemetry::context::FutureExt::with_context`.
    ///
    /// Errors: [`Error::InvalidArgument`] naming each bad field (nothing was written);
    /// [`Error::Unavailable`], retried first only when the options carry an idempotency key;
    /// [`Error::Other`] with `OUT_OF_RANGE` when the request is larger than
    /// [`ClientBuilder::max_message_bytes`] (nothing was sent).
    pub async fn enqueue(
        &self,
        queue: &str,
        payload: impl Into<Vec<u8>>,
        options: EnqueueOptions,
    ) -> Result<Enqueued, Error> {
        let idempotent = options.is_idempotent();
        let mut job = options.into_spec(payload.into());
        job.trace_context = trace::inject(&opentelemetry::Context::current());
        let request = EnqueueRequest {
            queue: queue.to_owned(),
            job: Some(job),
        };
        // tonic would reset the stream with a bare "transport error"; say what is wrong, as
        // it does for a reply over the limit.
        let len = prost::Message::encoded_len(&request);
        if len > self.max_message_bytes {
            return Err(Error::Other(Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_bytes
            ))));
        }
        let response = self
            .call(idempotent, |mut stub, deadline| {
                let request = with_deadline(request.clone(), deadline);
                async move { stub.enqueue(request).await }
            })
            .await?;
        Ok(Enqueued {
            state: response.state(),
            job_id: response.job_id,
            duplicate: response.duplicate,
        })
    }

    /// Returns a job as the broker stores it; [`Error::NotFound`] if it never existed or was
    /// removed by retention.
    pub async fn get_job(&self, job_id: &str) -> Result<Job, Error> {
        let request = GetJobRequest {
            job_id: job_id.to_owned(),
        };
        let response = self
            .call(true, |mut stub, deadline| {
                let request = with_deadline(request.clone(), deadline);
                async move { stub.get_job(request).await }
            })
            .await?;
        response
            .job
            .ok_or_else(|| Error::Other(Status::internal("GetJob returned no job")))
    }

    /// Cancels a job: at once when scheduled or ready (`Cancelled`); an active job is
    /// flagged and its worker stops at its next heartbeat (`Active`). Cancelling twice is
    /// harmless, so the call is retried like [`get_job`](Client::get_job).
    pub async fn cancel(&self, job_id: &str) -> Result<JobState, Error> {
        let request = CancelJobRequest {
            job_id: job_id.to_owned(),
        };
        let response = self
            .call(true, |mut stub, deadline| {
                let request = with_deadline(request.clone(), deadline);
                async move { stub.cancel_job(request).await }
            })
            .await?;
        Ok(response.state())
    }

    /// The generated stub over this client's connection, for the calls this client does not
    /// wrap (Lease, Heartbeat, Complete, ...), with the client's message size limits.
    pub fn raw(&self) -> BrokerServiceClient<Channel> {
        self.stub.clone()
    }

    /// The largest message this client sends or receives, in bytes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn call<T, F, Fut>(&self, idempotent: bool, rpc: F) -> Result<T, Error>
    where
        F: Fn(BrokerServiceClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut retry = 0;
        loop {
            let attempt =
                tokio::time::timeout(self.deadline, rpc(self.stub.clone(), self.deadline));
            let status = match attempt.await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => Status::deadline_exceeded("the call's deadline passed"),
            };
            let error = Error::from(status);
            match &error {
                Error::Unavailable { retry_delay, .. }
                    if idempotent && retry < self.retry.max_retries =>
                {
                    tokio::time::sleep(self.pause(retry, *retry_delay)).await;
                    retry += 1;
                }
                _ => return Err(error),
            }
        }
    }

    /// Exponential backoff with jitter (half to all of the step), at least the broker's hint.
    fn pause(&self, retry: u32, hint: Option<Duration>) -> Duration {
        let step = self
            .retry
            .initial
            .saturating_mul(1 << retry.min(20))
            .min(self.retry.max);
        let fraction = (RandomState::new().build_hasher().finish() % 1000) as f64 / 1000.0;
        let pause = step.mul_f64(0.5 + fraction / 2.0);
        match hint {
            Some(hint) => pause.max(hint.min(self.retry.max)),
            None => pause,
        }
    }
}

fn with_deadline<T>(message: T, deadline: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(deadline);
    request
}
