// Typed errors: the one place where a gRPC status and its google.rpc details
// (from the `grpc-status-details-bin` trailer) become a JobwireError subclass.

import { Metadata, status as Code, type ServiceError } from "@grpc/grpc-js";
import { BadRequest, ErrorInfo, PreconditionFailure, RetryInfo } from "nice-grpc-error-details";
import { Status } from "nice-grpc-error-details/lib/proto/google/rpc/status.js";

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
  /** Stable machine-readable reason from `google.rpc.ErrorInfo` (e.g. `LEASE_LOST`). */
  reason?: string;
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
  /** `google.rpc.ErrorInfo.reason`, or "" when the broker sent none. */
  readonly reason: string;
  readonly preconditionViolations: readonly PreconditionViolation[];
  readonly retryDelayMs: number | undefined;
  readonly metadata: Metadata;

  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code ?? Code.UNKNOWN;
    this.reason = init.reason ?? "";
    this.preconditionViolations = init.preconditionViolations ?? [];
    this.retryDelayMs = init.retryDelayMs;
    this.metadata = init.metadata ?? new Metadata();
  }
}

/** `INVALID_ARGUMENT`: the request was rejected whole; nothing was written. Do not retry as is. */
export class InvalidArgumentError extends JobwireError {
  override name = "InvalidArgumentError";
  /** Each bad field, named as in the request (`queue`, `job.priority`, `jobs[1].payload`). */
  readonly fieldViolations: readonly FieldViolation[];

  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.INVALID_ARGUMENT, ...init });
    this.fieldViolations = init.fieldViolations ?? [];
  }
}

/** `NOT_FOUND`: the job never existed or was removed by retention. */
export class NotFoundError extends JobwireError {
  override name = "NotFoundError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.NOT_FOUND, ...init });
  }
}

/** `FAILED_PRECONDITION`: the job is not in a state that allows the call. */
export class FailedPreconditionError extends JobwireError {
  override name = "FailedPreconditionError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.FAILED_PRECONDITION, ...init });
  }
}

/**
 * The lease is gone (expired, taken over, or the job already finished): stop working on
 * the job and drop its result. Reason `LEASE_LOST`.
 */
export class LeaseLostError extends FailedPreconditionError {
  override name = "LeaseLostError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { reason: "LEASE_LOST", ...init });
  }
}

/** CancelJob on a completed or dead job. Reason `JOB_FINISHED`. */
export class JobFinishedError extends FailedPreconditionError {
  override name = "JobFinishedError";
}

/** `UNAVAILABLE`: the broker (or its store) cannot be reached; retry with backoff. */
export class UnavailableError extends JobwireError {
  override name = "UnavailableError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.UNAVAILABLE, ...init });
  }
}

/** `RESOURCE_EXHAUSTED`: a limit was hit; retry later. */
export class ResourceExhaustedError extends JobwireError {
  override name = "ResourceExhaustedError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.RESOURCE_EXHAUSTED, ...init });
  }
}

/** `DEADLINE_EXCEEDED`: the call's deadline passed before the broker answered. */
export class DeadlineExceededError extends JobwireError {
  override name = "DeadlineExceededError";
  constructor(message: string, init: JobwireErrorInit = {}) {
    super(message, { code: Code.DEADLINE_EXCEEDED, ...init });
  }
}

const TYPE_PREFIX = "type.googleapis.com/";

interface Details {
  reason?: string;
  fieldViolations: FieldViolation[];
  preconditionViolations: PreconditionViolation[];
  retryDelayMs?: number;
}

/** Decodes the google.rpc.Status carried in the `grpc-status-details-bin` trailer. */
function decodeDetails(metadata: Metadata): Details {
  const out: Details = { fieldViolations: [], preconditionViolations: [] };
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
      case ErrorInfo.$type:
        out.reason = ErrorInfo.decode(any.value).reason;
        break;
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
    reason: d.reason ?? "",
    fieldViolations: d.fieldViolations,
    preconditionViolations: d.preconditionViolations,
    metadata: err.metadata,
    cause: err,
  };
  if (d.retryDelayMs !== undefined) init.retryDelayMs = d.retryDelayMs;
  const message = err.details || err.message;
  switch (err.code) {
    case Code.INVALID_ARGUMENT:
      return new InvalidArgumentError(message, init);
    case Code.NOT_FOUND:
      return new NotFoundError(message, init);
    case Code.FAILED_PRECONDITION:
      if (d.reason === "LEASE_LOST") return new LeaseLostError(message, init);
      if (d.reason === "JOB_FINISHED") return new JobFinishedError(message, init);
      return new FailedPreconditionError(message, init);
    case Code.UNAVAILABLE:
      return new UnavailableError(message, init);
    case Code.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(message, init);
    case Code.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(message, init);
    default:
      return new JobwireError(message, init);
  }
}
