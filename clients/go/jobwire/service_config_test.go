package jobwire

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
)

// protosConfig is protos/jobwire/v1/service_config.json, the source of the embedded copy.
func protosConfig(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0) // <repo>/clients/go/jobwire/service_config_test.go
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "protos", "jobwire", "v1", "service_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestServiceConfigCopyIsFresh(t *testing.T) {
	if protosConfig(t) != DefaultServiceConfig() {
		t.Fatal("jobwire/service_config.json differs from protos/jobwire/v1/service_config.json: run `make setup-go` (or `go generate ./jobwire`)")
	}
}

// fakeBroker answers UNAVAILABLE (with a 1 ms retry pushback, so gRPC's retries are quick)
// to the first fails[method] calls of each method, or to all of them when it has no
// entry, and records how many attempts each method got and the deadline of each.
type fakeBroker struct {
	jobwirev1.UnimplementedBrokerServiceServer
	mu        sync.Mutex
	fails     map[string]int
	attempts  map[string]int
	deadlines map[string]time.Duration // 0: none
}

func (f *fakeBroker) GetJob(_ context.Context, req *jobwirev1.GetJobRequest) (*jobwirev1.GetJobResponse, error) {
	return &jobwirev1.GetJobResponse{Job: &jobwirev1.Job{Id: req.GetJobId()}}, nil
}

func (f *fakeBroker) attempt(ctx context.Context, method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[method]++
	if deadline, ok := ctx.Deadline(); ok {
		f.deadlines[method] = time.Until(deadline)
	} else {
		f.deadlines[method] = 0
	}
	if limit, ok := f.fails[method]; ok && f.attempts[method] > limit {
		return nil
	}
	grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", "1"))
	return status.Error(codes.Unavailable, "fake broker is unavailable")
}

func (f *fakeBroker) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[method]
}

func startFake(t *testing.T, fails map[string]int) (*fakeBroker, string) {
	t.Helper()
	f := &fakeBroker{fails: fails, attempts: map[string]int{}, deadlines: map[string]time.Duration{}}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := f.attempt(ctx, filepath.Base(info.FullMethod)); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := f.attempt(ss.Context(), filepath.Base(info.FullMethod)); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	)
	jobwirev1.RegisterBrokerServiceServer(srv, f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return f, ln.Addr().String()
}

// TestServiceConfigDrivesRetries checks that a Dial'ed client retries and times out each
// method exactly as protos/jobwire/v1/service_config.json says: the attempts the broker
// sees and the deadline it gets are those of the file.
func TestServiceConfigDrivesRetries(t *testing.T) {
	want, err := parseServiceConfig(protosConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	fake, addr := startFake(t, map[string]int{"GetJob": 2})
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	raw := c.Service()

	t.Run("GetJob succeeds through retries", func(t *testing.T) {
		job, err := c.GetJob(ctx, "q:1")
		if err != nil || job.GetId() != "q:1" {
			t.Fatalf("GetJob = %v, %v", job, err)
		}
		if got := fake.count("GetJob"); got != 3 {
			t.Errorf("GetJob took %d attempts, want 3", got)
		}
		timeout := want.method("GetJob").timeout
		if d := fake.deadlines["GetJob"]; d <= timeout-time.Second || d > timeout {
			t.Errorf("GetJob's deadline was %v away, want about the config's %v", d, timeout)
		}
	})

	calls := map[string]func() error{
		"Enqueue":        func() error { _, err := raw.Enqueue(ctx, &jobwirev1.EnqueueRequest{}); return err },
		"EnqueueBatch":   func() error { _, err := raw.EnqueueBatch(ctx, &jobwirev1.EnqueueBatchRequest{}); return err },
		"Lease":          func() error { _, err := raw.Lease(ctx, &jobwirev1.LeaseRequest{}); return err },
		"Heartbeat":      func() error { _, err := raw.Heartbeat(ctx, &jobwirev1.HeartbeatRequest{}); return err },
		"HeartbeatBatch": func() error { _, err := raw.HeartbeatBatch(ctx, &jobwirev1.HeartbeatBatchRequest{}); return err },
		"Complete":       func() error { _, err := raw.Complete(ctx, &jobwirev1.CompleteRequest{}); return err },
		"Fail":           func() error { _, err := raw.Fail(ctx, &jobwirev1.FailRequest{}); return err },
		"ReleaseLease":   func() error { _, err := raw.ReleaseLease(ctx, &jobwirev1.ReleaseLeaseRequest{}); return err },
		"SettleBatch":    func() error { _, err := raw.SettleBatch(ctx, &jobwirev1.SettleBatchRequest{}); return err },
		"CancelJob":      func() error { _, err := raw.CancelJob(ctx, &jobwirev1.CancelJobRequest{}); return err },
		"StreamProgress": func() error {
			stream, err := raw.StreamProgress(ctx, &jobwirev1.StreamProgressRequest{})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		},
	}
	for method, call := range calls {
		t.Run(method, func(t *testing.T) {
			policy := want.method(method)
			attempts := 1
			if policy.retry != nil && policy.retry.retries(codes.Unavailable) {
				attempts = policy.retry.maxAttempts
			}
			if err := call(); status.Code(err) != codes.Unavailable {
				t.Fatalf("err = %v, want UNAVAILABLE", err)
			}
			if got := fake.count(method); got != attempts {
				t.Errorf("%d attempts, want %d", got, attempts)
			}
			d := fake.deadlines[method]
			if policy.timeout == 0 && d != 0 || policy.timeout > 0 && (d <= policy.timeout-time.Second || d > policy.timeout) {
				t.Errorf("deadline %v away, want the config's %v", d, policy.timeout)
			}
		})
	}
}

// TestIdempotentEnqueueRetries: the service config leaves Enqueue alone; the client retries
// it itself, with GetJob's policy, only when every job has an idempotency key.
func TestIdempotentEnqueueRetries(t *testing.T) {
	want, err := parseServiceConfig(protosConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	attempts := want.method("GetJob").retry.maxAttempts
	fake, addr := startFake(t, nil)
	c, err := Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	tests := []struct {
		name   string
		method string
		call   func() error
		want   int
	}{
		{"without key", "Enqueue", func() error { _, err := c.Enqueue(ctx, "q", nil); return err }, 1},
		{"with key", "Enqueue", func() error { _, err := c.Enqueue(ctx, "q", nil, WithIdempotencyKey("k")); return err }, attempts},
		{"batch, one job without key", "EnqueueBatch", func() error {
			_, err := c.EnqueueBatch(ctx, "q", []Spec{{Options: []Option{WithIdempotencyKey("k")}}, {}})
			return err
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fake.count(tt.method)
			if err := tt.call(); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if got := fake.count(tt.method) - before; got != tt.want {
				t.Errorf("%d attempts, want %d", got, tt.want)
			}
		})
	}
}
