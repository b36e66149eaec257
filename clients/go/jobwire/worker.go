package jobwire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// Defaults of a Worker; each can be changed with a WorkerOption.
const (
	DefaultConcurrency       = 10
	DefaultPollWait          = 10 * time.Second
	DefaultGracePeriod       = 30 * time.Second
	DefaultHeartbeatFraction = 1.0 / 3
	defaultLeaseDuration     = 30 * time.Second // the broker's, for a job that lacks one
	leaseErrorPause          = time.Second
	maxErrorTypeBytes        = 256
	maxErrorMessageBytes     = 8192
)

// Error types the worker reports in Fail for failures that are not a handler's error.
const (
	ErrorTypePanic          = "panic"
	ErrorTypeWorkerShutdown = "WorkerShutdown"
)

// Handler processes one job. Returning a nil error completes the job with the
// returned bytes as its result; returning an error fails the attempt, and the job is
// retried per its backoff policy while attempts remain. Wrap the error with Permanent
// to send the job to the dead-letter set at once, with RetryAfter to choose the
// retry delay, or with RateLimited to hand it back uncounted and hold its key or queue.
//
// ctx carries the producer's trace (the handler runs in a CONSUMER span) and baggage,
// and is cancelled when the job should stop: the lease was lost (cause ErrLeaseLost),
// CancelJob was called (ErrCancelRequested), or the worker's grace period ran out
// (ErrWorkerStopped); context.Cause(ctx) says which. Once the lease is lost nothing
// the handler returns is sent.
type Handler interface {
	Handle(ctx context.Context, job *Job) (result []byte, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job *Job) ([]byte, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job *Job) ([]byte, error) { return f(ctx, job) }

// Worker leases jobs from its queues and runs their handlers. Register handlers with
// Handle, then call Run.
type Worker struct {
	client            *Client
	handlers          map[string]Handler
	queues            []string
	concurrency       int
	pollWait          time.Duration
	grace             time.Duration
	heartbeatFraction float64
	workerID          string
	logger            *slog.Logger
	running           atomic.Bool
}

// WorkerOption configures a Worker.
type WorkerOption func(*Worker)

// WithConcurrency sets how many jobs of each queue run at once (default
// DefaultConcurrency). It is also the most jobs one Lease asks for.
func WithConcurrency(n int) WorkerOption {
	return func(w *Worker) { w.concurrency = max(1, n) }
}

// WithPollWait sets how long a Lease waits for work when a queue is empty (default
// DefaultPollWait, at most 60 s).
func WithPollWait(d time.Duration) WorkerOption {
	return func(w *Worker) { w.pollWait = d }
}

// WithGracePeriod sets how long Run lets running jobs finish after its context is
// cancelled (default DefaultGracePeriod). Jobs still running then are handed back
// with a retryable failure and their contexts are cancelled with ErrWorkerStopped.
func WithGracePeriod(d time.Duration) WorkerOption {
	return func(w *Worker) { w.grace = d }
}

// WithHeartbeatFraction sets the heartbeat interval as a fraction of each job's lease
// duration (default DefaultHeartbeatFraction: three heartbeats per lease).
func WithHeartbeatFraction(f float64) WorkerOption {
	return func(w *Worker) { w.heartbeatFraction = f }
}

// WithoutHeartbeats turns automatic heartbeats off: only Job.Progress extends a lease,
// and a handler that outlives its lease has its context cancelled with ErrLeaseLost.
func WithoutHeartbeats() WorkerOption {
	return func(w *Worker) { w.heartbeatFraction = 0 }
}

// WithWorkerID sets the identity sent with each Lease, for diagnostics (default
// "<hostname>-<pid>").
func WithWorkerID(id string) WorkerOption {
	return func(w *Worker) { w.workerID = id }
}

// WithLogger sets where the worker logs failures it handles itself (default
// slog.Default()).
func WithLogger(l *slog.Logger) WorkerOption {
	return func(w *Worker) { w.logger = l }
}

// NewWorker makes a Worker that talks to the broker through c.
func NewWorker(c *Client, opts ...WorkerOption) *Worker {
	host, _ := os.Hostname()
	w := &Worker{
		client:            c,
		handlers:          map[string]Handler{},
		concurrency:       DefaultConcurrency,
		pollWait:          DefaultPollWait,
		grace:             DefaultGracePeriod,
		heartbeatFraction: DefaultHeartbeatFraction,
		workerID:          fmt.Sprintf("%s-%d", host, os.Getpid()),
		logger:            slog.Default(),
	}
	for _, opt := range opts {
		opt(w)
	}
	return w
}

// Handle registers the handler of a queue. Call it before Run.
func (w *Worker) Handle(queue string, h Handler) {
	if _, ok := w.handlers[queue]; !ok {
		w.queues = append(w.queues, queue)
	}
	w.handlers[queue] = h
}

// HandleFunc registers a function as the handler of a queue.
func (w *Worker) HandleFunc(queue string, f func(ctx context.Context, job *Job) ([]byte, error)) {
	w.Handle(queue, HandlerFunc(f))
}

// Run leases and processes jobs until ctx is cancelled, then shuts down gracefully:
// it stops leasing at once, lets running jobs finish within the grace period, and
// hands back those still running as retryable failures. It returns nil after a
// shutdown, or the error that stopped leasing (an invalid queue name, say).
func (w *Worker) Run(ctx context.Context) error {
	if len(w.handlers) == 0 {
		return errors.New("jobwire: worker has no handlers")
	}
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("jobwire: worker is already running")
	}
	defer w.running.Store(false)

	// Handlers outlive ctx by the grace period, so their contexts hang off a copy of
	// it that keeps its values but not its cancellation.
	jobBase := context.WithoutCancel(ctx)
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	var (
		jobs    sync.WaitGroup
		polls   sync.WaitGroup
		active  sync.Map // *Job -> struct{}
		errOnce sync.Once
		runErr  error
	)
	for _, queue := range w.queues {
		polls.Go(func() {
			err := w.poll(pollCtx, queue, func(leased *jobwirev1.LeasedJob, received time.Time, release func()) {
				jobs.Go(func() {
					defer release()
					w.process(jobBase, queue, leased, received, &active)
				})
			})
			if err != nil {
				errOnce.Do(func() { runErr = err })
				stopPolling()
			}
		})
	}
	polls.Wait()

	finished := make(chan struct{})
	go func() { jobs.Wait(); close(finished) }()
	grace := time.NewTimer(w.grace)
	defer grace.Stop()
	select {
	case <-finished:
	case <-grace.C:
		var handback sync.WaitGroup
		active.Range(func(key, _ any) bool {
			handback.Go(func() { w.handBack(jobBase, key.(*Job)) })
			return true
		})
		handback.Wait()
	}
	return runErr
}

