// Typed errors: the one place where a gRPC status and its google.rpc details
// (from the `grpc-status-details-bin` trailer) become a JobwireError subclass. The class
// comes from the reason (the generated ErrorReason) first, then from the gRPC code.

import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo, PreconditionFailure, RetryInfo } from "nice-grpc-error-details";
import { Status } from "nice-grpc-error-details/lib/proto/google/rpc/status.js";
import { ErrorReason, errorReasonFromJSON } from "./gen/jobwire/v1/error_reason.js";

/** `google.rpc.ErrorInfo.domain` of the broker's errors; reasons of other domains are not read. */
export const ERROR_DOMAIN = "jobwire.dev";

/** One invalid field of a request, from `google.rpc.BadRequest`. */
export interface FieldViolation {
  /** Path of the field in the request, e.g. `job.priority` or `jobs[2].payload`. */
  readonly field: string;
  readonly description: string;
}

/** One violated precondition, from `google.rpc.PreconditionFailure`. */
export interface PreconditionViolation {
  readonly type: string;
  readonly subject: string;
  readonly description: string;
}

export interface JobwireErrorInit {
  /** The gRPC status code. */
  code?: Code;
  /** The broker's reason, from `google.rpc.ErrorInfo`. */
  reason?: ErrorReason;
  fieldViolations?: readonly FieldViolation[];
  preconditionViolations?: readonly PreconditionViolation[];
  /** Server-suggested delay before retrying, from `google.rpc.RetryInfo`. */
  retryDelayMs?: number;
  /** Trailing metadata of the failed call. */
  metadata?: Metadata;
  cause?: unknown;
}

/** Base class of every error the client raises for a failed call. */
export class JobwireError extends Error {
  override name = "JobwireError";
  /** The gRPC status code (`status.UNKNOWN` when the error did not come from a call). */
  readonly code: Code;
  /**
   * The broker's reason (`google.rpc.ErrorInfo.reason`), or `ERROR_REASON_UNSPECIFIED`
   * when the status carried none, or one this client does not know.
   */
  readonly reason: ErrorReason;
  /** Each bad field of an INVALID_ARGUMENT, in the broker's order; empty otherwise. */
  readonly fieldViolations: readonly FieldViolation[];
  readonly preconditionViolations: readonly PreconditionViolation[];
  readonly retryDelayMs: number | undefined;
  readonly metadata: Metadata;

  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code ?? Code.UNKNOWN;
    this.reason = init.reason ?? ErrorReason.ERROR_REASON_UNSPECIFIED;
    this.fieldViolations = init.fieldViolations ?? [];
    this.preconditionViolations = init.preconditionViolations ?? [];
    this.retryDelayMs = init.retryDelayMs;
    this.metadata = init.metadata ?? new Metadata();
  }
}

/** `INVALID_ARGUMENT` (reasons `INVALID_ARGUMENT`, `PAYLOAD_TOO_LARGE`): nothing was written. Do not retry as is. */
export class InvalidArgumentError extends JobwireError {
  override name = "InvalidArgumentError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.INVALID_ARGUMENT, ...init });
  }
}

/**
 * `NOT_FOUND`: the job never existed or was removed by retention (`JOB_NOT_FOUND`), the
 * queue does not exist (`QUEUE_NOT_FOUND`), or the schedule does not (`SCHEDULE_NOT_FOUND`).
 */
export class NotFoundError extends JobwireError {
  override name = "NotFoundError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.NOT_FOUND, ...init });
  }
}

/**
 * `ALREADY_EXISTS` (`SCHEDULE_EXISTS`): CreateSchedule named a schedule that exists.
 * Nothing was written; update it instead, or delete it first.
 */
export class AlreadyExistsError extends JobwireError {
  override name = "AlreadyExistsError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.ALREADY_EXISTS, ...init });
  }
}

