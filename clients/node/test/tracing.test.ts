// W3C trace context from producer to worker, checked with an in-memory exporter.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type SpanContext } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { JobwireClient, Worker } from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";

describe("trace propagation", () => {
  let broker: Broker;
  let client: JobwireClient;
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const contextManager = new AsyncLocalStorageContextManager();
  const tracer = provider.getTracer("producer-app");

  before(async () => {
    context.setGlobalContextManager(contextManager.enable());
    trace.setGlobalTracerProvider(provider);
    broker = await startBroker();
    client = new JobwireClient(broker.target);
  });

  after(async () => {
    client?.close();
    await broker?.dispose();
    await provider.shutdown();
    contextManager.disable();
    trace.disable();
    context.disable();
  });

  it("runs the handler in a CONSUMER span that is a child of the producer's span", async () => {
    const queue = uniqueQueue("traced");
    let producer: SpanContext | undefined;
    const baggage = propagation.createBaggage({ tenant: { value: "acme" } });
    const { jobId } = await tracer.startActiveSpan("checkout", async (span) => {
      producer = span.spanContext();
      try {
        return await context.with(propagation.setBaggage(context.active(), baggage), () => client.enqueue(queue, { order: 7 }));
      } finally {
        span.end();
      }
    });
    assert.ok(producer);

    const stored = await client.getJob(jobId);
    assert.match(stored.spec?.traceContext?.traceparent ?? "", new RegExp(`^00-${producer.traceId}-${producer.spanId}-01$`));
    assert.equal(stored.spec?.traceContext?.baggage, "tenant=acme");

    let inHandler: SpanContext | undefined;
    let tenant: string | undefined;
    const worker = new Worker(client);
    worker.process(
      queue,
      () => {
        inHandler = trace.getActiveSpan()?.spanContext();
        tenant = propagation.getBaggage(context.active())?.getEntry("tenant")?.value;
        return "ok";
      },
      { maxJobs: 1 },
    );
    await worker.run();

    const span = exporter.getFinishedSpans().find((s) => s.name === `process ${queue}`);
    assert.ok(span, "worker span exported");
    assert.equal(span.kind, SpanKind.CONSUMER);
    assert.equal(span.spanContext().traceId, producer.traceId);
    assert.equal(span.parentSpanContext?.spanId, producer.spanId);
    assert.equal(span.parentSpanContext?.isRemote, true);
    assert.deepEqual(
      {
        system: span.attributes["messaging.system"],
        operation: span.attributes["messaging.operation.name"],
        destination: span.attributes["messaging.destination.name"],
        id: span.attributes["messaging.message.id"],
      },
      { system: "jobwire", operation: "process", destination: queue, id: jobId },
    );
    assert.equal(inHandler?.spanId, span.spanContext().spanId, "handler runs inside the worker span");
    assert.equal(tenant, "acme");
  });

  it("marks the span as an error when the handler throws", async () => {
    const queue = uniqueQueue("traced-error");
    await tracer.startActiveSpan("produce", async (span) => {
      await client.enqueue(queue, "x", { maxAttempts: 1 });
      span.end();
    });
    const worker = new Worker(client);
    worker.process(
      queue,
      () => {
        throw new TypeError("boom");
      },
      { maxJobs: 1 },
    );
    await worker.run();
    const span = exporter.getFinishedSpans().find((s) => s.name === `process ${queue}`);
    assert.equal(span?.status.code, SpanStatusCode.ERROR);
    assert.equal(span?.events[0]?.name, "exception");
  });

  it("sends no trace context without an active span", async () => {
    const queue = uniqueQueue("untraced");
    const { jobId } = await context.with(ROOT_CONTEXT, () => client.enqueue(queue, "x"));
    const trace = (await client.getJob(jobId)).spec?.traceContext;
    assert.equal(trace?.traceparent ?? "", "");
    assert.equal(trace?.baggage ?? "", "");
  });
});
