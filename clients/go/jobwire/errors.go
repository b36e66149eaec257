package jobwire

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// Sentinel errors, matched with errors.Is against any error this package returns. Each
// class of protos/jobwire/v1/README.md has one; ErrLeaseLost and ErrJobFinished also
// match ErrFailedPrecondition, their parent class.
var (
	// ErrInvalidArgument: the request was rejected and nothing was written
	// (INVALID_ARGUMENT; reasons INVALID_ARGUMENT and PAYLOAD_TOO_LARGE). The error's
	// Violations name each bad field; it is also an *InvalidArgumentError.
	ErrInvalidArgument = errors.New("jobwire: invalid argument")
	// ErrNotFound: the job never existed or was removed by retention (JOB_NOT_FOUND),
	// the queue does not exist (QUEUE_NOT_FOUND), or the schedule does not
	// (SCHEDULE_NOT_FOUND).
	ErrNotFound = errors.New("jobwire: job not found")
	// ErrAlreadyExists: CreateSchedule named a schedule that exists (ALREADY_EXISTS;
	// SCHEDULE_EXISTS). Nothing was written; update it instead, or delete it first.
	ErrAlreadyExists = errors.New("jobwire: already exists")
	// ErrFailedPrecondition: the job or queue is not in a state that allows the call
	// (FAILED_PRECONDITION). ErrLeaseLost and ErrJobFinished are its two subclasses;
	// WRONG_STATE (an admin operation on a job in the wrong state), QUEUE_BUSY (the
	// queue has active jobs) and CROSS_SLOT (on Redis Cluster, a flow or a dependency
	// would join jobs of more than one queue) are this class alone.
	ErrFailedPrecondition = errors.New("jobwire: failed precondition")
	// ErrLeaseLost: the lease expired or was taken over (LEASE_LOST). Stop working on
	// the job and drop its result. The worker also uses it as the cause of a handler's
	// context when it learns the lease is gone.
	ErrLeaseLost = errors.New("jobwire: lease lost")
	// ErrJobFinished: CancelJob on a completed or dead job (JOB_FINISHED).
	ErrJobFinished = errors.New("jobwire: job already finished")
	// ErrResourceExhausted: a limit was hit (RESOURCE_EXHAUSTED), e.g. a Lease whose
	// first job does not fit the reply (JOB_TOO_LARGE). Retrying as is fails the same way.
	ErrResourceExhausted = errors.New("jobwire: resource exhausted")
	// ErrUnavailable: the broker or its store could not be reached (UNAVAILABLE;
	// STORE_UNAVAILABLE, SHUTTING_DOWN); calls the service config retries were already
	// retried. The error's RetryDelay is the broker's hint.
	ErrUnavailable = errors.New("jobwire: broker unavailable")
	// ErrUnauthenticated: the call has no valid credentials (UNAUTHENTICATED).
	ErrUnauthenticated = errors.New("jobwire: unauthenticated")
	// ErrPermissionDenied: the caller may not do this (PERMISSION_DENIED).
	ErrPermissionDenied = errors.New("jobwire: permission denied")
	// ErrInternal: a bug in the broker (INTERNAL).
	ErrInternal = errors.New("jobwire: internal broker error")
	// ErrCancelRequested is the cause of a handler's context once CancelJob was called
	// on its job. The worker then reports the attempt failed and the job is cancelled.
	ErrCancelRequested = errors.New("jobwire: job cancellation requested")
	// ErrWorkerStopped is the cause of a handler's context when the worker's grace
	// period ran out during shutdown; the job was handed back for a retry.
	ErrWorkerStopped = errors.New("jobwire: worker stopped")
)

// Reason is the broker's stable reason for an error: the generated jobwirev1.ErrorReason,
// sent as google.rpc.ErrorInfo.reason (domain "jobwire.dev").
type Reason = jobwirev1.ErrorReason

