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
)

// Sentinel errors, matched with errors.Is against any error this package returns.
var (
	// ErrNotFound: the job never existed or was removed by retention (NOT_FOUND).
	ErrNotFound = errors.New("jobwire: job not found")
	// ErrLeaseLost: the lease expired or was taken over (FAILED_PRECONDITION,
	// reason LEASE_LOST). Stop working on the job and drop its result. The worker also
	// uses it as the cause of a handler's context when it learns the lease is gone.
	ErrLeaseLost = errors.New("jobwire: lease lost")
	// ErrJobFinished: CancelJob on a completed or dead job (reason JOB_FINISHED).
	ErrJobFinished = errors.New("jobwire: job already finished")
	// ErrInvalidArgument: the request was rejected and nothing was written. The error
	// is an *InvalidArgumentError naming each bad field.
	ErrInvalidArgument = errors.New("jobwire: invalid argument")
	// ErrUnavailable: the broker or its store could not be reached (UNAVAILABLE);
	// idempotent calls were already retried with backoff.
	ErrUnavailable = errors.New("jobwire: broker unavailable")
	// ErrResourceExhausted: the broker refused the call for lack of resources.
	ErrResourceExhausted = errors.New("jobwire: resource exhausted")
	// ErrCancelRequested is the cause of a handler's context once CancelJob was called
	// on its job. The worker then reports the attempt failed and the job is cancelled.
	ErrCancelRequested = errors.New("jobwire: job cancellation requested")
	// ErrWorkerStopped is the cause of a handler's context when the worker's grace
	// period ran out during shutdown; the job was handed back for a retry.
	ErrWorkerStopped = errors.New("jobwire: worker stopped")
)

// Stable reasons the broker sends in google.rpc.ErrorInfo.
const (
	ReasonInvalidArgument  = "INVALID_ARGUMENT"
	ReasonPayloadTooLarge  = "PAYLOAD_TOO_LARGE"
	ReasonJobNotFound      = "JOB_NOT_FOUND"
	ReasonLeaseLost        = "LEASE_LOST"
	ReasonJobFinished      = "JOB_FINISHED"
	ReasonStoreUnavailable = "STORE_UNAVAILABLE"
)

// Error is a failed call to the broker: its gRPC code, the stable reason from
// google.rpc.ErrorInfo and the message. errors.Is matches it against the sentinel of
// its kind (ErrNotFound, ErrLeaseLost, ...) and, for DEADLINE_EXCEEDED and CANCELLED,
// against context.DeadlineExceeded and context.Canceled. status.FromError(err) gives
// back the original gRPC status.
type Error struct {
	Code    codes.Code
	Reason  string
	Message string
	// RetryDelay is the broker's hint from google.rpc.RetryInfo, zero if none.
	RetryDelay time.Duration
	status     *status.Status
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("jobwire: %s (%s): %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("jobwire: %s: %s", e.Code, e.Message)
}

// Is reports whether target is the sentinel of this error's kind.
func (e *Error) Is(target error) bool {
	return target != nil && target == sentinel(e.Code, e.Reason)
}

// GRPCStatus returns the gRPC status the broker sent.
func (e *Error) GRPCStatus() *status.Status { return e.status }

// FieldViolation names one bad field of a request, e.g. `job.priority` or
// `jobs[3].lease_duration`, as google.rpc.BadRequest does.
type FieldViolation struct {
	Field       string
	Description string
}

// InvalidArgumentError is an INVALID_ARGUMENT answer: nothing was written; fix the
// request rather than retry it. errors.Is(err, ErrInvalidArgument) is true.
type InvalidArgumentError struct {
	// Reason is INVALID_ARGUMENT or PAYLOAD_TOO_LARGE.
	Reason     string
	Message    string
	Violations []FieldViolation
	status     *status.Status
}

func (e *InvalidArgumentError) Error() string {
	if len(e.Violations) == 0 {
		return "jobwire: invalid argument: " + e.Message
	}
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.Field + ": " + v.Description
	}
	return "jobwire: invalid argument: " + strings.Join(parts, "; ")
}

// Is reports whether target is ErrInvalidArgument.
func (e *InvalidArgumentError) Is(target error) bool { return target == ErrInvalidArgument }

// GRPCStatus returns the gRPC status the broker sent.
func (e *InvalidArgumentError) GRPCStatus() *status.Status { return e.status }

// Fields returns the names of the bad fields, in the broker's order.
func (e *InvalidArgumentError) Fields() []string {
	fields := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		fields[i] = v.Field
	}
	return fields
}

func sentinel(code codes.Code, reason string) error {
	switch code {
	case codes.NotFound:
		return ErrNotFound
	case codes.FailedPrecondition:
		switch reason {
		case ReasonLeaseLost:
			return ErrLeaseLost
		case ReasonJobFinished:
			return ErrJobFinished
		}
	case codes.InvalidArgument:
		return ErrInvalidArgument
	case codes.Unavailable:
		return ErrUnavailable
	case codes.ResourceExhausted:
		return ErrResourceExhausted
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	return nil
}

// mapError is the one place where gRPC statuses become this package's errors. Errors
// that carry no gRPC status (a context's own error, say) pass through unchanged.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var (
		reason     string
		retryDelay time.Duration
		violations []FieldViolation
	)
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.RetryInfo:
			retryDelay = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				violations = append(violations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		}
	}
	if st.Code() == codes.InvalidArgument {
		return &InvalidArgumentError{Reason: reason, Message: st.Message(), Violations: violations, status: st}
	}
	return &Error{Code: st.Code(), Reason: reason, Message: st.Message(), RetryDelay: retryDelay, status: st}
}