// poll leases jobs of one queue whenever a slot is free, until ctx ends. Each leased
// job is passed to start with a function that frees its slot.
func (w *Worker) poll(ctx context.Context, queue string, start func(*jobwirev1.LeasedJob, time.Time, func())) error {
	slots := make(chan struct{}, w.concurrency)
	release := func() { <-slots }
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < w.concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}

		if ctx.Err() != nil {
			return nil
		}
		leased, retryAfter, err := w.lease(ctx, queue, n)
		received := time.Now()
		for range n - len(leased) {
			release()
		}
		if ctx.Err() != nil {
			// Leased as the worker began to stop: give them back unstarted.
			for _, lj := range leased {
				w.release(context.WithoutCancel(ctx), lj)
				release()
			}
			return nil
		}
		if err != nil {
			if errors.Is(err, ErrInvalidArgument) {
				return fmt.Errorf("jobwire: lease from queue %q: %w", queue, err)
			}
			w.logger.Warn("jobwire: lease failed; retrying", "queue", queue, "error", err)
			sleep(ctx, leaseErrorPause)
			continue
		}
		for _, lj := range leased {
			start(lj, received, release)
		}
		// A rate limit holds the queue's jobs back: calling again at once would only
		// spin, so wait as long as the broker says.
		if retryAfter > 0 {
			sleep(ctx, retryAfter)
		}
	}
}

// lease asks for up to n jobs; retryAfter is the broker's LeaseResponse.retry_after,
// zero when it sent none.
func (w *Worker) lease(ctx context.Context, queue string, n int) (jobs []*jobwirev1.LeasedJob, retryAfter time.Duration, err error) {
	c := w.client
	req := &jobwirev1.LeaseRequest{Queue: queue, MaxJobs: int32(n), WorkerId: w.workerID}
	if w.pollWait > 0 {
		req.Wait = durationpb.New(w.pollWait)
	}
	var resp *jobwirev1.LeaseResponse
	// Not retried (the service config says why); the leasing loop tries again.
	err = c.invoke(ctx, w.pollWait+LeaseDeadlineMargin, func(ctx context.Context) (err error) {
		resp, err = c.rpc.Lease(ctx, req)
		return err
	})
	if d := resp.GetRetryAfter(); d != nil {
		retryAfter = d.AsDuration()
	}
	return resp.GetJobs(), retryAfter, err
}

