//! The one place where gRPC statuses become [`Error`] values.

use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

/// One bad field of a rejected request, from `google.rpc.BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `job.priority`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// A failed broker call.
///
/// The variants are the cases a caller acts on; everything else (for example
/// `DEADLINE_EXCEEDED` or `INTERNAL`) is [`Error::Other`] with the full status.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `NOT_FOUND`: the job never existed or was removed by retention.
    NotFound {
        /// The broker's message.
        message: String,
    },
    /// `FAILED_PRECONDITION` with reason `LEASE_LOST`: the lease expired or was taken over.
    /// Stop working on the job and drop its result.
    LeaseLost {
        /// The broker's message.
        message: String,
    },
    /// `INVALID_ARGUMENT`: nothing was written. Fix the request; do not retry it as is.
    InvalidArgument {
        /// The stable reason: `INVALID_ARGUMENT`, or `PAYLOAD_TOO_LARGE`.
        reason: String,
        /// The broker's message.
        message: String,
        /// Each bad field, in the order the broker reported them.
        violations: Vec<FieldViolation>,
    },
    /// `UNAVAILABLE`: the broker, or its store, could not be reached. Idempotent calls were
    /// already retried with backoff.
    Unavailable {
        /// The broker's (or the transport's) message.
        message: String,
        /// The delay the broker asked for with `google.rpc.RetryInfo`, if any.
        retry_delay: Option<Duration>,
    },
    /// The target could not be parsed or the first connection failed.
    Transport(tonic::transport::Error),
    /// Any other status.
    Other(Status),
}

impl Error {
    /// The stable `google.rpc.ErrorInfo` reason of a status, or "" when it carries none.
    pub fn reason_of(status: &Status) -> String {
        status
            .get_details_error_info()
            .map(|info| info.reason)
            .unwrap_or_default()
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::NotFound => Error::NotFound { message },
            Code::FailedPrecondition if Error::reason_of(&status) == "LEASE_LOST" => {
                Error::LeaseLost { message }
            }
            Code::InvalidArgument => {
                let violations = status
                    .get_details_bad_request()
                    .map(|bad| {
                        bad.field_violations
                            .into_iter()
                            .map(|v| FieldViolation {
                                field: v.field,
                                description: v.description,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Error::InvalidArgument {
                    reason: Error::reason_of(&status),
                    message,
                    violations,
                }
            }
            Code::Unavailable => Error::Unavailable {
                message,
                retry_delay: status
                    .get_details_retry_info()
                    .and_then(|info| info.retry_delay),
            },
            _ => Error::Other(status),
        }
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(err: tonic::transport::Error) -> Self {
        Error::Transport(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { message } => write!(f, "not found: {message}"),
            Error::LeaseLost { message } => write!(f, "lease lost: {message}"),
            Error::InvalidArgument {
                message,
                violations,
                ..
            } if violations.is_empty() => write!(f, "invalid argument: {message}"),
            Error::InvalidArgument { violations, .. } => {
                write!(f, "invalid argument: ")?;
                for (i, v) in violations.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{}: {}", v.field, v.description)?;
                }
                Ok(())
            }
            Error::Unavailable { message, .. } => write!(f, "unavailable: {message}"),
            Error::Transport(err) => write!(f, "transport: {err}"),
            Error::Other(status) => write!(f, "{:?}: {}", status.code(), status.message()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport(err) => Some(err),
            Error::Other(status) => Some(status),
            _ => None,
        }
    }
}
