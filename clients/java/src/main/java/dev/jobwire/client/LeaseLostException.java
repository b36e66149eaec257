package dev.jobwire.client;

import io.grpc.Status;

/**
 * {@code FAILED_PRECONDITION} with reason {@code LEASE_LOST}: the lease expired or was taken
 * over. Stop working on the job and drop its result; retrying cannot help.
 */
public class LeaseLostException extends JobwireException {
  private static final long serialVersionUID = 1L;

  public LeaseLostException(String message, Throwable cause) {
    super(Status.Code.FAILED_PRECONDITION, "LEASE_LOST", message, cause);
  }
}
