package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.jobwire.v1.BackoffKind;
import dev.jobwire.v1.DependencyFailurePolicy;
import dev.jobwire.v1.IdempotencyMode;
import dev.jobwire.v1.JobSpec;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Options to wire form, and the retry pauses; no broker needed. */
class EnqueueOptionsTest {

  @Test
  void defaultsLeaveEveryFieldUnset() {
    JobSpec spec = EnqueueOptions.defaults().toSpec(new byte[] {1}).build();
    assertEquals(JobSpec.newBuilder().setPayload(com.google.protobuf.ByteString.copyFrom(new byte[] {1})).build(), spec);
  }

  @Test
  void everyOptionReachesTheSpec() {
    JobSpec spec =
        EnqueueOptions.builder()
            .contentType("text/plain")
            .header("a", "b")
            .priority(-3)
            .delay(Duration.ofMillis(1500))
            .runTime(Instant.ofEpochSecond(1_900_000_000L, 5))
            .maxAttempts(9)
            .backoff(Backoff.fixed(Duration.ofSeconds(4)).withJitter(0.25))
            .leaseDuration(Duration.ofMinutes(2))
            .executionTimeout(Duration.ofMinutes(30))
            .idempotencyKey("k")
            .idempotencyWindow(Duration.ofHours(2))
            .build()
            .toSpec(new byte[0])
            .build();
    assertEquals("text/plain", spec.getContentType());
    assertEquals("b", spec.getHeadersOrThrow("a"));
    assertEquals(-3, spec.getPriority());
    assertEquals(1, spec.getDelay().getSeconds());
    assertEquals(500_000_000, spec.getDelay().getNanos());
    assertEquals(1_900_000_000L, spec.getRunTime().getSeconds());
    assertEquals(5, spec.getRunTime().getNanos());
    assertEquals(9, spec.getMaxAttempts());
    assertEquals(BackoffKind.BACKOFF_KIND_FIXED, spec.getBackoff().getKind());
    assertEquals(0.25, spec.getBackoff().getJitter());
    assertEquals(120, spec.getLeaseDuration().getSeconds());
    assertEquals(1800, spec.getExecutionTimeout().getSeconds());
    assertEquals("k", spec.getIdempotencyKey());
    assertEquals(7200, spec.getIdempotencyWindow().getSeconds());
    assertFalse(spec.hasTraceContext());
  }

  @Test
  void coordinationOptionsReachTheSpec() {
    JobSpec spec =
        EnqueueOptions.builder()
            .concurrencyKey("wallet:0xabc")
            .concurrencyLimit(2)
            .dependsOn("q:1", "q:2")
            .dependsOn("q:3")
            .onDependencyFailure(DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_IGNORE)
            .startDeadline(Instant.ofEpochSecond(1_900_000_000L))
            .idempotencyKey("k")
            .idempotencyMode(IdempotencyMode.IDEMPOTENCY_MODE_REPLACE)
            .build()
            .toSpec(new byte[0])
            .build();
    assertEquals("wallet:0xabc", spec.getConcurrencyKey());
    assertEquals(2, spec.getConcurrencyLimit());
    assertEquals(List.of("q:1", "q:2", "q:3"), spec.getDependsOnList());
    assertEquals(
        DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_IGNORE, spec.getOnDependencyFailure());
    assertEquals(1_900_000_000L, spec.getStartDeadline().getSeconds());
    assertEquals(IdempotencyMode.IDEMPOTENCY_MODE_REPLACE, spec.getIdempotencyMode());
  }

  @Test
  void retryPausesGrowWithinTheCapAndHonourTheBroker() {
    RetryPolicy policy =
        new RetryPolicy(
            5,
            Duration.ofMillis(100),
            Duration.ofSeconds(1),
            2,
            java.util.EnumSet.of(io.grpc.Status.Code.UNAVAILABLE));
    for (int retry = 1; retry < 10; retry++) {
      long step = Math.min(1000, 100L << (retry - 1));
      long pause = policy.pause(retry, null).toMillis();
      assertTrue(pause >= step * 0.8 - 1 && pause <= step * 1.2, retry + ": " + pause);
    }
    assertEquals(1000, policy.pause(1, Duration.ofSeconds(1)).toMillis());
    assertEquals(1000, policy.pause(1, Duration.ofMinutes(5)).toMillis(), "capped");
  }
}
