package dev.jobwire.client;

import dev.jobwire.v1.BackoffKind;
import dev.jobwire.v1.BackoffPolicy;
import java.time.Duration;
import java.util.Objects;

/**
 * How long the broker waits between attempts of a failed job. Build one with {@link
 * #fixed}, {@link #linear} or {@link #exponential}; {@link #withJitter} takes a random
 * fraction off each delay.
 */
public final class Backoff {
  private final BackoffPolicy policy;

  private Backoff(BackoffPolicy policy) {
    this.policy = policy;
  }

  /** Every retry waits {@code delay}. */
  public static Backoff fixed(Duration delay) {
    return new Backoff(
        BackoffPolicy.newBuilder()
            .setKind(BackoffKind.BACKOFF_KIND_FIXED)
            .setInitialDelay(Protos.duration(delay))
            .build());
  }

  /** Retry n waits {@code initial * n}, at most {@code max}. */
  public static Backoff linear(Duration initial, Duration max) {
    return new Backoff(
        BackoffPolicy.newBuilder()
            .setKind(BackoffKind.BACKOFF_KIND_LINEAR)
            .setInitialDelay(Protos.duration(initial))
            .setMaxDelay(Protos.duration(max))
            .build());
  }

  /** Retry n waits {@code initial * multiplier^(n-1)}, at most {@code max}. */
  public static Backoff exponential(Duration initial, Duration max, double multiplier) {
    return new Backoff(
        BackoffPolicy.newBuilder()
            .setKind(BackoffKind.BACKOFF_KIND_EXPONENTIAL)
            .setInitialDelay(Protos.duration(initial))
            .setMaxDelay(Protos.duration(max))
            .setMultiplier(multiplier)
            .build());
  }

  /** The same policy with a random fraction in [0, {@code jitter}] taken off each delay. */
  public Backoff withJitter(double jitter) {
    return new Backoff(policy.toBuilder().setJitter(jitter).build());
  }

  /** The wire form. */
  public BackoffPolicy toProto() {
    return policy;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Backoff other && policy.equals(other.policy);
  }

  @Override
  public int hashCode() {
    return Objects.hash(policy);
  }

  @Override
  public String toString() {
    return "Backoff{" + policy.toString().replace('\n', ' ').trim() + "}";
  }
}
