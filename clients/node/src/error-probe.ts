// `jobwire-node errors`: drives every ErrorReason through the client and prints the error
// class it raised, one JSON line per case, for the cross-language test
// (tests/test_error_classes.py). Every reason the broker can send is triggered for real,
// the AdminService's QUEUE_NOT_FOUND, WRONG_STATE and QUEUE_BUSY through JobwireAdmin; the
// ones it cannot be made to send (and CROSS_SLOT, SCHEDULE_NOT_FOUND and SCHEDULE_EXISTS
// until it sends them), and a few fallbacks, are statuses built here and mapped
// with fromGrpcError, as a call's error is. Each line: {"case", "code", "reason",
// "class" (the most specific), "is" (every class it belongs to, sorted), "retry_delay_ms"
// (null when none), "fields"}.

import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { Any, ErrorInfo, RetryInfo } from "nice-grpc-error-details";
import { Status } from "nice-grpc-error-details/lib/proto/google/rpc/status.js";
import { JobwireAdmin } from "./admin.js";
import { JobwireClient } from "./client.js";
import {
  AlreadyExistsError,
  ERROR_DOMAIN,
  FailedPreconditionError,
  fromGrpcError,
  InternalError,
  InvalidArgumentError,
  JobFinishedError,
  JobwireError,
  LeaseLostError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.js";
import { ErrorReason } from "./gen/jobwire/v1/error_reason.js";

/** The classes in the shared vocabulary, most specific first. */
const CLASSES: [string, abstract new (...args: never[]) => JobwireError][] = [
  ["lease_lost", LeaseLostError],
  ["job_finished", JobFinishedError],
  ["failed_precondition", FailedPreconditionError],
  ["invalid_argument", InvalidArgumentError],
  ["not_found", NotFoundError],
  ["already_exists", AlreadyExistsError],
  ["resource_exhausted", ResourceExhaustedError],
  ["unavailable", UnavailableError],
  ["unauthenticated", UnauthenticatedError],
  ["permission_denied", PermissionDeniedError],
  ["internal", InternalError],
];

function describe(name: string, err: unknown): Record<string, unknown> {
  if (err === undefined) return { case: name, class: "ok", is: [], fields: [] };
  if (!(err instanceof JobwireError)) return { case: name, class: `unmapped: ${String(err)}`, is: [], fields: [] };
  const is = CLASSES.filter(([, cls]) => err instanceof cls).map(([n]) => n);
  return {
    case: name,
    code: Code[err.code],
    reason: ErrorReason[err.reason],
    class: is[0] ?? "error",
    is: [...is].sort(),
    retry_delay_ms: err.retryDelayMs ?? null,
    fields: err.fieldViolations.map((v) => v.field),
  };
}

async function failure(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
    return undefined;
  } catch (err) {
    return err;
  }
}

function pack(type: string, value: Uint8Array): Any {
  return Any.fromPartial({ typeUrl: `type.googleapis.com/${type}`, value });
}

/** A status as the broker would send it, through the client's mapping. */
function built(code: Code, reason = "", domain = ERROR_DOMAIN, more: Any[] = []): JobwireError {
  const details = reason ? [pack(ErrorInfo.$type, ErrorInfo.encode(ErrorInfo.fromPartial({ reason, domain })).finish())] : [];
  const metadata = new Metadata();
  const status = Status.fromPartial({ code, message: "built by jobwire-node errors", details: [...details, ...more] });
  metadata.set("grpc-status-details-bin", Buffer.from(Status.encode(status).finish()));
  const err: ServiceError = Object.assign(new Error(status.message), { code, details: status.message, metadata });
  return fromGrpcError(err);
}

type Emit = (name: string, err: unknown) => void;

