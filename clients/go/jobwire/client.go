package jobwire

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// Defaults of a Client; each can be changed with a ClientOption.
const (
	// DefaultCallTimeout bounds each attempt of a unary call (a Lease adds its wait).
	DefaultCallTimeout = 10 * time.Second
	// KeepaliveTime is how long a connection may be idle before the client pings the
	// broker; the broker accepts pings every 5 s, even without calls.
	KeepaliveTime = 20 * time.Second
	// KeepaliveTimeout is how long the client waits for a ping's answer before it
	// considers the connection dead.
	KeepaliveTimeout = 10 * time.Second
	// DefaultMaxMessageBytes is the largest message a Dial'ed connection sends or
	// receives (gRPC's own default receive limit is 4 MiB): a Lease reply carries
	// several jobs of up to the broker's payload limit (1 MiB by default) each, and a
	// GetJob reply a payload and a result. The Python SDK uses the same value.
	DefaultMaxMessageBytes = 64 << 20
)

// DefaultRetryPolicy retries UNAVAILABLE answers of idempotent calls: 5 attempts in
// all, 100 ms apart at first, doubling to at most 2 s, each delay jittered.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:    5,
	InitialBackoff: 100 * time.Millisecond,
	MaxBackoff:     2 * time.Second,
	Multiplier:     2,
}

// RetryPolicy says how a Client retries calls that failed with UNAVAILABLE. Only
// idempotent calls are retried: GetJob, Lease, Heartbeat, and Enqueue or EnqueueBatch
// when every job has an idempotency key. The broker's RetryInfo hint, when longer than
// the next backoff, is honoured (up to MaxBackoff).
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first one included; 1 disables retries.
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
}

// State is where a job is in its life; see DESIGN.md for the state machine.
type State = jobwirev1.JobState

// The states of a job.
const (
	StateScheduled = jobwirev1.JobState_JOB_STATE_SCHEDULED
	StateReady     = jobwirev1.JobState_JOB_STATE_READY
	StateActive    = jobwirev1.JobState_JOB_STATE_ACTIVE
	StateCompleted = jobwirev1.JobState_JOB_STATE_COMPLETED
	StateDead      = jobwirev1.JobState_JOB_STATE_DEAD
	StateCancelled = jobwirev1.JobState_JOB_STATE_CANCELLED
)

// Terminal reports whether s is a state a job never leaves.
func Terminal(s State) bool {
	return s == StateCompleted || s == StateDead || s == StateCancelled
}

// Client talks to a Jobwire broker. It is safe for concurrent use; make one per
// process and share it (a Worker uses one too).
type Client struct {
	conn        *grpc.ClientConn // nil when the caller owns the connection
	rpc         jobwirev1.BrokerServiceClient
	callTimeout time.Duration
	retry       RetryPolicy
	propagator  propagation.TextMapPropagator
	tracer      trace.Tracer
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	callTimeout     time.Duration
	retry           RetryPolicy
	maxMessageBytes int
	dialOptions     []grpc.DialOption
	propagator      propagation.TextMapPropagator
	tracerProvider  trace.TracerProvider
}

// WithCallTimeout sets the deadline of each attempt of a unary call (default
// DefaultCallTimeout; 0 leaves calls bounded by their context only).
func WithCallTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.callTimeout = d }
}

// WithRetryPolicy replaces DefaultRetryPolicy.
func WithRetryPolicy(p RetryPolicy) ClientOption {
	return func(c *clientConfig) { c.retry = p }
}

// WithMaxMessageBytes sets the largest message the connection Dial makes will send or
// receive, in bytes (default DefaultMaxMessageBytes). A reply larger than this fails
// with RESOURCE_EXHAUSTED on the client; a worker's Lease of big jobs needs room for
// all of them. It has no effect with New, whose caller configures the connection.
func WithMaxMessageBytes(n int) ClientOption {
	return func(c *clientConfig) { c.maxMessageBytes = n }
}

// WithDialOptions adds gRPC dial options after the defaults (insecure transport,
// keepalive, message size limits), so they can override them, e.g. with TLS
// credentials.
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(c *clientConfig) { c.dialOptions = append(c.dialOptions, opts...) }
}

// WithPropagator sets how trace context is written into jobs and read back by
// workers. The default is W3C Trace Context plus W3C Baggage.
func WithPropagator(p propagation.TextMapPropagator) ClientOption {
	return func(c *clientConfig) { c.propagator = p }
}

// WithTracerProvider sets where producer and consumer spans go. The default is the
// global provider (otel.GetTracerProvider()) at the time the Client is made.
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(c *clientConfig) { c.tracerProvider = tp }
}

