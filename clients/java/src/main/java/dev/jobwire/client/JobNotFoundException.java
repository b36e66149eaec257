package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code NOT_FOUND}: the job never existed or was removed by retention ({@code JOB_NOT_FOUND}),
 * the queue does not exist ({@code QUEUE_NOT_FOUND}), or the schedule does not ({@code
 * SCHEDULE_NOT_FOUND}). The class of every {@code NOT_FOUND}, despite its name.
 */
public class JobNotFoundException extends JobwireException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public JobNotFoundException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
