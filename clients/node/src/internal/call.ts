// Promise wrappers around grpc-js calls: one deadline for the whole call (retries
// included), AbortSignal support, and retry of UNAVAILABLE with jittered backoff.

import { Metadata, type CallOptions as GrpcCallOptions, type ClientUnaryCall, type ServiceError } from "@grpc/grpc-js";
import { fromGrpcError, JobwireError, UnavailableError } from "../errors.js";

/** Options every call takes. */
export interface CallOptions {
  /** Aborting cancels the call; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /** Time budget for the whole call, retries included. Default: the client's. */
  deadlineMs?: number | undefined;
}

/** How UNAVAILABLE is retried for calls that are safe to repeat. */
export interface RetryPolicy {
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
}

export const DEFAULT_RETRY: RetryPolicy = {
  maxAttempts: 5,
  initialBackoffMs: 100,
  maxBackoffMs: 5_000,
  multiplier: 2,
};

export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Full-jitter exponential backoff before retry `attempt` (1-based). */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  const cap = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.multiplier ** (attempt - 1));
  return cap / 2 + Math.random() * (cap / 2);
}

/** Resolves after `ms`, or rejects with `signal.reason` when aborted first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function once<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, deadline: number, signal?: AbortSignal): Promise<Res> {
  return new Promise((resolve, reject) => {
    let onAbort: (() => void) | undefined;
    const call = method(request, new Metadata(), { deadline: new Date(deadline) }, (err, response) => {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
      if (err) reject(err);
      else resolve(response);
    });
    if (signal) {
      onAbort = () => call.cancel();
      signal.addEventListener("abort", onAbort, { once: true });
    }
  });
}

export interface InvokeOptions {
  deadlineMs: number;
  /** Retry UNAVAILABLE: only for calls that are safe to repeat. */
  retry: RetryPolicy | undefined;
  signal?: AbortSignal | undefined;
}

/** Runs one unary call to completion, mapping failures to JobwireError. */
export async function invoke<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: InvokeOptions): Promise<Res> {
  const { signal, retry } = opts;
  signal?.throwIfAborted();
  const deadline = Date.now() + opts.deadlineMs;
  for (let attempt = 1; ; attempt++) {
    let error: JobwireError;
    try {
      return await once(method, request, deadline, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      error = fromGrpcError(err);
    }
    if (!retry || !(error instanceof UnavailableError) || attempt >= retry.maxAttempts) throw error;
    const delay = Math.max(error.retryDelayMs ?? 0, backoffMs(retry, attempt));
    if (Date.now() + delay >= deadline) throw error;
    await sleep(delay, signal);
  }
}
