// Enqueue a job, read it back, and see a rejected request's field violations.
// Run from clients/java with a broker on 127.0.0.1:50051 (`make serve` at the repo root):
//   mvn -B -q -o compile && java -cp "target/classes:$(cat target/classpath.txt)" examples/Quickstart.java
import dev.jobwire.client.EnqueueOptions;
import dev.jobwire.client.EnqueueResult;
import dev.jobwire.client.InvalidArgumentException;
import dev.jobwire.client.JobwireClient;
import dev.jobwire.v1.Job;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

public class Quickstart {
  public static void main(String[] args) {
    String target = args.length > 0 ? args[0] : "127.0.0.1:50051";
    try (JobwireClient jobwire = JobwireClient.builder(target).deadline(Duration.ofSeconds(5)).build()) {
      EnqueueResult result =
          jobwire.enqueue(
              "emails",
              "{\"to\":\"a@b.c\"}".getBytes(StandardCharsets.UTF_8),
              EnqueueOptions.builder()
                  .contentType("application/json")
                  .priority(10)
                  .maxAttempts(5)
                  .header("tenant", "acme")
                  .build());
      System.out.println("enqueued " + result.jobId() + " (" + result.state() + ")");

      Job job = jobwire.getJob(result.jobId());
      System.out.println(job.getId() + " is " + job.getState()
          + ", payload " + job.getSpec().getPayload().toStringUtf8());

      try {
        jobwire.enqueue("emails", new byte[0], EnqueueOptions.builder().priority(5000).build());
      } catch (InvalidArgumentException e) {
        e.fieldViolations().forEach(v -> System.out.println("rejected: " + v.field() + " " + v.description()));
      }
    }
  }
}
