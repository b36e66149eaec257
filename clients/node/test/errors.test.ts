// gRPC statuses from a real broker, with their google.rpc details, mapped to typed errors.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  ErrorReason,
  InvalidArgumentError,
  JobFinishedError,
  JobwireClient,
  JobwireError,
  LeaseLostError,
  NotFoundError,
} from "../src/index.js";
import { startBroker, uniqueQueue, type Broker } from "./broker.js";

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
      assert.equal(err.reason, ErrorReason.INVALID_ARGUMENT);
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
      assert.equal(err.reason, ErrorReason.PAYLOAD_TOO_LARGE);
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
      assert.equal(err.reason, ErrorReason.LEASE_LOST);
      assert.equal(err.preconditionViolations[0]?.subject, "lease_token");
      return true;
    });
    await client.complete(jobId, leased.leaseToken);
    await assert.rejects(client.heartbeat(jobId, leased.leaseToken), LeaseLostError);
    await assert.rejects(client.cancel(jobId), (err: unknown) => {
      assert.ok(err instanceof JobFinishedError);
      assert.equal(err.reason, ErrorReason.JOB_FINISHED);
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
