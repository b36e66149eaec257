package dev.jobwire.client;

import dev.jobwire.v1.BrokerServiceGrpc;
import dev.jobwire.v1.BrokerServiceGrpc.BrokerServiceBlockingStub;
import dev.jobwire.v1.CancelJobRequest;
import dev.jobwire.v1.EnqueueRequest;
import dev.jobwire.v1.EnqueueResponse;
import dev.jobwire.v1.GetJobRequest;
import dev.jobwire.v1.Job;
import dev.jobwire.v1.JobSpec;
import dev.jobwire.v1.JobState;
import dev.jobwire.v1.TraceContext;
import io.grpc.Channel;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsChannelCredentials;
import io.opentelemetry.api.baggage.propagation.W3CBaggagePropagator;
import io.opentelemetry.api.trace.propagation.W3CTraceContextPropagator;
import io.opentelemetry.context.Context;
import io.opentelemetry.context.propagation.TextMapPropagator;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

/**
 * A producer's connection to a Jobwire broker. Thread-safe; make one per broker address and
 * share it. Close it to release the connection.
 *
 * <pre>{@code
 * try (JobwireClient jobwire = JobwireClient.builder("127.0.0.1:50051").build()) {
 *   EnqueueResult job = jobwire.enqueue("emails", payload,
 *       EnqueueOptions.builder().contentType("application/json").build());
 *   Job current = jobwire.getJob(job.jobId());
 * }
 * }</pre>
 *
 * <p>Retries and timeouts come from the gRPC service config shipped with the protos ({@link
 * #defaultServiceConfig()}, {@code protos/jobwire/v1/service_config.json}), which the channel
 * applies: {@link #getJob} and {@link #cancel} are retried on {@code UNAVAILABLE} and time out
 * after 10 s, like every unary call; {@link #enqueue} is not retried by gRPC (a retry could
 * create a second job) but by the client itself, with GetJob's policy, when it has an
 * idempotency key. Failures arrive as {@link JobwireException}s ({@link Errors#map}).
 *
 * <p>When the caller's OpenTelemetry context ({@code Context.current()}) holds a span, {@link
 * #enqueue} stores its W3C trace context and the current baggage in the job, so the worker's
 * span joins the producer's trace. This needs no OpenTelemetry SDK in the client: whatever
 * the application made current is what travels.
 */
public final class JobwireClient implements AutoCloseable {
  /**
   * Largest message sent or received unless the builder sets another: 64 MiB, as in the
   * Python SDK (gRPC-Java's own receive limit is 4 MiB). A job's payload and result are each
   * up to the broker's payload limit (1 MiB by default), and a Lease reply holds several jobs.
   */
  public static final int DEFAULT_MAX_MESSAGE_BYTES = 64 << 20;

  private static final TextMapPropagator W3C =
      TextMapPropagator.composite(
          W3CTraceContextPropagator.getInstance(), W3CBaggagePropagator.getInstance());

  private final ManagedChannel ownedChannel;
  private final Channel channel;
  private final BrokerServiceBlockingStub stub;
  private final Duration deadline; // null: the service config's timeouts only
  private final Map<String, ?> serviceConfig;
  private final int maxMessageBytes;

  private JobwireClient(Builder b) {
    this.maxMessageBytes = b.maxMessageBytes;
    this.serviceConfig = b.serviceConfig != null ? b.serviceConfig : ServiceConfig.shipped();
    if (b.channel != null) {
      this.ownedChannel = null;
      this.channel = b.channel;
    } else {
      this.ownedChannel =
          Grpc.newChannelBuilder(
                  b.target,
                  b.tls ? TlsChannelCredentials.create() : InsecureChannelCredentials.create())
              .defaultServiceConfig(serviceConfig)
              .enableRetry()
              .maxInboundMessageSize(maxMessageBytes)
              .build();
      this.channel = ownedChannel;
    }
    this.stub = newStub();
    this.deadline = b.deadline;
  }

  /**
   * The gRPC service config shipped with the protos: the retry policy and timeout of each
   * RPC, as the maps, lists, strings and numbers {@code ManagedChannelBuilder
   * .defaultServiceConfig} takes. A fresh copy each time: change it and pass it to {@link
   * Builder#serviceConfig} to use another policy, or to the builder of a channel you make
   * for {@link #builder(Channel)}.
   */
  public static Map<String, Object> defaultServiceConfig() {
    return ServiceConfig.shipped();
  }

