package dev.jobwire.client;

import io.grpc.Status;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * A {@code retryPolicy} of the service config, for the retries the client makes itself (an
 * enqueue with an idempotency key, reopening a watch); gRPC reads the same JSON for the calls
 * it retries.
 */
record RetryPolicy(
    int maxAttempts,
    Duration initialBackoff,
    Duration maxBackoff,
    double multiplier,
    Set<Status.Code> retryableCodes) {

  boolean retries(Status.Code code) {
    return retryableCodes.contains(code);
  }

  /**
   * The pause before retry {@code n} (from 1): the initial backoff times multiplier^(n-1), at
   * most the maximum, jittered by ±20% as gRPC does. A longer hint from the broker ({@code
   * RetryInfo}) wins, up to the maximum.
   */
  Duration pause(int n, Duration serverHint) {
    double step = initialBackoff.toNanos();
    for (int i = 1; i < n; i++) {
      step = Math.min(step * Math.max(multiplier, 1), maxBackoff.toNanos());
    }
    long pause = (long) (step * ThreadLocalRandom.current().nextDouble(0.8, 1.2));
    if (serverHint != null) {
      pause = Math.max(pause, Math.min(serverHint.toNanos(), maxBackoff.toNanos()));
    }
    return Duration.ofNanos(pause);
  }

  static void sleep(Duration pause, JobwireException failure) {
    try {
      Thread.sleep(pause.toMillis());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      failure.addSuppressed(e);
      throw failure;
    }
  }
}
