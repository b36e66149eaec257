package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.ByteString;
import dev.jobwire.v1.BackoffKind;
import dev.jobwire.v1.BrokerServiceGrpc;
import dev.jobwire.v1.BrokerServiceGrpc.BrokerServiceBlockingStub;
import dev.jobwire.v1.CompleteRequest;
import dev.jobwire.v1.ErrorReason;
import dev.jobwire.v1.EventKind;
import dev.jobwire.v1.HeartbeatRequest;
import dev.jobwire.v1.Job;
import dev.jobwire.v1.JobState;
import dev.jobwire.v1.LeaseRequest;
import dev.jobwire.v1.LeasedJob;
import dev.jobwire.v1.Progress;
import dev.jobwire.v1.StreamProgressResponse;
import io.grpc.StatusRuntimeException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

@ExtendWith(BrokerExtension.class)
@Timeout(60)
class JobwireClientTest {
  private JobwireClient client;
  private BrokerServiceBlockingStub raw;
  private String queue;

  @BeforeEach
  void connect(Broker broker) {
    client = JobwireClient.builder(broker.target()).deadline(Duration.ofSeconds(5)).build();
    raw = BrokerServiceGrpc.newBlockingStub(client.channel());
    queue = "java-" + UUID.randomUUID().toString().substring(0, 8);
  }

  @AfterEach
  void close() {
    client.close();
  }

  @Test
  void enqueueAndGetRoundTripKeepsBytesHeadersAndOptions() {
    byte[] payload = {0, 1, 2, (byte) 0xff, (byte) 0xfe, 'j', 'w', 0};
    EnqueueOptions options =
        EnqueueOptions.builder()
            .contentType("application/octet-stream")
            .header("tenant", "acme")
            .header("städte", "Zürich, Kraków, 東京 ✓")
            .header("emoji", "🚀")
            .priority(7)
            .maxAttempts(5)
            .delay(Duration.ofHours(1))
            .backoff(Backoff.exponential(Duration.ofSeconds(2), Duration.ofMinutes(5), 3))
            .leaseDuration(Duration.ofSeconds(45))
            .build();

    EnqueueResult result = client.enqueue(queue, payload, options);

    assertTrue(result.jobId().startsWith(queue + ":"), result.jobId());
    assertFalse(result.duplicate());
    assertEquals(JobState.JOB_STATE_SCHEDULED, result.state());

    Job job = client.getJob(result.jobId());
    assertEquals(result.jobId(), job.getId());
    assertEquals(queue, job.getQueue());
    assertEquals(JobState.JOB_STATE_SCHEDULED, job.getState());
    assertArrayEquals(payload, job.getSpec().getPayload().toByteArray());
    assertEquals("application/octet-stream", job.getSpec().getContentType());
    assertEquals(
        Map.of("tenant", "acme", "städte", "Zürich, Kraków, 東京 ✓", "emoji", "🚀"),
        job.getSpec().getHeadersMap());
    assertEquals(7, job.getSpec().getPriority());
    assertEquals(5, job.getSpec().getMaxAttempts());
    assertEquals(BackoffKind.BACKOFF_KIND_EXPONENTIAL, job.getSpec().getBackoff().getKind());
    assertEquals(3.0, job.getSpec().getBackoff().getMultiplier());
    assertEquals(45, job.getSpec().getLeaseDuration().getSeconds());
  }

  @Test
  void idempotencyKeyReturnsTheFirstJob() {
    EnqueueOptions options = EnqueueOptions.builder().idempotencyKey("order-42").build();
    EnqueueResult first = client.enqueue(queue, "a".getBytes(StandardCharsets.UTF_8), options);
    EnqueueResult second = client.enqueue(queue, "b".getBytes(StandardCharsets.UTF_8), options);

    assertEquals(first.jobId(), second.jobId());
    assertTrue(second.duplicate());
    assertEquals(JobState.JOB_STATE_READY, first.state());
  }

  @Test
  void unknownJobIsJobNotFound() {
    JobNotFoundException e =
        assertThrows(JobNotFoundException.class, () -> client.getJob(queue + ":424242"));
    assertEquals(io.grpc.Status.Code.NOT_FOUND, e.code());
    assertEquals(ErrorReason.JOB_NOT_FOUND, e.reason());
    assertThrows(JobNotFoundException.class, () -> client.cancel(queue + ":424242"));
  }

  @Test
  void invalidEnqueueNamesEveryBadField() {
    EnqueueOptions options = EnqueueOptions.builder().priority(5000).maxAttempts(-1).build();

    InvalidArgumentException e =
        assertThrows(
            InvalidArgumentException.class,
            () -> client.enqueue("not a queue!", new byte[] {1}, options));

    assertEquals(ErrorReason.INVALID_ARGUMENT, e.reason());
    Set<String> fields =
        e.fieldViolations().stream().map(FieldViolation::field).collect(Collectors.toSet());
    assertEquals(Set.of("queue", "job.priority", "job.max_attempts"), fields);
    e.fieldViolations().forEach(v -> assertFalse(v.description().isEmpty(), v.toString()));
  }

