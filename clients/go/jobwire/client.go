package jobwire

import (
	"context"
	"errors"
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

// Defaults of a Client; each can be changed with a ClientOption. Retries and
// timeouts are not among them: they come from the service config shipped with the
// protos (DefaultServiceConfig).
const (
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
	// LeaseDeadlineMargin is how much longer than its long-poll wait a Lease may take:
	// the service config gives Lease no timeout, since only the caller knows the wait.
	LeaseDeadlineMargin = 10 * time.Second
)

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
	// StateWaiting: waiting for the jobs it depends on (WithDependsOn). Not terminal.
	StateWaiting = jobwirev1.JobState_JOB_STATE_WAITING
	// StateExpired: not leased before its start deadline (WithStartDeadline), dropped
	// without running. Terminal.
	StateExpired = jobwirev1.JobState_JOB_STATE_EXPIRED
)

// Terminal reports whether s is a state a job never leaves.
func Terminal(s State) bool {
	return s == StateCompleted || s == StateDead || s == StateCancelled || s == StateExpired
}

// Client talks to a Jobwire broker. It is safe for concurrent use; make one per
// process and share it (a Worker uses one too).
type Client struct {
	conn        *grpc.ClientConn         // nil when the caller owns the connection
	cc          grpc.ClientConnInterface // the connection the calls go through, owned or not
	rpc         jobwirev1.BrokerServiceClient
	callTimeout time.Duration
	config      *serviceConfig
	propagator  propagation.TextMapPropagator
	tracer      trace.Tracer
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	callTimeout     time.Duration
	serviceConfig   string
	maxMessageBytes int
	dialOptions     []grpc.DialOption
	propagator      propagation.TextMapPropagator
	tracerProvider  trace.TracerProvider
}

// WithCallTimeout gives every unary call but Lease a deadline of d, gRPC's retries
// included (each attempt of an Enqueue the client retries itself gets its own). The
// service config's timeout (10 s) still applies, so only a shorter d changes anything;
// 0 (the default) leaves calls to the service config and their context.
func WithCallTimeout(d time.Duration) ClientOption {
	return func(c *clientConfig) { c.callTimeout = d }
}

// WithServiceConfig replaces the service config shipped with the protos
// (DefaultServiceConfig) with another document in gRPC's service config JSON format:
// the connection Dial makes retries and times out calls by it, and the client's own
// retries (Enqueue with idempotency keys, Watch) read their policy from it.
func WithServiceConfig(json string) ClientOption {
	return func(c *clientConfig) { c.serviceConfig = json }
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
// It does not wait for the connection: the first call does. The connection retries and
// times out calls as the service config says (DefaultServiceConfig).
func Dial(target string, opts ...ClientOption) (*Client, error) {
	cfg := newClientConfig(opts)
	sc, err := parseServiceConfig(cfg.serviceConfig)
	if err != nil {
		return nil, err
	}
	dial := append([]grpc.DialOption{
		grpc.WithDefaultServiceConfig(cfg.serviceConfig),
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
	c := newClient(jobwirev1.NewBrokerServiceClient(conn), cfg, sc)
	c.conn = conn
	c.cc = conn
	return c, nil
}

// New makes a Client on a connection the caller made and keeps ownership of; Close
// then leaves it open. Make the connection with
// grpc.WithDefaultServiceConfig(jobwire.DefaultServiceConfig()) to get the retries and
// timeouts of Dial. New panics if WithServiceConfig gave a document it cannot read.
func New(conn grpc.ClientConnInterface, opts ...ClientOption) *Client {
	cfg := newClientConfig(opts)
	sc, err := parseServiceConfig(cfg.serviceConfig)
	if err != nil {
		panic(err)
	}
	c := newClient(jobwirev1.NewBrokerServiceClient(conn), cfg, sc)
	c.cc = conn
	return c
}

func newClientConfig(opts []ClientOption) *clientConfig {
	cfg := &clientConfig{
		serviceConfig:   defaultServiceConfig,
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

func newClient(rpc jobwirev1.BrokerServiceClient, cfg *clientConfig, sc *serviceConfig) *Client {
	return &Client{
		rpc:         rpc,
		callTimeout: cfg.callTimeout,
		config:      sc,
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
	err := c.invoke(ctx, c.callTimeout, func(ctx context.Context) (err error) {
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
	err := c.invoke(ctx, c.callTimeout, func(ctx context.Context) (err error) {
		resp, err = c.rpc.CancelJob(ctx, &jobwirev1.CancelJobRequest{JobId: jobID})
		return err
	})
	if err != nil {
		return 0, err
	}
	return resp.GetState(), nil
}

// invoke runs one unary call, within timeout when it is positive, and maps its error.
// Retries of UNAVAILABLE, and the call's timeout, come from the service config, which
// gRPC applies below this.
func (c *Client) invoke(ctx context.Context, timeout time.Duration, call func(context.Context) error) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return mapError(call(ctx))
}

// invokeRetrying runs a call that gRPC does not retry but the caller made safe to
// repeat (an Enqueue whose jobs all have idempotency keys), retrying it with the service
// config's policy of GetJob.
func (c *Client) invokeRetrying(ctx context.Context, call func(context.Context) error) error {
	policy := c.config.method("GetJob").retry
	for attempt := 1; ; attempt++ {
		err := c.invoke(ctx, c.callTimeout, call)
		var rpcErr *Error
		if err == nil || policy == nil || attempt >= policy.maxAttempts || !errors.As(err, &rpcErr) ||
			!policy.retries(rpcErr.Code) || ctx.Err() != nil {
			return err
		}
		if !sleep(ctx, policy.backoff(attempt, rpcErr.RetryDelay)) {
			return err
		}
	}
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