  /**
   * A client for the broker at {@code target}: {@code host:port}, or any gRPC target URI
   * such as {@code dns:///jobwire.internal:50051}. Plaintext unless {@link Builder#tls()}.
   */
  public static Builder builder(String target) {
    return new Builder(Objects.requireNonNull(target), null);
  }

  /** A client over a channel the caller owns and closes; {@link #close()} leaves it open. */
  public static Builder builder(Channel channel) {
    return new Builder(null, Objects.requireNonNull(channel));
  }

  /** Enqueues a job with the broker's defaults for everything but the payload. */
  public EnqueueResult enqueue(String queue, byte[] payload) {
    return enqueue(queue, payload, EnqueueOptions.defaults());
  }

  /**
   * Adds a job to {@code queue}. Queues exist as soon as a job names them.
   *
   * @throws InvalidArgumentException a field is out of range; nothing was written
   * @throws JobwireUnavailableException the broker or its store is unreachable (retried first,
   *     with the service config's policy of GetJob, only when the options carry an
   *     idempotency key)
   */
  public EnqueueResult enqueue(String queue, byte[] payload, EnqueueOptions options) {
    Objects.requireNonNull(queue, "queue");
    Objects.requireNonNull(payload, "payload");
    Objects.requireNonNull(options, "options");
    JobSpec.Builder spec = options.toSpec(payload);
    TraceContext trace = traceContext(Context.current());
    if (trace != null) {
      spec.setTraceContext(trace);
    }
    EnqueueRequest request = EnqueueRequest.newBuilder().setQueue(queue).setJob(spec).build();
    boolean retryHere = !options.idempotencyKey().isEmpty();
    EnqueueResponse response = call(retryHere, s -> s.enqueue(request));
    return new EnqueueResult(response.getJobId(), response.getDuplicate(), response.getState());
  }

  /**
   * Returns a job as the broker stores it.
   *
   * @throws JobNotFoundException it never existed or was removed by retention
   */
  public Job getJob(String jobId) {
    GetJobRequest request = GetJobRequest.newBuilder().setJobId(jobId).build();
    return call(false, s -> s.getJob(request)).getJob();
  }

  /**
   * Cancels a job: at once when scheduled or ready ({@code CANCELLED}); an active job is
   * flagged and its worker stops at its next heartbeat ({@code ACTIVE}). Cancelling twice is
   * harmless, so the service config retries it like {@link #getJob}.
   *
   * @throws JobFinishedException the job already completed or went dead
   * @throws JobNotFoundException the job is unknown
   */
  public JobState cancel(String jobId) {
    CancelJobRequest request = CancelJobRequest.newBuilder().setJobId(jobId).build();
    return call(false, s -> s.cancelJob(request)).getState();
  }

  /**
   * Watches a job: first its current state, then each progress update and state change,
   * ending after a terminal state. A dropped stream is resumed from the last event seen.
   * Close the watch (or the stream from {@link JobWatch#stream()}) to stop early.
   */
  public JobWatch watch(String jobId) {
    return watch(jobId, "");
  }

  /** Watches a job from just after {@code afterEventId} (an event id from an earlier watch). */
  public JobWatch watch(String jobId, String afterEventId) {
    return new JobWatch(
        newStub(), jobId, afterEventId, ServiceConfig.retryPolicy(serviceConfig, "StreamProgress"));
  }

  /** The service config this client's channel and its own retries follow. */
  public Map<String, ?> serviceConfig() {
    return serviceConfig;
  }

  /**
   * The channel to the broker, for calls this client does not wrap (Lease, Complete...). A
   * channel the client made receives messages of up to {@link Builder#maxMessageBytes}; a
   * stub on it sends any size unless told otherwise ({@code withMaxOutboundMessageSize}).
   */
  public Channel channel() {
    return channel;
  }

  /** The largest message this client's calls send or receive, in bytes. */
  public int maxMessageBytes() {
    return maxMessageBytes;
  }

  /** A stub whose calls send and receive messages of up to {@code maxMessageBytes}. */
  private BrokerServiceBlockingStub newStub() {
    return BrokerServiceGrpc.newBlockingStub(channel)
        .withMaxInboundMessageSize(maxMessageBytes)
        .withMaxOutboundMessageSize(maxMessageBytes);
  }

