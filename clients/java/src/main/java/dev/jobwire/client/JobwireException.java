package dev.jobwire.client;

import io.grpc.Status;

/**
 * A failed broker call. Subclasses name the cases a caller acts on; anything else (for
 * example {@code DEADLINE_EXCEEDED} or {@code INTERNAL}) arrives as this class itself.
 */
public class JobwireException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final String reason;

  /**
   * @param code the gRPC status code of the call
   * @param reason the broker's stable {@code google.rpc.ErrorInfo} reason, or "" if none
   * @param message a human-readable description
   * @param cause the underlying gRPC exception
   */
  public JobwireException(Status.Code code, String reason, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
    this.reason = reason;
  }

  /** The gRPC status code the broker (or the transport) returned. */
  public Status.Code code() {
    return code;
  }

  /**
   * The stable machine-readable reason from {@code google.rpc.ErrorInfo}, such as
   * {@code LEASE_LOST} or {@code PAYLOAD_TOO_LARGE}; empty when the status carried none.
   */
  public String reason() {
    return reason;
  }
}
