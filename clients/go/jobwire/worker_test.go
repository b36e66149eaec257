package jobwire

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// TestWorkerRoundTrip: lease, heartbeats that keep a short lease alive, progress seen
// by a watcher and by GetJob, then Complete with the handler's result.
func TestWorkerRoundTrip(t *testing.T) {
	c := dialTest(t)
	ctx := context.Background()
	queue := queueName(t)
	res, err := c.Enqueue(ctx, queue, []byte("payload"), WithLeaseDuration(time.Second),
		WithHeaders(map[string]string{"tenant": "t1"}), WithContentType("text/plain"))
	if err != nil {
		t.Fatal(err)
	}

	var watched []Event
	watchDone := make(chan error, 1)
	snapshot := make(chan struct{})
	go func() {
		for ev, err := range c.Watch(ctx, res.JobID) {
			if err != nil {
				watchDone <- err
				return
			}
			if watched = append(watched, ev); len(watched) == 1 {
				close(snapshot)
			}
		}
		watchDone <- nil
	}()
	select { // the worker starts once the watch is on, so it sees the job's whole life
	case <-snapshot:
	case err := <-watchDone:
		t.Fatalf("watch ended before its snapshot: %v", err)
	}

	var seen *Job
	var progressSeen *jobwirev1.Progress
	w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second))
	w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
		seen = job
		if err := job.Progress(ctx, 50, "half way"); err != nil {
			return nil, err
		}
		info, err := c.GetJob(ctx, job.ID)
		if err != nil {
			return nil, err
		}
		progressSeen = info.GetProgress()
		// Outlive the 1 s lease twice over: only heartbeats keep it.
		select {
		case <-time.After(2500 * time.Millisecond):
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		job.SetResultContentType("text/plain")
		return append([]byte("done: "), job.Payload...), nil
	})
	stop := startWorker(t, w)

	job := waitFor(t, c, res.JobID, "completed", func(j *jobwirev1.Job) bool { return Terminal(j.GetState()) })
	stop()
	if job.GetState() != StateCompleted || string(job.GetResult()) != "done: payload" || job.GetResultContentType() != "text/plain" {
		t.Fatalf("job = %v", job)
	}
	if job.GetAttempt() != 1 || job.GetLastError() != nil {
		t.Errorf("the lease was lost on the way: attempt %d, last error %v", job.GetAttempt(), job.GetLastError())
	}
	if seen.ID != res.JobID || seen.Queue != queue || seen.Attempt != 1 || seen.Headers["tenant"] != "t1" || seen.ContentType != "text/plain" {
		t.Errorf("handler saw %+v", seen)
	}
	if progressSeen.GetPercent() != 50 || progressSeen.GetMessage() != "half way" {
		t.Errorf("progress after Progress returned = %v", progressSeen)
	}

	if err := <-watchDone; err != nil {
		t.Fatal(err)
	}
	var kinds []EventKind
	for _, ev := range watched {
		kinds = append(kinds, ev.Kind)
	}
	want := []EventKind{EventSnapshot, EventStateChanged, EventProgress, EventStateChanged}
	if !slices.Equal(kinds, want) {
		t.Errorf("watched %v, want %v", kinds, want)
	}
}

type tempError struct{ n int }

func (e *tempError) Error() string { return fmt.Sprintf("temporary failure %d", e.n) }

