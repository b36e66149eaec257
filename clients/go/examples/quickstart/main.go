// Quickstart: enqueue a job, watch it, and process it with a worker.
// Run a broker first (`make serve` at the repository root), then: go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jobwire/jobwire/clients/go/jobwire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	client, err := jobwire.Dial("127.0.0.1:50051")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// Produce.
	res, err := client.Enqueue(ctx, "emails", []byte(`{"to": "a@b.c"}`),
		jobwire.WithContentType("application/json"),
		jobwire.WithMaxAttempts(5),
		jobwire.WithBackoff(jobwire.Backoff{Kind: jobwire.BackoffExponential, Initial: time.Second, Max: time.Minute}),
		jobwire.WithIdempotencyKey("welcome-a@b.c"),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued", res.JobID)

	// Watch it until it ends.
	watching, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		for ev, err := range client.Watch(ctx, res.JobID) {
			if err != nil {
				log.Println("watch:", err)
				return
			}
			if ev.Kind == jobwire.EventSnapshot {
				close(watching)
			}
			fmt.Println("event:", ev.Kind, ev.Job.GetState(), ev.Job.GetProgress().GetMessage())
		}
	}()
	select { // start the worker once the watch is on, so it sees the job's whole life
	case <-watching:
	case <-watched:
	}

	// Consume: a worker runs until its context is cancelled.
	workCtx, stopWorker := context.WithCancel(ctx)
	worker := jobwire.NewWorker(client, jobwire.WithConcurrency(4))
	worker.HandleFunc("emails", func(ctx context.Context, job *jobwire.Job) ([]byte, error) {
		if err := job.Progress(ctx, 50, "sending"); err != nil {
			return nil, err // the lease is gone: nothing more will be sent for this job
		}
		if !strings.Contains(string(job.Payload), "@") {
			return nil, jobwire.Permanent(errors.New("no address")) // dead-lettered, not retried
		}
		return []byte("sent"), nil
	})
	go func() {
		<-watched // the job has ended
		stopWorker()
	}()
	if err := worker.Run(workCtx); err != nil {
		log.Fatal(err)
	}

	job, err := client.GetJob(ctx, res.JobID)
	if errors.Is(err, jobwire.ErrNotFound) {
		log.Fatal("the job is gone")
	} else if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s is %v with result %q\n", job.GetId(), job.GetState(), job.GetResult())
}
