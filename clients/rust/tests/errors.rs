//! The error variants come from the generated ErrorReason first, then from the gRPC code.

use std::collections::HashMap;
use std::time::Duration;

use jobwire::{Error, ErrorReason, FieldViolation, ERROR_DOMAIN};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails as RpcDetails, StatusExt};

/// A status as the broker sends it: a code, an ErrorInfo, more details.
fn status(
    code: Code,
    reason: Option<&str>,
    domain: &str,
    more: impl FnOnce(&mut RpcDetails),
) -> Status {
    let mut details = RpcDetails::new();
    if let Some(reason) = reason {
        details.set_error_info(reason, domain, HashMap::new());
    }
    more(&mut details);
    Status::with_error_details(code, "boom", details)
}

fn mapped(code: Code, reason: Option<&str>) -> Error {
    Error::from(status(code, reason, ERROR_DOMAIN, |_| {}))
}

/// The gRPC code the proto documents for each reason.
fn code_of(reason: ErrorReason) -> Code {
    match reason {
        ErrorReason::Unspecified => Code::Unknown,
        ErrorReason::InvalidArgument | ErrorReason::PayloadTooLarge => Code::InvalidArgument,
        ErrorReason::JobNotFound | ErrorReason::QueueNotFound | ErrorReason::ScheduleNotFound => {
            Code::NotFound
        }
        ErrorReason::ScheduleExists => Code::AlreadyExists,
        ErrorReason::LeaseLost
        | ErrorReason::JobFinished
        | ErrorReason::WrongState
        | ErrorReason::QueueBusy
        | ErrorReason::CrossSlot => Code::FailedPrecondition,
        ErrorReason::JobTooLarge => Code::ResourceExhausted,
        ErrorReason::StoreUnavailable | ErrorReason::ShuttingDown => Code::Unavailable,
        ErrorReason::Internal => Code::Internal,
        ErrorReason::Unauthenticated => Code::Unauthenticated,
        ErrorReason::PermissionDenied => Code::PermissionDenied,
    }
}

/// The variant's name, to compare classes.
fn class(err: &Error) -> &'static str {
    match err {
        Error::InvalidArgument(_) => "invalid_argument",
        Error::NotFound(_) => "not_found",
        Error::AlreadyExists(_) => "already_exists",
        Error::FailedPrecondition(_) => "failed_precondition",
        Error::LeaseLost(_) => "lease_lost",
        Error::JobFinished(_) => "job_finished",
        Error::ResourceExhausted(_) => "resource_exhausted",
        Error::Unavailable(_) => "unavailable",
        Error::Unauthenticated(_) => "unauthenticated",
        Error::PermissionDenied(_) => "permission_denied",
        Error::Internal(_) => "internal",
        _ => "error",
    }
}

/// Every value of the generated enum (prost gives no list, so walk the numbers).
fn every_reason() -> Vec<ErrorReason> {
    (0..=1024)
        .filter_map(|n| ErrorReason::try_from(n).ok())
        .collect()
}

#[test]
fn every_value_of_the_generated_enum_has_a_class() {
    let reasons = every_reason();
    assert!(reasons.len() > 10, "{reasons:?}");
    for reason in reasons {
        let name = reason.as_str_name();
        let code = code_of(reason);
        let err = mapped(code, Some(name));
        assert_eq!(err.reason(), reason, "{name}");
        assert_eq!(err.code(), code, "{name}");
        if reason == ErrorReason::Unspecified {
            assert_eq!(class(&err), "error", "UNSPECIFIED falls back to the code");
            continue;
        }
        assert_ne!(class(&err), "error", "{name} has no class");
        // The reason decides, whatever the code says.
        assert_eq!(
            class(&mapped(Code::Unknown, Some(name))),
            class(&err),
            "{name}"
        );
    }
}

#[test]
fn the_hierarchy_and_the_fallbacks() {
    let lost = mapped(Code::FailedPrecondition, Some("LEASE_LOST"));
    assert!(matches!(lost, Error::LeaseLost(_)) && lost.is_failed_precondition());
    let finished = mapped(Code::FailedPrecondition, Some("JOB_FINISHED"));
    assert!(matches!(finished, Error::JobFinished(_)) && finished.is_failed_precondition());

    // The admin reasons are the generic variants, not a lost lease or a finished job.
    for reason in ["WRONG_STATE", "QUEUE_BUSY", "CROSS_SLOT"] {
        let plain = mapped(Code::FailedPrecondition, Some(reason));
        assert!(
            matches!(plain, Error::FailedPrecondition(_)),
            "{reason}: {plain:?}"
        );
    }
    let queue = mapped(Code::NotFound, Some("QUEUE_NOT_FOUND"));
    assert!(matches!(queue, Error::NotFound(_)), "{queue:?}");
    let schedule = mapped(Code::NotFound, Some("SCHEDULE_NOT_FOUND"));
    assert!(matches!(schedule, Error::NotFound(_)), "{schedule:?}");
    let taken = mapped(Code::AlreadyExists, Some("SCHEDULE_EXISTS"));
    assert!(
        matches!(taken, Error::AlreadyExists(_)) && !taken.is_failed_precondition(),
        "{taken:?}"
    );
    let exists = mapped(Code::AlreadyExists, None);
    assert!(matches!(exists, Error::AlreadyExists(_)), "{exists:?}");

    let bare = mapped(Code::FailedPrecondition, None);
    assert!(matches!(bare, Error::FailedPrecondition(_)) && bare.is_failed_precondition());
    assert_eq!(bare.reason(), ErrorReason::Unspecified);
    let unknown = mapped(Code::NotFound, Some("SOMETHING_NEW"));
    assert!(matches!(unknown, Error::NotFound(_)), "{unknown:?}");
    assert_eq!(unknown.reason(), ErrorReason::Unspecified);
    let foreign = Error::from(status(
        Code::FailedPrecondition,
        Some("LEASE_LOST"),
        "example.com",
        |_| {},
    ));
    assert!(
        matches!(foreign, Error::FailedPrecondition(_)),
        "{foreign:?}"
    );
    assert!(matches!(mapped(Code::Aborted, None), Error::Other(_)));
    assert!(!mapped(Code::NotFound, None).is_failed_precondition());
}

#[test]
fn field_violations_and_the_retry_delay() {
    let invalid = Error::from(status(
        Code::InvalidArgument,
        Some("PAYLOAD_TOO_LARGE"),
        ERROR_DOMAIN,
        |d| {
            d.add_bad_request_violation("queue", "bad");
        },
    ));
    assert!(matches!(invalid, Error::InvalidArgument(_)));
    assert_eq!(
        invalid.field_violations(),
        [FieldViolation {
            field: "queue".into(),
            description: "bad".into()
        }]
    );
    assert_eq!(invalid.to_string(), "invalid argument: queue: bad");

    let down = Error::from(status(
        Code::Unavailable,
        Some("SHUTTING_DOWN"),
        ERROR_DOMAIN,
        |d| {
            d.set_retry_info(Some(Duration::from_secs(1)));
        },
    ));
    assert!(matches!(down, Error::Unavailable(_)));
    assert_eq!(down.retry_delay(), Some(Duration::from_secs(1)));
    assert_eq!(down.to_string(), "UNAVAILABLE (SHUTTING_DOWN): boom");
}
