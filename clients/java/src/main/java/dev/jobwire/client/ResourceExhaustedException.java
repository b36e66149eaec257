package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code RESOURCE_EXHAUSTED} (for example {@code JOB_TOO_LARGE}: the first ready job does not
 * fit the Lease reply the caller allowed). Retrying as is fails the same way.
 */
public class ResourceExhaustedException extends JobwireException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public ResourceExhaustedException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
