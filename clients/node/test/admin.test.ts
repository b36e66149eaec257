// JobwireAdmin against a real broker: dead letters grouped, counted by a dry run and
// redriven; pause and resume seen by lease; queue counts; paging; errors.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { status as Code } from "@grpc/grpc-js";
import {
  ErrorReason,
  FailedPreconditionError,
  InvalidArgumentError,
  JobState,
  JobwireAdmin,
  JobwireClient,
  JobwireError,
  NotFoundError,
  QueueEventKind,
  type Queue,
  type RedriveProgress,
} from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";

describe("JobwireAdmin", () => {
  let broker: Broker;
  let client: JobwireClient;
  let admin: JobwireAdmin;

  before(async () => {
    broker = await startBroker();
    client = new JobwireClient(broker.target);
    admin = new JobwireAdmin(client);
  });

  after(async () => {
    client?.close();
    await broker?.dispose();
  });

  async function enqueueN(queue: string, n: number): Promise<string[]> {
    const results = await client.enqueueBatch(queue, Array.from({ length: n }, (_, i) => ({ payload: String(i) })));
    return results.map((r) => r.jobId);
  }

  /** Leases n jobs and fails each non-retryably, with messages that differ only in numbers and an address. */
  async function killJobs(queue: string, n: number): Promise<void> {
    const leased = await client.lease(queue, { maxJobs: n, waitMs: 5_000 });
    assert.equal(leased.length, n);
    for (const [i, lj] of leased.entries()) {
      await client.fail(lj.job?.id ?? "", lj.leaseToken, {
        type: "ConnectionRefused",
        message: `connect to 10.0.0.${i + 1}:5432 refused after ${100 * (i + 1)} ms`,
        nonRetryable: true,
      });
    }
  }

  async function states(ids: readonly string[]): Promise<JobState[]> {
    return Promise.all(ids.map(async (id) => (await client.getJob(id)).state));
  }

  it("groups dead letters, counts them in a dry run and redrives them", async () => {
    const queue = uniqueQueue("dlq");
    const ids = await enqueueN(queue, 3);
    await killJobs(queue, 3);
    assert.deepEqual(await states(ids), [JobState.JOB_STATE_DEAD, JobState.JOB_STATE_DEAD, JobState.JOB_STATE_DEAD]);

    const page = await admin.listDeadLetterGroups(queue);
    assert.equal(page.items.length, 1, `groups: ${JSON.stringify(page.items)}`);
    assert.equal(page.nextPageToken, "");
    const [group] = page.items;
    assert.ok(group);
    assert.equal(group.count, 3);
    assert.equal(group.errorType, "ConnectionRefused");
    assert.match(group.fingerprint, /^[0-9a-f]{16}$/);
    assert.ok(ids.includes(group.sampleJobId), `sample ${group.sampleJobId}`);

    // A dry run counts and changes nothing.
    const dryProgress: RedriveProgress[] = [];
    const dry = await admin.redriveDeadLetters(queue, { fingerprint: group.fingerprint, dryRun: true, onProgress: (p) => dryProgress.push(p) });
    assert.deepEqual(dry, { matched: 3, redriven: 0, done: true });
    assert.equal(dryProgress.length, 1);
    const afterDry = await admin.getQueue(queue);
    assert.equal(afterDry.counts?.dead, 3);
    assert.equal(afterDry.counts?.ready, 0);

    // The real one, rate-limited, reports its progress and ends with every job sent back.
    const progress: RedriveProgress[] = [];
    const done = await admin.redriveDeadLetters(queue, { fingerprint: group.fingerprint, rate: 100, onProgress: (p) => progress.push(p) });
    assert.deepEqual(done, { matched: 3, redriven: 3, done: true });
    assert.equal(progress[0]?.matched, 3);
    assert.deepEqual(progress.at(-1), done);
    for (let i = 1; i < progress.length; i++) assert.ok((progress[i]?.redriven ?? 0) >= (progress[i - 1]?.redriven ?? 0), "progress went backwards");

    assert.deepEqual(await states(ids), [JobState.JOB_STATE_READY, JobState.JOB_STATE_READY, JobState.JOB_STATE_READY]);
    for (const id of ids) assert.equal((await client.getJob(id)).countedAttempts, 0, `${id} counted attempts`);
    assert.deepEqual((await admin.listDeadLetterGroups(queue)).items, []);
    const q = await admin.getQueue(queue);
    assert.equal(q.counts?.dead, 0);
    assert.equal(q.counts?.ready, 3);
  });

  it("pauses a queue so lease returns nothing, and resumes it", async () => {
    const queue = uniqueQueue("pause");
    const ids = await enqueueN(queue, 1);
    await admin.pauseQueue(queue);
    await admin.pauseQueue(queue); // a no-op
    const paused = await admin.getQueue(queue);
    assert.equal(paused.paused, true);
    assert.equal(paused.counts?.ready, 1);
    assert.deepEqual(await client.lease(queue, { waitMs: 300 }), []);
    ids.push(...(await enqueueN(queue, 1))); // enqueues still go in

    // A long-polling lease wakes when the queue resumes.
    const leasing = client.lease(queue, { maxJobs: 2, waitMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const start = Date.now();
    await admin.resumeQueue(queue);
    const leased = await leasing;
    assert.ok(leased.length > 0, "nothing leased after resume");
    assert.ok(Date.now() - start < 5_000, `lease woke after ${Date.now() - start} ms`);
    for (const lj of leased) assert.ok(ids.includes(lj.job?.id ?? ""), `leased ${lj.job?.id}`);
    assert.equal((await admin.getQueue(queue)).paused, false);
  });

  it("lists queues with their counts", async () => {
    const busy = uniqueQueue("counts");
    const other = uniqueQueue("counts");
    await enqueueN(busy, 4);
    await killJobs(busy, 1);
    await client.enqueue(busy, "later", { delayMs: 3_600_000 });
    await enqueueN(other, 1);

    const queues = await admin.listQueues();
    const names = queues.map((q) => q.name);
    assert.deepEqual(names, [...names].sort(), "queues not by name");
    const byName = new Map<string, Queue>(queues.map((q) => [q.name, q]));
    assert.deepEqual(byName.get(busy)?.counts, { scheduled: 1, ready: 3, active: 0, completed: 0, dead: 1, cancelled: 0, waiting: 0, expired: 0 });
    assert.equal(byName.get(other)?.counts?.ready, 1);
    assert.equal(byName.get(busy)?.effectiveSettings?.maxAttempts, 3);
  });

  it("updates a queue's settings, with and without a mask", async () => {
    const queue = uniqueQueue("settings"); // created by updateQueue
    let q = await admin.updateQueue(queue, { maxAttempts: 7, priority: 5 });
    assert.equal(q.settings?.maxAttempts, 7);
    assert.equal(q.effectiveSettings?.priority, 5);
    q = await admin.updateQueue(queue, {}, { fields: ["max_attempts"] });
    assert.equal(q.settings?.maxAttempts, undefined);
    assert.equal(q.effectiveSettings?.maxAttempts, 3);
    assert.equal(q.settings?.priority, 5);
  });

  it("lists jobs by state a page at a time", async () => {
    const queue = uniqueQueue("paging");
    const ids = await enqueueN(queue, 7);

    const listed: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await admin.listJobs(queue, JobState.JOB_STATE_READY, { pageSize: 3, pageToken });
      pages++;
      assert.ok(page.items.length <= 3);
      for (const job of page.items) {
        listed.push(job.id);
        assert.equal(job.spec?.payload.length, 0, "payload without includePayloads");
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    assert.deepEqual(listed, ids);
    assert.ok(pages >= 3, `${pages} pages`);

    // jobs() follows the pages itself; newest first reverses the order.
    const newest: string[] = [];
    for await (const job of admin.jobs(queue, JobState.JOB_STATE_READY, { order: "newest-first", pageSize: 2, includePayloads: true })) {
      newest.push(job.id);
      assert.equal(job.spec?.payload.toString("utf8"), String(ids.indexOf(job.id)));
    }
    assert.deepEqual(newest, [...ids].reverse());

    // Breaking out stops listing.
    let n = 0;
    for await (const _ of admin.jobs(queue, JobState.JOB_STATE_READY, { pageSize: 2 })) if (++n === 3) break;
    assert.equal(n, 3);
  });

  it("retries, promotes, purges, drains and deletes", async () => {
    const queue = uniqueQueue("bulk");
    const ids = await enqueueN(queue, 3);
    await killJobs(queue, 1); // ids[0], the first in line
    const [first = "", second = ""] = ids;

    // By ids, all or nothing: a ready job cannot be retried.
    await assert.rejects(admin.retryJobs(queue, { jobIds: [first, second] }), (err: unknown) => {
      assert.ok(err instanceof FailedPreconditionError, String(err));
      assert.equal(err.reason, ErrorReason.WRONG_STATE);
      return true;
    });
    assert.equal((await client.getJob(first)).state, JobState.JOB_STATE_DEAD);
    assert.equal(await admin.retryJobs(queue, { jobIds: [first] }), 1);
    assert.equal((await client.getJob(first)).state, JobState.JOB_STATE_READY);

    const later = await client.enqueue(queue, "later", { delayMs: 3_600_000 });
    assert.equal(await admin.promoteJobs(queue), 1);
    assert.equal((await client.getJob(later.jobId)).state, JobState.JOB_STATE_READY);

    await killJobs(queue, 1);
    assert.equal(await admin.purgeDeadLetters(queue, { all: true, dryRun: true }), 1);
    assert.equal(await admin.purgeDeadLetters(queue, { all: true }), 1);
    assert.equal(await admin.drainQueue(queue), 3);
    assert.deepEqual((await admin.getQueue(queue)).counts, { scheduled: 0, ready: 0, active: 0, completed: 0, dead: 0, cancelled: 0, waiting: 0, expired: 0 });
    await admin.deleteQueue(queue);
    await assert.rejects(admin.getQueue(queue), NotFoundError);
  });

  it("watches a queue's events and resumes after the last one", async () => {
    const queue = uniqueQueue("watch");
    const [id] = await enqueueN(queue, 1);
    await admin.pauseQueue(queue);
    const signal = AbortSignal.timeout(15_000);

    const kinds: QueueEventKind[] = [];
    let lastId = "";
    for await (const event of admin.watchQueue(queue, { afterEventId: "0", signal })) {
      kinds.push(event.kind);
      if (event.kind === QueueEventKind.QUEUE_EVENT_KIND_ENQUEUED) assert.equal(event.jobId, id);
      assert.ok(event.eventId);
      assert.equal(event.gap, false);
      lastId = event.eventId;
      if (event.kind === QueueEventKind.QUEUE_EVENT_KIND_PAUSED) break;
    }
    assert.deepEqual(kinds, [QueueEventKind.QUEUE_EVENT_KIND_ENQUEUED, QueueEventKind.QUEUE_EVENT_KIND_PAUSED]);

    await admin.resumeQueue(queue);
    for await (const event of admin.watchQueue(queue, { afterEventId: lastId, signal })) {
      assert.equal(event.kind, QueueEventKind.QUEUE_EVENT_KIND_RESUMED);
      break;
    }
  });

  it("maps errors", async () => {
    await assert.rejects(admin.getQueue(uniqueQueue("unknown")), (err: unknown) => {
      assert.ok(err instanceof NotFoundError, String(err));
      assert.equal(err.code, Code.NOT_FOUND);
      assert.equal(err.reason, ErrorReason.QUEUE_NOT_FOUND);
      return true;
    });
    const queue = uniqueQueue("invalid");
    await enqueueN(queue, 1);
    await assert.rejects(admin.listJobs(queue, JobState.JOB_STATE_READY, { pageSize: 5000 }), InvalidArgumentError);
    // An aborted redrive rejects with the signal's reason.
    const aborted = AbortSignal.abort(new Error("stop"));
    await assert.rejects(admin.redriveDeadLetters(queue, { signal: aborted }), /stop/);
  });

  it("makes its own channel from a target, or shares a client's", async () => {
    const own = new JobwireAdmin(broker.target, { deadlineMs: 5_000 });
    assert.ok(Array.isArray(await own.listQueues()));
    own.close();
    // grpc-js refuses calls on a closed channel before sending anything.
    await assert.rejects(own.listQueues(), (err: unknown) => err instanceof JobwireError && /shut down/i.test(err.message));

    const shared = new JobwireAdmin(client);
    shared.close(); // leaves the client's channel open
    assert.ok(Array.isArray(await shared.listQueues()));
    await client.getJob((await enqueueN(uniqueQueue("shared"), 1))[0] ?? "");
  });
});
