package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code ALREADY_EXISTS} ({@code SCHEDULE_EXISTS}): CreateSchedule named a schedule that
 * exists. Nothing was written; update it instead, or delete it first.
 */
public class AlreadyExistsException extends JobwireException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public AlreadyExistsException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
