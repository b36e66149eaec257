//! The one place where gRPC statuses become [`Error`] values: the variant comes from the
//! broker's reason (the generated [`ErrorReason`]) first, then from the gRPC code.

use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::proto::v1::ErrorReason;
use crate::service_config::code_name;

/// `google.rpc.ErrorInfo.domain` of the broker's errors; reasons of other domains are not read.
pub const ERROR_DOMAIN: &str = "jobwire.dev";

/// One bad field of a rejected request, from `google.rpc.BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, e.g. `job.priority`.
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// What every failed call carries, whatever its [`Error`] variant.
#[derive(Debug)]
#[non_exhaustive]
pub struct ErrorDetails {
    /// The gRPC status code.
    pub code: Code,
    /// The broker's reason, from `google.rpc.ErrorInfo`; [`ErrorReason::Unspecified`] when
    /// the status carried none, or one this client does not know.
    pub reason: ErrorReason,
    /// The broker's (or the transport's) message.
    pub message: String,
    /// The delay the broker asked for with `google.rpc.RetryInfo`, if any.
    pub retry_delay: Option<Duration>,
    /// Each bad field of an `INVALID_ARGUMENT`, in the broker's order; empty otherwise.
    pub field_violations: Vec<FieldViolation>,
    /// The status as it arrived.
    pub status: Status,
}

/// A failed broker call.
///
/// The variants are the error classes of `protos/jobwire/v1/README.md`; [`Error::LeaseLost`]
/// and [`Error::JobFinished`] are the two known cases of a failed precondition
/// ([`Error::is_failed_precondition`] is true for all three). Every variant but
/// [`Error::Transport`] carries the same [`ErrorDetails`], also reachable through
/// [`Error::details`] and the accessors.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `INVALID_ARGUMENT` (reasons `INVALID_ARGUMENT`, `PAYLOAD_TOO_LARGE`): nothing was
    /// written. Fix the request; do not retry it as is.
    InvalidArgument(ErrorDetails),
    /// `NOT_FOUND`: the job never existed or was removed by retention (`JOB_NOT_FOUND`), the
    /// queue does not exist (`QUEUE_NOT_FOUND`), or the schedule does not
    /// (`SCHEDULE_NOT_FOUND`).
    NotFound(ErrorDetails),
    /// `ALREADY_EXISTS` (`SCHEDULE_EXISTS`): CreateSchedule named a schedule that exists.
    /// Nothing was written; update it instead, or delete it first.
    AlreadyExists(ErrorDetails),
    /// `FAILED_PRECONDITION` with neither of the reasons below: among them `WRONG_STATE` (an
    /// admin operation on a job in the wrong state), `QUEUE_BUSY` (the queue has active
    /// jobs) and `CROSS_SLOT` (on Redis Cluster, a flow or a dependency would join jobs of
    /// more than one queue).
    FailedPrecondition(ErrorDetails),
    /// `LEASE_LOST`: the lease expired or was taken over. Stop working on the job and drop
    /// its result.
    LeaseLost(ErrorDetails),
    /// `JOB_FINISHED`: the job already completed or went dead, so it cannot be cancelled.
    JobFinished(ErrorDetails),
    /// `RESOURCE_EXHAUSTED` (`JOB_TOO_LARGE`): a limit was hit; retrying as is fails the
    /// same way.
    ResourceExhausted(ErrorDetails),
    /// `UNAVAILABLE` (`STORE_UNAVAILABLE`, `SHUTTING_DOWN`): the broker, or its store, could
    /// not be reached. Calls the service config retries were already retried.
    Unavailable(ErrorDetails),
    /// `UNAUTHENTICATED`: the call has no valid credentials.
    Unauthenticated(ErrorDetails),
    /// `PERMISSION_DENIED`: the caller may not do this.
    PermissionDenied(ErrorDetails),
    /// `INTERNAL`: a bug in the broker.
    Internal(ErrorDetails),
    /// Any other status, e.g. `DEADLINE_EXCEEDED` or tonic's `OUT_OF_RANGE` for a message
    /// over the size limit.
    Other(ErrorDetails),
    /// The target could not be parsed or the first connection failed.
    Transport(tonic::transport::Error),
}

/// A variant of [`Error`], as the function that makes it.
type Class = fn(ErrorDetails) -> Error;

/// The class of each reason. The match is exhaustive, so a value added to the proto does
/// not compile until it is mapped; `tests/errors.rs` walks every value as well.
pub(crate) fn class_of_reason(reason: ErrorReason) -> Option<Class> {
    Some(match reason {
        ErrorReason::Unspecified => return None, // falls back to the code
        ErrorReason::InvalidArgument | ErrorReason::PayloadTooLarge => Error::InvalidArgument,
        ErrorReason::JobNotFound | ErrorReason::QueueNotFound | ErrorReason::ScheduleNotFound => {
            Error::NotFound
        }
        ErrorReason::ScheduleExists => Error::AlreadyExists,
        ErrorReason::LeaseLost => Error::LeaseLost,
        ErrorReason::JobFinished => Error::JobFinished,
        ErrorReason::WrongState | ErrorReason::QueueBusy | ErrorReason::CrossSlot => {
            Error::FailedPrecondition
        }
        ErrorReason::JobTooLarge => Error::ResourceExhausted,
        ErrorReason::StoreUnavailable | ErrorReason::ShuttingDown => Error::Unavailable,
        ErrorReason::Internal => Error::Internal,
        ErrorReason::Unauthenticated => Error::Unauthenticated,
        ErrorReason::PermissionDenied => Error::PermissionDenied,
    })
}