  /** Closes the connection this client opened, waiting up to 5 s for calls in flight. */
  @Override
  public void close() {
    if (ownedChannel == null) {
      return;
    }
    ownedChannel.shutdown();
    try {
      if (!ownedChannel.awaitTermination(5, TimeUnit.SECONDS)) {
        ownedChannel.shutdownNow();
      }
    } catch (InterruptedException e) {
      ownedChannel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }

  /**
   * One unary call; gRPC retries and times it out as the service config says. {@code
   * retryHere}: the config does not retry the method, but this call is safe to repeat (an
   * enqueue with an idempotency key), so retry it here with the config's policy of GetJob.
   */
  private <T> T call(boolean retryHere, Function<BrokerServiceBlockingStub, T> rpc) {
    RetryPolicy policy =
        retryHere ? ServiceConfig.retryPolicy(serviceConfig, "GetJob").orElse(null) : null;
    for (int attempt = 1; ; attempt++) {
      try {
        BrokerServiceBlockingStub s =
            deadline == null ? stub : stub.withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS);
        return rpc.apply(s);
      } catch (StatusRuntimeException e) {
        JobwireException failure = Errors.map(e);
        if (policy == null || !policy.retries(failure.code()) || attempt >= policy.maxAttempts()) {
          throw failure;
        }
        RetryPolicy.sleep(policy.pause(attempt, failure.retryDelay().orElse(null)), failure);
      }
    }
  }

  /** The W3C headers of {@code context} as a TraceContext, or null when there are none. */
  private static TraceContext traceContext(Context context) {
    Map<String, String> carrier = new HashMap<>();
    W3C.inject(context, carrier, Map::put);
    if (carrier.isEmpty()) {
      return null;
    }
    return TraceContext.newBuilder()
        .setTraceparent(carrier.getOrDefault("traceparent", ""))
        .setTracestate(carrier.getOrDefault("tracestate", ""))
        .setBaggage(carrier.getOrDefault("baggage", ""))
        .build();
  }

  /** Configures a {@link JobwireClient}. */
  public static final class Builder {
    private final String target;
    private final Channel channel;
    private boolean tls;
    private Duration deadline;
    private Map<String, ?> serviceConfig;
    private int maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;

    private Builder(String target, Channel channel) {
      this.target = target;
      this.channel = channel;
    }

    /** Use TLS with the JVM's trusted roots instead of plaintext. */
    public Builder tls() {
      this.tls = true;
      return this;
    }

    /**
     * A deadline for each unary call, retries included. Default: none but the service
     * config's timeout (10 s), which applies too, so only a shorter one changes anything.
     */
    public Builder deadline(Duration deadline) {
      if (deadline.isNegative() || deadline.isZero()) {
        throw new IllegalArgumentException("deadline must be positive");
      }
      this.deadline = deadline;
      return this;
    }

    /**
     * The retry policy and timeout of each RPC, in gRPC's service config format (as {@link
     * JobwireClient#defaultServiceConfig()} returns it). Default: the file shipped with the
     * protos. The channel {@link JobwireClient#builder(String)} makes retries and times out
     * calls by it, and the client's own retries (an enqueue with an idempotency key, reopening
     * a watch) read their policy from it.
     */
    public Builder serviceConfig(Map<String, ?> serviceConfig) {
      this.serviceConfig = Objects.requireNonNull(serviceConfig);
      return this;
    }

    /**
     * Largest message the client's calls send or receive, in bytes (default {@link
     * JobwireClient#DEFAULT_MAX_MESSAGE_BYTES}, 64 MiB). A larger reply fails with {@code
     * RESOURCE_EXHAUSTED}. With {@link JobwireClient#builder(String)} it is also the inbound
     * limit of the channel the client makes; with {@link JobwireClient#builder(Channel)} it
     * applies to this client's own calls only.
     */
    public Builder maxMessageBytes(int maxMessageBytes) {
      if (maxMessageBytes <= 0) {
        throw new IllegalArgumentException("maxMessageBytes must be positive");
      }
      this.maxMessageBytes = maxMessageBytes;
      return this;
    }

    public JobwireClient build() {
      return new JobwireClient(this);
    }
  }
}
