package jobwire

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// errJobDone answers a Progress call made after the worker settled the job.
var errJobDone = errors.New("jobwire: job already settled")

// Job is a leased job as a Handler sees it. Its fields are read-only.
type Job struct {
	// ID is "<queue>:<n>".
	ID    string
	Queue string
	// Attempt numbers the leases of this job from 1; use it to fence side effects.
	Attempt     int
	Payload     []byte
	ContentType string
	Headers     map[string]string
	// Info is the whole job as the broker sent it with the lease.
	Info *jobwirev1.Job

	w             *Worker
	token         string
	leaseDuration time.Duration
	resultType    string
	cancel        context.CancelCauseFunc
	lost          atomic.Bool // the lease is gone: nothing more may be sent for it
	settled       atomic.Bool // Complete or Fail was sent (or the job handed back)

	// The heartbeat loop and the Progress calls waiting on it.
	poke       chan struct{}
	stopBeats  context.CancelFunc
	beatsDone  chan struct{}
	mu         sync.Mutex
	pending    *jobwirev1.Progress
	next       *beat
	beatsOver  error // why the loop ended; set once it has
	cancelSeen bool
}

// beat is one heartbeat call that Progress callers wait for.
type beat struct {
	done chan struct{}
	err  error
}

func newBeat() *beat { return &beat{done: make(chan struct{})} }

// SetResultContentType sets the MIME type of the result the handler returns.
func (j *Job) SetResultContentType(ct string) { j.resultType = ct }

// CancelRequested reports whether a heartbeat has told the worker that CancelJob was
// called. The handler's context is then cancelled with cause ErrCancelRequested.
func (j *Job) CancelRequested() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cancelSeen
}

// Progress records the job's progress (percent in [0, 100] and a short message) and
// publishes it to watchers with a heartbeat, which also extends the lease. It returns
// once that heartbeat is answered; calls made while one is in flight are coalesced,
// so only the latest progress is sent. errors.Is(err, ErrLeaseLost) means the job is
// no longer this worker's: stop and return.
func (j *Job) Progress(ctx context.Context, percent float64, message string) error {
	j.mu.Lock()
	if j.beatsOver != nil {
		err := j.beatsOver
		j.mu.Unlock()
		return err
	}
	j.pending = &jobwirev1.Progress{Percent: float32(percent), Message: message}
	b := j.next
	j.mu.Unlock()
	select {
	case j.poke <- struct{}{}:
	default: // a poke is already waiting; it will carry this progress too
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// heartbeats keeps the lease alive until ctx ends: every interval (none if zero) and
// whenever Progress pokes it. It cancels the handler's context when the broker says
// the lease is gone, or when the lease ran out locally without being extended (the
// broker unreachable, or heartbeats disabled).
func (j *Job) heartbeats(ctx context.Context, interval time.Duration, leaseDeadline time.Time) {
	defer close(j.beatsDone)
	var tick <-chan time.Time
	var ticker *time.Timer
	if interval > 0 {
		ticker = time.NewTimer(interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	expiry := time.NewTimer(time.Until(leaseDeadline))
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			j.endBeats(errJobDone)
			return
		case <-expiry.C:
			err := fmt.Errorf("%w: the lease ran out before a heartbeat extended it", ErrLeaseLost)
			j.lose(err)
			j.endBeats(err)
			return
		case <-tick:
		case <-j.poke:
		}
		sent := time.Now()
		err := j.beat(ctx)
		switch {
		case err == nil:
			expiry.Reset(time.Until(sent.Add(j.leaseDuration)))
		case errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotFound):
			if !errors.Is(err, ErrLeaseLost) { // the job is gone, and its lease with it
				err = fmt.Errorf("%w: %w", ErrLeaseLost, err)
			}
			j.lose(err)
			j.endBeats(err)
			return
		case ctx.Err() != nil:
			j.endBeats(errJobDone)
			return
		default:
			j.w.logger.Warn("jobwire: heartbeat failed; retrying", "job", j.ID, "error", err)
		}
		if ticker != nil {
			ticker.Reset(interval)
		}
	}
}

// beat sends one heartbeat with the latest progress and wakes its waiters.
func (j *Job) beat(ctx context.Context) error {
	j.mu.Lock()
	progress, b := j.pending, j.next
	j.pending, j.next = nil, newBeat()
	j.mu.Unlock()

	c := j.w.client
	var resp *jobwirev1.HeartbeatResponse
	err := c.invoke(ctx, c.callTimeout, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Heartbeat(ctx, &jobwirev1.HeartbeatRequest{JobId: j.ID, LeaseToken: j.token, Progress: progress})
		return err
	})
	if err == nil && resp.GetCancelRequested() {
		j.mu.Lock()
		first := !j.cancelSeen
		j.cancelSeen = true
		j.mu.Unlock()
		if first {
			j.cancel(ErrCancelRequested)
		}
	}
	b.err = err
	close(b.done)
	return err
}

// endBeats records why heartbeats stopped and answers every Progress still waiting.
func (j *Job) endBeats(why error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.beatsOver = why
	j.next.err = why
	close(j.next.done)
}

// lose marks the lease as gone and cancels the handler's context with err.
func (j *Job) lose(err error) {
	j.lost.Store(true)
	j.cancel(err)
}
