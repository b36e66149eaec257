package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code JOB_FINISHED}: the job already completed or went dead, so it can no longer be
 * cancelled.
 */
public class JobFinishedException extends FailedPreconditionException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public JobFinishedException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