/**
 * `FAILED_PRECONDITION`: the job or queue is not in a state that allows the call.
 * `LeaseLostError` and `JobFinishedError` are its subclasses; `WRONG_STATE` (an admin
 * operation on a job in the wrong state), `QUEUE_BUSY` (the queue has active jobs) and
 * `CROSS_SLOT` (on Redis Cluster, a flow or a dependency would join jobs of more than one
 * queue) are this class alone.
 */
export class FailedPreconditionError extends JobwireError {
  override name = "FailedPreconditionError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.FAILED_PRECONDITION, ...init });
  }
}

/**
 * `LEASE_LOST`: the lease is gone (expired, taken over, or the job already finished): stop
 * working on the job and drop its result.
 */
export class LeaseLostError extends FailedPreconditionError {
  override name = "LeaseLostError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { reason: ErrorReason.LEASE_LOST, ...init });
  }
}

/** `JOB_FINISHED`: CancelJob on a completed or dead job. */
export class JobFinishedError extends FailedPreconditionError {
  override name = "JobFinishedError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { reason: ErrorReason.JOB_FINISHED, ...init });
  }
}

/** `RESOURCE_EXHAUSTED` (`JOB_TOO_LARGE`): a limit was hit; retrying as is fails the same way. */
export class ResourceExhaustedError extends JobwireError {
  override name = "ResourceExhaustedError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.RESOURCE_EXHAUSTED, ...init });
  }
}

/** `UNAVAILABLE` (`STORE_UNAVAILABLE`, `SHUTTING_DOWN`): retry with backoff, after `retryDelayMs` if set. */
export class UnavailableError extends JobwireError {
  override name = "UnavailableError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.UNAVAILABLE, ...init });
  }
}

/** `UNAUTHENTICATED`: the call has no valid credentials. */
export class UnauthenticatedError extends JobwireError {
  override name = "UnauthenticatedError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.UNAUTHENTICATED, ...init });
  }
}

/** `PERMISSION_DENIED`: the caller may not do this. */
export class PermissionDeniedError extends JobwireError {
  override name = "PermissionDeniedError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.PERMISSION_DENIED, ...init });
  }
}

/** `INTERNAL`: a bug in the broker. */
export class InternalError extends JobwireError {
  override name = "InternalError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.INTERNAL, ...init });
  }
}

/** `DEADLINE_EXCEEDED`: the call's deadline passed before the broker answered. */
export class DeadlineExceededError extends JobwireError {
  override name = "DeadlineExceededError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.DEADLINE_EXCEEDED, ...init });
  }
}

type ErrorClass = new (message: string, init?: JobwireErrorInit) => JobwireError;

/**
 * The class of each reason. Keyed by the generated enum; a test checks that every value
 * but `ERROR_REASON_UNSPECIFIED` (which falls back to the code) is here.
 */
export const CLASS_BY_REASON: ReadonlyMap<ErrorReason, ErrorClass> = new Map<ErrorReason, ErrorClass>([
  [ErrorReason.INVALID_ARGUMENT, InvalidArgumentError],
  [ErrorReason.PAYLOAD_TOO_LARGE, InvalidArgumentError],
  [ErrorReason.JOB_NOT_FOUND, NotFoundError],
  [ErrorReason.LEASE_LOST, LeaseLostError],
  [ErrorReason.JOB_FINISHED, JobFinishedError],
  [ErrorReason.JOB_TOO_LARGE, ResourceExhaustedError],
  [ErrorReason.STORE_UNAVAILABLE, UnavailableError],
  [ErrorReason.SHUTTING_DOWN, UnavailableError],
  [ErrorReason.INTERNAL, InternalError],
  [ErrorReason.UNAUTHENTICATED, UnauthenticatedError],
  [ErrorReason.PERMISSION_DENIED, PermissionDeniedError],
  [ErrorReason.QUEUE_NOT_FOUND, NotFoundError],
  [ErrorReason.WRONG_STATE, FailedPreconditionError],
  [ErrorReason.QUEUE_BUSY, FailedPreconditionError],
  [ErrorReason.CROSS_SLOT, FailedPreconditionError],
  [ErrorReason.SCHEDULE_NOT_FOUND, NotFoundError],
  [ErrorReason.SCHEDULE_EXISTS, AlreadyExistsError],
]);

