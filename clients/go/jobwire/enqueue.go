package jobwire

import (
	"context"
	"maps"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// Option sets a field of a job at Enqueue. Zero values keep the broker's defaults.
type Option func(*jobwirev1.JobSpec)

// WithPriority: higher runs first, in [-1000, 1000]; equal priorities run in enqueue
// order. Default 0.
func WithPriority(p int) Option {
	return func(s *jobwirev1.JobSpec) { s.Priority = int32(p) }
}

// WithDelay makes the job ready only after d (at most 365 days).
func WithDelay(d time.Duration) Option {
	return func(s *jobwirev1.JobSpec) { s.Delay = durationpb.New(d) }
}

// WithRunAt makes the job ready no earlier than t. With WithDelay too, the later wins.
func WithRunAt(t time.Time) Option {
	return func(s *jobwirev1.JobSpec) { s.RunTime = timestamppb.New(t) }
}

// WithMaxAttempts sets how many attempts the job gets in all, in [1, 1000]. Default 3.
func WithMaxAttempts(n int) Option {
	return func(s *jobwirev1.JobSpec) { s.MaxAttempts = int32(n) }
}

// WithBackoff sets the delay policy between attempts. Default: exponential from 1 s,
// doubling, capped at 1 h, no jitter.
func WithBackoff(b Backoff) Option {
	return func(s *jobwirev1.JobSpec) { s.Backoff = b.proto() }
}

// WithIdempotencyKey makes a second Enqueue with the same key on the same queue, within
// the idempotency window, return the first job (Duplicate true) instead of a new one.
// It also lets the client retry the Enqueue when the broker is unavailable.
func WithIdempotencyKey(key string) Option {
	return func(s *jobwirev1.JobSpec) { s.IdempotencyKey = key }
}

// WithIdempotencyWindow sets how long the idempotency key is remembered, in
// [1 s, 30 days]. Default 24 h.
func WithIdempotencyWindow(d time.Duration) Option {
	return func(s *jobwirev1.JobSpec) { s.IdempotencyWindow = durationpb.New(d) }
}

// IdempotencyMode is what an Enqueue does when its idempotency key is remembered.
type IdempotencyMode = jobwirev1.IdempotencyMode

// The idempotency modes.
const (
	// IdempotencyFirst (the broker's default): return the first job, write nothing.
	IdempotencyFirst = jobwirev1.IdempotencyMode_IDEMPOTENCY_MODE_FIRST
	// IdempotencyReplace debounces: while the job holding the key is still pending, its
	// spec is replaced by the new one (same id, Duplicate true) and the window restarts;
	// once it is active or finished, a new job takes the key.
	IdempotencyReplace = jobwirev1.IdempotencyMode_IDEMPOTENCY_MODE_REPLACE
	// IdempotencyExtend: as IdempotencyFirst, and the key's window restarts from now.
	IdempotencyExtend = jobwirev1.IdempotencyMode_IDEMPOTENCY_MODE_EXTEND
)

// WithIdempotencyMode sets what a second Enqueue with the same idempotency key does
// (default IdempotencyFirst). Ignored without WithIdempotencyKey.
func WithIdempotencyMode(m IdempotencyMode) Option {
	return func(s *jobwirev1.JobSpec) { s.IdempotencyMode = m }
}

// WithStartDeadline drops the job (state StateExpired) if no worker has leased it by t;
// a retry after a failed attempt is not held to it. t must be after the enqueue and not
// before the job's run time.
func WithStartDeadline(t time.Time) Option {
	return func(s *jobwirev1.JobSpec) { s.StartDeadline = timestamppb.New(t) }
}

// WithConcurrencyKey makes jobs of the same queue with the same key (at most 256 bytes,
// e.g. "wallet:<address>") run at most their concurrency limit at a time: the
// WithConcurrencyLimit of the job being leased, else the queue's setting, else 1.
func WithConcurrencyKey(key string) Option {
	return func(s *jobwirev1.JobSpec) { s.ConcurrencyKey = key }
}

// WithConcurrencyLimit sets how many jobs of the job's concurrency key may be active at
// once, in [1, 10000] (0: the queue's setting, else 1). Jobs of one key should agree.
// Ignored without WithConcurrencyKey.
func WithConcurrencyLimit(n int) Option {
	return func(s *jobwirev1.JobSpec) { s.ConcurrencyLimit = int32(n) }
}

// DependencyFailurePolicy is what happens to a waiting job when a job it depends on
// ends without completing (dead, cancelled or expired), or is deleted.
type DependencyFailurePolicy = jobwirev1.DependencyFailurePolicy

// The dependency failure policies.
const (
	// DependencyFail (the broker's default): the dependant goes dead at once, error type
	// DEPENDENCY_FAILED, and so do the jobs waiting on it in turn.
	DependencyFail = jobwirev1.DependencyFailurePolicy_DEPENDENCY_FAILURE_POLICY_FAIL
	// DependencyIgnore: the dependency counts as finished.
	DependencyIgnore = jobwirev1.DependencyFailurePolicy_DEPENDENCY_FAILURE_POLICY_IGNORE
)

// WithDependsOn makes the job wait (StateWaiting) until the jobs of these ids have
// completed; repeated, it adds to the list. At most 100 distinct ids, of existing jobs
// in the same hash slot (on Redis Cluster: the same queue).
func WithDependsOn(jobIDs ...string) Option {
	return func(s *jobwirev1.JobSpec) { s.DependsOn = append(s.DependsOn, jobIDs...) }
}

// WithOnDependencyFailure sets what happens when a dependency ends without completing
// (default DependencyFail).
func WithOnDependencyFailure(p DependencyFailurePolicy) Option {
	return func(s *jobwirev1.JobSpec) { s.OnDependencyFailure = p }
}

// WithHeaders adds string headers, passed to the worker unchanged (at most 64).
func WithHeaders(h map[string]string) Option {
	return func(s *jobwirev1.JobSpec) {
		if s.Headers == nil {
			s.Headers = make(map[string]string, len(h))
		}
		maps.Copy(s.Headers, h)
	}
}

// WithContentType sets the MIME type of the payload, e.g. "application/json".
func WithContentType(ct string) Option {
	return func(s *jobwirev1.JobSpec) { s.ContentType = ct }
}

// WithLeaseDuration sets how long one lease lasts without a heartbeat, in [1 s, 12 h].
// Default 30 s. Workers heartbeat at a fraction of it.
func WithLeaseDuration(d time.Duration) Option {
	return func(s *jobwirev1.JobSpec) { s.LeaseDuration = durationpb.New(d) }
}

// WithTimeout sets the job's execution timeout: a hard limit on one attempt, enforced
// by the broker even while the worker heartbeats, in [1 s, 7 days]. Default: none.
func WithTimeout(d time.Duration) Option {
	return func(s *jobwirev1.JobSpec) { s.ExecutionTimeout = durationpb.New(d) }
}

// BackoffKind is the shape of a retry delay curve.
type BackoffKind = jobwirev1.BackoffKind

// The backoff curves.
const (
	BackoffExponential = jobwirev1.BackoffKind_BACKOFF_KIND_EXPONENTIAL
	BackoffFixed       = jobwirev1.BackoffKind_BACKOFF_KIND_FIXED
	BackoffLinear      = jobwirev1.BackoffKind_BACKOFF_KIND_LINEAR
)

// Backoff is a job's retry delay policy. Zero fields take the broker's defaults.
type Backoff struct {
	Kind BackoffKind
	// Initial is the first retry's delay (default 1 s).
	Initial time.Duration
	// Max caps every delay (default 1 h).
	Max time.Duration
	// Multiplier is the growth of an exponential curve, in [1, 100] (default 2).
	Multiplier float64
	// Jitter is the fraction, in [0, 1], randomly taken off each delay.
	Jitter float64
}

func (b Backoff) proto() *jobwirev1.BackoffPolicy {
	p := &jobwirev1.BackoffPolicy{Kind: b.Kind, Multiplier: b.Multiplier, Jitter: b.Jitter}
	if b.Initial != 0 {
		p.InitialDelay = durationpb.New(b.Initial)
	}
	if b.Max != 0 {
		p.MaxDelay = durationpb.New(b.Max)
	}
	return p
}

// EnqueueResult is the broker's answer to one enqueued job.
type EnqueueResult struct {
	// JobID is "<queue>:<n>": the new job's, or the first one's when Duplicate.
	JobID string
	// Duplicate is true when the idempotency key matched an earlier job.
	Duplicate bool
	// State is StateScheduled or StateReady for a new job.
	State State
}

// Spec is one job of an EnqueueBatch.
type Spec struct {
	Payload []byte
	Options []Option
}

// Enqueue adds a job to queue. When ctx carries a span, the job carries its trace
// context (W3C traceparent, tracestate, baggage), written inside a PRODUCER span
// "send <queue>", so the worker's span joins the producer's trace. The service config
// does not retry Enqueue, since a retry could create a second job; with
// WithIdempotencyKey the client retries it itself, with the config's policy of GetJob.
func (c *Client) Enqueue(ctx context.Context, queue string, payload []byte, opts ...Option) (EnqueueResult, error) {
	spec := newSpec(payload, opts)
	ctx, span := c.startSend(ctx, queue, 1)
	defer span.End()
	spec.TraceContext = c.traceContext(ctx)

	var resp *jobwirev1.EnqueueResponse
	call := func(ctx context.Context) (err error) {
		resp, err = c.rpc.Enqueue(ctx, &jobwirev1.EnqueueRequest{Queue: queue, Job: spec})
		return err
	}
	var err error
	if spec.IdempotencyKey != "" {
		err = c.invokeRetrying(ctx, call)
	} else {
		err = c.invoke(ctx, c.callTimeout, call)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return EnqueueResult{}, err
	}
	span.SetAttributes(semconv.MessagingMessageID(resp.GetJobId()))
	return enqueueResult(resp), nil
}

// EnqueueBatch adds up to 1000 jobs to queue, all or none, and returns one result per
// job in order. One invalid job rejects the batch with an *InvalidArgumentError naming
// `jobs[i].<field>`. Trace context is written as Enqueue does, from one "send" span.
// Retried on UNAVAILABLE, as Enqueue is, only when every job has an idempotency key.
func (c *Client) EnqueueBatch(ctx context.Context, queue string, jobs []Spec) ([]EnqueueResult, error) {
	ctx, span := c.startSend(ctx, queue, len(jobs))
	defer span.End()
	tc := c.traceContext(ctx)
	specs := make([]*jobwirev1.JobSpec, len(jobs))
	idempotent := true
	for i, j := range jobs {
		specs[i] = newSpec(j.Payload, j.Options)
		specs[i].TraceContext = tc
		idempotent = idempotent && specs[i].IdempotencyKey != ""
	}

	var resp *jobwirev1.EnqueueBatchResponse
	call := func(ctx context.Context) (err error) {
		resp, err = c.rpc.EnqueueBatch(ctx, &jobwirev1.EnqueueBatchRequest{Queue: queue, Jobs: specs})
		return err
	}
	var err error
	if idempotent && len(specs) > 0 {
		err = c.invokeRetrying(ctx, call)
	} else {
		err = c.invoke(ctx, c.callTimeout, call)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return nil, err
	}
	results := make([]EnqueueResult, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		results[i] = enqueueResult(r)
	}
	return results, nil
}

func newSpec(payload []byte, opts []Option) *jobwirev1.JobSpec {
	spec := &jobwirev1.JobSpec{Payload: payload}
	for _, opt := range opts {
		opt(spec)
	}
	return spec
}

func enqueueResult(r *jobwirev1.EnqueueResponse) EnqueueResult {
	return EnqueueResult{JobID: r.GetJobId(), Duplicate: r.GetDuplicate(), State: r.GetState()}
}

func (c *Client) startSend(ctx context.Context, queue string, count int) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String(messagingSystem),
		semconv.MessagingOperationName("send"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(queue),
	}
	if count != 1 {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(count))
	}
	return c.tracer.Start(ctx, "send "+queue, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// traceContext writes ctx's span context and baggage with the client's propagator;
// nil when there is nothing to carry.
func (c *Client) traceContext(ctx context.Context) *jobwirev1.TraceContext {
	carrier := propagation.MapCarrier{}
	c.propagator.Inject(ctx, carrier)
	tc := &jobwirev1.TraceContext{
		Traceparent: carrier.Get("traceparent"),
		Tracestate:  carrier.Get("tracestate"),
		Baggage:     carrier.Get("baggage"),
	}
	if tc.Traceparent == "" && tc.Baggage == "" {
		return nil
	}
	return tc
}
