package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import dev.jobwire.v1.TraceContext;
import io.opentelemetry.api.baggage.Baggage;
import io.opentelemetry.api.trace.Span;
import io.opentelemetry.api.trace.SpanContext;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import io.opentelemetry.sdk.testing.exporter.InMemorySpanExporter;
import io.opentelemetry.sdk.trace.SdkTracerProvider;
import io.opentelemetry.sdk.trace.data.SpanData;
import io.opentelemetry.sdk.trace.export.SimpleSpanProcessor;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

@ExtendWith(BrokerExtension.class)
@Timeout(60)
class TracePropagationTest {
  private final InMemorySpanExporter exporter = InMemorySpanExporter.create();
  private SdkTracerProvider tracing;
  private JobwireClient client;
  private String queue;

  @BeforeEach
  void setUp(Broker broker) {
    tracing =
        SdkTracerProvider.builder().addSpanProcessor(SimpleSpanProcessor.create(exporter)).build();
    client = JobwireClient.builder(broker.target()).build();
    queue = "java-trace-" + UUID.randomUUID().toString().substring(0, 8);
  }

  @AfterEach
  void tearDown() {
    client.close();
    tracing.close();
  }

  @Test
  void enqueueCarriesTheActiveSpanAndBaggage() {
    Span parent = tracing.get("test").spanBuilder("checkout").startSpan();
    String jobId;
    try (Scope s = parent.makeCurrent();
        Scope b = Baggage.builder().put("tenant", "acme").build().makeCurrent()) {
      jobId = client.enqueue(queue, "x".getBytes(StandardCharsets.UTF_8)).jobId();
    } finally {
      parent.end();
    }

    List<SpanData> exported = exporter.getFinishedSpanItems();
    assertEquals(1, exported.size());
    SpanData span = exported.get(0);

    TraceContext carried = client.getJob(jobId).getSpec().getTraceContext();
    SpanContext received = extract(carried);
    assertEquals(span.getTraceId(), received.getTraceId(), carried.getTraceparent());
    assertEquals(span.getSpanId(), received.getSpanId());
    assertEquals(span.getSpanContext().getTraceFlags(), received.getTraceFlags());
    assertEquals("tenant=acme", carried.getBaggage());
  }

  @Test
  void noActiveSpanMeansNoTraceContext() {
    String jobId = client.enqueue(queue, new byte[0]).jobId();
    TraceContext carried = client.getJob(jobId).getSpec().getTraceContext();
    assertEquals("", carried.getTraceparent());
    assertEquals("", carried.getBaggage());
    assertFalse(extract(carried).isValid());
  }

  /** What a worker would do with the job's trace context. */
  private static SpanContext extract(TraceContext carried) {
    Map<String, String> headers =
        Map.of("traceparent", carried.getTraceparent(), "tracestate", carried.getTracestate());
    Context context =
        W3CTraceContextPropagator.getInstance()
            .extract(Context.root(), headers, new MapGetter());
    return Span.fromContext(context).getSpanContext();
  }

  private static final class MapGetter implements TextMapGetter<Map<String, String>> {
    @Override
    public String get(Map<String, String> carrier, String key) {
      return carrier == null ? null : carrier.get(key);
    }
  }
}
