package dev.jobwire.client;

import io.grpc.Status;
import java.util.List;

/**
 * {@code INVALID_ARGUMENT}: the request was malformed or out of range and nothing was
 * written. {@link #fieldViolations()} names each bad field. Fix the request; do not retry it
 * as is. The reason is {@code PAYLOAD_TOO_LARGE} when the payload broke the broker's limit.
 */
public class InvalidArgumentException extends JobwireException {
  private static final long serialVersionUID = 1L;

  private final List<FieldViolation> fieldViolations;

  public InvalidArgumentException(
      String reason, String message, List<FieldViolation> fieldViolations, Throwable cause) {
    super(Status.Code.INVALID_ARGUMENT, reason, message, cause);
    this.fieldViolations = List.copyOf(fieldViolations);
  }

  /** Each bad field, in the order the broker reported them. */
  public List<FieldViolation> fieldViolations() {
    return fieldViolations;
  }
}
