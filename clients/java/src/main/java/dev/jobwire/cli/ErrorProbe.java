package dev.jobwire.cli;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.protobuf.Any;
import com.google.protobuf.ByteString;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import dev.jobwire.client.AlreadyExistsException;
import dev.jobwire.client.EnqueueResult;
import dev.jobwire.client.Errors;
import dev.jobwire.client.FailedPreconditionException;
import dev.jobwire.client.FieldViolation;
import dev.jobwire.client.InternalException;
import dev.jobwire.client.InvalidArgumentException;
import dev.jobwire.client.JobFinishedException;
import dev.jobwire.client.JobNotFoundException;
import dev.jobwire.client.JobwireClient;
import dev.jobwire.client.JobwireException;
import dev.jobwire.client.JobwireUnavailableException;
import dev.jobwire.client.LeaseLostException;
import dev.jobwire.client.PermissionDeniedException;
import dev.jobwire.client.ResourceExhaustedException;
import dev.jobwire.client.UnauthenticatedException;
import dev.jobwire.v1.AdminServiceGrpc;
import dev.jobwire.v1.AdminServiceGrpc.AdminServiceBlockingStub;
import dev.jobwire.v1.BrokerServiceGrpc;
import dev.jobwire.v1.BrokerServiceGrpc.BrokerServiceBlockingStub;
import dev.jobwire.v1.CompleteRequest;
import dev.jobwire.v1.DeleteQueueRequest;
import dev.jobwire.v1.GetQueueRequest;
import dev.jobwire.v1.LeaseRequest;
import dev.jobwire.v1.LeasedJob;
import dev.jobwire.v1.PromoteJobsRequest;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Drives every ErrorReason through the Java client and prints the error class it raised, one
 * JSON line per case, for the cross-language test ({@code tests/test_error_classes.py}):
 *
 * <pre>
 * java -cp ... dev.jobwire.cli.ErrorProbe --target HOST:PORT [--dead-target HOST:PORT] [--queue PREFIX]
 * </pre>
 *
 * <p>Every reason the broker can send is triggered for real (--dead-target: a broker whose
 * Redis is down), the AdminService's QUEUE_NOT_FOUND, WRONG_STATE and QUEUE_BUSY through the
 * generated {@link AdminServiceGrpc} stub, since the client has no admin class; the ones it
 * cannot be made to send (and CROSS_SLOT, SCHEDULE_NOT_FOUND and SCHEDULE_EXISTS until it sends
 * them), and a few fallbacks, are statuses built here. Every status is mapped
 * with {@link Errors#map}, as a call's error is. Each line: {@code {"case", "code",
 * "reason", "class" (the most specific), "is" (every class it belongs to, sorted),
 * "retry_delay_ms" (null when none), "fields"}}.
 */
public final class ErrorProbe {
  private ErrorProbe() {}

  /** The classes in the shared vocabulary, most specific first. */
  private static final Map<String, Class<? extends JobwireException>> CLASSES =
      new LinkedHashMap<>();

  static {
    CLASSES.put("lease_lost", LeaseLostException.class);
    CLASSES.put("job_finished", JobFinishedException.class);
    CLASSES.put("failed_precondition", FailedPreconditionException.class);
    CLASSES.put("invalid_argument", InvalidArgumentException.class);
    CLASSES.put("not_found", JobNotFoundException.class);
    CLASSES.put("already_exists", AlreadyExistsException.class);
    CLASSES.put("resource_exhausted", ResourceExhaustedException.class);
    CLASSES.put("unavailable", JobwireUnavailableException.class);
    CLASSES.put("unauthenticated", UnauthenticatedException.class);
    CLASSES.put("permission_denied", PermissionDeniedException.class);
    CLASSES.put("internal", InternalException.class);
  }

  private static final Gson JSON = new GsonBuilder().serializeNulls().disableHtmlEscaping().create();