  @Test
  void malformedJobIdIsInvalidArgument() {
    InvalidArgumentException e =
        assertThrows(InvalidArgumentException.class, () -> client.getJob("no-sequence"));
    assertEquals(List.of("job_id"), e.fieldViolations().stream().map(FieldViolation::field).toList());
  }

  @Test
  void cancelStopsAPendingJob() {
    EnqueueResult job = client.enqueue(queue, new byte[0]);
    assertEquals(JobState.JOB_STATE_CANCELLED, client.cancel(job.jobId()));
    assertEquals(JobState.JOB_STATE_CANCELLED, client.getJob(job.jobId()).getState());
    assertEquals(JobState.JOB_STATE_CANCELLED, client.cancel(job.jobId()), "cancel twice");
  }

  @Test
  void watchSeesSnapshotProgressAndCompletion() {
    EnqueueResult job = client.enqueue(queue, "work".getBytes(StandardCharsets.UTF_8));
    List<StreamProgressResponse> seen = new ArrayList<>();
    String snapshotId;
    try (JobWatch watch = client.watch(job.jobId())) {
      StreamProgressResponse snapshot = watch.next();
      seen.add(snapshot);
      snapshotId = snapshot.getEventId();
      assertEquals(EventKind.EVENT_KIND_SNAPSHOT, snapshot.getKind());
      assertEquals(JobState.JOB_STATE_READY, snapshot.getJob().getState());
      assertEquals(job.jobId(), snapshot.getJob().getId());

      LeasedJob leased = leaseOne();
      raw.heartbeat(
          HeartbeatRequest.newBuilder()
              .setJobId(job.jobId())
              .setLeaseToken(leased.getLeaseToken())
              .setProgress(Progress.newBuilder().setPercent(50).setMessage("halfway"))
              .build());
      raw.complete(
          CompleteRequest.newBuilder()
              .setJobId(job.jobId())
              .setLeaseToken(leased.getLeaseToken())
              .setResult(ByteString.copyFromUtf8("done"))
              .build());

      watch.forEachRemaining(seen::add);
      assertFalse(watch.hasNext());
    }

    StreamProgressResponse last = seen.get(seen.size() - 1);
    assertEquals(EventKind.EVENT_KIND_STATE_CHANGED, last.getKind());
    assertEquals(JobState.JOB_STATE_COMPLETED, last.getJob().getState());
    assertEquals("done", last.getJob().getResult().toStringUtf8());
    assertTrue(
        seen.stream().anyMatch(e -> e.getKind() == EventKind.EVENT_KIND_PROGRESS
            && e.getJob().getProgress().getMessage().equals("halfway")),
        seen.toString());
    assertTrue(
        seen.stream().anyMatch(e -> e.getJob().getState() == JobState.JOB_STATE_ACTIVE),
        "saw the lease");

    // Resuming after the snapshot replays exactly what came after it.
    try (var resumed = client.watch(job.jobId(), snapshotId).stream()) {
      List<String> ids = resumed.map(StreamProgressResponse::getEventId).toList();
      assertEquals(seen.stream().skip(1).map(StreamProgressResponse::getEventId).toList(), ids);
    }
  }

  @Test
  void finishedJobsRejectCancelAndStaleLeases() {
    EnqueueResult job = client.enqueue(queue, new byte[] {42});
    LeasedJob leased = leaseOne();
    CompleteRequest complete =
        CompleteRequest.newBuilder()
            .setJobId(job.jobId())
            .setLeaseToken(leased.getLeaseToken())
            .build();
    raw.complete(complete);

    JobFinishedException finished =
        assertThrows(JobFinishedException.class, () -> client.cancel(job.jobId()));
    assertEquals(ErrorReason.JOB_FINISHED, finished.reason());

    // The same Complete again (its reply lost) is answered as the first time; another
    // token is a stale lease.
    raw.complete(complete);
    CompleteRequest stale = complete.toBuilder().setLeaseToken(leased.getLeaseToken() + "x").build();
    StatusRuntimeException again = assertThrows(StatusRuntimeException.class, () -> raw.complete(stale));
    JobwireException mapped = Errors.map(again);
    assertInstanceOf(LeaseLostException.class, mapped);
    assertEquals(ErrorReason.LEASE_LOST, mapped.reason());
  }

  private LeasedJob leaseOne() {
    List<LeasedJob> jobs =
        raw.withDeadlineAfter(10, java.util.concurrent.TimeUnit.SECONDS)
            .lease(
                LeaseRequest.newBuilder()
                    .setQueue(queue)
                    .setMaxJobs(1)
                    .setWait(com.google.protobuf.Duration.newBuilder().setSeconds(5))
                    .setWorkerId("java-test")
                    .build())
            .getJobsList();
    assertEquals(1, jobs.size());
    return jobs.get(0);
  }
}