// process runs one leased job: a CONSUMER span in the producer's trace, heartbeats
// alongside the handler, then Complete or Fail.
func (w *Worker) process(base context.Context, queue string, lj *jobwirev1.LeasedJob, received time.Time, active *sync.Map) {
	info := lj.GetJob()
	spec := info.GetSpec()
	j := &Job{
		ID:            info.GetId(),
		Queue:         queue,
		Attempt:       int(lj.GetAttempt()),
		Payload:       spec.GetPayload(),
		ContentType:   spec.GetContentType(),
		Headers:       spec.GetHeaders(),
		Info:          info,
		w:             w,
		token:         lj.GetLeaseToken(),
		leaseDuration: spec.GetLeaseDuration().AsDuration(),
		poke:          make(chan struct{}, 1),
		beatsDone:     make(chan struct{}),
		next:          newBeat(),
	}
	if j.leaseDuration <= 0 {
		j.leaseDuration = defaultLeaseDuration
	}

	ctx, span := w.startProcess(base, queue, j.ID, spec.GetTraceContext())
	defer span.End()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	j.cancel = cancel

	// The broker's own clock says how long this lease was granted for.
	granted := j.leaseDuration
	if start, expire := info.GetStartTime(), lj.GetLeaseExpireTime(); start != nil && expire != nil {
		granted = expire.AsTime().Sub(start.AsTime())
	}
	beatCtx, stopBeats := context.WithCancel(base)
	j.stopBeats = stopBeats
	interval := time.Duration(float64(j.leaseDuration) * w.heartbeatFraction)
	go j.heartbeats(beatCtx, interval, received.Add(granted))

	active.Store(j, struct{}{})
	defer active.Delete(j)
	result, err := w.call(ctx, j)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	w.settle(base, j, result, err)
}

func (w *Worker) startProcess(base context.Context, queue, jobID string, tc *jobwirev1.TraceContext) (context.Context, trace.Span) {
	c := w.client
	ctx := c.propagator.Extract(base, propagation.MapCarrier{
		"traceparent": tc.GetTraceparent(),
		"tracestate":  tc.GetTracestate(),
		"baggage":     tc.GetBaggage(),
	})
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(messagingSystem),
			semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(queue),
			semconv.MessagingMessageID(jobID),
		),
	}
	if producer := trace.SpanContextFromContext(ctx); producer.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
	}
	return c.tracer.Start(ctx, "process "+queue, opts...)
}

// call runs the handler, turning a panic into an error.
func (w *Worker) call(ctx context.Context, j *Job) (result []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return w.handlers[j.Queue].Handle(ctx, j)
}

// settle reports the handler's outcome, unless the lease is gone or the job was
// already handed back.
func (w *Worker) settle(base context.Context, j *Job, result []byte, err error) {
	j.stopBeats()
	<-j.beatsDone
	if j.lost.Load() {
		w.logger.Info("jobwire: lease lost; outcome dropped", "job", j.ID, "attempt", j.Attempt)
		return
	}
	if !j.settled.CompareAndSwap(false, true) {
		return
	}
	c := w.client
	if err == nil {
		err = c.invoke(base, c.callTimeout, func(ctx context.Context) error {
			_, err := c.rpc.Complete(ctx, &jobwirev1.CompleteRequest{
				JobId: j.ID, LeaseToken: j.token, Result: result, ResultContentType: j.resultType,
			})
			return err
		})
		if err != nil {
			w.logger.Warn("jobwire: complete failed", "job", j.ID, "error", err)
		}
		return
	}
	req := &jobwirev1.FailRequest{JobId: j.ID, LeaseToken: j.token, Error: &jobwirev1.JobError{
		Type:         truncate(errorType(err), maxErrorTypeBytes),
		Message:      truncate(err.Error(), maxErrorMessageBytes),
		NonRetryable: IsPermanent(err),
	}}
	var ra *retryAfterError
	if errors.As(err, &ra) {
		req.RetryDelay = durationpb.New(max(ra.delay, 0))
	}
	var rl *rateLimitedError
	if errors.As(err, &rl) {
		req.RateLimitDelay = durationpb.New(min(max(rl.delay, time.Millisecond), time.Hour))
	}
	if ferr := w.fail(base, req); ferr != nil {
		w.logger.Warn("jobwire: fail failed", "job", j.ID, "error", ferr)
	}
}

