// Command jobwire-go drives the Go client from a shell, so tests in other languages can
// use it as a producer or a worker.
//
//	jobwire-go enqueue --target HOST:PORT --queue Q [--payload-file F|-] [--header k=v]...
//	                   [--content-type T] [--traceparent TP [--tracestate TS] [--baggage B]]
//	                   [--idempotency-key K] [--priority N] [--max-attempts N]
//	    Enqueues one job and prints its id. With --traceparent, the job carries that
//	    trace context (read with the W3C propagators, not copied as text).
//
//	jobwire-go work --target HOST:PORT --queue Q --count N [--result-from-payload]
//	                [--timeout D]
//	    Processes N jobs, then exits 0 (1 if --timeout passes first). The handler
//	    completes every job; its result is empty, or with --result-from-payload the
//	    payload's bytes in reverse order. For each job it writes one JSON line to stdout
//	    before completing it:
//	    {"id", "attempt", "payload" (base64; "" when empty), "content_type", "headers"
//	     ({} when none), "traceparent", "tracestate", "baggage" (as carried by the job),
//	     "trace_id" (of the span the handler ran in: the producer's trace when one was
//	     propagated)}.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/jobwire/jobwire/clients/go/jobwire"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = "usage: jobwire-go enqueue|work [flags] (jobwire-go <command> -h for flags)"

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "enqueue":
		err = enqueue(ctx, args[1:], stdin, stdout, stderr)
	case "work":
		err = work(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintln(stderr, usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "jobwire-go:", err)
		return 1
	}
	return 0
}

// headers collects repeated --header k=v flags.
type headers map[string]string

func (h headers) String() string { return fmt.Sprint(map[string]string(h)) }

func (h headers) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", kv)
	}
	h[k] = v
	return nil
}

func enqueue(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "127.0.0.1:50051", "broker address")
	queue := fs.String("queue", "", "queue name (required)")
	payloadFile := fs.String("payload-file", "", "file holding the payload, - for stdin (default: empty payload)")
	contentType := fs.String("content-type", "", "MIME type of the payload")
	traceparent := fs.String("traceparent", "", "W3C traceparent the job should carry")
	tracestate := fs.String("tracestate", "", "W3C tracestate, with --traceparent")
	bag := fs.String("baggage", "", "W3C baggage the job should carry")
	key := fs.String("idempotency-key", "", "idempotency key")
	priority := fs.Int("priority", 0, "priority in [-1000, 1000]")
	maxAttempts := fs.Int("max-attempts", 0, "attempts in all (0: the broker default)")
	hdrs := headers{}
	fs.Var(hdrs, "header", "header key=value (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queue == "" {
		return errors.New("enqueue: --queue is required")
	}
	var payload []byte
	var err error
	switch *payloadFile {
	case "":
	case "-":
		payload, err = io.ReadAll(stdin)
	default:
		payload, err = os.ReadFile(*payloadFile)
	}
	if err != nil {
		return err
	}

	// The given trace context becomes the parent in ctx, and Enqueue writes it back
	// out through the same propagators.
	ctx = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}).
		Extract(ctx, propagation.MapCarrier{"traceparent": *traceparent, "tracestate": *tracestate, "baggage": *bag})
	if *traceparent != "" && !trace.SpanContextFromContext(ctx).IsValid() {
		return fmt.Errorf("enqueue: --traceparent %q is not a valid W3C traceparent", *traceparent)
	}

	client, err := jobwire.Dial(*target)
	if err != nil {
		return err
	}
	defer client.Close()
	opts := []jobwire.Option{jobwire.WithHeaders(hdrs), jobwire.WithPriority(*priority), jobwire.WithMaxAttempts(*maxAttempts)}
	if *contentType != "" {
		opts = append(opts, jobwire.WithContentType(*contentType))
	}
	if *key != "" {
		opts = append(opts, jobwire.WithIdempotencyKey(*key))
	}
	res, err := client.Enqueue(ctx, *queue, payload, opts...)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.JobID)
	return nil
}

// processed is the JSON line written for each job. Payload is base64 ("" when empty)
// and Headers is never nil, so an empty job prints "" and {} rather than null, as the
// TypeScript and Python CLIs do.
type processed struct {
	ID          string            `json:"id"`
	Attempt     int               `json:"attempt"`
	Payload     string            `json:"payload"`
	ContentType string            `json:"content_type"`
	Headers     map[string]string `json:"headers"`
	Traceparent string            `json:"traceparent"`
	Tracestate  string            `json:"tracestate"`
	Baggage     string            `json:"baggage"`
	TraceID     string            `json:"trace_id"`
}

func work(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("work", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "127.0.0.1:50051", "broker address")
	queue := fs.String("queue", "", "queue name (required)")
	count := fs.Int("count", 1, "jobs to process before exiting")
	reverse := fs.Bool("result-from-payload", false, "complete each job with its payload reversed as the result (default: empty result)")
	timeout := fs.Duration("timeout", time.Minute, "give up (exit 1) after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queue == "" || *count < 1 {
		return errors.New("work: --queue and a --count of at least 1 are required")
	}
	client, err := jobwire.Dial(*target)
	if err != nil {
		return err
	}
	defer client.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu     sync.Mutex
		out    = json.NewEncoder(stdout)
		left   = *count
		outErr error
	)
	// One job at a time, so exactly --count jobs are leased.
	w := jobwire.NewWorker(client, jobwire.WithConcurrency(1), jobwire.WithPollWait(time.Second),
		jobwire.WithLogger(slog.New(slog.NewTextHandler(stderr, nil))))
	w.HandleFunc(*queue, func(hctx context.Context, job *jobwire.Job) ([]byte, error) {
		tc := job.Info.GetSpec().GetTraceContext()
		line := processed{
			ID: job.ID, Attempt: job.Attempt, Payload: base64.StdEncoding.EncodeToString(job.Payload),
			ContentType: job.ContentType, Headers: job.Headers, Traceparent: tc.GetTraceparent(),
			Tracestate: tc.GetTracestate(), Baggage: tc.GetBaggage(),
		}
		if line.Headers == nil {
			line.Headers = map[string]string{}
		}
		if sc := trace.SpanContextFromContext(hctx); sc.IsValid() {
			line.TraceID = sc.TraceID().String()
		}
		mu.Lock()
		defer mu.Unlock()
		if err := out.Encode(line); err != nil && outErr == nil {
			outErr = err
		}
		if left--; left == 0 {
			cancel() // stop leasing; Run still completes this job
		}
		if !*reverse {
			return nil, nil
		}
		result := slices.Clone(job.Payload)
		slices.Reverse(result)
		return result, nil
	})
	timer := time.AfterFunc(*timeout, cancel)
	defer timer.Stop()
	if err := w.Run(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if left > 0 {
		return fmt.Errorf("work: stopped with %d of %d jobs left", left, *count)
	}
	return outErr
}