// The reasons, as the generated enum names them.
const (
	ReasonUnspecified      = jobwirev1.ErrorReason_ERROR_REASON_UNSPECIFIED
	ReasonInvalidArgument  = jobwirev1.ErrorReason_INVALID_ARGUMENT
	ReasonPayloadTooLarge  = jobwirev1.ErrorReason_PAYLOAD_TOO_LARGE
	ReasonJobNotFound      = jobwirev1.ErrorReason_JOB_NOT_FOUND
	ReasonLeaseLost        = jobwirev1.ErrorReason_LEASE_LOST
	ReasonJobFinished      = jobwirev1.ErrorReason_JOB_FINISHED
	ReasonJobTooLarge      = jobwirev1.ErrorReason_JOB_TOO_LARGE
	ReasonStoreUnavailable = jobwirev1.ErrorReason_STORE_UNAVAILABLE
	ReasonShuttingDown     = jobwirev1.ErrorReason_SHUTTING_DOWN
	ReasonInternal         = jobwirev1.ErrorReason_INTERNAL
	ReasonUnauthenticated  = jobwirev1.ErrorReason_UNAUTHENTICATED
	ReasonPermissionDenied = jobwirev1.ErrorReason_PERMISSION_DENIED
	ReasonQueueNotFound    = jobwirev1.ErrorReason_QUEUE_NOT_FOUND
	ReasonWrongState       = jobwirev1.ErrorReason_WRONG_STATE
	ReasonQueueBusy        = jobwirev1.ErrorReason_QUEUE_BUSY
	ReasonCrossSlot        = jobwirev1.ErrorReason_CROSS_SLOT
	ReasonScheduleNotFound = jobwirev1.ErrorReason_SCHEDULE_NOT_FOUND
	ReasonScheduleExists   = jobwirev1.ErrorReason_SCHEDULE_EXISTS
)

// ErrorDomain is google.rpc.ErrorInfo.domain of the broker's errors; a reason from any
// other domain is not one of ours and reads as ReasonUnspecified.
const ErrorDomain = "jobwire.dev"

// byReason is the class of each reason: the mapping is keyed by the generated enum, and
// a test checks that every value of it is here (ReasonUnspecified is not: it falls back
// to byCode).
var byReason = map[Reason]error{
	ReasonInvalidArgument:  ErrInvalidArgument,
	ReasonPayloadTooLarge:  ErrInvalidArgument,
	ReasonJobNotFound:      ErrNotFound,
	ReasonLeaseLost:        ErrLeaseLost,
	ReasonJobFinished:      ErrJobFinished,
	ReasonJobTooLarge:      ErrResourceExhausted,
	ReasonStoreUnavailable: ErrUnavailable,
	ReasonShuttingDown:     ErrUnavailable,
	ReasonInternal:         ErrInternal,
	ReasonUnauthenticated:  ErrUnauthenticated,
	ReasonPermissionDenied: ErrPermissionDenied,
	ReasonQueueNotFound:    ErrNotFound,
	ReasonWrongState:       ErrFailedPrecondition,
	ReasonQueueBusy:        ErrFailedPrecondition,
	ReasonCrossSlot:        ErrFailedPrecondition,
	ReasonScheduleNotFound: ErrNotFound,
	ReasonScheduleExists:   ErrAlreadyExists,
}

// byCode is the class of a status whose reason is unspecified or unknown.
var byCode = map[codes.Code]error{
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.NotFound:           ErrNotFound,
	codes.AlreadyExists:      ErrAlreadyExists,
	codes.FailedPrecondition: ErrFailedPrecondition,
	codes.ResourceExhausted:  ErrResourceExhausted,
	codes.Unavailable:        ErrUnavailable,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.Internal:           ErrInternal,
	codes.DeadlineExceeded:   context.DeadlineExceeded,
	codes.Canceled:           context.Canceled,
}

// parentOf gives the class a class derives from, besides the base *Error.
var parentOf = map[error]error{
	ErrLeaseLost:   ErrFailedPrecondition,
	ErrJobFinished: ErrFailedPrecondition,
}

