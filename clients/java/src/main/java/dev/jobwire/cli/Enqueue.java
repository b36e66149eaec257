package dev.jobwire.cli;

import dev.jobwire.client.EnqueueOptions;
import dev.jobwire.client.EnqueueResult;
import dev.jobwire.client.JobwireClient;
import dev.jobwire.client.JobwireException;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.Scope;
import io.opentelemetry.context.propagation.TextMapGetter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.Map;

/**
 * Enqueues one job and prints its id: a small producer for scripts and cross-language tests.
 *
 * <pre>
 * java -cp "target/classes:$(cat target/classpath.txt)" dev.jobwire.cli.Enqueue \
 *     --target 127.0.0.1:50051 --queue emails --payload-file job.json \
 *     --header tenant=acme --traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
 * </pre>
 *
 * <p>{@code --traceparent} is extracted with the W3C propagator and made the current
 * OpenTelemetry context, so the client injects it like any active span.
 *
 * <p>Arguments are taken as UTF-8 and output is written as UTF-8 whatever the locale, also
 * under {@code LANG=C} (see {@link Utf8Console}): {@code --payload 'héllo ✓'} stores the
 * UTF-8 bytes of {@code héllo ✓}.
 */
public final class Enqueue {
  private static final String USAGE =
      "usage: Enqueue --queue NAME [--target HOST:PORT] [--payload TEXT | --payload-file PATH|-]"
          + " [--content-type TYPE] [--header K=V]... [--traceparent TP] [--tracestate TS]";

  private Enqueue() {}

  public static void main(String[] args) {
    Utf8Console.useUtf8Output();
    try {
      System.exit(run(Utf8Console.arguments(args)));
    } catch (IllegalArgumentException e) {
      System.err.println("enqueue: " + e.getMessage());
      System.err.println(USAGE);
      System.exit(2);
    }
  }

  static int run(String[] args) {
    String target = "127.0.0.1:50051";
    String queue = null;
    String payloadFile = null;
    String payloadText = null;
    String traceparent = null;
    String tracestate = null;
    EnqueueOptions.Builder options = EnqueueOptions.builder();
    for (int i = 0; i < args.length; i++) {
      String flag = args[i];
      if (flag.equals("-h") || flag.equals("--help")) {
        System.out.println(USAGE);
        return 0;
      }
      if (i + 1 >= args.length) {
        throw new IllegalArgumentException(flag + " needs a value");
      }
      String value = args[++i];
      switch (flag) {
        case "--target" -> target = value;
        case "--queue" -> queue = value;
        case "--payload-file" -> payloadFile = value;
        case "--payload" -> payloadText = value;
        case "--content-type" -> options.contentType(value);
        case "--traceparent" -> traceparent = value;
        case "--tracestate" -> tracestate = value;
        case "--header" -> {
          int eq = value.indexOf('=');
          if (eq <= 0) {
            throw new IllegalArgumentException("--header wants KEY=VALUE, got " + value);
          }
          options.header(value.substring(0, eq), value.substring(eq + 1));
        }
        default -> throw new IllegalArgumentException("unknown flag " + flag);
      }
    }
    if (queue == null) {
      throw new IllegalArgumentException("--queue is required");
    }
    if (payloadText != null && payloadFile != null) {
      throw new IllegalArgumentException("--payload and --payload-file exclude each other");
    }
    byte[] payload =
        payloadText != null
            ? payloadText.getBytes(StandardCharsets.UTF_8)
            : readPayload(payloadFile);

    Context context = Context.current();
    if (traceparent != null) {
      Map<String, String> carrier =
          tracestate == null
              ? Map.of("traceparent", traceparent)
              : Map.of("traceparent", traceparent, "tracestate", tracestate);
      context = W3CTraceContextPropagator.getInstance().extract(context, carrier, MapGetter.INSTANCE);
    }
    try (JobwireClient client = JobwireClient.builder(target).build()) {
      EnqueueResult result;
      try (Scope scope = context.makeCurrent()) {
        result = client.enqueue(queue, payload, options.build());
      }
      System.out.println(result.jobId());
      return 0;
    } catch (JobwireException e) {
      System.err.println("enqueue: " + e.code() + " " + e.reason() + ": " + e.getMessage());
      return 1;
    }
  }

  private static byte[] readPayload(String file) {
    try {
      if (file == null) {
        return new byte[0];
      }
      if (file.equals("-")) {
        return System.in.readAllBytes();
      }
      return Files.readAllBytes(Path.of(file));
    } catch (IOException e) {
      throw new IllegalArgumentException("cannot read payload: " + e.getMessage());
    } catch (InvalidPathException e) {
      // Java names files in the platform encoding; under LANG=C that is ASCII.
      throw new IllegalArgumentException(
          "cannot read payload: "
              + file
              + " cannot be named in this locale's encoding ("
              + Utf8Console.platformCharset()
              + "); use a UTF-8 locale or --payload-file - < FILE");
    }
  }

  private enum MapGetter implements TextMapGetter<Map<String, String>> {
    INSTANCE;

    @Override
    public String get(Map<String, String> carrier, String key) {
      return carrier == null ? null : carrier.get(key);
    }
  }
}
