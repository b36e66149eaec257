//! What a producer can say about a job besides its queue and payload.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::proto::v1::{
    BackoffKind, BackoffPolicy, DependencyFailurePolicy, IdempotencyMode, JobSpec,
};

/// How long the broker waits between attempts of a failed job.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    policy: BackoffPolicy,
}

impl Backoff {
    /// Every retry waits `delay`.
    pub fn fixed(delay: Duration) -> Self {
        Self::new(BackoffKind::Fixed, delay, None, 0.0)
    }

    /// Retry n waits `initial * n`, at most `max`.
    pub fn linear(initial: Duration, max: Duration) -> Self {
        Self::new(BackoffKind::Linear, initial, Some(max), 0.0)
    }

    /// Retry n waits `initial * multiplier^(n-1)`, at most `max`.
    pub fn exponential(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Self::new(BackoffKind::Exponential, initial, Some(max), multiplier)
    }

    /// Takes a random fraction in [0, `jitter`] off each delay.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.policy.jitter = jitter;
        self
    }

    fn new(kind: BackoffKind, initial: Duration, max: Option<Duration>, multiplier: f64) -> Self {
        Backoff {
            policy: BackoffPolicy {
                kind: kind.into(),
                initial_delay: Some(duration(initial)),
                max_delay: max.map(duration),
                multiplier,
                jitter: 0.0,
            },
        }
    }
}

/// Everything about a job except its queue and payload. Unset values take the broker's
/// defaults (priority 0, ready now, 3 attempts, exponential backoff from 1 s, 30 s leases).
///
/// ```
/// use std::time::Duration;
/// use jobwire::{Backoff, EnqueueOptions};
///
/// let options = EnqueueOptions::new()
///     .content_type("application/json")
///     .priority(10)
///     .max_attempts(5)
///     .backoff(Backoff::exponential(Duration::from_secs(2), Duration::from_secs(300), 2.0))
///     .idempotency_key("invoice-42")
///     .header("tenant", "acme");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueOptions {
    content_type: String,
    headers: HashMap<String, String>,
    priority: i32,
    delay: Option<Duration>,
    run_time: Option<SystemTime>,
    max_attempts: i32,
    backoff: Option<Backoff>,
    lease_duration: Option<Duration>,
    execution_timeout: Option<Duration>,
    idempotency_key: String,
    idempotency_window: Option<Duration>,
    idempotency_mode: IdempotencyMode,
    start_deadline: Option<SystemTime>,
    concurrency_key: String,
    concurrency_limit: i32,
    depends_on: Vec<String>,
    on_dependency_failure: DependencyFailurePolicy,
}

impl EnqueueOptions {
    /// Every broker default.
    pub fn new() -> Self {
        Self::default()
    }

    /// MIME type of the payload, e.g. `application/json`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Adds a string header passed to the worker unchanged.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Higher runs first, in [-1000, 1000]; equal priorities run in enqueue order.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Wait this long before the job becomes ready.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Do not run before this time; the later of delay and run time wins.
    pub fn run_time(mut self, run_time: SystemTime) -> Self {
        self.run_time = Some(run_time);
        self
    }

