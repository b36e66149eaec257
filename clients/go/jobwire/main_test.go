package jobwire

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jobwirev1 "github.com/jobwire/jobwire/clients/go/gen/jobwire/v1"
	"github.com/jobwire/jobwire/clients/go/internal/testbroker"
)

// target is the address of the broker every test of this package talks to.
var target string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	broker, err := testbroker.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "jobwire tests:", err)
		return 1
	}
	defer broker.Stop()
	target = broker.Target
	return m.Run()
}

// quiet discards what workers log about failures the tests cause on purpose.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var queueSeq atomic.Int64
var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// queueName gives each test its own queue.
func queueName(t *testing.T) string {
	return fmt.Sprintf("go-%s-%d", unsafeChars.ReplaceAllString(t.Name(), "."), queueSeq.Add(1))
}

func dialTest(t *testing.T, opts ...ClientOption) *Client {
	t.Helper()
	c, err := Dial(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startWorker runs w until the test ends and fails the test if Run returns an error.
func startWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("worker did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls the job until cond holds, or fails the test after 15 s.
func waitFor(t *testing.T, c *Client, id string, what string, cond func(*jobwirev1.Job) bool) *jobwirev1.Job {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		job, err := c.GetJob(context.Background(), id)
		if err != nil {
			t.Fatalf("GetJob(%s): %v", id, err)
		}
		if cond(job) {
			return job
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never got %s; last seen: %v", id, what, job)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func inState(s State) func(*jobwirev1.Job) bool {
	return func(j *jobwirev1.Job) bool { return j.GetState() == s }
}

// proxy forwards TCP connections to the broker and can cut them all, to drop streams.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	count atomic.Int64
}

func newProxy(t *testing.T, to string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.dropAll() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			p.count.Add(1)
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) dropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
