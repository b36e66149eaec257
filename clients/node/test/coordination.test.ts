// The coordination options an enqueue sends, the states WAITING and EXPIRED, and a Worker
// that waits out a Lease's retry_after, against a fake broker: the real one does not store
// these fields yet and cannot be made to send retry_after on cue.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Server, ServerCredentials, type sendUnaryData, type ServerUnaryCall, type UntypedServiceImplementation } from "@grpc/grpc-js";
import {
  BrokerServiceService,
  type EnqueueBatchRequest,
  type EnqueueBatchResponse,
  type EnqueueRequest,
  type EnqueueResponse,
  type LeaseRequest,
  type LeaseResponse,
} from "../src/gen/jobwire/v1/broker_service.js";
import { DependencyFailurePolicy, IdempotencyMode, isTerminal, JobState, JobwireClient, Worker, type JobOptions, type JobSpec } from "../src/index.js";

/** Records every JobSpec enqueued; answers Lease with `lease`. */
class FakeBroker {
  readonly specs: JobSpec[] = [];
  readonly leases: number[] = []; // Date.now() of each Lease
  lease: (n: number, call: ServerUnaryCall<LeaseRequest, LeaseResponse>, done: sendUnaryData<LeaseResponse>) => void = (_n, _call, done) =>
    done(null, { jobs: [] });
  private readonly server = new Server();

  async start(): Promise<string> {
    const handlers: UntypedServiceImplementation = {
      enqueue: (call: ServerUnaryCall<EnqueueRequest, EnqueueResponse>, done: sendUnaryData<EnqueueResponse>) => {
        if (call.request.job) this.specs.push(call.request.job);
        done(null, { jobId: `${call.request.queue}:1`, duplicate: false, state: JobState.JOB_STATE_WAITING });
      },
      enqueueBatch: (call: ServerUnaryCall<EnqueueBatchRequest, EnqueueBatchResponse>, done: sendUnaryData<EnqueueBatchResponse>) => {
        this.specs.push(...call.request.jobs);
        done(null, { results: call.request.jobs.map((_, i) => ({ jobId: `${call.request.queue}:${i + 2}`, duplicate: false, state: JobState.JOB_STATE_WAITING })) });
      },
      lease: (call: ServerUnaryCall<LeaseRequest, LeaseResponse>, done: sendUnaryData<LeaseResponse>) => {
        this.leases.push(Date.now());
        this.lease(this.leases.length, call, done);
      },
    };
    this.server.addService(BrokerServiceService, handlers);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return `127.0.0.1:${port}`;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

describe("coordination options", () => {
  let fake: FakeBroker;
  let client: JobwireClient;

  before(async () => {
    fake = new FakeBroker();
    client = new JobwireClient(await fake.start());
  });

  after(() => {
    client?.close();
    fake?.stop();
  });

  const deadline = new Date(Date.now() + 3_600_000);
  const options: JobOptions = {
    concurrencyKey: "wallet:0xabc",
    concurrencyLimit: 2,
    dependsOn: ["q:1", "q:2"],
    onDependencyFailure: "ignore",
    startDeadline: deadline,
    idempotencyKey: "k",
    idempotencyMode: "replace",
  };

  function check(spec: JobSpec | undefined): void {
    assert.ok(spec);
    assert.equal(spec.concurrencyKey, "wallet:0xabc");
    assert.equal(spec.concurrencyLimit, 2);
    assert.deepEqual(spec.dependsOn, ["q:1", "q:2"]);
    assert.equal(spec.onDependencyFailure, DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_IGNORE);
    assert.equal(spec.startDeadline?.getTime(), deadline.getTime());
    assert.equal(spec.idempotencyKey, "k");
    assert.equal(spec.idempotencyMode, IdempotencyMode.IDEMPOTENCY_MODE_REPLACE);
  }

  it("sends concurrency keys, dependencies, start deadlines and idempotency modes", async () => {
    fake.specs.length = 0;
    const res = await client.enqueue("q", "x", options);
    assert.equal(res.state, JobState.JOB_STATE_WAITING);
    await client.enqueueBatch("q", [{ payload: "y", ...options }]);
    assert.equal(fake.specs.length, 2);
    for (const spec of fake.specs) check(spec);
  });

  it("maps each mode and policy, and leaves the broker's defaults alone without them", async () => {
    fake.specs.length = 0;
    await client.enqueue("q", "x", { idempotencyKey: "k", idempotencyMode: "first", onDependencyFailure: "fail" });
    await client.enqueue("q", "x", { idempotencyKey: "k", idempotencyMode: "extend" });
    await client.enqueue("q", "x");
    const [first, extend, plain] = fake.specs;
    assert.equal(first?.idempotencyMode, IdempotencyMode.IDEMPOTENCY_MODE_FIRST);
    assert.equal(first?.onDependencyFailure, DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_FAIL);
    assert.equal(extend?.idempotencyMode, IdempotencyMode.IDEMPOTENCY_MODE_EXTEND);
    assert.ok(plain);
    assert.equal(plain.idempotencyMode, IdempotencyMode.IDEMPOTENCY_MODE_UNSPECIFIED);
    assert.equal(plain.onDependencyFailure, DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_UNSPECIFIED);
    assert.equal(plain.concurrencyKey, "");
    assert.equal(plain.concurrencyLimit, 0);
    assert.deepEqual(plain.dependsOn, []);
    assert.equal(plain.startDeadline, undefined);
  });

  it("counts EXPIRED as terminal and WAITING as not", () => {
    assert.equal(isTerminal(JobState.JOB_STATE_EXPIRED), true);
    assert.equal(isTerminal(JobState.JOB_STATE_WAITING), false);
    assert.equal(isTerminal(JobState.JOB_STATE_COMPLETED), true);
    assert.equal(isTerminal(JobState.JOB_STATE_READY), false);
  });

  it("reports a Lease's retry_after", async () => {
    fake.lease = (_n, _call, done) => done(null, { jobs: [], retryAfter: { seconds: 1, nanos: 500_000_000 } });
    assert.deepEqual(await client.leaseWithRetryAfter("q"), { jobs: [], retryAfterMs: 1_500 });
    fake.lease = (_n, _call, done) => done(null, { jobs: [] });
    assert.deepEqual(await client.leaseWithRetryAfter("q"), { jobs: [], retryAfterMs: undefined });
  });

  it("makes the worker wait out retry_after before its next Lease", async () => {
    const waitMs = 400;
    let second!: () => void;
    const secondLease = new Promise<void>((resolve) => (second = resolve));
    fake.leases.length = 0;
    fake.lease = (n, call, done) => {
      if (n === 1) return done(null, { jobs: [], retryAfter: { seconds: 0, nanos: waitMs * 1_000_000 } });
      if (n === 2) second();
      // An empty queue: hold the long-poll until the worker gives up on it.
      call.on("cancelled", () => done(null, { jobs: [] }));
    };
    const worker = new Worker(client, { graceMs: 100 });
    worker.process("q", () => undefined, { pollWaitMs: 1_000 });
    const running = worker.run();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("no second Lease")), 10_000)));
    await Promise.race([secondLease, timeout]).finally(() => clearTimeout(timer));
    await worker.close();
    await running;
    const [t1, t2] = fake.leases;
    assert.ok(t1 !== undefined && t2 !== undefined);
    // setTimeout may fire up to a millisecond early in Node's clock.
    assert.ok(t2 - t1 >= waitMs - 2, `the second Lease came ${t2 - t1} ms after the first, before retry_after (${waitMs} ms)`);
  });
});