/// The class of a status whose reason is unspecified or unknown.
fn class_of_code(code: Code) -> Class {
    match code {
        Code::InvalidArgument => Error::InvalidArgument,
        Code::NotFound => Error::NotFound,
        Code::AlreadyExists => Error::AlreadyExists,
        Code::FailedPrecondition => Error::FailedPrecondition,
        Code::ResourceExhausted => Error::ResourceExhausted,
        Code::Unavailable => Error::Unavailable,
        Code::Unauthenticated => Error::Unauthenticated,
        Code::PermissionDenied => Error::PermissionDenied,
        Code::Internal => Error::Internal,
        _ => Error::Other,
    }
}

impl Error {
    /// The broker's reason of a status (from a `jobwire.dev` `google.rpc.ErrorInfo`), or
    /// [`ErrorReason::Unspecified`] when it carries none or one this client does not know.
    pub fn reason_of(status: &Status) -> ErrorReason {
        status
            .get_details_error_info()
            .filter(|info| info.domain == ERROR_DOMAIN)
            .and_then(|info| ErrorReason::from_str_name(&info.reason))
            .unwrap_or(ErrorReason::Unspecified)
    }

    /// The details of the failed call; `None` for [`Error::Transport`].
    pub fn details(&self) -> Option<&ErrorDetails> {
        match self {
            Error::InvalidArgument(d)
            | Error::NotFound(d)
            | Error::AlreadyExists(d)
            | Error::FailedPrecondition(d)
            | Error::LeaseLost(d)
            | Error::JobFinished(d)
            | Error::ResourceExhausted(d)
            | Error::Unavailable(d)
            | Error::Unauthenticated(d)
            | Error::PermissionDenied(d)
            | Error::Internal(d)
            | Error::Other(d) => Some(d),
            Error::Transport(_) => None,
        }
    }

    /// The gRPC code; `UNAVAILABLE` for [`Error::Transport`].
    pub fn code(&self) -> Code {
        self.details().map_or(Code::Unavailable, |d| d.code)
    }

    /// The broker's reason; [`ErrorReason::Unspecified`] when there is none.
    pub fn reason(&self) -> ErrorReason {
        self.details()
            .map_or(ErrorReason::Unspecified, |d| d.reason)
    }

    /// The delay the broker asked for with `google.rpc.RetryInfo`, if any.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.details().and_then(|d| d.retry_delay)
    }

    /// The bad fields of an `INVALID_ARGUMENT`, in the broker's order.
    pub fn field_violations(&self) -> &[FieldViolation] {
        self.details().map_or(&[], |d| &d.field_violations)
    }

    /// The status as it arrived; `None` for [`Error::Transport`].
    pub fn status(&self) -> Option<&Status> {
        self.details().map(|d| &d.status)
    }

    /// True for [`Error::FailedPrecondition`] and its two known cases, [`Error::LeaseLost`]
    /// and [`Error::JobFinished`].
    pub fn is_failed_precondition(&self) -> bool {
        matches!(
            self,
            Error::FailedPrecondition(_) | Error::LeaseLost(_) | Error::JobFinished(_)
        )
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        let reason = Error::reason_of(&status);
        let field_violations = status
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
        let details = ErrorDetails {
            code: status.code(),
            reason,
            message: status.message().to_owned(),
            retry_delay: status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay),
            field_violations,
            status,
        };
        let class = class_of_reason(reason).unwrap_or_else(|| class_of_code(details.code));
        class(details)
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(err: tonic::transport::Error) -> Self {
        Error::Transport(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match (self, self.details()) {
            (Error::Transport(err), _) => return write!(f, "transport: {err}"),
            (_, Some(d)) => d,
            (_, None) => unreachable!("every variant but Transport has details"),
        };
        if !d.field_violations.is_empty() {
            write!(f, "invalid argument: ")?;
            for (i, v) in d.field_violations.iter().enumerate() {
                let sep = if i == 0 { "" } else { "; " };
                write!(f, "{sep}{}: {}", v.field, v.description)?;
            }
            return Ok(());
        }
        match d.reason {
            ErrorReason::Unspecified => write!(f, "{}: {}", code_name(d.code), d.message),
            reason => write!(
                f,
                "{} ({}): {}",
                code_name(d.code),
                reason.as_str_name(),
                d.message
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport(err) => Some(err),
            _ => self
                .status()
                .map(|s| s as &(dyn std::error::Error + 'static)),
        }
    }
}
