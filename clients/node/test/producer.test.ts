// Producer and watcher calls against a real broker.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DEFAULT_SERVICE_CONFIG, ErrorReason, EventKind, JobState, JobwireClient, NotFoundError, type JobEvent } from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";
import { withBackoff } from "./config.js";

describe("JobwireClient producer", () => {
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

  it("enqueues bytes, text and JSON and reads them back", async () => {
    const queue = uniqueQueue("enqueue");
    const bytes = await client.enqueue(queue, new Uint8Array([0, 1, 2, 255]), { headers: { tenant: "t1" } });
    const text = await client.enqueue(queue, "héllo");
    const json = await client.enqueue(queue, { to: "a@b.c", n: 1 }, { priority: 7, maxAttempts: 4 });

    assert.match(bytes.jobId, new RegExp(`^${queue}:\\d+$`));
    assert.equal(bytes.state, JobState.JOB_STATE_READY);
    assert.equal(bytes.duplicate, false);

    const b = await client.getJob(bytes.jobId);
    assert.equal(b.id, bytes.jobId);
    assert.equal(b.queue, queue);
    assert.deepEqual([...(b.spec?.payload ?? [])], [0, 1, 2, 255]);
    assert.equal(b.spec?.contentType, "application/octet-stream");
    assert.deepEqual(b.spec?.headers, { tenant: "t1" });

    const t = await client.getJob(text.jobId);
    assert.equal(t.spec?.payload.toString("utf8"), "héllo");
    assert.equal(t.spec?.contentType, "text/plain; charset=utf-8");

    const j = await client.getJob(json.jobId);
    assert.deepEqual(JSON.parse(j.spec?.payload.toString("utf8") ?? ""), { to: "a@b.c", n: 1 });
    assert.equal(j.spec?.contentType, "application/json");
    assert.equal(j.spec?.priority, 7);
    assert.equal(j.spec?.maxAttempts, 4);
    assert.ok(j.createTime instanceof Date);
  });

  it("maps job options to the spec", async () => {
    const queue = uniqueQueue("options");
    const res = await client.enqueue(queue, "x", {
      delayMs: 60_000,
      leaseDurationMs: 5_000,
      executionTimeoutMs: 90_000,
      backoff: { kind: "linear", initialDelayMs: 1_500, maxDelayMs: 10_000 },
      contentType: "text/x-custom",
    });
    assert.equal(res.state, JobState.JOB_STATE_SCHEDULED);
    const job = await client.getJob(res.jobId);
    assert.equal(job.spec?.contentType, "text/x-custom");
    assert.deepEqual(job.spec?.leaseDuration, { seconds: 5, nanos: 0 });
    assert.deepEqual(job.spec?.executionTimeout, { seconds: 90, nanos: 0 });
    assert.deepEqual(job.spec?.backoff?.initialDelay, { seconds: 1, nanos: 500_000_000 });
    assert.ok((job.runTime?.getTime() ?? 0) > Date.now() + 50_000);
  });

  it("returns the first job for a repeated idempotency key", async () => {
    const queue = uniqueQueue("idem");
    const first = await client.enqueue(queue, "a", { idempotencyKey: "order-42" });
    const second = await client.enqueue(queue, "b", { idempotencyKey: "order-42" });
    assert.equal(second.jobId, first.jobId);
    assert.equal(second.duplicate, true);
  });

  it("enqueues a batch in order", async () => {
    const queue = uniqueQueue("batch");
    const results = await client.enqueueBatch(queue, [{ payload: "one" }, { payload: { two: 2 }, priority: 3 }, { payload: new Uint8Array([3]) }]);
    assert.equal(results.length, 3);
    const seqs = results.map((r) => Number(r.jobId.split(":").pop()));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    const second = await client.getJob(results[1]!.jobId);
    assert.equal(second.spec?.priority, 3);
  });

  it("cancels a pending job", async () => {
    const queue = uniqueQueue("cancel");
    const { jobId } = await client.enqueue(queue, "x");
    assert.equal(await client.cancel(jobId), JobState.JOB_STATE_CANCELLED);
    assert.equal((await client.getJob(jobId)).state, JobState.JOB_STATE_CANCELLED);
  });

  it("throws NotFoundError for an unknown job", async () => {
    await assert.rejects(client.getJob(`${uniqueQueue("nf")}:999`), (err: unknown) => {
      assert.ok(err instanceof NotFoundError);
      assert.equal(err.reason, ErrorReason.JOB_NOT_FOUND);
      return true;
    });
  });

  it("watches a job until it ends, and resumes after a given event", async () => {
    const queue = uniqueQueue("watch");
    const { jobId } = await client.enqueue(queue, "x");
    const events: JobEvent[] = [];
    const watching = (async () => {
      for await (const e of client.watch(jobId)) events.push(e);
    })();
    // Lease and complete by hand once the snapshot is out.
    while (events.length === 0) await new Promise((r) => setTimeout(r, 20));
    const [leased] = await client.lease(queue, { maxJobs: 1, waitMs: 1000 });
    assert.ok(leased);
    await client.heartbeat(jobId, leased.leaseToken, { progress: { percent: 40, message: "busy", details: { step: 2 } } });
    await client.complete(jobId, leased.leaseToken, { ok: true });
    await watching;

    assert.equal(events[0]?.kind, EventKind.EVENT_KIND_SNAPSHOT);
    const progress = events.find((e) => e.kind === EventKind.EVENT_KIND_PROGRESS);
    assert.equal(progress?.job?.progress?.percent, 40);
    assert.deepEqual(progress?.job?.progress?.details, { step: 2 });
    const last = events.at(-1);
    assert.equal(last?.kind, EventKind.EVENT_KIND_STATE_CHANGED);
    assert.equal(last?.job?.state, JobState.JOB_STATE_COMPLETED);

    // Resuming after the snapshot replays exactly what followed it.
    const replay: JobEvent[] = [];
    for await (const e of client.watch(jobId, { afterEventId: events[0]!.eventId })) replay.push(e);
    assert.deepEqual(
      replay.map((e) => e.eventId),
      events.slice(1).map((e) => e.eventId),
    );
  });

  it("stops watching when the signal aborts", async () => {
    const queue = uniqueQueue("watch-abort");
    const { jobId } = await client.enqueue(queue, "x");
    const controller = new AbortController();
    const seen: JobEvent[] = [];
    await assert.rejects(
      (async () => {
        for await (const e of client.watch(jobId, { signal: controller.signal })) {
          seen.push(e);
          controller.abort(new Error("enough"));
        }
      })(),
      /enough/,
    );
    assert.equal(seen.length, 1);
  });
});

