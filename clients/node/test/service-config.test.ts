// The error classes come from the generated ErrorReason, and the channel's retries and
// timeouts from protos/jobwire/v1/service_config.json.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  Metadata,
  Server,
  ServerCredentials,
  status as Code,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Any, BadRequest, ErrorInfo, RetryInfo } from "nice-grpc-error-details";
import { Status } from "nice-grpc-error-details/lib/proto/google/rpc/status.js";
import { BrokerServiceService, GetJobResponse } from "../src/gen/jobwire/v1/broker_service.js";
import {
  AlreadyExistsError,
  CLASS_BY_REASON,
  DEFAULT_SERVICE_CONFIG,
  ERROR_DOMAIN,
  ErrorReason,
  FailedPreconditionError,
  fromGrpcError,
  InvalidArgumentError,
  JobFinishedError,
  JobwireClient,
  JobwireError,
  LeaseLostError,
  methodPolicy,
  NotFoundError,
  UnavailableError,
  type ServiceConfig,
} from "../src/index.js";
import { REPO_ROOT } from "./broker.js";

/** A failed call's error as grpc-js gives it, with the broker's rich details. */
function serviceError(code: Code, reason?: string, domain = ERROR_DOMAIN, more: Any[] = []): ServiceError {
  const details = reason === undefined ? [] : [Any.fromPartial({ typeUrl: `type.googleapis.com/${ErrorInfo.$type}`, value: ErrorInfo.encode(ErrorInfo.fromPartial({ reason, domain })).finish() })];
  const metadata = new Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(Status.encode(Status.fromPartial({ code, message: "boom", details: [...details, ...more] })).finish()));
  return Object.assign(new Error("boom"), { code, details: "boom", metadata });
}

/** The gRPC code the proto documents for each reason. */
const CODE_OF_REASON: Partial<Record<ErrorReason, Code>> = {
  [ErrorReason.INVALID_ARGUMENT]: Code.INVALID_ARGUMENT,
  [ErrorReason.PAYLOAD_TOO_LARGE]: Code.INVALID_ARGUMENT,
  [ErrorReason.JOB_NOT_FOUND]: Code.NOT_FOUND,
  [ErrorReason.LEASE_LOST]: Code.FAILED_PRECONDITION,
  [ErrorReason.JOB_FINISHED]: Code.FAILED_PRECONDITION,
  [ErrorReason.JOB_TOO_LARGE]: Code.RESOURCE_EXHAUSTED,
  [ErrorReason.STORE_UNAVAILABLE]: Code.UNAVAILABLE,
  [ErrorReason.SHUTTING_DOWN]: Code.UNAVAILABLE,
  [ErrorReason.INTERNAL]: Code.INTERNAL,
  [ErrorReason.UNAUTHENTICATED]: Code.UNAUTHENTICATED,
  [ErrorReason.PERMISSION_DENIED]: Code.PERMISSION_DENIED,
  [ErrorReason.QUEUE_NOT_FOUND]: Code.NOT_FOUND,
  [ErrorReason.WRONG_STATE]: Code.FAILED_PRECONDITION,
  [ErrorReason.QUEUE_BUSY]: Code.FAILED_PRECONDITION,
  [ErrorReason.CROSS_SLOT]: Code.FAILED_PRECONDITION,
  [ErrorReason.SCHEDULE_NOT_FOUND]: Code.NOT_FOUND,
  [ErrorReason.SCHEDULE_EXISTS]: Code.ALREADY_EXISTS,
};

