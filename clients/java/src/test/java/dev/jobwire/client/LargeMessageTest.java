package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.google.protobuf.ByteString;
import dev.jobwire.v1.BrokerServiceGrpc;
import dev.jobwire.v1.CompleteRequest;
import dev.jobwire.v1.Job;
import dev.jobwire.v1.JobState;
import dev.jobwire.v1.LeaseRequest;
import dev.jobwire.v1.LeasedJob;
import io.grpc.Status;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.extension.ExtendWith;

/** Payloads and results at the broker's limit, and the client's message size limit. */
@ExtendWith(BrokerExtension.class)
@Timeout(120)
class LargeMessageTest {
  private static final int MIB = 1 << 20;

  private static byte[] filled(int n, int value) {
    byte[] bytes = new byte[n];
    Arrays.fill(bytes, (byte) value);
    return bytes;
  }

  private static String queue() {
    return "java-big-" + UUID.randomUUID().toString().substring(0, 8);
  }

  @Test
  void defaultLimitIs64MiB() {
    assertEquals(64 * MIB, JobwireClient.DEFAULT_MAX_MESSAGE_BYTES);
    try (JobwireClient client = JobwireClient.builder("127.0.0.1:1").build()) {
      assertEquals(64 * MIB, client.maxMessageBytes());
    }
    try (JobwireClient client =
        JobwireClient.builder("127.0.0.1:1").maxMessageBytes(8 * MIB).build()) {
      assertEquals(8 * MIB, client.maxMessageBytes());
    }
    assertThrows(
        IllegalArgumentException.class,
        () -> JobwireClient.builder("127.0.0.1:1").maxMessageBytes(0));
  }

  /** At the default broker limit (1 MiB): GetJob returns a 1 MiB payload and result intact. */
  @Test
  void oneMebibytePayloadAndResultComeBackIntact(Broker broker) {
    String queue = queue();
    byte[] payload = filled(MIB, 0xa5);
    byte[] result = filled(MIB, 0x5a);
    try (JobwireClient client = JobwireClient.builder(broker.target()).build()) {
      EnqueueResult job = client.enqueue(queue, payload);
      assertArrayEquals(payload, client.getJob(job.jobId()).getSpec().getPayload().toByteArray());

      var raw =
          BrokerServiceGrpc.newBlockingStub(client.channel())
              .withDeadlineAfter(10, TimeUnit.SECONDS);
      List<LeasedJob> leased =
          raw.lease(LeaseRequest.newBuilder().setQueue(queue).setMaxJobs(1).build())
              .getJobsList();
      assertEquals(1, leased.size());
      assertEquals(job.jobId(), leased.get(0).getJob().getId());
      raw.complete(
          CompleteRequest.newBuilder()
              .setJobId(job.jobId())
              .setLeaseToken(leased.get(0).getLeaseToken())
              .setResult(ByteString.copyFrom(result))
              .build());

      Job done = client.getJob(job.jobId());
      assertEquals(JobState.JOB_STATE_COMPLETED, done.getState());
      assertArrayEquals(payload, done.getSpec().getPayload().toByteArray());
      assertArrayEquals(result, done.getResult().toByteArray());
    }
  }

  /**
   * A broker with a 6 MiB payload limit (its own message limit is 28 MiB), so the client's
   * limit is what decides: 64 MiB by default takes a 5 MiB GetJob reply, more than
   * gRPC-Java's 4 MiB default; {@code maxMessageBytes(4 MiB)} refuses it.
   */
  @Test
  void defaultLimitTakesRepliesBeyond4MiB() throws Exception {
    // The refused 5 MiB reply keeps arriving after the client cancelled the call, and
    // gRPC-Java logs each frame of it at INFO.
    Logger streams = Logger.getLogger("io.grpc.internal.AbstractClientStream");
    Level level = streams.getLevel();
    streams.setLevel(Level.WARNING);
    try (Broker big = Broker.startWith("--max-payload-bytes", Integer.toString(6 * MIB));
        JobwireClient client = JobwireClient.builder(big.target()).build();
        JobwireClient small =
            JobwireClient.builder(big.target()).maxMessageBytes(4 * MIB).build()) {
      byte[] payload = filled(5 * MIB, 7);
      EnqueueResult job = client.enqueue(queue(), payload);
      assertArrayEquals(payload, client.getJob(job.jobId()).getSpec().getPayload().toByteArray());

      JobwireException tooBig = assertThrows(JobwireException.class, () -> small.getJob(job.jobId()));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, tooBig.code());
      JobwireException tooBigToSend =
          assertThrows(JobwireException.class, () -> small.enqueue(queue(), payload));
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, tooBigToSend.code());
    } finally {
      streams.setLevel(level);
    }
  }
}
