package dev.jobwire.client;

import io.grpc.Status;

/** {@code NOT_FOUND}: the job never existed or was removed by retention. */
public class JobNotFoundException extends JobwireException {
  private static final long serialVersionUID = 1L;

  public JobNotFoundException(String reason, String message, Throwable cause) {
    super(Status.Code.NOT_FOUND, reason, message, cause);
  }
}
