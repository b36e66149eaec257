//! The gRPC service config shipped with the protos (`protos/jobwire/v1/service_config.json`):
//! the retry policy and timeout of each RPC. tonic has no service config, so the client
//! reads the same file and retries and times out its calls by it, as gRPC does in the
//! other languages.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use serde_json::Value;
use tonic::Code;

const SERVICE: &str = "jobwire.v1.BrokerService";

/// A service config document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfigError(String);

impl fmt::Display for ServiceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "service config: {}", self.0)
    }
}

impl std::error::Error for ServiceConfigError {}

/// A `retryPolicy` of the service config: which codes are retried, how often, how far apart.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at most 5, gRPC's own cap).
    pub max_attempts: u32,
    /// Pause before the first retry.
    pub initial_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// Growth of the pause from one retry to the next.
    pub backoff_multiplier: f64,
    /// The codes that are retried.
    pub retryable_codes: Vec<Code>,
}

impl RetryPolicy {
    /// Whether a failure with `code` is retried.
    pub fn retries(&self, code: Code) -> bool {
        self.retryable_codes.contains(&code)
    }

    /// The pause before retry `n` (from 1): the initial backoff times multiplier^(n-1), at
    /// most the maximum, jittered by ±20% as gRPC does. A longer `hint` from the broker
    /// (`google.rpc.RetryInfo`) wins, up to the maximum.
    pub fn backoff(&self, n: u32, hint: Option<Duration>) -> Duration {
        let mut step = self.initial_backoff.as_secs_f64();
        for _ in 1..n {
            step = (step * self.backoff_multiplier.max(1.0)).min(self.max_backoff.as_secs_f64());
        }
        let fraction = (RandomState::new().build_hasher().finish() % 1000) as f64 / 1000.0;
        let pause = Duration::from_secs_f64(step * (0.8 + 0.4 * fraction));
        match hint {
            Some(hint) => pause.max(hint.min(self.max_backoff)),
            None => pause,
        }
    }
}

/// What the service config says about one method.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodPolicy {
    /// The deadline of a call, all its attempts included; `None`: none.
    pub timeout: Option<Duration>,
    /// `None`: the method is not retried.
    pub retry: Option<RetryPolicy>,
}

/// A parsed service config: the policy of each method of `jobwire.v1.BrokerService`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceConfig {
    methods: HashMap<String, MethodPolicy>,
    service: MethodPolicy,
}

impl ServiceConfig {
    /// The text of `protos/jobwire/v1/service_config.json`, built into the crate.
    pub const SHIPPED_JSON: &'static str =
        include_str!("../../../protos/jobwire/v1/service_config.json");

    /// The service config shipped with the protos.
    pub fn shipped() -> Self {
        Self::from_json(Self::SHIPPED_JSON).expect("the shipped service config is valid")
    }

    /// Reads a document in gRPC's service config JSON format.
    pub fn from_json(json: &str) -> Result<Self, ServiceConfigError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| ServiceConfigError(e.to_string()))?;
        let mut config = ServiceConfig::default();
        let entries = match doc.get("methodConfig") {
            None => return Ok(config),
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(ServiceConfigError("methodConfig is not a list".into())),
        };
        for entry in entries {
            let policy = method_policy(entry)?;
            let names = entry.get("name").and_then(Value::as_array).ok_or_else(|| {
                ServiceConfigError("a methodConfig entry has no name list".into())
            })?;
            for name in names {
                let service = name.get("service").and_then(Value::as_str).unwrap_or("");
                let method = name.get("method").and_then(Value::as_str).unwrap_or("");
                if !service.is_empty() && service != SERVICE {
                    continue;
                }
                if method.is_empty() {
                    config.service = policy.clone();
                } else {
                    config.methods.insert(method.to_owned(), policy.clone());
                }
            }
        }
        Ok(config)
    }

    /// The policy of `method` (e.g. `"GetJob"`), chosen as gRPC does: its own entry, else
    /// the service's.
    pub fn method(&self, method: &str) -> &MethodPolicy {
        self.methods.get(method).unwrap_or(&self.service)
    }
}

