package dev.jobwire.client;

import io.grpc.Status;

/**
 * {@code FAILED_PRECONDITION} with reason {@code JOB_FINISHED}: the job already completed or
 * went dead, so it can no longer be cancelled.
 */
public class JobFinishedException extends JobwireException {
  private static final long serialVersionUID = 1L;

  public JobFinishedException(String message, Throwable cause) {
    super(Status.Code.FAILED_PRECONDITION, "JOB_FINISHED", message, cause);
  }
}
