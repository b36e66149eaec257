package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code UNAVAILABLE} ({@code STORE_UNAVAILABLE}, {@code SHUTTING_DOWN}): the broker could not
 * be reached, or it could not reach its store. Calls the service config retries were already
 * retried; {@link #retryDelay()} is the broker's hint for a retry of your own. An {@code
 * enqueue} without an idempotency key is not retried, because the job may have been written
 * before the connection broke: set a key to make it safe to retry.
 */
public class JobwireUnavailableException extends JobwireException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public JobwireUnavailableException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