fn method_policy(entry: &Value) -> Result<MethodPolicy, ServiceConfigError> {
    let timeout = entry.get("timeout").map(duration).transpose()?;
    let retry = match entry.get("retryPolicy") {
        None => None,
        Some(p) => {
            let number = |key: &str| {
                p.get(key)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| ServiceConfigError(format!("retryPolicy.{key} is not a number")))
            };
            let field = |key: &str| {
                p.get(key)
                    .ok_or_else(|| ServiceConfigError(format!("retryPolicy.{key} is missing")))
            };
            let codes = field("retryableStatusCodes")?
                .as_array()
                .ok_or_else(|| ServiceConfigError("retryableStatusCodes is not a list".into()))?
                .iter()
                .map(code)
                .collect::<Result<Vec<_>, _>>()?;
            Some(RetryPolicy {
                max_attempts: (number("maxAttempts")? as u32).min(5),
                initial_backoff: duration(field("initialBackoff")?)?,
                max_backoff: duration(field("maxBackoff")?)?,
                backoff_multiplier: number("backoffMultiplier")?,
                retryable_codes: codes,
            })
        }
    };
    Ok(MethodPolicy { timeout, retry })
}

/// A protobuf JSON Duration such as `"0.1s"`.
fn duration(value: &Value) -> Result<Duration, ServiceConfigError> {
    let bad = || ServiceConfigError(format!("bad duration {value}"));
    let text = value.as_str().ok_or_else(bad)?;
    let seconds: f64 = text
        .strip_suffix('s')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

const CODE_NAMES: [(&str, Code); 17] = [
    ("OK", Code::Ok),
    ("CANCELLED", Code::Cancelled),
    ("UNKNOWN", Code::Unknown),
    ("INVALID_ARGUMENT", Code::InvalidArgument),
    ("DEADLINE_EXCEEDED", Code::DeadlineExceeded),
    ("NOT_FOUND", Code::NotFound),
    ("ALREADY_EXISTS", Code::AlreadyExists),
    ("PERMISSION_DENIED", Code::PermissionDenied),
    ("RESOURCE_EXHAUSTED", Code::ResourceExhausted),
    ("FAILED_PRECONDITION", Code::FailedPrecondition),
    ("ABORTED", Code::Aborted),
    ("OUT_OF_RANGE", Code::OutOfRange),
    ("UNIMPLEMENTED", Code::Unimplemented),
    ("INTERNAL", Code::Internal),
    ("UNAVAILABLE", Code::Unavailable),
    ("DATA_LOSS", Code::DataLoss),
    ("UNAUTHENTICATED", Code::Unauthenticated),
];

/// The canonical name of a gRPC code, e.g. `FAILED_PRECONDITION`.
pub fn code_name(code: Code) -> &'static str {
    CODE_NAMES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or("UNKNOWN", |(name, _)| name)
}

fn code(value: &Value) -> Result<Code, ServiceConfigError> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .map(Code::from_i32)
            .ok_or_else(|| ServiceConfigError(format!("bad status code {n}"))),
        Value::String(s) => CODE_NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, c)| *c)
            .ok_or_else(|| ServiceConfigError(format!("unknown status code {s}"))),
        other => Err(ServiceConfigError(format!("bad status code {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shipped_file() {
        let config = ServiceConfig::shipped();
        let get = config.method("GetJob");
        assert_eq!(get.timeout, Some(Duration::from_secs(10)));
        let retry = get.retry.as_ref().expect("GetJob is retried");
        assert_eq!(retry.max_attempts, 5);
        assert_eq!(retry.initial_backoff, Duration::from_millis(100));
        assert!(retry.retries(Code::Unavailable) && !retry.retries(Code::Internal));
        assert!(config.method("Complete").retry.is_none());
        assert_eq!(config.method("Lease"), &MethodPolicy::default());
        assert_eq!(config.method("StreamProgress").timeout, None);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_takes_the_hint() {
        let retry = ServiceConfig::shipped()
            .method("GetJob")
            .retry
            .clone()
            .unwrap();
        for n in 1..10 {
            let step = (0.1 * 2f64.powi(n as i32 - 1)).min(2.0);
            let pause = retry.backoff(n, None).as_secs_f64();
            assert!(
                pause >= step * 0.8 - 1e-9 && pause <= step * 1.2 + 1e-9,
                "{n}: {pause}"
            );
        }
        assert_eq!(
            retry.backoff(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            retry.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(ServiceConfig::from_json("{").is_err());
        assert!(
            ServiceConfig::from_json(r#"{"methodConfig":[{"name":[{}],"timeout":"10"}]}"#).is_err()
        );
        assert_eq!(
            ServiceConfig::from_json("{}").unwrap().method("GetJob"),
            &MethodPolicy::default()
        );
    }
}