  private static Map<String, Object> describe(String name, RuntimeException failure) {
    Map<String, Object> line = new LinkedHashMap<>();
    line.put("case", name);
    if (!(failure instanceof JobwireException e)) {
      line.put("class", failure == null ? "ok" : "unmapped: " + failure);
      return line;
    }
    List<String> is = new ArrayList<>();
    CLASSES.forEach(
        (className, cls) -> {
          if (cls.isInstance(e)) {
            is.add(className);
          }
        });
    line.put("code", e.code().name());
    line.put("reason", e.reason().name());
    line.put("class", is.isEmpty() ? "error" : is.get(0));
    line.put("is", is.stream().sorted().toList());
    line.put("retry_delay_ms", e.retryDelay().map(d -> d.toMillis()).orElse(null));
    line.put("fields", e.fieldViolations().stream().map(FieldViolation::field).toList());
    return line;
  }

  private static RuntimeException failure(Runnable call) {
    try {
      call.run();
      return null;
    } catch (StatusRuntimeException e) {
      return Errors.map(e);
    } catch (RuntimeException e) {
      return e;
    }
  }

  /** A status as the broker would send it, through the client's mapping. */
  private static JobwireException built(Status.Code code, String reason, String domain, Any... more) {
    com.google.rpc.Status.Builder rich =
        com.google.rpc.Status.newBuilder()
            .setCode(code.value())
            .setMessage("built by ErrorProbe");
    if (reason != null) {
      rich.addDetails(Any.pack(ErrorInfo.newBuilder().setReason(reason).setDomain(domain).build()));
    }
    for (Any a : more) {
      rich.addDetails(a);
    }
    return Errors.map(StatusProto.toStatusRuntimeException(rich.build()));
  }

  /** The AdminService's own reasons, each from the call that sends it. */
  private static void adminErrors(
      JobwireClient client,
      BrokerServiceBlockingStub raw,
      String q,
      List<Map<String, Object>> lines) {
    AdminServiceBlockingStub admin =
        AdminServiceGrpc.newBlockingStub(client.channel()).withDeadlineAfter(15, TimeUnit.SECONDS);
    GetQueueRequest never = GetQueueRequest.newBuilder().setQueue(q + "-never").build();
    lines.add(describe("QUEUE_NOT_FOUND", failure(() -> admin.getQueue(never))));

    String ready = q + "-ready";
    EnqueueResult job = client.enqueue(ready, new byte[] {'x'});
    // PromoteJobs by ids applies only to scheduled jobs; this one is ready.
    PromoteJobsRequest promote =
        PromoteJobsRequest.newBuilder().setQueue(ready).addJobIds(job.jobId()).build();
    lines.add(describe("WRONG_STATE", failure(() -> admin.promoteJobs(promote))));

    String busy = q + "-busy";
    client.enqueue(busy, new byte[] {'x'});
    int leased =
        raw.withDeadlineAfter(15, TimeUnit.SECONDS)
            .lease(
                LeaseRequest.newBuilder()
                    .setQueue(busy)
                    .setWait(com.google.protobuf.Duration.newBuilder().setSeconds(5))
                    .build())
            .getJobsCount();
    if (leased != 1) {
      throw new IllegalStateException("could not lease the job of " + busy);
    }
    DeleteQueueRequest delete = DeleteQueueRequest.newBuilder().setQueue(busy).build();
    lines.add(describe("QUEUE_BUSY", failure(() -> admin.deleteQueue(delete))));
  }

