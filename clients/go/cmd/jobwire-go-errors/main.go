// Command jobwire-go-errors drives every ErrorReason through the Go client and prints
// the error class the client raised, one JSON line per case, for the cross-language
// test (tests/test_error_classes.py):
//
//	jobwire-go-errors --target HOST:PORT --dead-target HOST:PORT --queue PREFIX
//
// --target is a working broker, --dead-target a broker whose Redis is down. Every reason
// the broker can send is triggered for real, the AdminService's QUEUE_NOT_FOUND,
// WRONG_STATE and QUEUE_BUSY through jobwire.Admin; the others (SHUTTING_DOWN, INTERNAL,
// UNAUTHENTICATED, PERMISSION_DENIED, and CROSS_SLOT, SCHEDULE_NOT_FOUND and
// SCHEDULE_EXISTS until the broker sends them) and a few fallbacks are statuses built
// here and mapped with jobwire.FromStatus, as a call's error is. Each line:
//
//	{"case", "code" (gRPC code name), "reason" (the error's ErrorReason name), "class"
//	 (the most specific class), "is" (every class it belongs to, sorted),
//	 "retry_delay_ms" (null when none), "fields" (field violations, in order)}
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
	"github.com/jobwire/jobwire/clients/go/jobwire"
)

// classes in the shared vocabulary, most specific first.
var classes = []struct {
	name     string
	sentinel error
}{
	{"lease_lost", jobwire.ErrLeaseLost},
	{"job_finished", jobwire.ErrJobFinished},
	{"failed_precondition", jobwire.ErrFailedPrecondition},
	{"invalid_argument", jobwire.ErrInvalidArgument},
	{"not_found", jobwire.ErrNotFound},
	{"already_exists", jobwire.ErrAlreadyExists},
	{"resource_exhausted", jobwire.ErrResourceExhausted},
	{"unavailable", jobwire.ErrUnavailable},
	{"unauthenticated", jobwire.ErrUnauthenticated},
	{"permission_denied", jobwire.ErrPermissionDenied},
	{"internal", jobwire.ErrInternal},
}

type line struct {
	Case         string   `json:"case"`
	Code         string   `json:"code"`
	Reason       string   `json:"reason"`
	Class        string   `json:"class"`
	Is           []string `json:"is"`
	RetryDelayMs *int64   `json:"retry_delay_ms"`
	Fields       []string `json:"fields"`
}

func describe(name string, err error) line {
	l := line{Case: name, Class: "ok", Is: []string{}, Fields: []string{}}
	if err == nil {
		return l
	}
	l.Class = "error"
	for _, c := range classes {
		if errors.Is(err, c.sentinel) {
			if l.Class == "error" {
				l.Class = c.name
			}
			l.Is = append(l.Is, c.name)
		}
	}
	sort.Strings(l.Is)
	var e *jobwire.Error
	if !errors.As(err, &e) {
		l.Class = "unmapped: " + err.Error()
		return l
	}
	l.Code = code.Code_name[int32(e.Code)]
	l.Reason = e.Reason.String()
	if e.RetryDelay > 0 {
		ms := e.RetryDelay.Milliseconds()
		l.RetryDelayMs = &ms
	}
	l.Fields = append(l.Fields, e.Fields()...)
	return l
}

// built is a status as the broker would send it, through the client's mapping.
func built(c codes.Code, reason, domain string, more ...protoadapt.MessageV1) error {
	details := []protoadapt.MessageV1{}
	if reason != "" {
		details = append(details, &errdetails.ErrorInfo{Reason: reason, Domain: domain})
	}
	st, err := status.New(c, "built by jobwire-go-errors").WithDetails(append(details, more...)...)
	if err != nil {
		panic(err)
	}
	return jobwire.FromStatus(st.Err())
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "a working broker")
	dead := flag.String("dead-target", "", "a broker whose Redis is down")
	queue := flag.String("queue", "go-errors", "prefix of the queues this run uses")
	flag.Parse()
	if err := run(*target, *dead, *queue); err != nil {
		fmt.Fprintln(os.Stderr, "jobwire-go-errors:", err)
		os.Exit(1)
	}
}

