// gRPC statuses and google.rpc details mapped to typed errors, and retry behaviour.

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import {
  InvalidArgumentError,
  JobFinishedError,
  JobwireClient,
  JobwireError,
  LeaseLostError,
  NotFoundError,
  UnavailableError,
} from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address && typeof address === "object");
  return address.port;
}

describe("error mapping", () => {
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

  it("names every invalid field of an enqueue", async () => {
    await assert.rejects(client.enqueue("bad queue!", "x", { priority: 5_000, leaseDurationMs: 10 }), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, String(err));
      assert.ok(err instanceof JobwireError);
      assert.equal(err.name, "InvalidArgumentError");
      assert.equal(err.reason, "INVALID_ARGUMENT");
      const fields = err.fieldViolations.map((v) => v.field).sort();
      assert.deepEqual(fields, ["job.lease_duration", "job.priority", "queue"]);
      assert.ok(err.fieldViolations.every((v) => v.description.length > 0));
      return true;
    });
  });

  it("names the bad job of a batch", async () => {
    const queue = uniqueQueue("batch");
    await assert.rejects(client.enqueueBatch(queue, [{ payload: "ok" }, { payload: "bad", maxAttempts: 5_000 }]), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.deepEqual(
        err.fieldViolations.map((v) => v.field),
        ["jobs[1].max_attempts"],
      );
      return true;
    });
  });

  it("reports an oversized payload with reason PAYLOAD_TOO_LARGE", async () => {
    await assert.rejects(client.enqueue(uniqueQueue("big"), new Uint8Array(1024 * 1024 + 1)), (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError);
      assert.equal(err.reason, "PAYLOAD_TOO_LARGE");
      assert.deepEqual(
        err.fieldViolations.map((v) => v.field),
        ["job.payload"],
      );
      return true;
    });
  });

  it("maps NOT_FOUND, LEASE_LOST and JOB_FINISHED", async () => {
    const queue = uniqueQueue("states");
    await assert.rejects(client.cancel(`${queue}:12345`), NotFoundError);

    const { jobId } = await client.enqueue(queue, "x");
    const [leased] = await client.lease(queue, { maxJobs: 1 });
    assert.ok(leased);
    await assert.rejects(client.complete(jobId, "not-the-token"), (err: unknown) => {
      assert.ok(err instanceof LeaseLostError, String(err));
      assert.equal(err.reason, "LEASE_LOST");
      assert.equal(err.preconditionViolations[0]?.subject, "lease_token");
      return true;
    });
    await client.complete(jobId, leased.leaseToken);
    await assert.rejects(client.heartbeat(jobId, leased.leaseToken), LeaseLostError);
    await assert.rejects(client.cancel(jobId), (err: unknown) => {
      assert.ok(err instanceof JobFinishedError);
      assert.equal(err.reason, "JOB_FINISHED");
      return true;
    });
  });

  it("cancels a call when its signal aborts", async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(new Error("stop waiting")), 100);
    await assert.rejects(client.lease(uniqueQueue("idle"), { waitMs: 10_000, signal: controller.signal }), /stop waiting/);
    assert.ok(Date.now() - started < 2_000);
  });
});

describe("UNAVAILABLE", () => {
  it("retries idempotent calls with backoff and fails others at once", async () => {
    const target = `127.0.0.1:${await closedPort()}`;
    const client = new JobwireClient(target, { retry: { maxAttempts: 3, initialBackoffMs: 300, maxBackoffMs: 1_000 } });
    try {
      let started = Date.now();
      await assert.rejects(client.getJob("q:1"), UnavailableError);
      const retried = Date.now() - started;
      // Two backoffs: at least half of 300 ms and half of 600 ms.
      assert.ok(retried >= 400, `getJob gave up after ${retried} ms`);

      started = Date.now();
      await assert.rejects(client.enqueue("q", "x"), UnavailableError);
      const once = Date.now() - started;
      assert.ok(once < 300, `enqueue without an idempotency key took ${once} ms`);
    } finally {
      client.close();
    }
  });
});
