// Worker round trips against a real broker.

import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import {
  JobCancelledError,
  JobState,
  JobwireClient,
  LeaseLostError,
  PermanentError,
  RateLimitedError,
  RetryAfterError,
  Worker,
  WorkerClosingError,
  type Job,
  type ReceivedJob,
} from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";

/** Polls GetJob until `check` accepts the job or the time is up. */
async function waitForJob(client: JobwireClient, jobId: string, check: (job: Job) => boolean, timeoutMs = 10_000): Promise<Job> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const job = await client.getJob(jobId);
    if (check(job)) return job;
    if (Date.now() > end) assert.fail(`job ${jobId} did not reach the expected state; last: ${JSON.stringify({ state: job.state, attempt: job.attempt, lastError: job.lastError })}`);
    await delay(50);
  }
}

describe("Worker", () => {
  let broker: Broker;
  let client: JobwireClient;

  before(async () => {
    broker = await startBroker();
    client = new JobwireClient(broker.target);
  });

  after(async () => {
    client?.close();
    await broker?.dispose();
  });

  it("leases, heartbeats with progress and completes", async () => {
    const queue = uniqueQueue("roundtrip");
    const { jobId } = await client.enqueue(queue, { n: 21 }, { leaseDurationMs: 1_000, headers: { k: "v" } });
    const worker = new Worker(client);
    let seen: ReceivedJob | undefined;
    worker.process(
      queue,
      async (job, { progress, signal }) => {
        seen = job;
        progress(50, "half way", { step: 1 });
        // Outlive the 1 s lease twice over: only heartbeats keep it.
        await delay(2_200, undefined, { signal });
        return { doubled: job.json<{ n: number }>().n * 2 };
      },
      { maxJobs: 1 },
    );
    await worker.run();

    assert.equal(seen?.id, jobId);
    assert.equal(seen?.attempt, 1);
    assert.deepEqual(seen?.headers, { k: "v" });
    const job = await client.getJob(jobId);
    assert.equal(job.state, JobState.JOB_STATE_COMPLETED);
    assert.equal(job.resultContentType, "application/json");
    assert.deepEqual(JSON.parse(job.result.toString("utf8")), { doubled: 42 });
    assert.equal(job.progress?.percent, 50);
    assert.equal(job.progress?.message, "half way");
    assert.deepEqual(job.progress?.details, { step: 1 });
  });

  it("fails with a retry, then completes", async () => {
    const queue = uniqueQueue("retry");
    const { jobId } = await client.enqueue(queue, "x", { maxAttempts: 3 });
    const worker = new Worker(client);
    const attempts: number[] = [];
    const failures: unknown[] = [];
    worker.on("failed", (_job, err) => failures.push(err));
    worker.process(
      queue,
      (job) => {
        attempts.push(job.attempt);
        if (job.attempt === 1) throw new RetryAfterError(50, "flaky upstream");
        return "second time lucky";
      },
      { maxJobs: 2 },
    );
    await worker.run();

    assert.deepEqual(attempts, [1, 2]);
    assert.equal(failures.length, 1);
    const job = await client.getJob(jobId);
    assert.equal(job.state, JobState.JOB_STATE_COMPLETED);
    assert.equal(job.attempt, 2);
    assert.equal(job.result.toString("utf8"), "second time lucky");
    assert.equal(job.lastError?.type, "RetryAfterError");
    assert.equal(job.lastError?.message, "flaky upstream");
  });

  it("hands a rate-limited job back uncounted and holds its key", async () => {
    const queue = uniqueQueue("ratelimited");
    // One attempt allowed: only an uncounted hand-back lets the second run happen.
    const { jobId } = await client.enqueue(queue, "x", { maxAttempts: 1, concurrencyKey: "api" });
    const worker = new Worker(client);
    const starts: number[] = [];
    worker.process(
      queue,
      (job) => {
        starts.push(Date.now());
        if (job.attempt === 1) throw new RateLimitedError(300, "429 from the API");
        return "done";
      },
      { maxJobs: 2 },
    );
    await worker.run();

    assert.equal(starts.length, 2);
    assert.ok(starts[1]! - starts[0]! >= 290, `second run after ${starts[1]! - starts[0]!} ms`);
    const job = await client.getJob(jobId);
    assert.equal(job.state, JobState.JOB_STATE_COMPLETED);
    assert.equal(job.attempt, 2);
    assert.equal(job.countedAttempts, 1);
    assert.equal(job.lastError?.type, "RateLimitedError");
    assert.equal(job.lastError?.message, "429 from the API");
  });

  it("records the error name as the failure type and dead-letters permanent errors", async () => {
    const queue = uniqueQueue("permanent");
    class BadWalletError extends PermanentError {
      override name = "BadWalletError";
    }
    const { jobId } = await client.enqueue(queue, "x", { maxAttempts: 5 });
    const worker = new Worker(client);
    worker.process(
      queue,
      () => {
        throw new BadWalletError("wallet 0x0 does not exist");
      },
      { maxJobs: 1 },
    );
    await worker.run();
    const job = await client.getJob(jobId);
    assert.equal(job.state, JobState.JOB_STATE_DEAD);
    assert.equal(job.attempt, 1);
    assert.deepEqual(job.lastError, { type: "BadWalletError", message: "wallet 0x0 does not exist", nonRetryable: true });
  });

  it("fails the attempt when the broker refuses the result", async () => {
    const queue = uniqueQueue("big-result");
    const { jobId } = await client.enqueue(queue, "x", { maxAttempts: 1 });
    const worker = new Worker(client);
    const errors: unknown[] = [];
    worker.on("error", (err) => errors.push(err));
    worker.process(queue, () => new Uint8Array(1024 * 1024 + 1), { maxJobs: 1 });
    await worker.run();
    const job = await client.getJob(jobId);
    assert.equal(job.state, JobState.JOB_STATE_DEAD);
    assert.equal(job.lastError?.type, "InvalidArgumentError");
    assert.match(job.lastError?.message ?? "", /result/);
    assert.equal(errors.length, 1);
  });

  it("aborts the handler and drops the result when the lease is lost", async () => {
    const queue = uniqueQueue("lost");
    const { jobId } = await client.enqueue(queue, "x", { leaseDurationMs: 1_000, maxAttempts: 2 });
    const worker = new Worker(client);
    const failed: unknown[] = [];
    worker.on("failed", (_job, err) => failed.push(err));
    let reason: unknown;
    let abortedAfterMs = 0;
    worker.process(
      queue,
      async (_job, { signal }) => {
        const start = Date.now();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 5_000);
          signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
        reason = signal.reason;
        abortedAfterMs = Date.now() - start;
        return "must not be sent";
      },
      { heartbeat: false, maxJobs: 1 },
    );
    await worker.run();

    assert.ok(reason instanceof LeaseLostError, `abort reason: ${String(reason)}`);
    assert.ok(abortedAfterMs >= 800 && abortedAfterMs < 3_000, `aborted after ${abortedAfterMs} ms`);
    assert.ok(failed[0] instanceof LeaseLostError);
    // The broker takes the expired lease back: the attempt counts as failed, no result.
    const job = await waitForJob(client, jobId, (j) => j.state !== JobState.JOB_STATE_ACTIVE);
    assert.notEqual(job.state, JobState.JOB_STATE_COMPLETED);
    assert.equal(job.result.length, 0);
    assert.equal(job.attempt, 1);
  });

  it("aborts the handler when cancellation is requested", async () => {
    const queue = uniqueQueue("cancel");
    const { jobId } = await client.enqueue(queue, "x", { leaseDurationMs: 1_000 });
    const worker = new Worker(client);
    let reason: unknown;
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    worker.process(
      queue,
      async (_job, { signal }) => {
        started();
        try {
          await delay(10_000, undefined, { signal });
        } catch {
          reason = signal.reason;
          throw signal.reason;
        }
      },
      { maxJobs: 1 },
    );
    const run = worker.run();
    await running;
    assert.equal(await client.cancel(jobId), JobState.JOB_STATE_ACTIVE);
    await run;
    assert.ok(reason instanceof JobCancelledError);
    const job = await client.getJob(jobId);
    assert.equal(job.state, JobState.JOB_STATE_CANCELLED);
  });

  it("runs up to `concurrency` jobs at once", async () => {
    const queue = uniqueQueue("concurrency");
    await client.enqueueBatch(
      queue,
      Array.from({ length: 6 }, (_, i) => ({ payload: { i } })),
    );
    const worker = new Worker(client);
    let running = 0;
    let peak = 0;
    worker.process(
      queue,
      async () => {
        running++;
        peak = Math.max(peak, running);
        await delay(150);
        running--;
      },
      { concurrency: 3, maxJobs: 6 },
    );
    await worker.run();
    assert.equal(peak, 3);
  });

  it("closes gracefully: waits for short jobs, fails long ones as retryable", async () => {
    const queue = uniqueQueue("close");
    const short = await client.enqueue(queue, "short");
    const long = await client.enqueue(queue, "long", { maxAttempts: 3 });
    const worker = new Worker(client, { graceMs: 300 });
    let reason: unknown;
    let started = 0;
    worker.process(
      queue,
      async (job, { signal }) => {
        started++;
        if (job.text() === "short") {
          await delay(100);
          return "ok";
        }
        try {
          await delay(10_000, undefined, { signal });
        } catch {
          reason = signal.reason;
        }
        return "too late";
      },
      { concurrency: 2 },
    );
    const run = worker.run();
    while (started < 2) await delay(10);
    await worker.close();
    await run;

    assert.ok(reason instanceof WorkerClosingError);
    assert.equal((await client.getJob(short.jobId)).state, JobState.JOB_STATE_COMPLETED);
    const job = await client.getJob(long.jobId);
    assert.ok([JobState.JOB_STATE_READY, JobState.JOB_STATE_SCHEDULED].includes(job.state), `state ${job.state}`);
    assert.equal(job.lastError?.type, "WorkerClosingError");
    assert.equal(job.lastError?.nonRetryable, false);
  });

  it("hands a leased job back with release, without counting the attempt", async () => {
    const queue = uniqueQueue("release");
    const { jobId } = await client.enqueue(queue, "x", { maxAttempts: 1 });
    const [first] = await client.lease(queue);
    assert.equal(first?.attempt, 1);
    const res = await client.fail(jobId, first.leaseToken, { type: "WorkerClosingError" }, { release: true });
    assert.equal(res.state, JobState.JOB_STATE_READY);
    // The attempt number keeps growing (it fences side effects); the release is not counted.
    const [again] = await client.lease(queue);
    assert.equal(again?.attempt, 2);
    assert.equal(again?.job?.countedAttempts, 1);
    assert.equal(again?.job?.lastError, undefined);
  });

  it("rejects run() for an invalid queue name", async () => {
    const worker = new Worker(client);
    worker.on("error", () => {});
    worker.process("not a queue!", () => undefined);
    await assert.rejects(worker.run(), { name: "InvalidArgumentError" });
  });
});
