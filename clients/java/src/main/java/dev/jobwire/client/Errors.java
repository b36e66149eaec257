package dev.jobwire.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/**
 * The one place where gRPC statuses become this client's exceptions: the class comes from the
 * broker's reason (the generated {@link ErrorReason}) first, then from the gRPC code. Use
 * {@link #map} on calls made through {@link JobwireClient#channel()}.
 */
public final class Errors {
  private Errors() {}

  /** {@code google.rpc.ErrorInfo.domain} of the broker's errors; other domains' reasons are not read. */
  public static final String DOMAIN = "jobwire.dev";

  /** A constructor of one error class. */
  @FunctionalInterface
  interface ErrorClass {
    JobwireException create(
        Status.Code code,
        ErrorReason reason,
        String message,
        Duration retryDelay,
        List<FieldViolation> fieldViolations,
        Throwable cause);
  }

  /**
   * The class of each reason. Keyed by the generated enum; ErrorsTest checks that every value
   * but {@code ERROR_REASON_UNSPECIFIED} (which falls back to the code) is here.
   */
  static final Map<ErrorReason, ErrorClass> BY_REASON = new EnumMap<>(ErrorReason.class);

  /** The class of a status whose reason is unspecified or unknown. */
  static final Map<Status.Code, ErrorClass> BY_CODE = new EnumMap<>(Status.Code.class);

  static {
    BY_REASON.put(ErrorReason.INVALID_ARGUMENT, InvalidArgumentException::new);
    BY_REASON.put(ErrorReason.PAYLOAD_TOO_LARGE, InvalidArgumentException::new);
    BY_REASON.put(ErrorReason.JOB_NOT_FOUND, JobNotFoundException::new);
    BY_REASON.put(ErrorReason.LEASE_LOST, LeaseLostException::new);
    BY_REASON.put(ErrorReason.JOB_FINISHED, JobFinishedException::new);
    BY_REASON.put(ErrorReason.JOB_TOO_LARGE, ResourceExhaustedException::new);
    BY_REASON.put(ErrorReason.STORE_UNAVAILABLE, JobwireUnavailableException::new);
    BY_REASON.put(ErrorReason.SHUTTING_DOWN, JobwireUnavailableException::new);
    BY_REASON.put(ErrorReason.INTERNAL, InternalException::new);
    BY_REASON.put(ErrorReason.UNAUTHENTICATED, UnauthenticatedException::new);
    BY_REASON.put(ErrorReason.PERMISSION_DENIED, PermissionDeniedException::new);
    BY_REASON.put(ErrorReason.QUEUE_NOT_FOUND, JobNotFoundException::new);
    BY_REASON.put(ErrorReason.WRONG_STATE, FailedPreconditionException::new);
    BY_REASON.put(ErrorReason.QUEUE_BUSY, FailedPreconditionException::new);
    BY_REASON.put(ErrorReason.CROSS_SLOT, FailedPreconditionException::new);
    BY_REASON.put(ErrorReason.SCHEDULE_NOT_FOUND, JobNotFoundException::new);
    BY_REASON.put(ErrorReason.SCHEDULE_EXISTS, AlreadyExistsException::new);

    BY_CODE.put(Status.Code.INVALID_ARGUMENT, InvalidArgumentException::new);
    BY_CODE.put(Status.Code.NOT_FOUND, JobNotFoundException::new);
    BY_CODE.put(Status.Code.ALREADY_EXISTS, AlreadyExistsException::new);
    BY_CODE.put(Status.Code.FAILED_PRECONDITION, FailedPreconditionException::new);
    BY_CODE.put(Status.Code.RESOURCE_EXHAUSTED, ResourceExhaustedException::new);
    BY_CODE.put(Status.Code.UNAVAILABLE, JobwireUnavailableException::new);
    BY_CODE.put(Status.Code.UNAUTHENTICATED, UnauthenticatedException::new);
    BY_CODE.put(Status.Code.PERMISSION_DENIED, PermissionDeniedException::new);
    BY_CODE.put(Status.Code.INTERNAL, InternalException::new);
  }

  /** The generated enum value of a reason string; unknown strings are unspecified. */
  static ErrorReason parseReason(String reason) {
    try {
      ErrorReason parsed = ErrorReason.valueOf(reason);
      return parsed == ErrorReason.UNRECOGNIZED ? ErrorReason.ERROR_REASON_UNSPECIFIED : parsed;
    } catch (IllegalArgumentException unknown) {
      return ErrorReason.ERROR_REASON_UNSPECIFIED;
    }
  }

  /** Maps a failed call's exception to the exception of its class. */
  public static JobwireException map(StatusRuntimeException e) {
    Status status = e.getStatus();
    // A request over the outbound limit is cancelled by gRPC-Java ("Failed to stream
    // message") with the framer's RESOURCE_EXHAUSTED as the cause: report that instead.
    if (status.getCode() == Status.Code.CANCELLED
        && status.getCause() instanceof StatusRuntimeException cause
        && cause.getStatus().getCode() == Status.Code.RESOURCE_EXHAUSTED) {
      return map(cause);
    }
    ErrorReason reason = ErrorReason.ERROR_REASON_UNSPECIFIED;
    List<FieldViolation> violations = new ArrayList<>();
    Duration retryDelay = null;
    com.google.rpc.Status rich = StatusProto.fromThrowable(e);
    if (rich != null) {
      for (Any any : rich.getDetailsList()) {
        try {
          if (any.is(ErrorInfo.class)) {
            ErrorInfo info = any.unpack(ErrorInfo.class);
            if (DOMAIN.equals(info.getDomain())) {
              reason = parseReason(info.getReason());
            }
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
    String message = status.getDescription() != null ? status.getDescription() : status.toString();
    ErrorClass cls = BY_REASON.get(reason);
    if (cls == null) {
      cls = BY_CODE.getOrDefault(status.getCode(), JobwireException::new);
    }
    return cls.create(status.getCode(), reason, message, retryDelay, violations, e);
  }
}