// Error is a failed call to the broker: its gRPC code, the reason from
// google.rpc.ErrorInfo (ReasonUnspecified when there is none or it is unknown), the
// message, the retry delay of google.rpc.RetryInfo and the field violations of
// google.rpc.BadRequest. errors.Is matches it against the sentinel of its class and that
// class's parent (ErrLeaseLost and ErrFailedPrecondition, say) and, for
// DEADLINE_EXCEEDED and CANCELLED, against context.DeadlineExceeded and
// context.Canceled. status.FromError(err) gives back the original gRPC status.
type Error struct {
	Code    codes.Code
	Reason  Reason
	Message string
	// RetryDelay is the broker's hint from google.rpc.RetryInfo, zero if none.
	RetryDelay time.Duration
	// Violations are the bad fields of an INVALID_ARGUMENT, in the broker's order.
	Violations []FieldViolation
	class      error
	status     *status.Status
}

func (e *Error) Error() string {
	if e.Code == codes.InvalidArgument && len(e.Violations) > 0 {
		parts := make([]string, len(e.Violations))
		for i, v := range e.Violations {
			parts[i] = v.Field + ": " + v.Description
		}
		return "jobwire: invalid argument: " + strings.Join(parts, "; ")
	}
	if e.Reason != ReasonUnspecified {
		return fmt.Sprintf("jobwire: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("jobwire: %s: %s", e.Code, e.Message)
}

// Is reports whether target is the sentinel of this error's class or of its parent.
func (e *Error) Is(target error) bool {
	return target != nil && e.class != nil && (target == e.class || target == parentOf[e.class])
}

// As makes errors.As(err, &invalid) with an *InvalidArgumentError succeed for errors of
// class ErrInvalidArgument.
func (e *Error) As(target any) bool {
	t, ok := target.(**InvalidArgumentError)
	if !ok || e.class != ErrInvalidArgument {
		return false
	}
	*t = &InvalidArgumentError{Reason: e.Reason, Message: e.Message, Violations: e.Violations, err: e}
	return true
}

// GRPCStatus returns the gRPC status the broker sent.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// Fields returns the names of the bad fields, in the broker's order.
func (e *Error) Fields() []string {
	fields := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		fields[i] = v.Field
	}
	return fields
}

// FieldViolation names one bad field of a request, e.g. `job.priority` or
// `jobs[3].lease_duration`, as google.rpc.BadRequest does.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidArgumentError is the INVALID_ARGUMENT view of an *Error, for
// errors.As(err, &invalid): nothing was written; fix the request rather than retry it.
// The *Error carries the same fields; errors.Is(err, ErrInvalidArgument) is true.
type InvalidArgumentError struct {
	// Reason is ReasonInvalidArgument or ReasonPayloadTooLarge.
	Reason     Reason
	Message    string
	Violations []FieldViolation
	err        *Error
}

func (e *InvalidArgumentError) Error() string { return e.err.Error() }

// Unwrap returns the *Error this is a view of.
func (e *InvalidArgumentError) Unwrap() error { return e.err }

// GRPCStatus returns the gRPC status the broker sent.
func (e *InvalidArgumentError) GRPCStatus() *status.Status { return e.err.status }

// Fields returns the names of the bad fields, in the broker's order.
func (e *InvalidArgumentError) Fields() []string { return e.err.Fields() }

// FromStatus maps an error of a gRPC call to this package's *Error, as every call of the
// Client does; use it on calls made through Client.Service(). Errors that carry no gRPC
// status (a context's own error, say) pass through unchanged, and so do errors that are
// already mapped.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	if e := (*Error)(nil); errors.As(err, &e) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if d.GetDomain() == ErrorDomain {
				e.Reason = Reason(jobwirev1.ErrorReason_value[d.GetReason()])
			}
		case *errdetails.RetryInfo:
			e.RetryDelay = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Violations = append(e.Violations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	e.class = classOf(e.Code, e.Reason)
	return e
}

// classOf picks the class from the reason first, then from the code; nil means only
// the base *Error.
func classOf(code codes.Code, reason Reason) error {
	if class, ok := byReason[reason]; ok {
		return class
	}
	return byCode[code]
}

// mapError is the one place where gRPC statuses become this package's errors.
func mapError(err error) error { return FromStatus(err) }
