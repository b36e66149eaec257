package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code INVALID_ARGUMENT} (reasons {@code INVALID_ARGUMENT}, {@code PAYLOAD_TOO_LARGE}): the
 * request was malformed or out of range and nothing was written. {@link #fieldViolations()}
 * names each bad field. Fix the request; do not retry it as is.
 */
public class InvalidArgumentException extends JobwireException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public InvalidArgumentException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