    /// Attempts in all, the first included, in [1, 1000].
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Delay policy between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// How long one lease lasts without a heartbeat.
    pub fn lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = Some(lease_duration);
        self
    }

    /// Hard limit on one attempt, enforced even while the worker heartbeats.
    pub fn execution_timeout(mut self, execution_timeout: Duration) -> Self {
        self.execution_timeout = Some(execution_timeout);
        self
    }

    /// A second enqueue with this key in the same queue within the window returns the first
    /// job. A key also makes the enqueue safe to retry when the broker is unavailable, so
    /// the client does.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = key.into();
        self
    }

    /// How long the idempotency key is remembered (broker default 24 h).
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = Some(window);
        self
    }

    /// What a second enqueue with the same idempotency key does (broker default
    /// [`IdempotencyMode::First`]): [`IdempotencyMode::Replace`] debounces,
    /// [`IdempotencyMode::Extend`] restarts the window. Ignored without a key.
    pub fn idempotency_mode(mut self, mode: IdempotencyMode) -> Self {
        self.idempotency_mode = mode;
        self
    }

    /// Drop the job (state `EXPIRED`) if no worker has leased it by this time.
    pub fn start_deadline(mut self, deadline: SystemTime) -> Self {
        self.start_deadline = Some(deadline);
        self
    }

    /// Jobs of the queue with this key (at most 256 bytes) run at most their concurrency
    /// limit at a time; Lease serves other keys past a key at its limit, round-robin.
    pub fn concurrency_key(mut self, key: impl Into<String>) -> Self {
        self.concurrency_key = key.into();
        self
    }

    /// Active jobs allowed per concurrency key, in [1, 10,000] (0: the queue's setting,
    /// else 1). Ignored without a key.
    pub fn concurrency_limit(mut self, limit: i32) -> Self {
        self.concurrency_limit = limit;
        self
    }

    /// Adds a job this one waits for (state `WAITING`) until every one has completed.
    pub fn depends_on(mut self, job_id: impl Into<String>) -> Self {
        self.depends_on.push(job_id.into());
        self
    }

    /// What happens when a dependency ends without completing (broker default
    /// [`DependencyFailurePolicy::Fail`]).
    pub fn on_dependency_failure(mut self, policy: DependencyFailurePolicy) -> Self {
        self.on_dependency_failure = policy;
        self
    }

    pub(crate) fn is_idempotent(&self) -> bool {
        !self.idempotency_key.is_empty()
    }

    pub(crate) fn into_spec(self, payload: Vec<u8>) -> JobSpec {
        JobSpec {
            payload,
            content_type: self.content_type,
            headers: self.headers,
            priority: self.priority,
            delay: self.delay.map(duration),
            run_time: self.run_time.map(prost_types::Timestamp::from),
            max_attempts: self.max_attempts,
            backoff: self.backoff.map(|b| b.policy),
            lease_duration: self.lease_duration.map(duration),
            execution_timeout: self.execution_timeout.map(duration),
            idempotency_key: self.idempotency_key,
            idempotency_window: self.idempotency_window.map(duration),
            trace_context: None,
            idempotency_mode: self.idempotency_mode.into(),
            start_deadline: self.start_deadline.map(prost_types::Timestamp::from),
            concurrency_key: self.concurrency_key,
            concurrency_limit: self.concurrency_limit,
            depends_on: self.depends_on,
            on_dependency_failure: self.on_dependency_failure.into(),
        }
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    // Durations this long are rejected by the broker anyway; saturate rather than panic.
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordination_options_reach_the_spec() {
        let deadline = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let spec = EnqueueOptions::new()
            .concurrency_key("wallet:0xabc")
            .concurrency_limit(2)
            .depends_on("q:1")
            .depends_on("q:2")
            .on_dependency_failure(DependencyFailurePolicy::Ignore)
            .start_deadline(deadline)
            .idempotency_key("k")
            .idempotency_mode(IdempotencyMode::Replace)
            .into_spec(vec![1]);
        assert_eq!(spec.concurrency_key, "wallet:0xabc");
        assert_eq!(spec.concurrency_limit, 2);
        assert_eq!(spec.depends_on, ["q:1", "q:2"]);
        assert_eq!(
            spec.on_dependency_failure(),
            DependencyFailurePolicy::Ignore
        );
        assert_eq!(spec.start_deadline.map(|t| t.seconds), Some(1_900_000_000));
        assert_eq!(spec.idempotency_key, "k");
        assert_eq!(spec.idempotency_mode(), IdempotencyMode::Replace);

        let plain = EnqueueOptions::new().into_spec(vec![]);
        assert_eq!(plain.idempotency_mode(), IdempotencyMode::Unspecified);
        assert_eq!(
            plain.on_dependency_failure(),
            DependencyFailurePolicy::Unspecified
        );
        assert!(plain.depends_on.is_empty() && plain.start_deadline.is_none());
        assert!(plain.concurrency_key.is_empty() && plain.concurrency_limit == 0);
    }
}
