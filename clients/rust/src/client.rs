//! The producer client: the service config's retries and timeouts, error mapping, tracing.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::error::Error;
use crate::options::EnqueueOptions;
use crate::proto::v1::broker_service_client::BrokerServiceClient;
use crate::proto::v1::{CancelJobRequest, EnqueueRequest, GetJobRequest, Job, JobState};
use crate::service_config::{MethodPolicy, ServiceConfig};
use crate::trace;

/// How long connecting may take before a call fails with `UNAVAILABLE` (and is retried if
/// its method is).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
/// Retries and timeouts come from the gRPC service config shipped with the protos
/// ([`ServiceConfig::shipped`]), which tonic does not read, so the client applies it:
/// [`get_job`](Client::get_job) and [`cancel`](Client::cancel) are retried on
/// `UNAVAILABLE` and time out after 10 s, as every unary call does;
/// [`enqueue`](Client::enqueue) is not retried by the config (a retry could create a second
/// job) but by the client, with GetJob's policy, when it has an idempotency key. Calls
/// through [`raw`](Client::raw) get neither.
#[derive(Debug, Clone)]
pub struct Client {
    stub: BrokerServiceClient<Channel>,
    deadline: Option<Duration>,
    config: Arc<ServiceConfig>,
    max_message_bytes: usize,
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    target: String,
    deadline: Option<Duration>,
    config: Option<ServiceConfig>,
    max_message_bytes: usize,
}

impl ClientBuilder {
    /// A deadline for each call, retries included. Default: none but the service config's
    /// timeout (10 s), which applies too, so only a shorter one changes anything.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The retry policy and timeout of each RPC. Default: [`ServiceConfig::shipped`], the
    /// file shipped with the protos; [`ServiceConfig::from_json`] reads another.
    pub fn service_config(mut self, config: ServiceConfig) -> Self {
        self.config = Some(config);
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
            config: Arc::new(self.config.unwrap_or_else(ServiceConfig::shipped)),
            max_message_bytes: self.max_message_bytes,
        }
    }

    fn endpoint(&self) -> Result<Endpoint, Error> {
        let uri = if self.target.contains("://") {
            self.target.clone()
        } else {
            format!("http://{}", self.target)
        };
        Ok(Endpoint::from_shared(uri)?.connect_timeout(CONNECT_TIMEOUT))
    }
}

impl Client {
    /// Connects to the broker at `target`: `host:port`, or a URI such as
    /// `http://jobwire.internal:50051`, retrying and timing out calls by the shipped service
    /// config.
    pub async fn connect(target: impl Into<String>) -> Result<Self, Error> {
        Self::builder(target).connect().await
    }

    /// A builder for a client of the broker at `target`.
    pub fn builder(target: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            target: target.into(),
            deadline: None,
            config: None,
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
            return Err(Error::from(Status::out_of_range(format!(
                "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_bytes
            ))));
        }
        let once = || {
            self.call("Enqueue", |mut stub, timeout| {
                let request = with_timeout(request.clone(), timeout);
                async move { stub.enqueue(request).await }
            })
        };
        let response = if idempotent {
            self.retrying(once).await?
        } else {
            once().await?
        };
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
            .call("GetJob", |mut stub, timeout| {
                let request = with_timeout(request.clone(), timeout);
                async move { stub.get_job(request).await }
            })
            .await?;
        response
            .job
            .ok_or_else(|| Error::from(Status::internal("GetJob returned no job")))
    }

    /// Cancels a job: at once when scheduled or ready (`Cancelled`); an active job is
    /// flagged and its worker stops at its next heartbeat (`Active`). Cancelling twice is
    /// harmless, so the service config retries it like [`get_job`](Client::get_job).
    pub async fn cancel(&self, job_id: &str) -> Result<JobState, Error> {
        let request = CancelJobRequest {
            job_id: job_id.to_owned(),
        };
        let response = self
            .call("CancelJob", |mut stub, timeout| {
                let request = with_timeout(request.clone(), timeout);
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

    /// The service config this client follows.
    pub fn service_config(&self) -> &ServiceConfig {
        &self.config
    }

    /// One call of `method`, retried and timed out as the service config says: attempts go
    /// on while the code is retryable and attempts remain, `backoff` apart, all within the
    /// method's timeout (and the builder's deadline). `rpc` gets the time left, for the
    /// request's `grpc-timeout`.
    async fn call<T, F, Fut>(&self, method: &str, rpc: F) -> Result<T, Error>
    where
        F: Fn(BrokerServiceClient<Channel>, Option<Duration>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let MethodPolicy { timeout, retry } = self.config.method(method);
        let limit = match (*timeout, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let end = limit.map(|limit| Instant::now() + limit);
        let left = || end.map(|end| end.saturating_duration_since(Instant::now()));
        let late = || Status::deadline_exceeded("the call's deadline passed");
        let mut attempt = 1;
        loop {
            let status = match left() {
                Some(left) if left.is_zero() => late(),
                Some(left) => {
                    match tokio::time::timeout(left, rpc(self.stub.clone(), Some(left))).await {
                        Ok(Ok(response)) => return Ok(response.into_inner()),
                        Ok(Err(status)) => status,
                        Err(_) => late(),
                    }
                }
                None => match rpc(self.stub.clone(), None).await {
                    Ok(response) => return Ok(response.into_inner()),
                    Err(status) => status,
                },
            };
            // tonic ends a call whose grpc-timeout passed with CANCELLED ("Timeout
            // expired"), racing the timer above: that is this call's deadline too.
            let status = if status.code() == Code::Cancelled
                && left().is_some_and(|left| left < Duration::from_millis(20))
            {
                late()
            } else {
                status
            };
            let Some(retry) = retry
                .as_ref()
                .filter(|r| r.retries(status.code()) && attempt < r.max_attempts)
            else {
                return Err(Error::from(status));
            };
            // gRPC's retries do not read RetryInfo; those the client makes itself do.
            let pause = retry.backoff(attempt, None);
            if left().is_some_and(|left| left <= pause) {
                return Err(Error::from(status));
            }
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// Retries a call the service config does not retry but the caller made safe to repeat
    /// (an enqueue with an idempotency key), with the config's policy of GetJob, honouring
    /// the broker's `RetryInfo`. Each attempt is a whole [`call`](Client::call).
    async fn retrying<T, F, Fut>(&self, once: F) -> Result<T, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let retry = self.config.method("GetJob").retry.as_ref();
        let mut attempt = 1;
        loop {
            let err = match once().await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            match retry {
                Some(retry) if retry.retries(err.code()) && attempt < retry.max_attempts => {
                    tokio::time::sleep(retry.backoff(attempt, err.retry_delay())).await;
                    attempt += 1;
                }
                _ => return Err(err),
            }
        }
    }
}

fn with_timeout<T>(message: T, timeout: Option<Duration>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}