/** The class of a status whose reason is unspecified or unknown. */
const CLASS_BY_CODE: ReadonlyMap<Code, ErrorClass> = new Map<Code, ErrorClass>([
  [Code.INVALID_ARGUMENT, InvalidArgumentError],
  [Code.NOT_FOUND, NotFoundError],
  [Code.ALREADY_EXISTS, AlreadyExistsError],
  [Code.FAILED_PRECONDITION, FailedPreconditionError],
  [Code.RESOURCE_EXHAUSTED, ResourceExhaustedError],
  [Code.UNAVAILABLE, UnavailableError],
  [Code.UNAUTHENTICATED, UnauthenticatedError],
  [Code.PERMISSION_DENIED, PermissionDeniedError],
  [Code.INTERNAL, InternalError],
  [Code.DEADLINE_EXCEEDED, DeadlineExceededError],
]);

/** The generated enum value of a reason string; unknown strings are unspecified. */
export function parseReason(reason: string): ErrorReason {
  const value = errorReasonFromJSON(reason);
  return value === ErrorReason.UNRECOGNIZED ? ErrorReason.ERROR_REASON_UNSPECIFIED : value;
}

const TYPE_PREFIX = "type.googleapis.com/";

interface Details {
  reason: ErrorReason;
  fieldViolations: FieldViolation[];
  preconditionViolations: PreconditionViolation[];
  retryDelayMs?: number;
}

/** Decodes the google.rpc.Status carried in the `grpc-status-details-bin` trailer. */
function decodeDetails(metadata: Metadata): Details {
  const out: Details = { reason: ErrorReason.ERROR_REASON_UNSPECIFIED, fieldViolations: [], preconditionViolations: [] };
  const [raw] = metadata.get("grpc-status-details-bin");
  if (!(raw instanceof Uint8Array)) return out;
  let status: Status;
  try {
    status = Status.decode(raw);
  } catch {
    return out; // A malformed trailer must not hide the status code itself.
  }
  for (const any of status.details) {
    const type = any.typeUrl.startsWith(TYPE_PREFIX) ? any.typeUrl.slice(TYPE_PREFIX.length) : any.typeUrl;
    switch (type) {
      case ErrorInfo.$type: {
        const info = ErrorInfo.decode(any.value);
        if (info.domain === ERROR_DOMAIN) out.reason = parseReason(info.reason);
        break;
      }
      case BadRequest.$type:
        for (const v of BadRequest.decode(any.value).fieldViolations) {
          out.fieldViolations.push({ field: v.field, description: v.description });
        }
        break;
      case PreconditionFailure.$type:
        for (const v of PreconditionFailure.decode(any.value).violations) {
          out.preconditionViolations.push({ type: v.type, subject: v.subject, description: v.description });
        }
        break;
      case RetryInfo.$type: {
        const delay = RetryInfo.decode(any.value).retryDelay;
        if (delay) out.retryDelayMs = Number(delay.seconds) * 1000 + Math.floor(delay.nanos / 1e6);
        break;
      }
    }
  }
  return out;
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "metadata" in err;
}

/** Maps a failed gRPC call to the matching JobwireError subclass. */
export function fromGrpcError(err: unknown): JobwireError {
  if (err instanceof JobwireError) return err;
  if (!isServiceError(err)) {
    return new JobwireError(err instanceof Error ? err.message : String(err), { cause: err });
  }
  const d = decodeDetails(err.metadata);
  const init: JobwireErrorInit = {
    code: err.code,
    reason: d.reason,
    fieldViolations: d.fieldViolations,
    preconditionViolations: d.preconditionViolations,
    metadata: err.metadata,
    cause: err,
  };
  if (d.retryDelayMs !== undefined) init.retryDelayMs = d.retryDelayMs;
  const cls = CLASS_BY_REASON.get(d.reason) ?? CLASS_BY_CODE.get(err.code) ?? JobwireError;
  return new cls(err.details || err.message, init);
}
