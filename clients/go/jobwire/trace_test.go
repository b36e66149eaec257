package jobwire

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestTracePropagation: the producer's span travels with the job, and the worker's
// "process" span is its child (and links to it), with the messaging attributes; the
// producer's baggage reaches the handler.
func TestTracePropagation(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	c := dialTest(t, WithTracerProvider(tp))
	queue := queueName(t)

	member, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(member)
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	ctx, produce := tp.Tracer("test").Start(ctx, "produce")
	res, err := c.Enqueue(ctx, queue, []byte("traced"))
	produce.End()
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.GetJob(context.Background(), res.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if tc := job.GetSpec().GetTraceContext(); tc.GetTraceparent() == "" || tc.GetBaggage() != "tenant=acme" {
		t.Fatalf("trace context = %v", tc)
	}

	type seen struct {
		span   trace.SpanContext
		tenant string
	}
	inHandler := make(chan seen, 1)
	w := NewWorker(c, WithLogger(quiet), WithPollWait(time.Second))
	w.HandleFunc(queue, func(ctx context.Context, job *Job) ([]byte, error) {
		inHandler <- seen{trace.SpanContextFromContext(ctx), baggage.FromContext(ctx).Member("tenant").Value()}
		return nil, nil
	})
	startWorker(t, w)
	got := <-inHandler
	waitFor(t, c, res.JobID, "completed", inState(StateCompleted))

	var send, process sdktrace.ReadOnlySpan
	deadline := time.Now().Add(5 * time.Second)
	for process == nil && time.Now().Before(deadline) {
		for _, s := range spans.GetSpans().Snapshots() {
			switch s.Name() {
			case "send " + queue:
				send = s
			case "process " + queue:
				process = s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if send == nil || process == nil {
		t.Fatalf("spans: %v", spans.GetSpans())
	}

	producer := produce.SpanContext()
	if send.SpanKind() != trace.SpanKindProducer || send.Parent().SpanID() != producer.SpanID() {
		t.Errorf("send span: kind %v, parent %v; want a PRODUCER child of %v", send.SpanKind(), send.Parent().SpanID(), producer.SpanID())
	}
	if process.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("process span kind = %v", process.SpanKind())
	}
	if process.SpanContext().TraceID() != producer.TraceID() || process.Parent().SpanID() != send.SpanContext().SpanID() {
		t.Errorf("process span is in trace %v under %v; want trace %v under the send span %v",
			process.SpanContext().TraceID(), process.Parent().SpanID(), producer.TraceID(), send.SpanContext().SpanID())
	}
	if !process.Parent().IsRemote() {
		t.Errorf("process span's parent is not remote")
	}
	if links := process.Links(); len(links) != 1 || links[0].SpanContext.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("process span links = %v", links)
	}
	if got.span.SpanID() != process.SpanContext().SpanID() {
		t.Errorf("the handler ran in span %v, not the process span", got.span.SpanID())
	}
	if got.tenant != "acme" {
		t.Errorf("baggage in the handler: tenant = %q", got.tenant)
	}
	wantAttrs := []attribute.KeyValue{
		attribute.String("messaging.system", "jobwire"),
		attribute.String("messaging.operation.name", "process"),
		attribute.String("messaging.destination.name", queue),
		attribute.String("messaging.message.id", res.JobID),
	}
	for _, kv := range wantAttrs {
		if !slices.Contains(process.Attributes(), kv) {
			t.Errorf("process span lacks %v; has %v", kv, process.Attributes())
		}
	}
}