// Dial makes a Client for the broker at target ("host:port" or any gRPC target).
// It does not wait for the connection: the first call does.
func Dial(target string, opts ...ClientOption) (*Client, error) {
	cfg := newClientConfig(opts)
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                KeepaliveTime,
			Timeout:             KeepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(cfg.maxMessageBytes),
			grpc.MaxCallSendMsgSize(cfg.maxMessageBytes),
		),
	}, cfg.dialOptions...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	c := newClient(jobwirev1.NewBrokerServiceClient(conn), cfg)
	c.conn = conn
	return c, nil
}

// New makes a Client on a connection the caller made and keeps ownership of; Close
// then leaves it open.
func New(conn grpc.ClientConnInterface, opts ...ClientOption) *Client {
	return newClient(jobwirev1.NewBrokerServiceClient(conn), newClientConfig(opts))
}

func newClientConfig(opts []ClientOption) *clientConfig {
	cfg := &clientConfig{
		callTimeout:     DefaultCallTimeout,
		retry:           DefaultRetryPolicy,
		maxMessageBytes: DefaultMaxMessageBytes,
		propagator:      propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	for _, opt := range opts {
		opt(cfg)
	}
	if cfg.tracerProvider == nil {
		cfg.tracerProvider = otel.GetTracerProvider()
	}
	return cfg
}

func newClient(rpc jobwirev1.BrokerServiceClient, cfg *clientConfig) *Client {
	return &Client{
		rpc:         rpc,
		callTimeout: cfg.callTimeout,
		retry:       cfg.retry,
		propagator:  cfg.propagator,
		tracer: cfg.tracerProvider.Tracer(instrumentationName,
			trace.WithInstrumentationVersion(Version), trace.WithSchemaURL(semconv.SchemaURL)),
	}
}

// Close closes the connection Dial made.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Service returns the generated gRPC client, for calls this package does not wrap.
func (c *Client) Service() jobwirev1.BrokerServiceClient { return c.rpc }

// GetJob returns a job. errors.Is(err, ErrNotFound) when it never existed or was
// removed by retention.
func (c *Client) GetJob(ctx context.Context, jobID string) (*jobwirev1.Job, error) {
	var resp *jobwirev1.GetJobResponse
	err := c.invoke(ctx, true, c.callTimeout, func(ctx context.Context) (err error) {
		resp, err = c.rpc.GetJob(ctx, &jobwirev1.GetJobRequest{JobId: jobID})
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetJob(), nil
}

// Cancel cancels a job and returns its state: StateCancelled when it was pending,
// StateActive when its worker was asked to stop (it learns so from its next
// heartbeat). Cancelling a cancelled job does nothing; a completed or dead one gives
// ErrJobFinished, an unknown one ErrNotFound.
func (c *Client) Cancel(ctx context.Context, jobID string) (State, error) {
	var resp *jobwirev1.CancelJobResponse
	err := c.invoke(ctx, false, c.callTimeout, func(ctx context.Context) (err error) {
		resp, err = c.rpc.CancelJob(ctx, &jobwirev1.CancelJobRequest{JobId: jobID})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.GetState(), nil
}

// invoke runs one unary call with a deadline per attempt, retrying UNAVAILABLE with
// jittered exponential backoff when the call is idempotent. Errors leave mapped.
func (c *Client) invoke(ctx context.Context, idempotent bool, timeout time.Duration, call func(context.Context) error) error {
	attempts := 1
	if idempotent {
		attempts = max(1, c.retry.MaxAttempts)
	}
	backoff := c.retry.InitialBackoff
	for attempt := 1; ; attempt++ {
		err := mapError(callWithTimeout(ctx, timeout, call))
		if err == nil || attempt >= attempts || !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			return err
		}
		delay := time.Duration(rand.Int64N(int64(backoff)/2+1)) + backoff/2
		var rpcErr *Error
		if errors.As(err, &rpcErr) && rpcErr.RetryDelay > delay {
			delay = min(rpcErr.RetryDelay, c.retry.MaxBackoff)
		}
		if !sleep(ctx, delay) {
			return err
		}
		backoff = min(time.Duration(float64(backoff)*max(c.retry.Multiplier, 1)), c.retry.MaxBackoff)
	}
}

func callWithTimeout(ctx context.Context, timeout time.Duration, call func(context.Context) error) error {
	if timeout <= 0 {
		return call(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return call(ctx)
}

// sleep waits for d or until ctx is done, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
