package dev.jobwire.client;

import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;

/** Exponential backoff with full jitter for retrying UNAVAILABLE, honouring RetryInfo. */
record RetryPolicy(int maxRetries, Duration initialBackoff, Duration maxBackoff) {

  /** The pause before retry number {@code retry} (0-based). */
  Duration pause(int retry, Duration serverHint) {
    long capMillis = maxBackoff.toMillis();
    long ceiling =
        Math.min(capMillis, initialBackoff.toMillis() << Math.min(retry, 20));
    long pause = ThreadLocalRandom.current().nextLong(ceiling / 2, ceiling + 1);
    if (serverHint != null) {
      // The broker knows best how long its store needs; stay within our own cap.
      pause = Math.max(pause, Math.min(serverHint.toMillis(), capMillis));
    }
    return Duration.ofMillis(pause);
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
