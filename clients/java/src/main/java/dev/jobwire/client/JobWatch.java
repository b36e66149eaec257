package dev.jobwire.client;

import dev.jobwire.v1.BrokerServiceGrpc.BrokerServiceBlockingStub;
import dev.jobwire.v1.ErrorReason;
import dev.jobwire.v1.JobState;
import dev.jobwire.v1.StreamProgressRequest;
import dev.jobwire.v1.StreamProgressResponse;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Optional;
import java.util.Spliterator;
import java.util.Spliterators;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;

/**
 * The events of one job, in order, from {@link JobwireClient#watch}. Blocks in {@link
 * #hasNext()} until the next event. Ends after a terminal state (completed, dead,
 * cancelled, expired; not waiting). When the stream drops before that ({@code UNAVAILABLE}, or a broker replica
 * shutting down), it is reopened after the last event id seen, so no event is lost or
 * repeated, with the backoff of the service config's retry policy of StreamProgress, up to its
 * {@code maxAttempts} failures in a row. Not thread-safe.
 */
public final class JobWatch implements Iterator<StreamProgressResponse>, AutoCloseable {
  private final BrokerServiceBlockingStub stub;
  private final String jobId;
  private final RetryPolicy retryPolicy; // null: never reopened
  private String lastEventId;
  private Context.CancellableContext call;
  private Iterator<StreamProgressResponse> events;
  private StreamProgressResponse next;
  private boolean finished;
  private int failures;

  JobWatch(
      BrokerServiceBlockingStub stub,
      String jobId,
      String afterEventId,
      Optional<RetryPolicy> retryPolicy) {
    this.stub = stub;
    this.jobId = jobId;
    this.lastEventId = afterEventId;
    this.retryPolicy = retryPolicy.orElse(null);
  }

  /** The id of the last event returned; pass it to {@code watch(jobId, id)} to resume. */
  public String lastEventId() {
    return lastEventId;
  }

  /**
   * @throws JobNotFoundException the job does not exist
   * @throws JobwireUnavailableException the broker stayed unreachable through every retry
   */
  @Override
  public boolean hasNext() {
    while (next == null && !finished) {
      if (events == null) {
        open();
      }
      try {
        if (events.hasNext()) {
          next = events.next();
          lastEventId = next.getEventId();
          failures = 0;
          if (isTerminal(next.getJob().getState())) {
            finished = true; // the broker ends the stream here; don't wait for it.
            cancelCall();
          }
        } else {
          // The broker ended the stream without a terminal state: it is shutting down.
          reopenOrThrow(null);
        }
      } catch (StatusRuntimeException e) {
        reopenOrThrow(e);
      }
    }
    return next != null;
  }

  @Override
  public StreamProgressResponse next() {
    if (!hasNext()) {
      throw new NoSuchElementException("the job reached a terminal state");
    }
    StreamProgressResponse event = next;
    next = null;
    return event;
  }

  /** The remaining events as a sequential stream that closes this watch when closed. */
  public Stream<StreamProgressResponse> stream() {
    return StreamSupport.stream(
            Spliterators.spliteratorUnknownSize(this, Spliterator.ORDERED | Spliterator.NONNULL),
            false)
        .onClose(this::close);
  }

  /** Stops watching; the stream is cancelled on the broker too. */
  @Override
  public void close() {
    finished = true;
    next = null;
    cancelCall();
  }

  private void open() {
    StreamProgressRequest request =
        StreamProgressRequest.newBuilder().setJobId(jobId).setAfterEventId(lastEventId).build();
    call = Context.current().withCancellation();
    Context previous = call.attach();
    try {
      events = stub.streamProgress(request);
    } finally {
      call.detach(previous);
    }
  }

  private void reopenOrThrow(StatusRuntimeException e) {
    cancelCall();
    JobwireException failure =
        e != null
            ? Errors.map(e)
            : new JobwireUnavailableException(
                Status.Code.UNAVAILABLE,
                ErrorReason.ERROR_REASON_UNSPECIFIED,
                "the broker ended the event stream before the job finished",
                null,
                List.of(),
                null);
    failures++;
    if (retryPolicy == null
        || !retryPolicy.retries(failure.code())
        || failures >= retryPolicy.maxAttempts()) {
      finished = true;
      throw failure;
    }
    RetryPolicy.sleep(retryPolicy.pause(failures, failure.retryDelay().orElse(null)), failure);
  }

  private void cancelCall() {
    if (call != null) {
      call.cancel(null);
      call = null;
    }
    events = null;
  }

  private static boolean isTerminal(JobState state) {
    return state == JobState.JOB_STATE_COMPLETED
        || state == JobState.JOB_STATE_DEAD
        || state == JobState.JOB_STATE_CANCELLED
        || state == JobState.JOB_STATE_EXPIRED;
  }
}
