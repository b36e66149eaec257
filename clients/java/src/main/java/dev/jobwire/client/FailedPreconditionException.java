package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;

/**
 * {@code FAILED_PRECONDITION}: the job or queue is not in a state that allows the call. {@link
 * LeaseLostException} and {@link JobFinishedException} are its subclasses; {@code WRONG_STATE}
 * (an admin operation on a job in the wrong state), {@code QUEUE_BUSY} (the queue has active
 * jobs) and {@code CROSS_SLOT} (on Redis Cluster, a flow or a dependency would join jobs of more
 * than one queue) are this class alone.
 */
public class FailedPreconditionException extends JobwireException {
  private static final long serialVersionUID = 1L;

  /** See {@link JobwireException#JobwireException}. */
  public FailedPreconditionException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(code, reason, message, retryDelay, fieldViolations, cause);
  }
}
