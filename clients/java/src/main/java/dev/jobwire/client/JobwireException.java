package dev.jobwire.client;

import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import java.time.Duration;
import java.util.List;
import java.util.Optional;

/**
 * A failed broker call: the base of every exception this client throws for one. Its
 * subclasses are the error classes of {@code protos/jobwire/v1/README.md}, chosen from the
 * broker's reason first, then from the gRPC code ({@link Errors#map}); a status that fits no
 * class (for example {@code DEADLINE_EXCEEDED} or {@code ABORTED}) arrives as this class
 * itself.
 */
public class JobwireException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Status.Code code;
  private final ErrorReason reason;
  private final transient Duration retryDelay;
  private final transient List<FieldViolation> fieldViolations;

  /**
   * @param code the gRPC status code of the call
   * @param reason the broker's {@code google.rpc.ErrorInfo} reason, {@code
   *     ERROR_REASON_UNSPECIFIED} if none
   * @param message a human-readable description
   * @param retryDelay the delay of {@code google.rpc.RetryInfo}, or null
   * @param fieldViolations the bad fields of {@code google.rpc.BadRequest}, possibly empty
   * @param cause the underlying gRPC exception
   */
  public JobwireException(
      Status.Code code,
      ErrorReason reason,
      String message,
      Duration retryDelay,
      List<FieldViolation> fieldViolations,
      Throwable cause) {
    super(message, cause);
    this.code = code;
    this.reason = reason;
    this.retryDelay = retryDelay;
    this.fieldViolations = List.copyOf(fieldViolations);
  }

  /** The gRPC status code the broker (or the transport) returned. */
  public Status.Code code() {
    return code;
  }

  /**
   * The broker's reason from {@code google.rpc.ErrorInfo}, such as {@code LEASE_LOST} or
   * {@code PAYLOAD_TOO_LARGE}; {@code ERROR_REASON_UNSPECIFIED} when the status carried none,
   * or one this client does not know.
   */
  public ErrorReason reason() {
    return reason;
  }

  /** The delay the broker asked for with {@code google.rpc.RetryInfo}, if it sent one. */
  public Optional<Duration> retryDelay() {
    return Optional.ofNullable(retryDelay);
  }

  /** Each bad field of an {@code INVALID_ARGUMENT}, in the broker's order; empty otherwise. */
  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }
}
