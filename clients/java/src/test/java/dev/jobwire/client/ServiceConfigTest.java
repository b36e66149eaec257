package dev.jobwire.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.jobwire.v1.BrokerServiceGrpc;
import dev.jobwire.v1.BrokerServiceGrpc.BrokerServiceBlockingStub;
import dev.jobwire.v1.CancelJobRequest;
import dev.jobwire.v1.CompleteRequest;
import dev.jobwire.v1.EnqueueBatchRequest;
import dev.jobwire.v1.EnqueueRequest;
import dev.jobwire.v1.FailRequest;
import dev.jobwire.v1.GetJobRequest;
import dev.jobwire.v1.GetJobResponse;
import dev.jobwire.v1.HeartbeatBatchRequest;
import dev.jobwire.v1.HeartbeatRequest;
import dev.jobwire.v1.Job;
import dev.jobwire.v1.LeaseRequest;
import dev.jobwire.v1.SettleBatchRequest;
import dev.jobwire.v1.StreamProgressRequest;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Grpc;
import io.grpc.InsecureServerCredentials;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * A client built from a target retries and times out each method exactly as {@code
 * protos/jobwire/v1/service_config.json} says: a fake broker counts the attempts it sees and
 * reads the deadline each one carries.
 */
@Timeout(60)
class ServiceConfigTest {
  private static final Metadata.Key<String> PUSHBACK =
      Metadata.Key.of("grpc-retry-pushback-ms", Metadata.ASCII_STRING_MARSHALLER);

  private final Map<String, AtomicInteger> attempts = new ConcurrentHashMap<>();
  private final Map<String, Long> deadlineMillis = new ConcurrentHashMap<>(); // -1: none
  private final Map<String, Integer> fails = Map.of("GetJob", 2);
  private Server server;
  private JobwireClient client;
  private Map<String, Object> file;

  /** The file at the repository's protos/, parsed: what the client must follow. */
  static Map<String, Object> protosFile() throws IOException {
    Path repo = Paths.get("").toAbsolutePath().getParent().getParent();
    return ServiceConfig.parse(
        Files.readString(repo.resolve("protos/jobwire/v1/service_config.json")));
  }

  /** The shipped config with every retry policy's backoff set to {@code initial}..{@code max}. */
  @SuppressWarnings("unchecked")
  static Map<String, Object> withBackoff(String initial, String max) {
    Map<String, Object> config = JobwireClient.defaultServiceConfig();
    for (Object entry : (List<Object>) config.get("methodConfig")) {
      Object policy = ((Map<String, Object>) entry).get("retryPolicy");
      if (policy != null) {
        Map<String, Object> changed = new LinkedHashMap<>((Map<String, Object>) policy);
        changed.put("initialBackoff", initial);
        changed.put("maxBackoff", max);
        ((Map<String, Object>) entry).put("retryPolicy", changed);
      }
    }
    return config;
  }

  /** Answers UNAVAILABLE, with a 1 ms pushback so gRPC's retries are quick, until told not to. */
  private final ServerInterceptor fake =
      new ServerInterceptor() {
        @Override
        public <Q, R> ServerCall.Listener<Q> interceptCall(
            ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
          String method = call.getMethodDescriptor().getBareMethodName();
          int n = attempts.computeIfAbsent(method, m -> new AtomicInteger()).incrementAndGet();
          Deadline deadline = Context.current().getDeadline();
          deadlineMillis.put(method, deadline == null ? -1 : deadline.timeRemaining(TimeUnit.MILLISECONDS));
          if (fails.containsKey(method) && n > fails.get(method)) {
            return next.startCall(call, headers);
          }
          Metadata trailers = new Metadata();
          trailers.put(PUSHBACK, "1");
          call.close(Status.UNAVAILABLE.withDescription("fake broker is unavailable"), trailers);
          return new ServerCall.Listener<>() {};
        }
      };

  @BeforeEach
  void start() throws IOException {
    BrokerServiceGrpc.BrokerServiceImplBase broker =
        new BrokerServiceGrpc.BrokerServiceImplBase() {
          @Override
          public void getJob(GetJobRequest request, StreamObserver<GetJobResponse> out) {
            out.onNext(
                GetJobResponse.newBuilder()
                    .setJob(Job.newBuilder().setId(request.getJobId()))
                    .build());
            out.onCompleted();
          }
        };
    server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(ServerInterceptors.intercept(broker, fake))
            .build()
            .start();
    client = JobwireClient.builder("127.0.0.1:" + server.getPort()).build();
    file = protosFile();
  }