describe("error classes", () => {
  it("map every value of the generated ErrorReason", () => {
    const values = Object.values(ErrorReason).filter((v): v is ErrorReason => typeof v === "number" && v >= 0);
    assert.ok(values.length > 10);
    for (const reason of values) {
      const name = ErrorReason[reason];
      if (reason === ErrorReason.ERROR_REASON_UNSPECIFIED) {
        assert.equal(CLASS_BY_REASON.has(reason), false, "UNSPECIFIED falls back to the code");
        continue;
      }
      const cls = CLASS_BY_REASON.get(reason);
      assert.ok(cls, `reason ${name} has no class in CLASS_BY_REASON`);
      const code = CODE_OF_REASON[reason];
      assert.ok(code !== undefined, `reason ${name}: add its documented gRPC code to CODE_OF_REASON`);
      const err = fromGrpcError(serviceError(code, name));
      assert.ok(err instanceof cls, `${name} gave ${err.name}`);
      assert.equal(err.reason, reason);
      assert.equal(err.code, code);
      // The reason decides, whatever the code says.
      assert.ok(fromGrpcError(serviceError(Code.UNKNOWN, name)) instanceof cls, `${name} with code UNKNOWN`);
    }
  });

  it("keep the hierarchy and fall back to the code", () => {
    const lost = fromGrpcError(serviceError(Code.FAILED_PRECONDITION, "LEASE_LOST"));
    assert.ok(lost instanceof LeaseLostError && lost instanceof FailedPreconditionError && lost instanceof JobwireError);
    const finished = fromGrpcError(serviceError(Code.FAILED_PRECONDITION, "JOB_FINISHED"));
    assert.ok(finished instanceof JobFinishedError && finished instanceof FailedPreconditionError && !(finished instanceof LeaseLostError));

    for (const reason of ["WRONG_STATE", "QUEUE_BUSY", "CROSS_SLOT"]) {
      const plain = fromGrpcError(serviceError(Code.FAILED_PRECONDITION, reason));
      assert.equal(plain.constructor, FailedPreconditionError, `${reason} is only a FailedPreconditionError`);
    }
    assert.equal(fromGrpcError(serviceError(Code.NOT_FOUND, "QUEUE_NOT_FOUND")).constructor, NotFoundError);
    assert.equal(fromGrpcError(serviceError(Code.NOT_FOUND, "SCHEDULE_NOT_FOUND")).constructor, NotFoundError);
    assert.equal(fromGrpcError(serviceError(Code.ALREADY_EXISTS, "SCHEDULE_EXISTS")).constructor, AlreadyExistsError);
    assert.equal(fromGrpcError(serviceError(Code.ALREADY_EXISTS)).constructor, AlreadyExistsError);

    const bare = fromGrpcError(serviceError(Code.FAILED_PRECONDITION));
    assert.ok(bare instanceof FailedPreconditionError && !(bare instanceof LeaseLostError));
    assert.equal(bare.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
    const unknown = fromGrpcError(serviceError(Code.NOT_FOUND, "SOMETHING_NEW"));
    assert.ok(unknown instanceof NotFoundError);
    assert.equal(unknown.reason, ErrorReason.ERROR_REASON_UNSPECIFIED);
    const foreign = fromGrpcError(serviceError(Code.FAILED_PRECONDITION, "LEASE_LOST", "example.com"));
    assert.ok(foreign instanceof FailedPreconditionError && !(foreign instanceof LeaseLostError));
    const aborted = fromGrpcError(serviceError(Code.ABORTED));
    assert.equal(aborted.constructor, JobwireError);
  });

  it("carry field violations and the retry delay", () => {
    const bad = Any.fromPartial({
      typeUrl: `type.googleapis.com/${BadRequest.$type}`,
      value: BadRequest.encode(BadRequest.fromPartial({ fieldViolations: [{ field: "queue", description: "bad" }] })).finish(),
    });
    const invalid = fromGrpcError(serviceError(Code.INVALID_ARGUMENT, "PAYLOAD_TOO_LARGE", ERROR_DOMAIN, [bad]));
    assert.ok(invalid instanceof InvalidArgumentError);
    assert.deepEqual(invalid.fieldViolations, [{ field: "queue", description: "bad" }]);
    const retry = Any.fromPartial({ typeUrl: `type.googleapis.com/${RetryInfo.$type}`, value: RetryInfo.encode(RetryInfo.fromPartial({ retryDelay: { seconds: 1, nanos: 0 } })).finish() });
    const down = fromGrpcError(serviceError(Code.UNAVAILABLE, "SHUTTING_DOWN", ERROR_DOMAIN, [retry]));
    assert.ok(down instanceof UnavailableError);
    assert.equal(down.retryDelayMs, 1000);
  });
});

/**
 * A broker that answers UNAVAILABLE (with a 1 ms retry pushback, so gRPC's retries are
 * quick) to the first `fails[method]` calls of each method, or to all of them when it has
 * no entry, and records each method's attempts and the deadline of its last one.
 */
class FakeBroker {
  readonly attempts = new Map<string, number>();
  readonly deadlines = new Map<string, number>(); // ms away; Infinity: none
  private readonly server = new Server();

  constructor(private readonly fails: Record<string, number>) {}

  async start(): Promise<string> {
    const handlers: UntypedServiceImplementation = {};
    for (const [key, def] of Object.entries(BrokerServiceService)) {
      const method = def.path.split("/").at(-1) ?? key;
      handlers[key] = def.responseStream
        ? (call: ServerWritableStream<unknown, unknown>) => {
            const err = this.attempt(method, call.getDeadline());
            if (err) call.emit("error", err);
            else call.end();
          }
        : (call: ServerUnaryCall<{ jobId?: string }, unknown>, callback: sendUnaryData<unknown>) => {
            const err = this.attempt(method, call.getDeadline());
            if (err) callback(err);
            else callback(null, GetJobResponse.fromPartial({ job: { id: call.request.jobId ?? "" } }));
          };
    }
    this.server.addService(BrokerServiceService, handlers);
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return `127.0.0.1:${port}`;
  }

  stop(): void {
    this.server.forceShutdown();
  }

  count(method: string): number {
    return this.attempts.get(method) ?? 0;
  }

  private attempt(method: string, deadline: Date | number): Partial<ServiceError> | undefined {
    const n = this.count(method) + 1;
    this.attempts.set(method, n);
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    this.deadlines.set(method, at === Infinity ? Infinity : at - Date.now());
    const limit = this.fails[method];
    if (limit !== undefined && n > limit) return undefined;
    const metadata = new Metadata();
    metadata.set("grpc-retry-pushback-ms", "1");
    return { code: Code.UNAVAILABLE, details: "fake broker is unavailable", metadata };
  }
}

describe("the service config", () => {
  const file = JSON.parse(readFileSync(join(REPO_ROOT, "protos/jobwire/v1/service_config.json"), "utf8")) as ServiceConfig;
  let fake: FakeBroker;
  let client: JobwireClient;

  before(async () => {
    fake = new FakeBroker({ GetJob: 2 });
    client = new JobwireClient(await fake.start());
  });

  after(() => {
    client?.close();
    fake?.stop();
  });

  it("is the file shipped with the protos", () => {
    assert.deepEqual(DEFAULT_SERVICE_CONFIG, file, "dist/src/service_config.json is stale: run make setup-node");
    assert.deepEqual(client.serviceConfig, file);
  });

  it("lets GetJob succeed through retries within its timeout", async () => {
    const job = await client.getJob("q:1");
    assert.equal(job.id, "q:1");
    assert.equal(fake.count("GetJob"), 3);
    const timeout = methodPolicy(file, "GetJob").timeoutMs;
    const left = fake.deadlines.get("GetJob") ?? 0;
    assert.ok(left > timeout - 1000 && left <= timeout, `GetJob's deadline was ${left} ms away, want about ${timeout}`);
  });

  const calls: Record<string, (c: JobwireClient) => Promise<unknown>> = {
    Enqueue: (c) => c.enqueue("q", "x"),
    Lease: (c) => c.lease("q"),
    Heartbeat: (c) => c.heartbeat("q:1", "t"),
    Complete: (c) => c.complete("q:1", "t"),
    Fail: (c) => c.fail("q:1", "t", { type: "E" }),
    CancelJob: (c) => c.cancel("q:1"),
    EnqueueBatch: (c) => promisify(c.stub.enqueueBatch.bind(c.stub), { queue: "q", jobs: [] }),
    HeartbeatBatch: (c) => promisify(c.stub.heartbeatBatch.bind(c.stub), { heartbeats: [] }),
    SettleBatch: (c) => promisify(c.stub.settleBatch.bind(c.stub), { settlements: [] }),
    StreamProgress: async (c) => {
      for await (const _ of c.watch("q:1")) break;
    },
  };
  for (const [method, call] of Object.entries(calls)) {
    it(`retries and times out ${method} as the file says`, async () => {
      const policy = methodPolicy(file, method);
      // Watch reopens the stream itself too, up to the same maxAttempts in a row.
      const retried = policy.retry?.retryableCodes.includes(Code.UNAVAILABLE) ? policy.retry.maxAttempts : 1;
      const want = method === "StreamProgress" ? retried * retried : retried;
      await assert.rejects(call(client), (err: unknown) => err instanceof UnavailableError || (err as ServiceError).code === Code.UNAVAILABLE);
      assert.equal(fake.count(method), want);
      const left = fake.deadlines.get(method) ?? 0;
      if (method === "Lease") return; // the client gives it the wait plus a margin
      if (policy.timeoutMs === 0) assert.equal(left, Infinity);
      else assert.ok(left > policy.timeoutMs - 1000 && left <= policy.timeoutMs, `${method}: deadline ${left} ms away`);
    });
  }

  it("retries an enqueue with an idempotency key in the client, with GetJob's policy", async () => {
    const before = fake.count("Enqueue");
    await assert.rejects(client.enqueue("q", "x", { idempotencyKey: "k" }), UnavailableError);
    assert.equal(fake.count("Enqueue") - before, methodPolicy(file, "GetJob").retry?.maxAttempts);
  });
});

function promisify<Req>(method: (req: Req, cb: (err: ServiceError | null) => void) => unknown, req: Req): Promise<void> {
  return new Promise((resolve, reject) => method(req, (err) => (err ? reject(err) : resolve())));
}
