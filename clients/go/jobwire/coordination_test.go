package jobwire

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// leaseFake is a broker whose Lease answers as its test says and whose Enqueue records
// the request, for what the real broker cannot be made to do on cue (a rate limit's
// retry_after) or does not store yet.
type leaseFake struct {
	jobwirev1.UnimplementedBrokerServiceServer
	mu       sync.Mutex
	enqueued []*jobwirev1.JobSpec // of Enqueue and EnqueueBatch, in order
	leases   []time.Time
	lease    func(ctx context.Context, n int) (*jobwirev1.LeaseResponse, error)
}

func (f *leaseFake) Enqueue(_ context.Context, req *jobwirev1.EnqueueRequest) (*jobwirev1.EnqueueResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enqueued = append(f.enqueued, req.GetJob())
	return &jobwirev1.EnqueueResponse{JobId: req.GetQueue() + ":1", State: StateWaiting}, nil
}

func (f *leaseFake) EnqueueBatch(_ context.Context, req *jobwirev1.EnqueueBatchRequest) (*jobwirev1.EnqueueBatchResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &jobwirev1.EnqueueBatchResponse{}
	for range req.GetJobs() {
		resp.Results = append(resp.Results, &jobwirev1.EnqueueResponse{JobId: req.GetQueue() + ":2", State: StateWaiting})
	}
	f.enqueued = append(f.enqueued, req.GetJobs()...)
	return resp, nil
}

func (f *leaseFake) Lease(ctx context.Context, _ *jobwirev1.LeaseRequest) (*jobwirev1.LeaseResponse, error) {
	f.mu.Lock()
	f.leases = append(f.leases, time.Now())
	n := len(f.leases)
	f.mu.Unlock()
	return f.lease(ctx, n)
}

func (f *leaseFake) leaseTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.leases)
}

func startLeaseFake(t *testing.T, f *leaseFake) *Client {
	t.Helper()
	srv := grpc.NewServer()
	jobwirev1.RegisterBrokerServiceServer(srv, f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return dialAt(t, ln.Addr().String())
}

func dialAt(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCoordinationOptions: the options of concurrency keys, dependencies, start
// deadlines and idempotency modes set their JobSpec fields, and Enqueue sends them.
func TestCoordinationOptions(t *testing.T) {
	deadline := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	opts := []Option{
		WithConcurrencyKey("wallet:0xabc"), WithConcurrencyLimit(2),
		WithDependsOn("q:1", "q:2"), WithDependsOn("q:3"), WithOnDependencyFailure(DependencyIgnore),
		WithStartDeadline(deadline),
		WithIdempotencyKey("k"), WithIdempotencyMode(IdempotencyReplace),
	}
	check := func(t *testing.T, spec *jobwirev1.JobSpec) {
		t.Helper()
		if spec.GetConcurrencyKey() != "wallet:0xabc" || spec.GetConcurrencyLimit() != 2 {
			t.Errorf("concurrency key or limit lost: %v", spec)
		}
		if !slices.Equal(spec.GetDependsOn(), []string{"q:1", "q:2", "q:3"}) ||
			spec.GetOnDependencyFailure() != jobwirev1.DependencyFailurePolicy_DEPENDENCY_FAILURE_POLICY_IGNORE {
			t.Errorf("dependencies = %v, %v", spec.GetDependsOn(), spec.GetOnDependencyFailure())
		}
		if !spec.GetStartDeadline().AsTime().Equal(deadline) {
			t.Errorf("start deadline = %v, want %v", spec.GetStartDeadline().AsTime(), deadline)
		}
		if spec.GetIdempotencyKey() != "k" || spec.GetIdempotencyMode() != jobwirev1.IdempotencyMode_IDEMPOTENCY_MODE_REPLACE {
			t.Errorf("idempotency = %q, %v", spec.GetIdempotencyKey(), spec.GetIdempotencyMode())
		}
	}
	check(t, newSpec([]byte("x"), opts))

	plain := newSpec([]byte("x"), nil)
	if plain.GetConcurrencyKey() != "" || plain.GetDependsOn() != nil || plain.GetStartDeadline() != nil ||
		plain.GetIdempotencyMode() != jobwirev1.IdempotencyMode_IDEMPOTENCY_MODE_UNSPECIFIED ||
		plain.GetOnDependencyFailure() != jobwirev1.DependencyFailurePolicy_DEPENDENCY_FAILURE_POLICY_UNSPECIFIED {
		t.Errorf("without the options the broker's defaults must stay: %v", plain)
	}

	f := &leaseFake{}
	c := startLeaseFake(t, f)
	ctx := context.Background()
	res, err := c.Enqueue(ctx, "q", []byte("x"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateWaiting {
		t.Errorf("state = %v", res.State)
	}
	if _, err := c.EnqueueBatch(ctx, "q", []Spec{{Payload: []byte("y"), Options: opts}}); err != nil {
		t.Fatal(err)
	}
	if len(f.enqueued) != 2 {
		t.Fatalf("the fake saw %d jobs", len(f.enqueued))
	}
	for _, spec := range f.enqueued {
		check(t, spec)
	}
}

func TestTerminalStates(t *testing.T) {
	for state, terminal := range map[State]bool{
		StateScheduled: false, StateReady: false, StateActive: false, StateWaiting: false,
		StateCompleted: true, StateDead: true, StateCancelled: true, StateExpired: true,
	} {
		if Terminal(state) != terminal {
			t.Errorf("Terminal(%v) = %v", state, !terminal)
		}
	}
}

// TestWorkerWaitsForRetryAfter: a Lease that says a rate limit holds the jobs back
// (retry_after) is not called again before that long.
func TestWorkerWaitsForRetryAfter(t *testing.T) {
	const wait = 400 * time.Millisecond
	second := make(chan struct{})
	f := &leaseFake{lease: func(ctx context.Context, n int) (*jobwirev1.LeaseResponse, error) {
		if n == 1 {
			return &jobwirev1.LeaseResponse{RetryAfter: durationpb.New(wait)}, nil
		}
		if n == 2 {
			close(second)
		}
		<-ctx.Done() // an empty queue: hold the long-poll until the worker stops
		return nil, ctx.Err()
	}}
	c := startLeaseFake(t, f)
	w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second), WithGracePeriod(time.Second))
	w.HandleFunc("q", func(context.Context, *Job) ([]byte, error) { return nil, nil })
	stop := startWorker(t, w)
	select {
	case <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("the worker never leased again after retry_after")
	}
	stop()
	times := f.leaseTimes()
	if gap := times[1].Sub(times[0]); gap < wait {
		t.Errorf("the second Lease came %v after the first, before retry_after (%v)", gap, wait)
	}
}
