package jobwire

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// codeOfReason is the gRPC code the proto documents for each reason.
var codeOfReason = map[Reason]codes.Code{
	ReasonInvalidArgument:  codes.InvalidArgument,
	ReasonPayloadTooLarge:  codes.InvalidArgument,
	ReasonJobNotFound:      codes.NotFound,
	ReasonLeaseLost:        codes.FailedPrecondition,
	ReasonJobFinished:      codes.FailedPrecondition,
	ReasonJobTooLarge:      codes.ResourceExhausted,
	ReasonStoreUnavailable: codes.Unavailable,
	ReasonShuttingDown:     codes.Unavailable,
	ReasonInternal:         codes.Internal,
	ReasonUnauthenticated:  codes.Unauthenticated,
	ReasonPermissionDenied: codes.PermissionDenied,
	ReasonQueueNotFound:    codes.NotFound,
	ReasonWrongState:       codes.FailedPrecondition,
	ReasonQueueBusy:        codes.FailedPrecondition,
	ReasonCrossSlot:        codes.FailedPrecondition,
	ReasonScheduleNotFound: codes.NotFound,
	ReasonScheduleExists:   codes.AlreadyExists,
}

// richStatus is what the broker sends: a code, an ErrorInfo, and more details.
func richStatus(t *testing.T, code codes.Code, reason, domain string, more ...*errdetails.BadRequest) error {
	t.Helper()
	st := status.New(code, "boom")
	if reason != "" {
		var err error
		if st, err = st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: domain}); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range more {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

// TestEveryReasonHasAClass walks the generated enum, so a reason added to the proto fails
// here until it is mapped.
func TestEveryReasonHasAClass(t *testing.T) {
	for number, name := range jobwirev1.ErrorReason_name {
		reason := Reason(number)
		if reason == ReasonUnspecified {
			if _, ok := byReason[reason]; ok {
				t.Errorf("%s must fall back to the code, not have a class", name)
			}
			continue
		}
		class, ok := byReason[reason]
		if !ok {
			t.Errorf("reason %s has no class in byReason", name)
			continue
		}
		code, ok := codeOfReason[reason]
		if !ok {
			t.Errorf("reason %s: add its documented gRPC code to codeOfReason", name)
			continue
		}
		err := FromStatus(richStatus(t, code, name, ErrorDomain))
		var rpcErr *Error
		if !errors.As(err, &rpcErr) || rpcErr.Reason != reason || rpcErr.Code != code || !errors.Is(err, class) {
			t.Errorf("reason %s: got %#v", name, err)
		}
		// The reason decides, whatever the code says.
		if !errors.Is(FromStatus(richStatus(t, codes.Unknown, name, ErrorDomain)), class) {
			t.Errorf("reason %s with code UNKNOWN is not %v", name, class)
		}
	}
}

func TestFromStatus(t *testing.T) {
	bad := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "queue", Description: "bad"}}}
	tests := []struct {
		name   string
		err    error
		is     []error
		isNot  []error
		reason Reason
	}{
		{"lease lost is a failed precondition", richStatus(t, codes.FailedPrecondition, "LEASE_LOST", ErrorDomain),
			[]error{ErrLeaseLost, ErrFailedPrecondition}, []error{ErrJobFinished}, ReasonLeaseLost},
		{"job finished is a failed precondition", richStatus(t, codes.FailedPrecondition, "JOB_FINISHED", ErrorDomain),
			[]error{ErrJobFinished, ErrFailedPrecondition}, []error{ErrLeaseLost}, ReasonJobFinished},
		{"wrong state is only a failed precondition", richStatus(t, codes.FailedPrecondition, "WRONG_STATE", ErrorDomain),
			[]error{ErrFailedPrecondition}, []error{ErrLeaseLost, ErrJobFinished}, ReasonWrongState},
		{"queue busy is only a failed precondition", richStatus(t, codes.FailedPrecondition, "QUEUE_BUSY", ErrorDomain),
			[]error{ErrFailedPrecondition}, []error{ErrLeaseLost, ErrJobFinished}, ReasonQueueBusy},
		{"cross slot is only a failed precondition", richStatus(t, codes.FailedPrecondition, "CROSS_SLOT", ErrorDomain),
			[]error{ErrFailedPrecondition}, []error{ErrLeaseLost, ErrJobFinished}, ReasonCrossSlot},
		{"schedule not found is a not found", richStatus(t, codes.NotFound, "SCHEDULE_NOT_FOUND", ErrorDomain),
			[]error{ErrNotFound}, []error{ErrAlreadyExists}, ReasonScheduleNotFound},
		{"schedule exists is an already exists", richStatus(t, codes.AlreadyExists, "SCHEDULE_EXISTS", ErrorDomain),
			[]error{ErrAlreadyExists}, []error{ErrNotFound, ErrFailedPrecondition}, ReasonScheduleExists},
		{"already exists without a reason: by code", status.Error(codes.AlreadyExists, "x"),
			[]error{ErrAlreadyExists}, nil, ReasonUnspecified},
		{"queue not found is a not found", richStatus(t, codes.NotFound, "QUEUE_NOT_FOUND", ErrorDomain),
			[]error{ErrNotFound}, []error{ErrFailedPrecondition}, ReasonQueueNotFound},
		{"no details: by code", status.Error(codes.FailedPrecondition, "x"),
			[]error{ErrFailedPrecondition}, []error{ErrLeaseLost, ErrJobFinished}, ReasonUnspecified},
		{"unknown reason: by code", richStatus(t, codes.NotFound, "SOMETHING_NEW", ErrorDomain),
			[]error{ErrNotFound}, nil, ReasonUnspecified},
		{"another domain's reason is not ours", richStatus(t, codes.FailedPrecondition, "LEASE_LOST", "example.com"),
			[]error{ErrFailedPrecondition}, []error{ErrLeaseLost}, ReasonUnspecified},
		{"payload too large is an invalid argument", richStatus(t, codes.InvalidArgument, "PAYLOAD_TOO_LARGE", ErrorDomain, bad),
			[]error{ErrInvalidArgument}, nil, ReasonPayloadTooLarge},
		{"deadline", status.Error(codes.DeadlineExceeded, "late"), []error{context.DeadlineExceeded}, []error{ErrUnavailable}, ReasonUnspecified},
		{"aborted has only the base class", status.Error(codes.Aborted, "x"), nil,
			[]error{ErrFailedPrecondition, ErrUnavailable, ErrInternal}, ReasonUnspecified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := FromStatus(tt.err)
			for _, want := range tt.is {
				if !errors.Is(err, want) {
					t.Errorf("%v is not %v", err, want)
				}
			}
			for _, not := range tt.isNot {
				if errors.Is(err, not) {
					t.Errorf("%v is %v", err, not)
				}
			}
			var rpcErr *Error
			if !errors.As(err, &rpcErr) || rpcErr.Reason != tt.reason {
				t.Errorf("reason of %#v, want %v", err, tt.reason)
			}
			if status.Code(err) != status.Code(tt.err) {
				t.Errorf("status.Code = %v", status.Code(err))
			}
		})
	}

	t.Run("invalid argument view", func(t *testing.T) {
		err := FromStatus(richStatus(t, codes.InvalidArgument, "INVALID_ARGUMENT", ErrorDomain, bad))
		var invalid *InvalidArgumentError
		if !errors.As(err, &invalid) || invalid.Reason != ReasonInvalidArgument || len(invalid.Fields()) != 1 || invalid.Fields()[0] != "queue" {
			t.Fatalf("As(*InvalidArgumentError) on %v: %+v", err, invalid)
		}
		var rpcErr *Error
		if !errors.As(invalid, &rpcErr) || rpcErr.Fields()[0] != "queue" || !errors.Is(invalid, ErrInvalidArgument) {
			t.Errorf("the view does not lead back to its *Error")
		}
		if errors.As(FromStatus(status.Error(codes.NotFound, "x")), &invalid) {
			t.Errorf("a NOT_FOUND is an *InvalidArgumentError")
		}
	})

	t.Run("retry delay", func(t *testing.T) {
		st, _ := status.New(codes.Unavailable, "down").WithDetails(
			&errdetails.ErrorInfo{Reason: "STORE_UNAVAILABLE", Domain: ErrorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
		var rpcErr *Error
		if !errors.As(FromStatus(st.Err()), &rpcErr) || rpcErr.RetryDelay != time.Second || !errors.Is(rpcErr, ErrUnavailable) {
			t.Errorf("got %+v", rpcErr)
		}
	})

	t.Run("passes through", func(t *testing.T) {
		if FromStatus(nil) != nil || FromStatus(context.Canceled) != context.Canceled {
			t.Error("errors without a status changed")
		}
		once := FromStatus(status.Error(codes.NotFound, "x"))
		if FromStatus(once) != once {
			t.Error("mapping twice changed the error")
		}
	})
}
