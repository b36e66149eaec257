// Jobs at the broker's payload limit: Lease replies of several MiB, and the client's
// message size limit (64 MiB by default, `maxMessageBytes` to change it).

import assert from "node:assert/strict";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { DEFAULT_MAX_MESSAGE_BYTES, JobState, JobwireClient, ResourceExhaustedError, Worker } from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";

const MIB = 1 << 20;

/** `n` bytes that tell jobs apart: job i's are all byte i. */
function bigPayload(i: number, n: number): Buffer {
  return Buffer.alloc(n, i);
}

/**
 * Enqueues 12 jobs of exactly 1 MiB, then runs a worker with default options at
 * concurrency 10, so its first Lease asks for 10 of them (~10 MiB). Every job must be
 * handled exactly once and end completed on its first attempt, well before a stranded
 * lease (30 s) could expire and be retried.
 */
async function runBigJobs(target: string): Promise<void> {
  const client = new JobwireClient(target);
  const queue = uniqueQueue("big");
  const ids: string[] = [];
  const index = new Map<string, number>();
  try {
    for (let i = 0; i < 12; i++) {
      const { jobId } = await client.enqueue(queue, bigPayload(i, MIB));
      ids.push(jobId);
      index.set(jobId, i);
    }
    const calls = new Map<string, number>();
    const wrong: string[] = [];
    const errors: unknown[] = [];
    const worker = new Worker(target);
    worker.on("error", (err) => errors.push(err));
    worker.process(
      queue,
      (job) => {
        calls.set(job.id, (calls.get(job.id) ?? 0) + 1);
        const i = index.get(job.id);
        if (i === undefined || !job.payload.equals(bigPayload(i, MIB))) wrong.push(`${job.id} (${job.payload.length} bytes)`);
        return "ok";
      },
      { concurrency: 10 },
    );
    const running = worker.run();
    try {
      const end = Date.now() + 20_000;
      for (const id of ids) {
        for (;;) {
          const job = await client.getJob(id);
          if (job.state === JobState.JOB_STATE_COMPLETED) {
            assert.equal(job.attempt, 1, `${id} completed on attempt ${job.attempt}`);
            assert.equal(job.result.toString(), "ok");
            break;
          }
          if (Date.now() > end) {
            assert.fail(
              `${id} not completed after 20 s: ${JobState[job.state]}, attempt ${job.attempt}, ` +
                `last error ${JSON.stringify(job.lastError)}; worker errors: ${errors.map(String).join("; ")}`,
            );
          }
          await delay(20);
        }
      }
    } finally {
      await worker.close();
      await running;
    }
    assert.deepEqual(
      ids.filter((id) => calls.get(id) !== 1).map((id) => `${id}: ${calls.get(id) ?? 0}`),
      [],
      "every job handled exactly once",
    );
    assert.equal(calls.size, 12);
    assert.deepEqual(wrong, []);
    assert.deepEqual(errors.map(String), []);
  } finally {
    client.close();
  }
}

describe("big jobs", () => {
  let broker: Broker;

  before(async () => {
    broker = await startBroker();
  });

  after(async () => {
    await broker?.dispose();
  });

  it("works 12 jobs of 1 MiB at concurrency 10 with default options", { timeout: 60_000 }, async () => {
    await runBigJobs(broker.target);
  });
});

// A broker with a 6 MiB payload limit (its own message limit is 28 MiB), so that what
// limits a reply is the client.
describe("message size limit", () => {
  let broker: Broker;

  before(async () => {
    broker = await startBroker({ args: ["--max-payload-bytes", String(6 * MIB)] });
  });

  after(async () => {
    await broker?.dispose();
  });

  it("defaults to 64 MiB", () => {
    assert.equal(DEFAULT_MAX_MESSAGE_BYTES, 64 * MIB);
  });

  it("receives a 5 MiB GetJob reply by default, and not with maxMessageBytes of 4 MiB", { timeout: 60_000 }, async () => {
    const client = new JobwireClient(broker.target);
    const small = new JobwireClient(broker.target, { maxMessageBytes: 4 * MIB });
    try {
      const payload = bigPayload(7, 5 * MIB);
      const { jobId } = await client.enqueue(uniqueQueue("big"), payload);
      const job = await client.getJob(jobId);
      assert.ok(job.spec?.payload && Buffer.from(job.spec.payload).equals(payload), "payload intact");

      await assert.rejects(small.getJob(jobId), ResourceExhaustedError);
      await assert.rejects(small.enqueue(uniqueQueue("big"), payload), ResourceExhaustedError);
    } finally {
      client.close();
      small.close();
    }
  });

  it("works 12 jobs of 1 MiB where the broker may send Lease replies of 10 MiB", { timeout: 60_000 }, async () => {
    await runBigJobs(broker.target);
  });
});
