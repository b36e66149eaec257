// Promise wrappers around grpc-js calls: AbortSignal support, an optional deadline, and
// errors mapped to JobwireError. Retries and timeouts come from the service config,
// which grpc-js applies below this; only calls gRPC must not retry but the caller made
// safe to repeat (an enqueue with idempotency keys) are retried here.

import { Metadata, type CallOptions as GrpcCallOptions, type ClientUnaryCall, type ServiceError } from "@grpc/grpc-js";
import { fromGrpcError, type JobwireError } from "../errors.js";
import { backoffMs, type RetryPolicy } from "../service-config.js";

/** Options every call takes. */
export interface CallOptions {
  /** Aborting cancels the call; the promise then rejects with `signal.reason`. */
  signal?: AbortSignal | undefined;
  /**
   * Time budget for the whole call, retries included. The service config's timeout
   * (10 s for most calls) applies too: the earlier deadline wins.
   */
  deadlineMs?: number | undefined;
}

export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<GrpcCallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

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

function once<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, deadline: number | undefined, signal?: AbortSignal): Promise<Res> {
  return new Promise((resolve, reject) => {
    let onAbort: (() => void) | undefined;
    const options = deadline === undefined ? {} : { deadline: new Date(deadline) };
    const call = method(request, new Metadata(), options, (err, response) => {
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
  /** Unset: only the service config's timeout. */
  deadlineMs: number | undefined;
  /** Retry here, with this policy (for calls the service config does not retry). */
  retry?: RetryPolicy | undefined;
  signal?: AbortSignal | undefined;
}

/** Runs one unary call to completion, mapping failures to JobwireError. */
export async function invoke<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: InvokeOptions): Promise<Res> {
  const { signal, retry } = opts;
  signal?.throwIfAborted();
  const deadline = opts.deadlineMs === undefined ? undefined : Date.now() + opts.deadlineMs;
  for (let attempt = 1; ; attempt++) {
    let error: JobwireError;
    try {
      return await once(method, request, deadline, signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      error = fromGrpcError(err);
    }
    if (!retry || !retry.retryableCodes.includes(error.code) || attempt >= retry.maxAttempts) throw error;
    const delay = backoffMs(retry, attempt, error.retryDelayMs);
    if (deadline !== undefined && Date.now() + delay >= deadline) throw error;
    await sleep(delay, signal);
  }
}
