package dev.jobwire.client;

import io.grpc.Status;
import java.time.Duration;
import java.util.Optional;

/**
 * {@code UNAVAILABLE}: the broker could not be reached, or it could not reach its store.
 * Idempotent calls were already retried with backoff before this was thrown. An
 * {@code enqueue} without an idempotency key is not retried, because the job may have been
 * written before the connection broke: set a key to make it safe to retry.
 */
public class JobwireUnavailableException extends JobwireException {
  private static final long serialVersionUID = 1L;

  private final transient Duration retryDelay;

  public JobwireUnavailableException(
      String reason, String message, Duration retryDelay, Throwable cause) {
    super(Status.Code.UNAVAILABLE, reason, message, cause);
    this.retryDelay = retryDelay;
  }

  /** The delay the broker asked for with {@code google.rpc.RetryInfo}, if it sent one. */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }
}
