package jobwire

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

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

	// The real broker stores what was sent: enqueue after the jobs depended on exist.
	c := dialTest(t)
	ctx := context.Background()
	queue := queueName(t)
	var deps []string
	for range 3 {
		dep, err := c.Enqueue(ctx, queue, []byte("dep"))
		if err != nil {
			t.Fatal(err)
		}
		deps = append(deps, dep.JobID)
	}
	sent := []Option{
		WithConcurrencyKey("wallet:0xabc"), WithConcurrencyLimit(2),
		WithDependsOn(deps[:2]...), WithDependsOn(deps[2]), WithOnDependencyFailure(DependencyIgnore),
		WithStartDeadline(deadline),
		WithIdempotencyKey("k"), WithIdempotencyMode(IdempotencyReplace),
	}
	res, err := c.Enqueue(ctx, queue, []byte("x"), sent...)
	if err != nil {
		t.Fatal(err)
	}
	if res.State != StateWaiting {
		t.Errorf("state = %v, want waiting for its dependencies", res.State)
	}
	// REPLACE: the same key while the job is pending takes the new payload.
	again, err := c.EnqueueBatch(ctx, queue, []Spec{{Payload: []byte("y"), Options: sent}})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].JobID != res.JobID || !again[0].Duplicate {
		t.Errorf("replace made %v, want %s again", again[0], res.JobID)
	}
	job, err := c.GetJob(ctx, res.JobID)
	if err != nil {
		t.Fatal(err)
	}
	spec := job.GetSpec()
	if string(spec.GetPayload()) != "y" {
		t.Errorf("payload = %q, want the replacement's", spec.GetPayload())
	}
	if spec.GetConcurrencyKey() != "wallet:0xabc" || spec.GetConcurrencyLimit() != 2 {
		t.Errorf("concurrency key or limit lost: %v", spec)
	}
	if !slices.Equal(spec.GetDependsOn(), deps) ||
		spec.GetOnDependencyFailure() != jobwirev1.DependencyFailurePolicy_DEPENDENCY_FAILURE_POLICY_IGNORE {
		t.Errorf("dependencies = %v, %v", spec.GetDependsOn(), spec.GetOnDependencyFailure())
	}
	if !spec.GetStartDeadline().AsTime().Equal(deadline) {
		t.Errorf("start deadline = %v, want %v", spec.GetStartDeadline().AsTime(), deadline)
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

// TestWorkerWaitsForRetryAfter: on a queue limited to one lease per 1.5 s, a worker
// whose long-poll (300 ms) is shorter than the limit gets retry_after and sleeps it out
// instead of asking again every poll: a handful of Lease calls, not one per poll.
func TestWorkerWaitsForRetryAfter(t *testing.T) {
	var leases atomic.Int64
	count := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Lease") {
			leases.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	c := dialTest(t, WithDialOptions(count))
	ctx := context.Background()
	queue := queueName(t)
	limit := &jobwirev1.RateLimit{Limit: 1, Period: durationpb.New(1500 * time.Millisecond)}
	if _, err := c.Admin().UpdateQueue(ctx, queue, &jobwirev1.QueueSettings{RateLimit: limit}, "rate_limit"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Enqueue(ctx, queue, nil); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var starts []time.Time
	two := make(chan struct{})
	w := NewWorker(c, WithLogger(quiet), WithPollWait(300*time.Millisecond), WithGracePeriod(time.Second))
	w.HandleFunc(queue, func(context.Context, *Job) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		starts = append(starts, time.Now())
		if len(starts) == 2 {
			close(two)
		}
		return nil, nil
	})
	stop := startWorker(t, w)
	select {
	case <-two:
	case <-time.After(10 * time.Second):
		t.Fatal("the second job was never leased")
	}
	stop()
	if gap := starts[1].Sub(starts[0]); gap < 1400*time.Millisecond {
		t.Errorf("the second job ran %v after the first, inside the 1.5 s limit", gap)
	}
	// 1.5 s of 300 ms polls would be five Leases or more; sleeping out retry_after, a few.
	if n := leases.Load(); n > 5 {
		t.Errorf("%d Lease calls for two jobs under the limit", n)
	}
}