// TestWorkerFailures: each way a handler can fail, and what the broker makes of it.
func TestWorkerFailures(t *testing.T) {
	c := dialTest(t)
	fastRetry := WithBackoff(Backoff{Kind: BackoffFixed, Initial: 50 * time.Millisecond})
	tests := []struct {
		name string
		opts []Option
		// fail is the handler's error on each attempt; past its end the handler succeeds.
		fail      []error
		state     State
		attempts  int32
		errorType string
		minWait   time.Duration // from the first failure to the second attempt
	}{
		{
			name: "retried then completed", opts: []Option{fastRetry},
			fail:  []error{&tempError{1}, fmt.Errorf("wrapped: %w", &tempError{2})},
			state: StateCompleted, attempts: 3, errorType: "*jobwire.tempError",
		},
		{
			name: "plain error", opts: []Option{fastRetry, WithMaxAttempts(1)},
			fail:  []error{errors.New("boom")},
			state: StateDead, attempts: 1, errorType: "error",
		},
		{
			name: "os error", opts: []Option{fastRetry, WithMaxAttempts(1)},
			fail:  []error{fmt.Errorf("open config: %w", &os.PathError{Op: "open", Path: "/x", Err: os.ErrNotExist})},
			state: StateDead, attempts: 1, errorType: "*fs.PathError",
		},
		{
			name: "permanent", opts: []Option{fastRetry, WithMaxAttempts(5)},
			fail:  []error{Permanent(&tempError{1})},
			state: StateDead, attempts: 1, errorType: "*jobwire.tempError",
		},
		{
			name: "retry after", opts: []Option{WithBackoff(Backoff{Kind: BackoffFixed, Initial: time.Hour})},
			fail:  []error{RetryAfter(&tempError{1}, 300*time.Millisecond)},
			state: StateCompleted, attempts: 2, errorType: "*jobwire.tempError", minWait: 300 * time.Millisecond,
		},
		{
			// With one attempt allowed, only an uncounted hand-back can complete it.
			name: "rate limited", opts: []Option{fastRetry, WithMaxAttempts(1), WithConcurrencyKey("api")},
			fail:  []error{RateLimited(&tempError{1}, 300*time.Millisecond)},
			state: StateCompleted, attempts: 2, errorType: "*jobwire.tempError", minWait: 300 * time.Millisecond,
		},
		{
			name: "panic", opts: []Option{fastRetry},
			fail:  []error{nil}, // the handler panics instead
			state: StateCompleted, attempts: 2, errorType: ErrorTypePanic,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			queue := queueName(t)
			res, err := c.Enqueue(context.Background(), queue, nil, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var starts []time.Time
			w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second))
			w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
				if job.Attempt > len(tt.fail) {
					return []byte("ok"), nil
				}
				if err := tt.fail[job.Attempt-1]; err != nil {
					return nil, err
				}
				panic("handler bug")
			})
			stop := startWorker(t, w)
			job := waitFor(t, c, res.JobID, "a terminal state", func(j *jobwirev1.Job) bool { return Terminal(j.GetState()) })
			stop()
			if job.GetState() != tt.state || job.GetAttempt() != tt.attempts {
				t.Fatalf("state %v after %d attempts, want %v after %d", job.GetState(), job.GetAttempt(), tt.state, tt.attempts)
			}
			last := job.GetLastError()
			if last.GetType() != tt.errorType {
				t.Errorf("last error = %v, want type %q", last, tt.errorType)
			}
			if tt.state == StateDead && last.GetMessage() != tt.fail[len(tt.fail)-1].Error() {
				t.Errorf("last error message = %q", last.GetMessage())
			}
			if tt.minWait > 0 {
				if gap := starts[1].Sub(starts[0]); gap < tt.minWait || gap > 10*tt.minWait {
					t.Errorf("second attempt %v after the first, want about %v", gap, tt.minWait)
				}
			}
		})
	}
}

// TestWorkerLeaseLost: a handler that outlives its lease without heartbeats has its
// context cancelled with ErrLeaseLost, and its result is never sent.
func TestWorkerLeaseLost(t *testing.T) {
	c := dialTest(t)
	ctx := context.Background()
	queue := queueName(t)
	res, err := c.Enqueue(ctx, queue, nil, WithLeaseDuration(time.Second), WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	causes := make(chan error, 1)
	var progressErr error
	w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second), WithoutHeartbeats())
	w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
		select {
		case <-ctx.Done():
			causes <- context.Cause(ctx)
		case <-time.After(10 * time.Second):
			causes <- errors.New("never cancelled")
		}
		// Wait for the broker to take the lease back, then try to go on regardless.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if info, err := c.GetJob(context.Background(), job.ID); err == nil && info.GetState() == StateDead {
				break
			}
		}
		progressErr = job.Progress(context.Background(), 90, "still here")
		return []byte("too late"), nil
	})
	stop := startWorker(t, w)

	if cause := <-causes; !errors.Is(cause, ErrLeaseLost) {
		t.Fatalf("handler context cause = %v, want ErrLeaseLost", cause)
	}
	stop()
	if !errors.Is(progressErr, ErrLeaseLost) {
		t.Errorf("Progress after the lease was lost = %v", progressErr)
	}
	job, err := c.GetJob(ctx, res.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if job.GetState() != StateDead || job.GetLastError().GetType() != "LEASE_EXPIRED" || len(job.GetResult()) != 0 {
		t.Fatalf("job = %v", job)
	}
}