/** The AdminService's own reasons, each from the call that sends it. */
async function adminErrors(client: JobwireClient, queue: string, emit: Emit): Promise<void> {
  const admin = new JobwireAdmin(client);
  emit("QUEUE_NOT_FOUND", await failure(admin.getQueue(`${queue}-never`)));

  const ready = `${queue}-ready`;
  const { jobId } = await client.enqueue(ready, "x");
  // PromoteJobs by ids applies only to scheduled jobs; this one is ready.
  emit("WRONG_STATE", await failure(admin.promoteJobs(ready, [jobId])));

  const busy = `${queue}-busy`;
  await client.enqueue(busy, "x");
  const leased = await client.lease(busy, { waitMs: 5_000 });
  if (leased.length !== 1) throw new Error(`could not lease the job of ${busy}`);
  emit("QUEUE_BUSY", await failure(admin.deleteQueue(busy)));
}

export async function errorProbe(options: { target: string; deadTarget: string | undefined; queue: string }): Promise<void> {
  const { queue } = options;
  const lines: Record<string, unknown>[] = [];
  const emit: Emit = (name, err) => void lines.push(describe(name, err));
  const client = new JobwireClient(options.target);
  try {
    emit("INVALID_ARGUMENT", await failure(client.enqueue("bad queue!", "")));
    emit("PAYLOAD_TOO_LARGE", await failure(client.enqueue(queue, new Uint8Array(1024 * 1024 + 1))));
    emit("JOB_NOT_FOUND", await failure(client.getJob(`${queue}:999999`)));

    const { jobId } = await client.enqueue(queue, "x");
    const [leased] = await client.lease(queue, { waitMs: 5_000 });
    if (!leased) throw new Error(`could not lease ${jobId}`);
    emit("LEASE_LOST", await failure(client.complete(jobId, "not-the-token")));
    await client.complete(jobId, leased.leaseToken);
    emit("JOB_FINISHED", await failure(client.cancel(jobId)));

    const big = `${queue}-big`;
    await client.enqueue(big, "a job larger than one byte");
    emit("JOB_TOO_LARGE", await failure(client.lease(big, { maxResponseBytes: 1 })));
    await adminErrors(client, queue, emit);
  } finally {
    client.close();
  }
  if (options.deadTarget) {
    const down = new JobwireClient(options.deadTarget);
    try {
      emit("STORE_UNAVAILABLE", await failure(down.getJob(`${queue}:1`)));
    } finally {
      down.close();
    }
  }
  const second = pack(RetryInfo.$type, RetryInfo.encode(RetryInfo.fromPartial({ retryDelay: { seconds: 1, nanos: 0 } })).finish());
  emit("SHUTTING_DOWN", built(Code.UNAVAILABLE, "SHUTTING_DOWN", ERROR_DOMAIN, [second]));
  emit("INTERNAL", built(Code.INTERNAL, "INTERNAL"));
  emit("UNAUTHENTICATED", built(Code.UNAUTHENTICATED, "UNAUTHENTICATED"));
  emit("PERMISSION_DENIED", built(Code.PERMISSION_DENIED, "PERMISSION_DENIED"));
  emit("NO_DETAILS", built(Code.FAILED_PRECONDITION));
  emit("UNKNOWN_REASON", built(Code.NOT_FOUND, "SOMETHING_NEW"));
  emit("FOREIGN_DOMAIN", built(Code.FAILED_PRECONDITION, "LEASE_LOST", "example.com"));
  emit("REASON_OVER_CODE", built(Code.UNKNOWN, "JOB_FINISHED"));
  emit("ABORTED", built(Code.ABORTED));
  // TODO(broker sends them): trigger these three with real calls instead, as above.
  emit("CROSS_SLOT", built(Code.FAILED_PRECONDITION, "CROSS_SLOT"));
  emit("SCHEDULE_NOT_FOUND", built(Code.NOT_FOUND, "SCHEDULE_NOT_FOUND"));
  emit("SCHEDULE_EXISTS", built(Code.ALREADY_EXISTS, "SCHEDULE_EXISTS"));
  for (const line of lines) process.stdout.write(`${JSON.stringify(line)}\n`);
}
