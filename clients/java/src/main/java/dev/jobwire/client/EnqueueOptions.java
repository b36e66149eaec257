package dev.jobwire.client;

import dev.jobwire.v1.JobSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Objects;

/**
 * Everything about a job except its queue and payload. Unset values take the broker's
 * defaults (priority 0, ready now, 3 attempts, exponential backoff from 1 s, 30 s leases).
 *
 * <pre>{@code
 * EnqueueOptions.builder()
 *     .contentType("application/json")
 *     .priority(10)
 *     .maxAttempts(5)
 *     .backoff(Backoff.exponential(Duration.ofSeconds(2), Duration.ofMinutes(5), 2))
 *     .idempotencyKey("invoice-42")
 *     .header("tenant", "acme")
 *     .build();
 * }</pre>
 */
public final class EnqueueOptions {
  private static final EnqueueOptions DEFAULTS = builder().build();

  private final String contentType;
  private final Map<String, String> headers;
  private final int priority;
  private final Duration delay;
  private final Instant runTime;
  private final int maxAttempts;
  private final Backoff backoff;
  private final Duration leaseDuration;
  private final Duration executionTimeout;
  private final String idempotencyKey;
  private final Duration idempotencyWindow;

  private EnqueueOptions(Builder b) {
    this.contentType = b.contentType;
    this.headers = Map.copyOf(b.headers);
    this.priority = b.priority;
    this.delay = b.delay;
    this.runTime = b.runTime;
    this.maxAttempts = b.maxAttempts;
    this.backoff = b.backoff;
    this.leaseDuration = b.leaseDuration;
    this.executionTimeout = b.executionTimeout;
    this.idempotencyKey = b.idempotencyKey;
    this.idempotencyWindow = b.idempotencyWindow;
  }

  /** No options: every broker default. */
  public static EnqueueOptions defaults() {
    return DEFAULTS;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** The idempotency key, or "" when none was set. */
  public String idempotencyKey() {
    return idempotencyKey;
  }

  /** The headers, unmodifiable. */
  public Map<String, String> headers() {
    return headers;
  }

  /** The job spec these options describe, around {@code payload}; no trace context yet. */
  JobSpec.Builder toSpec(byte[] payload) {
    JobSpec.Builder spec =
        JobSpec.newBuilder()
            .setPayload(com.google.protobuf.ByteString.copyFrom(payload))
            .setContentType(contentType)
            .putAllHeaders(headers)
            .setPriority(priority)
            .setMaxAttempts(maxAttempts)
            .setIdempotencyKey(idempotencyKey);
    if (delay != null) {
      spec.setDelay(Protos.duration(delay));
    }
    if (runTime != null) {
      spec.setRunTime(Protos.timestamp(runTime));
    }
    if (backoff != null) {
      spec.setBackoff(backoff.toProto());
    }
    if (leaseDuration != null) {
      spec.setLeaseDuration(Protos.duration(leaseDuration));
    }
    if (executionTimeout != null) {
      spec.setExecutionTimeout(Protos.duration(executionTimeout));
    }
    if (idempotencyWindow != null) {
      spec.setIdempotencyWindow(Protos.duration(idempotencyWindow));
    }
    return spec;
  }

  /** Builds {@link EnqueueOptions}. Limits are checked by the broker, which names the field. */
  public static final class Builder {
    private String contentType = "";
    private final Map<String, String> headers = new LinkedHashMap<>();
    private int priority;
    private Duration delay;
    private Instant runTime;
    private int maxAttempts;
    private Backoff backoff;
    private Duration leaseDuration;
    private Duration executionTimeout;
    private String idempotencyKey = "";
    private Duration idempotencyWindow;

    private Builder() {}

    /** MIME type of the payload, e.g. {@code application/json}. */
    public Builder contentType(String contentType) {
      this.contentType = Objects.requireNonNull(contentType);
      return this;
    }

    /** Adds a string header passed to the worker unchanged. */
    public Builder header(String key, String value) {
      headers.put(Objects.requireNonNull(key), Objects.requireNonNull(value));
      return this;
    }

    /** Adds every entry of {@code headers}. */
    public Builder headers(Map<String, String> headers) {
      headers.forEach(this::header);
      return this;
    }

    /** Higher runs first, in [-1000, 1000]; equal priorities run in enqueue order. */
    public Builder priority(int priority) {
      this.priority = priority;
      return this;
    }

    /** Wait this long before the job becomes ready. */
    public Builder delay(Duration delay) {
      this.delay = Objects.requireNonNull(delay);
      return this;
    }

    /** Do not run before this time; the later of delay and run time wins. */
    public Builder runTime(Instant runTime) {
      this.runTime = Objects.requireNonNull(runTime);
      return this;
    }

    /** Attempts in all, the first included, in [1, 1000]. */
    public Builder maxAttempts(int maxAttempts) {
      this.maxAttempts = maxAttempts;
      return this;
    }

    /** Delay policy between attempts. */
    public Builder backoff(Backoff backoff) {
      this.backoff = Objects.requireNonNull(backoff);
      return this;
    }

    /** How long one lease lasts without a heartbeat. */
    public Builder leaseDuration(Duration leaseDuration) {
      this.leaseDuration = Objects.requireNonNull(leaseDuration);
      return this;
    }

    /** Hard limit on one attempt, enforced even while the worker heartbeats. */
    public Builder executionTimeout(Duration executionTimeout) {
      this.executionTimeout = Objects.requireNonNull(executionTimeout);
      return this;
    }

    /**
     * A second enqueue with this key in the same queue within the window returns the first
     * job. Setting a key also lets the client retry the enqueue when the broker is
     * unavailable.
     */
    public Builder idempotencyKey(String idempotencyKey) {
      this.idempotencyKey = Objects.requireNonNull(idempotencyKey);
      return this;
    }

    /** How long the idempotency key is remembered (broker default 24 h). */
    public Builder idempotencyWindow(Duration idempotencyWindow) {
      this.idempotencyWindow = Objects.requireNonNull(idempotencyWindow);
      return this;
    }

    public EnqueueOptions build() {
      return new EnqueueOptions(this);
    }
  }
}
