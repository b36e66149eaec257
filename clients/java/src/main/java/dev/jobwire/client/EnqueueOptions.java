package dev.jobwire.client;

import dev.jobwire.v1.DependencyFailurePolicy;
import dev.jobwire.v1.IdempotencyMode;
import dev.jobwire.v1.JobSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
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
  private final IdempotencyMode idempotencyMode;
  private final Instant startDeadline;
  private final String concurrencyKey;
  private final int concurrencyLimit;
  private final List<String> dependsOn;
  private final DependencyFailurePolicy onDependencyFailure;

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
    this.idempotencyMode = b.idempotencyMode;
    this.startDeadline = b.startDeadline;
    this.concurrencyKey = b.concurrencyKey;
    this.concurrencyLimit = b.concurrencyLimit;
    this.dependsOn = List.copyOf(b.dependsOn);
    this.onDependencyFailure = b.onDependencyFailure;
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
            .setIdempotencyKey(idempotencyKey)
            .setIdempotencyMode(idempotencyMode)
            .setConcurrencyKey(concurrencyKey)
            .setConcurrencyLimit(concurrencyLimit)
            .addAllDependsOn(dependsOn)
            .setOnDependencyFailure(onDependencyFailure);
    if (startDeadline != null) {
      spec.setStartDeadline(Protos.timestamp(startDeadline));
    }
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
    private IdempotencyMode idempotencyMode = IdempotencyMode.IDEMPOTENCY_MODE_UNSPECIFIED;
    private Instant startDeadline;
    private String concurrencyKey = "";
    private int concurrencyLimit;
    private final List<String> dependsOn = new ArrayList<>();
    private DependencyFailurePolicy onDependencyFailure =
        DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_UNSPECIFIED;

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

    /**
     * What a second enqueue with the same idempotency key does (broker default {@code
     * IDEMPOTENCY_MODE_FIRST}): {@code REPLACE} debounces, {@code EXTEND} restarts the window.
     */
    public Builder idempotencyMode(IdempotencyMode idempotencyMode) {
      this.idempotencyMode = Objects.requireNonNull(idempotencyMode);
      return this;
    }

    /** Drop the job (state {@code EXPIRED}) if no worker has leased it by this time. */
    public Builder startDeadline(Instant startDeadline) {
      this.startDeadline = Objects.requireNonNull(startDeadline);
      return this;
    }

    /**
     * Jobs of the queue with this key run at most their concurrency limit at a time; Lease
     * serves other keys past a key at its limit, round-robin. At most 256 bytes.
     */
    public Builder concurrencyKey(String concurrencyKey) {
      this.concurrencyKey = Objects.requireNonNull(concurrencyKey);
      return this;
    }

    /**
     * Active jobs allowed per concurrency key, in [1, 10,000] (0: the queue's, else 1).
     * Ignored without a key.
     */
    public Builder concurrencyLimit(int concurrencyLimit) {
      this.concurrencyLimit = concurrencyLimit;
      return this;
    }

    /** Adds jobs this one waits for ({@code WAITING}) until they have all completed. */
    public Builder dependsOn(String... jobIds) {
      for (String id : jobIds) {
        dependsOn.add(Objects.requireNonNull(id));
      }
      return this;
    }

    /** What happens when a dependency ends without completing (broker default: fail). */
    public Builder onDependencyFailure(DependencyFailurePolicy onDependencyFailure) {
      this.onDependencyFailure = Objects.requireNonNull(onDependencyFailure);
      return this;
    }

    public EnqueueOptions build() {
      return new EnqueueOptions(this);
    }
  }
}
