package jobwire

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jobwire/jobwire/clients/go/internal/testbroker"
)

const mib = 1 << 20

// bigPayload is n bytes that tell jobs apart: job i's are all byte i.
func bigPayload(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }

// runBigJobs enqueues 12 jobs of exactly 1 MiB each, then runs a worker with default
// options (concurrency 10, so its first Lease asks for 10 of them: ~10 MiB in one
// reply). Every job must be handled exactly once and end completed on its first
// attempt well before a stranded lease (30 s) could expire and be retried.
func runBigJobs(t *testing.T, target string) {
	t.Helper()
	c, err := Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	queue := queueName(t)
	const jobs = 12
	ids := make([]string, jobs)
	want := map[string]int{}
	for i := range jobs {
		res, err := c.Enqueue(ctx, queue, bigPayload(i, mib))
		if err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		ids[i] = res.JobID
		want[res.JobID] = i
	}

	var (
		mu    sync.Mutex
		calls = map[string]int{}
		bad   []string
	)
	w := NewWorker(c)
	w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[job.ID]++
		if i, ok := want[job.ID]; !ok || !bytes.Equal(job.Payload, bigPayload(i, mib)) {
			bad = append(bad, job.ID+" ("+strconv.Itoa(len(job.Payload))+" bytes)")
		}
		return []byte("ok"), nil
	})
	stop := startWorker(t, w)

	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			job, err := c.GetJob(ctx, id)
			if err != nil {
				t.Fatalf("GetJob(%s): %v", id, err)
			}
			if job.GetState() == StateCompleted {
				if job.GetAttempt() != 1 || string(job.GetResult()) != "ok" {
					t.Errorf("job %s completed on attempt %d with %q", id, job.GetAttempt(), job.GetResult())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s not completed after 20 s: %v in attempt %d (last error %v)",
					id, job.GetState(), job.GetAttempt(), job.GetLastError())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if calls[id] != 1 {
			t.Errorf("job %s handled %d times, want 1", id, calls[id])
		}
	}
	if len(calls) != jobs || len(bad) > 0 {
		t.Errorf("handled %d distinct jobs, want %d; wrong payloads: %v", len(calls), jobs, bad)
	}
}

// TestWorkerBigJobs: 12 jobs at the broker's default payload limit (1 MiB), worked at
// the default concurrency: no Lease reply is too big for the client.
func TestWorkerBigJobs(t *testing.T) {
	runBigJobs(t, target)
}

// TestLargeMessages runs against a broker with a 6 MiB payload limit, whose own
// message limit (28 MiB) is not what stops a reply: what the client accepts by default
// (64 MiB, more than gRPC's 4 MiB), and that WithMaxMessageBytes lowers it.
func TestLargeMessages(t *testing.T) {
	big, err := testbroker.Start("--max-payload-bytes", strconv.Itoa(6*mib))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { big.Stop() })
	ctx := context.Background()

	t.Run("GetJob of 5 MiB", func(t *testing.T) {
		c, err := Dial(big.Target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		payload := bigPayload(7, 5*mib)
		res, err := c.Enqueue(ctx, queueName(t), payload)
		if err != nil {
			t.Fatal(err)
		}
		job, err := c.GetJob(ctx, res.JobID)
		if err != nil {
			t.Fatalf("GetJob of a 5 MiB job with the default limit: %v", err)
		}
		if !bytes.Equal(job.GetSpec().GetPayload(), payload) {
			t.Errorf("payload came back as %d bytes", len(job.GetSpec().GetPayload()))
		}

		small, err := Dial(big.Target, WithMaxMessageBytes(4*mib))
		if err != nil {
			t.Fatal(err)
		}
		defer small.Close()
		if _, err := small.GetJob(ctx, res.JobID); status.Code(err) != codes.ResourceExhausted || !errors.Is(err, ErrResourceExhausted) {
			t.Errorf("GetJob with a 4 MiB limit: %v, want RESOURCE_EXHAUSTED", err)
		}
		if _, err := small.Enqueue(ctx, queueName(t), payload); status.Code(err) != codes.ResourceExhausted {
			t.Errorf("Enqueue of 5 MiB with a 4 MiB limit: %v, want RESOURCE_EXHAUSTED", err)
		}
	})

	// The same 12 jobs of 1 MiB: here the broker sends Lease replies of up to 10 MiB
	// (unless it caps them itself), which the worker's connection must take.
	t.Run("worker", func(t *testing.T) { runBigJobs(t, big.Target) })
}