// handBack fails a job whose handler outlived the grace period, as retryable and due
// at once, and cancels its context.
func (w *Worker) handBack(base context.Context, j *Job) {
	if !j.settled.CompareAndSwap(false, true) {
		return
	}
	j.cancel(ErrWorkerStopped)
	j.stopBeats()
	<-j.beatsDone
	if j.lost.Load() {
		return
	}
	err := w.fail(base, &jobwirev1.FailRequest{
		JobId: j.ID, LeaseToken: j.token, RetryDelay: durationpb.New(0),
		Error: &jobwirev1.JobError{Type: ErrorTypeWorkerShutdown, Message: "the worker stopped before the handler returned"},
	})
	if err != nil {
		w.logger.Warn("jobwire: hand back failed", "job", j.ID, "error", err)
	}
}

// release gives back a job that was leased but never started, without counting the
// attempt (a broker that predates `release` records a retryable failure instead).
func (w *Worker) release(base context.Context, lj *jobwirev1.LeasedJob) {
	err := w.fail(base, &jobwirev1.FailRequest{
		JobId: lj.GetJob().GetId(), LeaseToken: lj.GetLeaseToken(), Release: true, RetryDelay: durationpb.New(0),
		Error: &jobwirev1.JobError{Type: ErrorTypeWorkerShutdown, Message: "leased while the worker was stopping"},
	})
	if err != nil {
		w.logger.Warn("jobwire: release failed", "job", lj.GetJob().GetId(), "error", err)
	}
}

func (w *Worker) fail(ctx context.Context, req *jobwirev1.FailRequest) error {
	c := w.client
	return c.invoke(ctx, c.callTimeout, func(ctx context.Context) error {
		_, err := c.rpc.Fail(ctx, req)
		return err
	})
}

// Permanent marks err as not worth retrying: the job goes to the dead-letter set at
// once. errors.Is and errors.As see through it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter asks for the next attempt exactly d from now instead of the job's backoff
// policy (while attempts remain). errors.Is and errors.As see through it.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err, d}
}

// RateLimited says the service the handler called is rate limiting us: the job is
// handed back without counting an attempt against max_attempts, ready again after d,
// and the broker leases no job of its concurrency key (or, for a job without one, of
// its queue) for d (FailRequest.rate_limit_delay; d is clamped to [1 ms, 1 h]). err is
// kept as the job's last error. errors.Is and errors.As see through it.
func RateLimited(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &rateLimitedError{err, d}
}

type rateLimitedError struct {
	err   error
	delay time.Duration
}

func (e *rateLimitedError) Error() string { return e.err.Error() }
func (e *rateLimitedError) Unwrap() error { return e.err }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

type retryAfterError struct {
	err   error
	delay time.Duration
}

func (e *retryAfterError) Error() string { return e.err.Error() }
func (e *retryAfterError) Unwrap() error { return e.err }

// PanicError is what a handler's panic becomes; it is reported as error type "panic".
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v\n\n%s", e.Value, e.Stack) }

// ErrorType names the error in the job's failure record.
func (e *PanicError) ErrorType() string { return ErrorTypePanic }

// anonymous are the types errors.New, fmt.Errorf and errors.Join make: they say
// nothing about what failed, so errorType looks past them.
var anonymous = map[string]bool{
	"*errors.errorString": true,
	"*fmt.wrapError":      true,
	"*fmt.wrapErrors":     true,
	"*errors.joinError":   true,
}

// errorType names a handler's error in a Fail: the ErrorType() of the first error in
// the chain that has that method, else the Go type of the first error that is not
// anonymous or one of this package's wrappers (`*os.PathError`), else "error".
func errorType(err error) string {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if named, ok := e.(interface{ ErrorType() string }); ok {
			return named.ErrorType()
		}
		switch e.(type) {
		case *permanentError, *retryAfterError, *rateLimitedError:
			continue
		}
		if name := fmt.Sprintf("%T", e); !anonymous[name] {
			return name
		}
	}
	return "error"
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
