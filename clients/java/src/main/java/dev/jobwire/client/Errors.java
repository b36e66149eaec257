package dev.jobwire.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** The one place where gRPC statuses become this client's exceptions. */
final class Errors {
  private Errors() {}

  /** The rich details of a failed call, decoded once. */
  record Details(String reason, List<FieldViolation> violations, Duration retryDelay) {
    static Details of(StatusRuntimeException e) {
      String reason = "";
      List<FieldViolation> violations = new ArrayList<>();
      Duration retryDelay = null;
      com.google.rpc.Status rich = StatusProto.fromThrowable(e);
      if (rich != null) {
        for (Any any : rich.getDetailsList()) {
          try {
            if (any.is(ErrorInfo.class)) {
              reason = any.unpack(ErrorInfo.class).getReason();
            } else if (any.is(BadRequest.class)) {
              for (BadRequest.FieldViolation v :
                  any.unpack(BadRequest.class).getFieldViolationsList()) {
                violations.add(new FieldViolation(v.getField(), v.getDescription()));
              }
            } else if (any.is(RetryInfo.class)) {
              com.google.protobuf.Duration d = any.unpack(RetryInfo.class).getRetryDelay();
              retryDelay = Duration.ofSeconds(d.getSeconds(), d.getNanos());
            }
          } catch (InvalidProtocolBufferException ignored) {
            // A detail we cannot decode tells us nothing; the status code still stands.
          }
        }
      }
      return new Details(reason, violations, retryDelay);
    }
  }

  static JobwireException map(StatusRuntimeException e) {
    Status status = e.getStatus();
    // A request over the outbound limit is cancelled by gRPC-Java ("Failed to stream
    // message") with the framer's RESOURCE_EXHAUSTED as the cause: report that instead.
    if (status.getCode() == Status.Code.CANCELLED
        && status.getCause() instanceof StatusRuntimeException cause
        && cause.getStatus().getCode() == Status.Code.RESOURCE_EXHAUSTED) {
      return map(cause);
    }
    Details details = Details.of(e);
    String message = status.getDescription() != null ? status.getDescription() : status.toString();
    switch (status.getCode()) {
      case NOT_FOUND:
        return new JobNotFoundException(details.reason(), message, e);
      case INVALID_ARGUMENT:
        return new InvalidArgumentException(details.reason(), message, details.violations(), e);
      case UNAVAILABLE:
        return new JobwireUnavailableException(
            details.reason(), message, details.retryDelay(), e);
      case FAILED_PRECONDITION:
        if ("LEASE_LOST".equals(details.reason())) {
          return new LeaseLostException(message, e);
        }
        if ("JOB_FINISHED".equals(details.reason())) {
          return new JobFinishedException(message, e);
        }
        return new JobwireException(status.getCode(), details.reason(), message, e);
      default:
        return new JobwireException(status.getCode(), details.reason(), message, e);
    }
  }
}
