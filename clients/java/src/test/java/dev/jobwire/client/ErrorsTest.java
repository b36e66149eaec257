package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.jobwire.v1.ErrorReason;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The error classes come from the generated ErrorReason first, then from the gRPC code. */
class ErrorsTest {
  /** The gRPC code the proto documents for each reason. */
  private static final Map<ErrorReason, Status.Code> CODE_OF_REASON =
      new EnumMap<>(
          Map.ofEntries(
              Map.entry(ErrorReason.INVALID_ARGUMENT, Status.Code.INVALID_ARGUMENT),
              Map.entry(ErrorReason.PAYLOAD_TOO_LARGE, Status.Code.INVALID_ARGUMENT),
              Map.entry(ErrorReason.JOB_NOT_FOUND, Status.Code.NOT_FOUND),
              Map.entry(ErrorReason.LEASE_LOST, Status.Code.FAILED_PRECONDITION),
              Map.entry(ErrorReason.JOB_FINISHED, Status.Code.FAILED_PRECONDITION),
              Map.entry(ErrorReason.JOB_TOO_LARGE, Status.Code.RESOURCE_EXHAUSTED),
              Map.entry(ErrorReason.STORE_UNAVAILABLE, Status.Code.UNAVAILABLE),
              Map.entry(ErrorReason.SHUTTING_DOWN, Status.Code.UNAVAILABLE),
              Map.entry(ErrorReason.INTERNAL, Status.Code.INTERNAL),
              Map.entry(ErrorReason.UNAUTHENTICATED, Status.Code.UNAUTHENTICATED),
              Map.entry(ErrorReason.PERMISSION_DENIED, Status.Code.PERMISSION_DENIED),
              Map.entry(ErrorReason.QUEUE_NOT_FOUND, Status.Code.NOT_FOUND),
              Map.entry(ErrorReason.WRONG_STATE, Status.Code.FAILED_PRECONDITION),
              Map.entry(ErrorReason.QUEUE_BUSY, Status.Code.FAILED_PRECONDITION),
              Map.entry(ErrorReason.CROSS_SLOT, Status.Code.FAILED_PRECONDITION),
              Map.entry(ErrorReason.SCHEDULE_NOT_FOUND, Status.Code.NOT_FOUND),
              Map.entry(ErrorReason.SCHEDULE_EXISTS, Status.Code.ALREADY_EXISTS)));

  /** A status as the broker sends it: a code, an ErrorInfo, more details. */
  static StatusRuntimeException status(Status.Code code, String reason, String domain, Any... more) {
    com.google.rpc.Status.Builder rich =
        com.google.rpc.Status.newBuilder().setCode(code.value()).setMessage("boom");
    if (reason != null) {
      rich.addDetails(Any.pack(ErrorInfo.newBuilder().setReason(reason).setDomain(domain).build()));
    }
    for (Any a : more) {
      rich.addDetails(a);
    }
    return StatusProto.toStatusRuntimeException(rich.build());
  }

  static JobwireException mapped(Status.Code code, String reason) {
    return Errors.map(status(code, reason, Errors.DOMAIN));
  }

  @Test
  void everyValueOfTheGeneratedEnumHasAClass() {
    for (ErrorReason reason : ErrorReason.values()) {
      if (reason == ErrorReason.UNRECOGNIZED) {
        continue;
      }
      if (reason == ErrorReason.ERROR_REASON_UNSPECIFIED) {
        assertFalse(Errors.BY_REASON.containsKey(reason), "UNSPECIFIED falls back to the code");
        continue;
      }
      assertTrue(Errors.BY_REASON.containsKey(reason), reason + " has no class in Errors.BY_REASON");
      Status.Code code = CODE_OF_REASON.get(reason);
      assertNotNull(code, reason + ": add its documented gRPC code to CODE_OF_REASON");
      JobwireException e = mapped(code, reason.name());
      assertEquals(reason, e.reason());
      assertEquals(code, e.code());
      // The reason decides, whatever the code says.
      assertSame(e.getClass(), mapped(Status.Code.UNKNOWN, reason.name()).getClass(), reason.name());
    }
  }

  @Test
  void theHierarchyAndTheFallbacks() {
    JobwireException lost = mapped(Status.Code.FAILED_PRECONDITION, "LEASE_LOST");
    assertInstanceOf(LeaseLostException.class, lost);
    assertInstanceOf(FailedPreconditionException.class, lost);
    JobwireException finished = mapped(Status.Code.FAILED_PRECONDITION, "JOB_FINISHED");
    assertInstanceOf(JobFinishedException.class, finished);
    assertInstanceOf(FailedPreconditionException.class, finished);

    // The admin reasons are the generic classes, not a lease lost or a finished job.
    for (String reason : List.of("WRONG_STATE", "QUEUE_BUSY", "CROSS_SLOT")) {
      assertSame(
          FailedPreconditionException.class,
          mapped(Status.Code.FAILED_PRECONDITION, reason).getClass(),
          reason);
    }
    assertSame(
        JobNotFoundException.class, mapped(Status.Code.NOT_FOUND, "QUEUE_NOT_FOUND").getClass());
    assertSame(
        JobNotFoundException.class,
        mapped(Status.Code.NOT_FOUND, "SCHEDULE_NOT_FOUND").getClass());
    assertSame(
        AlreadyExistsException.class,
        mapped(Status.Code.ALREADY_EXISTS, "SCHEDULE_EXISTS").getClass());
    assertSame(
        AlreadyExistsException.class, mapped(Status.Code.ALREADY_EXISTS, null).getClass());

    JobwireException bare = mapped(Status.Code.FAILED_PRECONDITION, null);
    assertSame(FailedPreconditionException.class, bare.getClass());
    assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, bare.reason());
    JobwireException unknown = mapped(Status.Code.NOT_FOUND, "SOMETHING_NEW");
    assertSame(JobNotFoundException.class, unknown.getClass());
    assertEquals(ErrorReason.ERROR_REASON_UNSPECIFIED, unknown.reason());
    JobwireException foreign =
        Errors.map(status(Status.Code.FAILED_PRECONDITION, "LEASE_LOST", "example.com"));
    assertSame(FailedPreconditionException.class, foreign.getClass());
    assertSame(JobwireException.class, mapped(Status.Code.ABORTED, null).getClass());
  }

  @Test
  void fieldViolationsAndRetryDelay() {
    Any bad =
        Any.pack(
            BadRequest.newBuilder()
                .addFieldViolations(
                    BadRequest.FieldViolation.newBuilder().setField("queue").setDescription("bad"))
                .build());
    JobwireException invalid =
        Errors.map(status(Status.Code.INVALID_ARGUMENT, "PAYLOAD_TOO_LARGE", Errors.DOMAIN, bad));
    assertInstanceOf(InvalidArgumentException.class, invalid);
    assertEquals(List.of(new FieldViolation("queue", "bad")), invalid.fieldViolations());

    Any retry =
        Any.pack(
            RetryInfo.newBuilder()
                .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(1))
                .build());
    JobwireException down =
        Errors.map(status(Status.Code.UNAVAILABLE, "SHUTTING_DOWN", Errors.DOMAIN, retry));
    assertInstanceOf(JobwireUnavailableException.class, down);
    assertEquals(Duration.ofSeconds(1), down.retryDelay().orElseThrow());
  }
}