  public static void main(String[] args) {
    String target = "127.0.0.1:50051";
    String dead = null;
    String queue = "java-errors";
    for (int i = 0; i + 1 < args.length; i += 2) {
      switch (args[i]) {
        case "--target" -> target = args[i + 1];
        case "--dead-target" -> dead = args[i + 1];
        case "--queue" -> queue = args[i + 1];
        default -> {
          System.err.println("ErrorProbe: unknown flag " + args[i]);
          System.exit(2);
        }
      }
    }
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    List<Map<String, Object>> lines = new ArrayList<>();
    String q = queue;
    try (JobwireClient client = JobwireClient.builder(target).build()) {
      BrokerServiceBlockingStub raw = BrokerServiceGrpc.newBlockingStub(client.channel());
      lines.add(describe("INVALID_ARGUMENT", failure(() -> client.enqueue("bad queue!", new byte[0]))));
      lines.add(
          describe("PAYLOAD_TOO_LARGE", failure(() -> client.enqueue(q, new byte[(1 << 20) + 1]))));
      lines.add(describe("JOB_NOT_FOUND", failure(() -> client.getJob(q + ":999999"))));

      EnqueueResult job = client.enqueue(q, new byte[] {'x'});
      LeasedJob leased =
          raw.withDeadlineAfter(15, TimeUnit.SECONDS)
              .lease(
                  LeaseRequest.newBuilder()
                      .setQueue(q)
                      .setWait(com.google.protobuf.Duration.newBuilder().setSeconds(5))
                      .build())
              .getJobs(0);
      CompleteRequest.Builder complete = CompleteRequest.newBuilder().setJobId(job.jobId());
      lines.add(
          describe(
              "LEASE_LOST",
              failure(() -> raw.complete(complete.clone().setLeaseToken("not-the-token").build()))));
      raw.complete(complete.setLeaseToken(leased.getLeaseToken()).build());
      lines.add(describe("JOB_FINISHED", failure(() -> client.cancel(job.jobId()))));

      String big = q + "-big";
      client.enqueue(big, ByteString.copyFromUtf8("a job larger than one byte").toByteArray());
      lines.add(
          describe(
              "JOB_TOO_LARGE",
              failure(
                  () ->
                      raw.lease(
                          LeaseRequest.newBuilder().setQueue(big).setMaxResponseBytes(1).build()))));
      adminErrors(client, raw, q, lines);
    }
    if (dead != null) {
      try (JobwireClient down = JobwireClient.builder(dead).build()) {
        lines.add(describe("STORE_UNAVAILABLE", failure(() -> down.getJob(q + ":1"))));
      }
    }
    Any second =
        Any.pack(
            RetryInfo.newBuilder()
                .setRetryDelay(com.google.protobuf.Duration.newBuilder().setSeconds(1))
                .build());
    String d = Errors.DOMAIN;
    lines.add(describe("SHUTTING_DOWN", built(Status.Code.UNAVAILABLE, "SHUTTING_DOWN", d, second)));
    lines.add(describe("INTERNAL", built(Status.Code.INTERNAL, "INTERNAL", d)));
    lines.add(describe("UNAUTHENTICATED", built(Status.Code.UNAUTHENTICATED, "UNAUTHENTICATED", d)));
    lines.add(
        describe("PERMISSION_DENIED", built(Status.Code.PERMISSION_DENIED, "PERMISSION_DENIED", d)));
    lines.add(describe("NO_DETAILS", built(Status.Code.FAILED_PRECONDITION, null, d)));
    lines.add(describe("UNKNOWN_REASON", built(Status.Code.NOT_FOUND, "SOMETHING_NEW", d)));
    lines.add(
        describe("FOREIGN_DOMAIN", built(Status.Code.FAILED_PRECONDITION, "LEASE_LOST", "example.com")));
    lines.add(describe("REASON_OVER_CODE", built(Status.Code.UNKNOWN, "JOB_FINISHED", d)));
    lines.add(describe("ABORTED", built(Status.Code.ABORTED, null, d)));
    // TODO(broker sends them): trigger these three with real calls instead, as above.
    lines.add(describe("CROSS_SLOT", built(Status.Code.FAILED_PRECONDITION, "CROSS_SLOT", d)));
    lines.add(
        describe("SCHEDULE_NOT_FOUND", built(Status.Code.NOT_FOUND, "SCHEDULE_NOT_FOUND", d)));
    lines.add(
        describe("SCHEDULE_EXISTS", built(Status.Code.ALREADY_EXISTS, "SCHEDULE_EXISTS", d)));
    for (Map<String, Object> line : lines) {
      out.println(JSON.toJson(line));
    }
  }
}
