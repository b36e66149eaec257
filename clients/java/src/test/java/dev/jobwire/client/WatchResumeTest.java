package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.jobwire.v1.BrokerServiceGrpc;
import dev.jobwire.v1.BrokerServiceGrpc.BrokerServiceBlockingStub;
import dev.jobwire.v1.CompleteRequest;
import dev.jobwire.v1.EventKind;
import dev.jobwire.v1.JobState;
import dev.jobwire.v1.LeaseRequest;
import dev.jobwire.v1.LeasedJob;
import dev.jobwire.v1.StreamProgressResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** A watch survives its broker restarting: it resumes after the last event it saw. */
@Timeout(90)
class WatchResumeTest {

  @Test
  void watchResumesAfterTheBrokerRestarts() throws Exception {
    Path dataDir = Files.createTempDirectory("jobwire-java-resume-");
    Broker first = Broker.start(dataDir, 0, false, 1);
    Broker second = null;
    try (JobwireClient client =
        JobwireClient.builder(first.target())
            .serviceConfig(ServiceConfigTest.withBackoff("1s", "5s"))
            .build()) {
      String jobId = client.enqueue("resume", new byte[] {1}).jobId();
      List<StreamProgressResponse> seen = new ArrayList<>();
      try (JobWatch watch = client.watch(jobId)) {
        seen.add(watch.next());
        assertEquals(EventKind.EVENT_KIND_SNAPSHOT, seen.get(0).getKind());

        first.stop(); // a short grace, so the open stream is cut rather than drained
        second = Broker.start(dataDir, first.port(), false);
        try (JobwireClient worker = JobwireClient.builder(second.target()).build()) {
          BrokerServiceBlockingStub raw = BrokerServiceGrpc.newBlockingStub(worker.channel());
          LeasedJob leased =
              raw.withDeadlineAfter(10, TimeUnit.SECONDS)
                  .lease(
                      LeaseRequest.newBuilder()
                          .setQueue("resume")
                          .setWait(com.google.protobuf.Duration.newBuilder().setSeconds(5))
                          .build())
                  .getJobs(0);
          raw.complete(
              CompleteRequest.newBuilder()
                  .setJobId(jobId)
                  .setLeaseToken(leased.getLeaseToken())
                  .build());
        }
        watch.forEachRemaining(seen::add);
      }
      List<JobState> states = seen.stream().map(e -> e.getJob().getState()).toList();
      assertEquals(
          List.of(JobState.JOB_STATE_READY, JobState.JOB_STATE_ACTIVE, JobState.JOB_STATE_COMPLETED),
          states,
          seen.toString());
    } finally {
      if (second != null) {
        second.stop();
      }
      Broker.deleteTree(dataDir);
    }
  }
}