func run(target, dead, queue string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := jobwire.Dial(target)
	if err != nil {
		return err
	}
	defer client.Close()
	raw := client.Service()
	out := json.NewEncoder(os.Stdout)
	emit := func(name string, err error) error { return out.Encode(describe(name, err)) }

	_, err = client.Enqueue(ctx, "bad queue!", nil)
	emit("INVALID_ARGUMENT", err)
	_, err = client.Enqueue(ctx, queue, make([]byte, 1<<20+1))
	emit("PAYLOAD_TOO_LARGE", err)
	_, err = client.GetJob(ctx, queue+":999999")
	emit("JOB_NOT_FOUND", err)

	job, err := client.Enqueue(ctx, queue, []byte("x"))
	if err != nil {
		return err
	}
	leased, err := raw.Lease(ctx, &jobwirev1.LeaseRequest{Queue: queue, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(leased.GetJobs()) != 1 {
		return fmt.Errorf("lease %s: %v %v", job.JobID, leased, err)
	}
	_, err = raw.Complete(ctx, &jobwirev1.CompleteRequest{JobId: job.JobID, LeaseToken: "not-the-token"})
	emit("LEASE_LOST", jobwire.FromStatus(err))
	if _, err := raw.Complete(ctx, &jobwirev1.CompleteRequest{JobId: job.JobID, LeaseToken: leased.GetJobs()[0].GetLeaseToken()}); err != nil {
		return err
	}
	_, err = client.Cancel(ctx, job.JobID)
	emit("JOB_FINISHED", err)

	big := queue + "-big"
	if _, err := client.Enqueue(ctx, big, []byte("a job larger than one byte")); err != nil {
		return err
	}
	_, err = raw.Lease(ctx, &jobwirev1.LeaseRequest{Queue: big, MaxResponseBytes: 1})
	emit("JOB_TOO_LARGE", jobwire.FromStatus(err))

	if dead != "" {
		down, err := jobwire.Dial(dead)
		if err != nil {
			return err
		}
		_, err = down.GetJob(ctx, queue+":1")
		emit("STORE_UNAVAILABLE", err)
		down.Close()
	}

	if err := adminErrors(ctx, client, queue, emit); err != nil {
		return err
	}

	second := &errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)}
	emit("SHUTTING_DOWN", built(codes.Unavailable, "SHUTTING_DOWN", jobwire.ErrorDomain, second))
	emit("INTERNAL", built(codes.Internal, "INTERNAL", jobwire.ErrorDomain))
	emit("UNAUTHENTICATED", built(codes.Unauthenticated, "UNAUTHENTICATED", jobwire.ErrorDomain))
	emit("PERMISSION_DENIED", built(codes.PermissionDenied, "PERMISSION_DENIED", jobwire.ErrorDomain))
	emit("NO_DETAILS", built(codes.FailedPrecondition, "", ""))
	emit("UNKNOWN_REASON", built(codes.NotFound, "SOMETHING_NEW", jobwire.ErrorDomain))
	emit("FOREIGN_DOMAIN", built(codes.FailedPrecondition, "LEASE_LOST", "example.com"))
	emit("REASON_OVER_CODE", built(codes.Unknown, "JOB_FINISHED", jobwire.ErrorDomain))
	// TODO(broker sends them): trigger these three with real calls instead, as above.
	emit("CROSS_SLOT", built(codes.FailedPrecondition, "CROSS_SLOT", jobwire.ErrorDomain))
	emit("SCHEDULE_NOT_FOUND", built(codes.NotFound, "SCHEDULE_NOT_FOUND", jobwire.ErrorDomain))
	emit("SCHEDULE_EXISTS", built(codes.AlreadyExists, "SCHEDULE_EXISTS", jobwire.ErrorDomain))
	return emit("ABORTED", built(codes.Aborted, "", ""))
}

// adminErrors triggers the AdminService's own reasons, each with the call that sends it.
func adminErrors(ctx context.Context, client *jobwire.Client, queue string, emit func(string, error) error) error {
	admin := client.Admin()
	_, err := admin.GetQueue(ctx, queue+"-never")
	emit("QUEUE_NOT_FOUND", err)

	ready := queue + "-ready"
	job, err := client.Enqueue(ctx, ready, []byte("x"))
	if err != nil {
		return err
	}
	// PromoteJobs by ids applies only to scheduled jobs; this one is ready.
	_, err = admin.PromoteJobs(ctx, ready, job.JobID)
	emit("WRONG_STATE", err)

	busy := queue + "-busy"
	if _, err := client.Enqueue(ctx, busy, []byte("x")); err != nil {
		return err
	}
	leased, err := client.Service().Lease(ctx, &jobwirev1.LeaseRequest{Queue: busy, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(leased.GetJobs()) != 1 {
		return fmt.Errorf("lease from %s: %v %v", busy, leased, err)
	}
	_, err = admin.DeleteQueue(ctx, busy, false)
	return emit("QUEUE_BUSY", err)
}