// TestWorkerCancel: CancelJob reaches the handler through its context, and the job
// ends cancelled.
func TestWorkerCancel(t *testing.T) {
	c := dialTest(t)
	ctx := context.Background()
	queue := queueName(t)
	res, err := c.Enqueue(ctx, queue, nil, WithLeaseDuration(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	causes := make(chan error, 1)
	w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second))
	w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
		close(started)
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, context.Cause(ctx)
	})
	startWorker(t, w)
	<-started
	if state, err := c.Cancel(ctx, res.JobID); err != nil || state != StateActive {
		t.Fatalf("Cancel = %v, %v", state, err)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, ErrCancelRequested) {
			t.Fatalf("cause = %v", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never learnt of the cancellation")
	}
	waitFor(t, c, res.JobID, "cancelled", inState(StateCancelled))
}

// TestWorkerShutdown: after Run's context is cancelled, a job that finishes within the
// grace period completes, one that does not is handed back for a retry, and no new
// job is leased.
func TestWorkerShutdown(t *testing.T) {
	c := dialTest(t)
	ctx := context.Background()
	queue := queueName(t)
	quick, err := c.Enqueue(ctx, queue, []byte("quick"))
	if err != nil {
		t.Fatal(err)
	}
	stuck, err := c.Enqueue(ctx, queue, []byte("stuck"))
	if err != nil {
		t.Fatal(err)
	}
	running := make(chan struct{}, 2)
	stopping := make(chan struct{})
	stuckCause := make(chan error, 1)
	w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second), WithConcurrency(2), WithGracePeriod(500*time.Millisecond))
	w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
		running <- struct{}{}
		<-stopping
		if string(job.Payload) == "quick" {
			time.Sleep(100 * time.Millisecond)
			return []byte("ok"), nil
		}
		<-ctx.Done()
		stuckCause <- context.Cause(ctx)
		return nil, ctx.Err()
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	<-running
	<-running

	late, err := c.Enqueue(ctx, queue, []byte("late"))
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	cancel()
	close(stopping)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("shutdown took %v with a 500ms grace period", took)
	}
	if cause := <-stuckCause; !errors.Is(cause, ErrWorkerStopped) {
		t.Errorf("stuck handler's cause = %v", cause)
	}
	if job := waitFor(t, c, quick.JobID, "completed", inState(StateCompleted)); string(job.GetResult()) != "ok" {
		t.Errorf("quick job = %v", job)
	}
	job := waitFor(t, c, stuck.JobID, "ready again", inState(StateReady))
	if job.GetAttempt() != 1 || job.GetLastError().GetType() != ErrorTypeWorkerShutdown {
		t.Errorf("stuck job = %v", job)
	}
	if job, err := c.GetJob(ctx, late.JobID); err != nil || job.GetState() != StateReady || job.GetAttempt() != 0 {
		t.Errorf("late job = %v, %v", job, err)
	}
}

// TestWorkerRelease: a job leased as the worker stops goes back without using up an
// attempt: its attempt number (a fencing token) stays, counted_attempts does not grow.
func TestWorkerRelease(t *testing.T) {
	c := dialTest(t)
	res, err := c.Enqueue(context.Background(), queueName(t), nil, WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	leased := leaseOne(t, c, res.JobID)
	NewWorker(c).release(context.Background(), leased)
	job := waitFor(t, c, res.JobID, "ready", inState(StateReady))
	if job.GetAttempt() != 1 || job.GetCountedAttempts() != 0 || job.GetLastError() != nil {
		t.Errorf("released job = %v; want attempt 1, 0 counted and no error recorded", job)
	}
}

func TestErrorType(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("x"), "error"},
		{&tempError{}, "*jobwire.tempError"},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", &tempError{})), "*jobwire.tempError"},
		{Permanent(RetryAfter(&tempError{}, time.Second)), "*jobwire.tempError"},
		{context.DeadlineExceeded, "context.deadlineExceededError"},
		{&PanicError{Value: 1}, ErrorTypePanic},
		{errors.Join(&tempError{}, errors.New("y")), "error"},
	}
	for _, tt := range tests {
		if got := errorType(tt.err); got != tt.want {
			t.Errorf("errorType(%#v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if got := truncate("héllo", 2); got != "h" {
		t.Errorf("truncate split a rune: %q", got)
	}
}
