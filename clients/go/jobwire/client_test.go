package jobwire

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

func TestEnqueueGet(t *testing.T) {
	c := dialTest(t)
	ctx := context.Background()
	runAt := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	tests := []struct {
		name  string
		opts  []Option
		state State
		check func(t *testing.T, spec *jobwirev1.JobSpec, job *jobwirev1.Job)
	}{
		{
			name:  "defaults",
			state: StateReady,
			check: func(t *testing.T, spec *jobwirev1.JobSpec, job *jobwirev1.Job) {
				if spec.GetMaxAttempts() != 3 || spec.GetLeaseDuration().AsDuration() != 30*time.Second {
					t.Errorf("broker defaults not filled in: %v", spec)
				}
				if spec.GetTraceContext().GetTraceparent() != "" {
					t.Errorf("trace context without a span: %v", spec.GetTraceContext())
				}
			},
		},
		{
			name: "every option",
			opts: []Option{
				WithPriority(7), WithMaxAttempts(5), WithContentType("application/json"),
				WithHeaders(map[string]string{"a": "1"}), WithHeaders(map[string]string{"b": "2"}),
				WithLeaseDuration(5 * time.Second), WithTimeout(time.Minute),
				WithBackoff(Backoff{Kind: BackoffLinear, Initial: 2 * time.Second, Max: time.Minute}),
				WithIdempotencyWindow(time.Hour),
			},
			state: StateReady,
			check: func(t *testing.T, spec *jobwirev1.JobSpec, job *jobwirev1.Job) {
				if spec.GetPriority() != 7 || spec.GetMaxAttempts() != 5 || spec.GetContentType() != "application/json" {
					t.Errorf("priority, attempts or content type lost: %v", spec)
				}
				if spec.GetHeaders()["a"] != "1" || spec.GetHeaders()["b"] != "2" {
					t.Errorf("headers = %v", spec.GetHeaders())
				}
				if spec.GetLeaseDuration().AsDuration() != 5*time.Second || spec.GetExecutionTimeout().AsDuration() != time.Minute {
					t.Errorf("lease duration or timeout lost: %v", spec)
				}
				b := spec.GetBackoff()
				if b.GetKind() != BackoffLinear || b.GetInitialDelay().AsDuration() != 2*time.Second || b.GetMaxDelay().AsDuration() != time.Minute {
					t.Errorf("backoff = %v", b)
				}
			},
		},
		{
			name:  "delay",
			opts:  []Option{WithDelay(time.Hour)},
			state: StateScheduled,
		},
		{
			name:  "run at",
			opts:  []Option{WithRunAt(runAt)},
			state: StateScheduled,
			check: func(t *testing.T, spec *jobwirev1.JobSpec, job *jobwirev1.Job) {
				if !job.GetRunTime().AsTime().Equal(runAt) {
					t.Errorf("run time = %v, want %v", job.GetRunTime().AsTime(), runAt)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			queue := queueName(t)
			payload := []byte(`{"n": 1}`)
			res, err := c.Enqueue(ctx, queue, payload, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if res.Duplicate || res.State != tt.state || len(res.JobID) <= len(queue) || res.JobID[:len(queue)+1] != queue+":" {
				t.Fatalf("Enqueue = %+v", res)
			}
			job, err := c.GetJob(ctx, res.JobID)
			if err != nil {
				t.Fatal(err)
			}
			if job.GetId() != res.JobID || job.GetQueue() != queue || job.GetState() != tt.state || string(job.GetSpec().GetPayload()) != string(payload) {
				t.Fatalf("GetJob = %v", job)
			}
			if tt.check != nil {
				tt.check(t, job.GetSpec(), job)
			}
		})
	}

	t.Run("idempotency key", func(t *testing.T) {
		queue := queueName(t)
		first, err := c.Enqueue(ctx, queue, []byte("a"), WithIdempotencyKey("order-1"))
		if err != nil {
			t.Fatal(err)
		}
		second, err := c.Enqueue(ctx, queue, []byte("b"), WithIdempotencyKey("order-1"))
		if err != nil {
			t.Fatal(err)
		}
		if first.Duplicate || !second.Duplicate || second.JobID != first.JobID {
			t.Fatalf("first %+v, second %+v", first, second)
		}
	})

	t.Run("batch", func(t *testing.T) {
		queue := queueName(t)
		results, err := c.EnqueueBatch(ctx, queue, []Spec{
			{Payload: []byte("0")},
			{Payload: []byte("1"), Options: []Option{WithDelay(time.Hour)}},
			{Payload: []byte("2"), Options: []Option{WithPriority(3)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []State{StateReady, StateScheduled, StateReady}
		for i, r := range results {
			if r.State != want[i] {
				t.Errorf("results[%d] = %+v, want state %v", i, r, want[i])
			}
			job, err := c.GetJob(ctx, r.JobID)
			if err != nil || string(job.GetSpec().GetPayload()) != string(rune('0'+i)) {
				t.Errorf("job %d: %v %v", i, job, err)
			}
		}
		if len(results) != 3 || results[0].JobID == results[1].JobID {
			t.Fatalf("results = %+v", results)
		}
	})
}

func TestErrors(t *testing.T) {
	c := dialTest(t)
	ctx := context.Background()
	done, err := c.Enqueue(ctx, queueName(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	leased := leaseOne(t, c, done.JobID)
	if _, err := c.rpc.Complete(ctx, &jobwirev1.CompleteRequest{JobId: done.JobID, LeaseToken: leased.GetLeaseToken()}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		call     func() error
		sentinel error
		code     codes.Code
		reason   Reason
		fields   []string
	}{
		{
			name:     "get unknown job",
			call:     func() error { _, err := c.GetJob(ctx, "go-nowhere:424242"); return err },
			sentinel: ErrNotFound, code: codes.NotFound, reason: ReasonJobNotFound,
		},
		{
			name:     "cancel unknown job",
			call:     func() error { _, err := c.Cancel(ctx, "go-nowhere:424242"); return err },
			sentinel: ErrNotFound, code: codes.NotFound, reason: ReasonJobNotFound,
		},
		{
			name:     "cancel completed job",
			call:     func() error { _, err := c.Cancel(ctx, done.JobID); return err },
			sentinel: ErrJobFinished, code: codes.FailedPrecondition, reason: ReasonJobFinished,
		},
		{
			// (The token that completed the job is answered OK again: a retry of a lost reply.)
			name: "complete with a stale token",
			call: func() error {
				_, err := c.rpc.Complete(ctx, &jobwirev1.CompleteRequest{JobId: done.JobID, LeaseToken: leased.GetLeaseToken() + "x"})
				return mapError(err)
			},
			sentinel: ErrLeaseLost, code: codes.FailedPrecondition, reason: ReasonLeaseLost,
		},
		{
			name: "enqueue with bad fields",
			call: func() error {
				_, err := c.Enqueue(ctx, "bad queue!", nil, WithPriority(5000), WithLeaseDuration(time.Millisecond))
				return err
			},
			sentinel: ErrInvalidArgument, code: codes.InvalidArgument, reason: ReasonInvalidArgument,
			fields: []string{"queue", "job.priority", "job.lease_duration"},
		},
		{
			name: "batch names the bad job",
			call: func() error {
				_, err := c.EnqueueBatch(ctx, queueName(t), []Spec{{}, {Options: []Option{WithMaxAttempts(-1)}}})
				return err
			},
			sentinel: ErrInvalidArgument, code: codes.InvalidArgument, reason: ReasonInvalidArgument,
			fields: []string{"jobs[1].max_attempts"},
		},
		{
			name: "call deadline",
			call: func() error {
				ctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
				defer cancel()
				time.Sleep(time.Millisecond)
				_, err := c.GetJob(ctx, done.JobID)
				return err
			},
			sentinel: context.DeadlineExceeded, code: codes.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			if got := status.Code(err); got != tt.code {
				t.Errorf("status.Code = %v, want %v", got, tt.code)
			}
			if tt.fields != nil {
				var invalid *InvalidArgumentError
				if !errors.As(err, &invalid) {
					t.Fatalf("err %T is not an *InvalidArgumentError", err)
				}
				for _, f := range tt.fields {
					if !slices.Contains(invalid.Fields(), f) {
						t.Errorf("fields %v lack %q", invalid.Fields(), f)
					}
				}
				if invalid.Reason != tt.reason {
					t.Errorf("reason = %v, want %v", invalid.Reason, tt.reason)
				}
				return
			}
			var rpcErr *Error
			if !errors.As(err, &rpcErr) {
				t.Fatalf("err %T is not an *Error", err)
			}
			if rpcErr.Reason != tt.reason {
				t.Errorf("reason = %v, want %v", rpcErr.Reason, tt.reason)
			}
		})
	}
}

// leaseOne leases the job with the raw API, so tests can play a misbehaving worker.
func leaseOne(t *testing.T, c *Client, id string) *jobwirev1.LeasedJob {
	t.Helper()
	queue := id[:strings.LastIndex(id, ":")]
	resp, err := c.rpc.Lease(context.Background(), &jobwirev1.LeaseRequest{Queue: queue, Wait: durationpb.New(5 * time.Second)})
	if err != nil || len(resp.GetJobs()) != 1 || resp.GetJobs()[0].GetJob().GetId() != id {
		t.Fatalf("Lease: %v %v", resp, err)
	}
	return resp.GetJobs()[0]
}

// TestWatchResume cuts the watcher's connection mid-stream: the events of the job's
// life all arrive once, in order, and the sequence ends with the job.
func TestWatchResume(t *testing.T) {
	c := dialTest(t)
	p := newProxy(t, target)
	via, err := Dial(p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer via.Close()
	ctx := context.Background()
	res, err := c.Enqueue(ctx, queueName(t), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}

	events := make(chan Event, 16)
	errs := make(chan error, 1)
	go func() {
		defer close(events)
		for ev, err := range via.Watch(ctx, res.JobID) {
			if err != nil {
				errs <- err
				return
			}
			events <- ev
		}
	}()
	next := func() Event {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("watch ended early: %v", <-errs)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event")
		}
		return Event{}
	}
	if ev := next(); ev.Kind != EventSnapshot || ev.Job.GetState() != StateReady {
		t.Fatalf("first event = %v", ev)
	}

	p.dropAll()
	leased := leaseOne(t, c, res.JobID)
	if _, err := c.rpc.Heartbeat(ctx, &jobwirev1.HeartbeatRequest{JobId: res.JobID, LeaseToken: leased.GetLeaseToken(),
		Progress: &jobwirev1.Progress{Percent: 40, Message: "working"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.rpc.Complete(ctx, &jobwirev1.CompleteRequest{JobId: res.JobID, LeaseToken: leased.GetLeaseToken(), Result: []byte("ok")}); err != nil {
		t.Fatal(err)
	}

	var got []string
	seen := map[string]bool{}
	for ev := range events {
		if seen[ev.ID] {
			t.Errorf("event %s delivered twice", ev.ID)
		}
		seen[ev.ID] = true
		got = append(got, ev.Kind.String()+"/"+ev.Job.GetState().String())
	}
	select {
	case err := <-errs:
		t.Fatalf("watch failed: %v", err)
	default:
	}
	want := []string{
		"EVENT_KIND_STATE_CHANGED/JOB_STATE_ACTIVE",
		"EVENT_KIND_PROGRESS/JOB_STATE_ACTIVE",
		"EVENT_KIND_STATE_CHANGED/JOB_STATE_COMPLETED",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events after the cut = %v, want %v", got, want)
	}
	if p.count.Load() < 2 {
		t.Errorf("the watcher never reconnected (%d connections)", p.count.Load())
	}
}