describe("JobwireClient watch across a broker restart", () => {
  it("resumes from the last event id after the stream drops", async () => {
    let broker = await startBroker();
    // Patient retries (about 12 s of backoff), so the watch and the calls below outlast
    // the restart: the same service config with slower retry policies.
    const client = new JobwireClient(broker.target, { serviceConfig: withBackoff(DEFAULT_SERVICE_CONFIG, "1s", "5s") });
    try {
      const queue = uniqueQueue("resume");
      const { jobId } = await client.enqueue(queue, "x");
      const [leased] = await client.lease(queue, { maxJobs: 1 });
      assert.ok(leased);
      const events: JobEvent[] = [];
      const watching = (async () => {
        for await (const e of client.watch(jobId)) events.push(e);
      })();
      while (events.length === 0) await new Promise((r) => setTimeout(r, 20));

      // Drop the stream by restarting the broker on the same port and data dir.
      await broker.stop();
      broker = await startBroker({ port: broker.port, dataDir: broker.dataDir });
      await client.heartbeat(jobId, leased.leaseToken, { progress: { percent: 90, message: "after restart" } });
      await client.complete(jobId, leased.leaseToken, "done");
      await watching;

      const kinds = events.map((e) => e.kind);
      assert.equal(kinds.filter((k) => k === EventKind.EVENT_KIND_SNAPSHOT).length, 1, "no second snapshot on resume");
      assert.ok(events.some((e) => e.job?.progress?.message === "after restart"));
      assert.equal(events.at(-1)?.job?.state, JobState.JOB_STATE_COMPLETED);
      assert.equal(new Set(events.map((e) => e.eventId)).size, events.length, "no event twice");
    } finally {
      client.close();
      await broker.dispose();
    }
  });
});
