package dev.jobwire.client;

import dev.jobwire.v1.JobState;

/**
 * What {@link JobwireClient#enqueue} returns.
 *
 * @param jobId the new job's id ({@code <queue>:<n>}), or the first job's when duplicate
 * @param duplicate true when the idempotency key matched an earlier job
 * @param state the job's state right after the call (scheduled or ready for a new job)
 */
public record EnqueueResult(String jobId, boolean duplicate, JobState state) {}