  @AfterEach
  void stop() {
    client.close();
    server.shutdownNow();
  }

  private int count(String method) {
    AtomicInteger n = attempts.get(method);
    return n == null ? 0 : n.get();
  }

  private void assertDeadline(String method) {
    long left = deadlineMillis.get(method);
    var timeout = ServiceConfig.timeout(file, method);
    if (timeout.isEmpty()) {
      assertEquals(-1, left, method + " got a deadline");
    } else {
      long want = timeout.get().toMillis();
      assertTrue(left > want - 1000 && left <= want, method + ": deadline " + left + " ms away");
    }
  }

  @Test
  void clientUsesTheFileShippedWithTheProtos() throws IOException {
    assertEquals(protosFile(), client.serviceConfig());
    assertEquals(protosFile(), JobwireClient.defaultServiceConfig());
  }

  @Test
  void getJobSucceedsThroughRetriesWithinItsTimeout() {
    assertEquals("q:1", client.getJob("q:1").getId());
    assertEquals(3, count("GetJob"));
    assertDeadline("GetJob");
  }

  @Test
  void everyMethodIsRetriedAndTimedOutAsTheFileSays() {
    BrokerServiceBlockingStub raw = BrokerServiceGrpc.newBlockingStub(client.channel());
    Map<String, Runnable> calls = new LinkedHashMap<>();
    calls.put("Enqueue", () -> raw.enqueue(EnqueueRequest.getDefaultInstance()));
    calls.put("EnqueueBatch", () -> raw.enqueueBatch(EnqueueBatchRequest.getDefaultInstance()));
    calls.put("Lease", () -> raw.lease(LeaseRequest.getDefaultInstance()));
    calls.put("Heartbeat", () -> raw.heartbeat(HeartbeatRequest.getDefaultInstance()));
    calls.put("HeartbeatBatch", () -> raw.heartbeatBatch(HeartbeatBatchRequest.getDefaultInstance()));
    calls.put("Complete", () -> raw.complete(CompleteRequest.getDefaultInstance()));
    calls.put("Fail", () -> raw.fail(FailRequest.getDefaultInstance()));
    calls.put("SettleBatch", () -> raw.settleBatch(SettleBatchRequest.getDefaultInstance()));
    calls.put("CancelJob", () -> raw.cancelJob(CancelJobRequest.getDefaultInstance()));
    calls.put(
        "StreamProgress", () -> raw.streamProgress(StreamProgressRequest.getDefaultInstance()).hasNext());
    calls.forEach(
        (method, call) -> {
          StatusRuntimeException e = assertThrows(StatusRuntimeException.class, call::run, method);
          assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode(), method);
          int want =
              ServiceConfig.retryPolicy(file, method)
                  .filter(p -> p.retries(Status.Code.UNAVAILABLE))
                  .map(RetryPolicy::maxAttempts)
                  .orElse(1);
          assertEquals(want, count(method), method + " attempts");
          assertDeadline(method);
        });
  }

  @Test
  void enqueueIsRetriedByTheClientOnlyWithAnIdempotencyKey() {
    assertThrows(JobwireUnavailableException.class, () -> client.enqueue("q", new byte[0]));
    assertEquals(1, count("Enqueue"));
    EnqueueOptions keyed = EnqueueOptions.builder().idempotencyKey("k").build();
    assertThrows(JobwireUnavailableException.class, () -> client.enqueue("q", new byte[0], keyed));
    int want = ServiceConfig.retryPolicy(file, "GetJob").orElseThrow().maxAttempts();
    assertEquals(1 + want, count("Enqueue"));
  }

  @Test
  void aWatchReopensTheStreamWithStreamProgressPolicy() {
    int want = ServiceConfig.retryPolicy(file, "StreamProgress").orElseThrow().maxAttempts();
    long start = System.nanoTime();
    try (JobWatch watch = client.watch("q:1")) {
      assertThrows(JobwireUnavailableException.class, watch::hasNext);
    }
    // gRPC retries each opening maxAttempts times; the watch reopens it maxAttempts times.
    assertEquals(want * want, count("StreamProgress"));
    assertTrue(Duration.ofNanos(System.nanoTime() - start).toSeconds() < 10);
  }
}
