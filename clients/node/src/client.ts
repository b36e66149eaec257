// JobwireClient: the producer and watcher side of the API, plus the lease calls the
// Worker builds on. Retries and timeouts come from the service config shipped with the
// protos (service-config.ts), which the channel applies.

import { ChannelCredentials, credentials as grpcCredentials, status as Code, type ChannelOptions } from "@grpc/grpc-js";
import type { Context, TextMapPropagator } from "@opentelemetry/api";
import { BackoffKind, DependencyFailurePolicy, IdempotencyMode, JobState, type BackoffPolicy, type Job, type JobSpec } from "./gen/jobwire/v1/job.js";
import {
  BrokerServiceClient,
  EventKind,
  type EnqueueResponse,
  type FailResponse,
  type HeartbeatResponse,
  LeaseRequest,
  type LeasedJob,
  type StreamProgressResponse,
} from "./gen/jobwire/v1/broker_service.js";
import { fromGrpcError, JobwireError, UnavailableError } from "./errors.js";
import { invoke, sleep, type CallOptions, type UnaryMethod } from "./internal/call.js";
import { backoffMs, DEFAULT_SERVICE_CONFIG, methodPolicy, type ServiceConfig } from "./service-config.js";
import { durationToMs, encodeValue, msToDuration, truncateUtf8 } from "./internal/convert.js";
import { defaultPropagator, injectTraceContext } from "./tracing.js";

export type { CallOptions } from "./internal/call.js";

/** Job data: bytes as they are, a string as UTF-8 text, anything else as JSON. */
export type Payload = Uint8Array | string | number | boolean | null | object;

export interface BackoffOptions {
  /** Default: exponential. */
  kind?: "fixed" | "exponential" | "linear";
  /** Delay of the first retry. Default 1 s. */
  initialDelayMs?: number;
  /** Cap on any retry delay. Default 1 h. */
  maxDelayMs?: number;
  /** Growth factor of exponential backoff, in [1, 100]. Default 2. */
  multiplier?: number;
  /** Fraction in [0, 1] randomly taken off each delay. Default 0. */
  jitter?: number;
}

/** How the broker should treat a job. Unset fields take the broker's defaults. */
export interface JobOptions {
  /** MIME type of the payload. Default: inferred from the payload's JS type. */
  contentType?: string;
  /** String headers handed to the worker unchanged. */
  headers?: Record<string, string>;
  /** Higher runs first, in [-1000, 1000]. Default 0. */
  priority?: number;
  /** Wait this long before the job becomes ready. */
  delayMs?: number;
  /** Do not run before this time. */
  runTime?: Date;
  /** Attempts in all, in [1, 1000]. Default 3. */
  maxAttempts?: number;
  backoff?: BackoffOptions;
  /** How long one lease lasts without a heartbeat, in [1 s, 12 h]. Default 30 s. */
  leaseDurationMs?: number;
  /** Hard limit on one attempt, even while heartbeating. */
  executionTimeoutMs?: number;
  /** A second enqueue with the same key within the window returns the first job. */
  idempotencyKey?: string;
  /** How long the key is remembered. Default 24 h. */
  idempotencyWindowMs?: number;
  /**
   * What a second enqueue with the same key does while the key is remembered. `first`
   * (default): return the first job, write nothing. `replace` (debounce): while that job is
   * still pending, replace its spec (same id, `duplicate` true) and restart the window;
   * once it is active or finished, create a new job. `extend`: as `first`, and restart the
   * window. Ignored without `idempotencyKey`.
   */
  idempotencyMode?: "first" | "replace" | "extend";
  /**
   * Drop the job (state EXPIRED) if no worker leased it by this time; retries after a
   * failed attempt are not held to it. Must be after now and not before the run time.
   */
  startDeadline?: Date;
  /**
   * Jobs of the queue with the same key (at most 256 bytes, e.g. `wallet:<address>`) run
   * at most `concurrencyLimit` at a time.
   */
  concurrencyKey?: string;
  /** Active jobs allowed per `concurrencyKey`, in [1, 10,000]. Default: the queue's setting, else 1. */
  concurrencyLimit?: number;
  /**
   * Ids of jobs this one waits for (state WAITING) until all have completed: at most 100,
   * existing, in the same hash slot (on Redis Cluster, the same queue).
   */
  dependsOn?: readonly string[];
  /** When a dependency ends without completing: `fail` (default) sends this job dead, `ignore` counts it as done. */
  onDependencyFailure?: "fail" | "ignore";
}

export interface EnqueueOptions extends JobOptions, CallOptions {
  /** OpenTelemetry context to propagate. Default: the active context. */
  context?: Context;
}

export interface BatchJob extends JobOptions {
  payload: Payload;
}

export interface EnqueueBatchOptions extends CallOptions {
  /** OpenTelemetry context to propagate to every job. Default: the active context. */
  context?: Context;
}

export interface EnqueueResult {
  jobId: string;
  /** True when the idempotency key matched an earlier job and nothing was created. */
  duplicate: boolean;
  state: JobState;
}

/** What one Lease call returned. */
export interface LeaseResult {
  jobs: LeasedJob[];
  /**
   * Set when a rate limit held ready jobs back: wait this long before the next Lease
   * instead of calling again at once. Undefined when the broker sent none.
   */
  retryAfterMs: number | undefined;
}

export interface LeaseOptions extends CallOptions {
  /** Most jobs to return, in [1, 1000]. Default 1. */
  maxJobs?: number;
  /** Long-poll up to this long (at most 60 s) when the queue is empty. Default: return at once. */
  waitMs?: number;
  /** Identity of the worker, for diagnostics. */
  workerId?: string;
  /**
   * The most bytes of jobs the reply may carry (the broker's default: 4 MiB). A first job
   * that does not fit fails the call with ResourceExhaustedError (reason JOB_TOO_LARGE).
   */
  maxResponseBytes?: number;
}

export interface ProgressUpdate {
  /** Percent done, in [0, 100]. */
  percent: number;
  message?: string;
  /** JSON-like structured details, at most 16 KiB encoded. */
  details?: Record<string, unknown>;
}

export interface HeartbeatOptions extends CallOptions {
  /** New lease length from now. Default: the job's lease duration. */
  leaseExtensionMs?: number;
  progress?: ProgressUpdate;
}

export interface CompleteOptions extends CallOptions {
  /** MIME type of the result. Default: inferred from the result's JS type. */
  contentType?: string;
}

export interface JobFailure {
  /** Short machine-readable class, e.g. an error's name. At most 256 bytes (longer is cut). */
  type: string;
  /** Human-readable detail. At most 8 KiB (longer is cut). */
  message?: string;
  /** Send the job to the dead-letter set at once. */
  nonRetryable?: boolean;
}

export interface FailOptions extends CallOptions {
  /** Retry after exactly this long instead of the job's backoff policy. */
  retryDelayMs?: number;
  /**
   * Hand the job back without counting the attempt, for a job that was leased but never
   * started. The job is ready again at once (or after `retryDelayMs`).
   */
  release?: boolean;
  /**
   * The downstream service is rate limiting: hand the job back without counting the
   * attempt (the error is kept as its last error), ready again after this long, and lease
   * no job of its concurrency key (or, without one, of its queue) meanwhile. In [1 ms, 1 h].
   */
  rateLimitDelayMs?: number;
}

/** One event of a watched job. */
export interface JobEvent {
  /** Resume token: pass it as `afterEventId` to continue after this event. */
  eventId: string;
  kind: EventKind;
  eventTime: Date | undefined;
  /** The job after the event; for SNAPSHOT the whole job, otherwise the changed fields. */
  job: Job | undefined;
}

export interface WatchOptions extends CallOptions {
  /** Start after this event instead of with a snapshot. */
  afterEventId?: string;
}

export interface JobwireClientOptions {
  /** Default: insecure (plaintext), for a broker on a private network. */
  credentials?: ChannelCredentials;
  /**
   * Largest message the channel sends or receives, in bytes. Default
   * `DEFAULT_MAX_MESSAGE_BYTES` (64 MiB); grpc-js's own receive limit, 4 MiB, is too small
   * for a Lease of several 1 MiB jobs. A bigger reply fails with RESOURCE_EXHAUSTED.
   */
  maxMessageBytes?: number;
  /**
   * grpc-js channel options, merged over the client's (short reconnect backoff,
   * `grpc.service_config` from `serviceConfig`, and `grpc.max_receive_message_length` /
   * `grpc.max_send_message_length` from `maxMessageBytes`), so they win over all.
   */
  channelOptions?: ChannelOptions;
  /**
   * The retry policy and timeout of each RPC, in gRPC's service config format. Default
   * `DEFAULT_SERVICE_CONFIG`, the file shipped with the protos. The channel retries and
   * times out calls by it, and the client's own retries (an enqueue with idempotency
   * keys, reopening a watch) read their policy from it.
   */
  serviceConfig?: ServiceConfig;
  /**
   * A deadline for every call but `lease` and `watch`, retries included, unless the call
   * says otherwise. Default: none beyond the service config's timeout (10 s), which
   * applies too, so only a shorter one changes anything.
   */
  deadlineMs?: number;
  /** Default: W3C Trace Context + W3C Baggage. */
  propagator?: TextMapPropagator;
}

const TERMINAL_STATES = new Set([
  JobState.JOB_STATE_COMPLETED,
  JobState.JOB_STATE_DEAD,
  JobState.JOB_STATE_CANCELLED,
  JobState.JOB_STATE_EXPIRED,
]);

/** Whether a job in this state will never change again (WAITING is not: it becomes ready or dead). */
export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.has(state);
}

const BACKOFF_KINDS = {
  fixed: BackoffKind.BACKOFF_KIND_FIXED,
  exponential: BackoffKind.BACKOFF_KIND_EXPONENTIAL,
  linear: BackoffKind.BACKOFF_KIND_LINEAR,
} as const;

const IDEMPOTENCY_MODES = {
  first: IdempotencyMode.IDEMPOTENCY_MODE_FIRST,
  replace: IdempotencyMode.IDEMPOTENCY_MODE_REPLACE,
  extend: IdempotencyMode.IDEMPOTENCY_MODE_EXTEND,
} as const;

const DEPENDENCY_FAILURE_POLICIES = {
  fail: DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_FAIL,
  ignore: DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_IGNORE,
} as const;

/**
 * The default of `maxMessageBytes`: 64 MiB, as in the Python SDK. A Lease reply holds
 * several jobs of up to the broker's payload limit (1 MiB by default) each, and a GetJob
 * reply a payload and a result.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 << 20;

/**
 * grpc-js backs off reconnects up to 2 minutes by default, which would leave calls
 * failing long after a broker restart; retries here are cheap, so keep it short.
 */
const DEFAULT_CHANNEL_OPTIONS: ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 5_000,
};

/** Extra time a long-poll Lease gets beyond its wait before its deadline hits. */
const LEASE_DEADLINE_MARGIN_MS = 10_000;

function backoffPolicy(b: BackoffOptions): BackoffPolicy {
  const policy: BackoffPolicy = {
    kind: b.kind ? BACKOFF_KINDS[b.kind] : BackoffKind.BACKOFF_KIND_UNSPECIFIED,
    multiplier: b.multiplier ?? 0,
    jitter: b.jitter ?? 0,
  };
  if (b.initialDelayMs !== undefined) policy.initialDelay = msToDuration(b.initialDelayMs);
  if (b.maxDelayMs !== undefined) policy.maxDelay = msToDuration(b.maxDelayMs);
  return policy;
}

/** A connection to one broker (or a load balancer in front of several). */
export class JobwireClient {
  readonly target: string;
  /** The generated grpc-js stub, for calls this class does not wrap. */
  readonly stub: BrokerServiceClient;
  readonly propagator: TextMapPropagator;
  /** The service config the channel and this client's own retries follow. */
  readonly serviceConfig: Readonly<ServiceConfig>;
  private readonly deadlineMs: number | undefined;

  constructor(target: string, options: JobwireClientOptions = {}) {
    this.target = target;
    const maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.serviceConfig = options.serviceConfig ?? DEFAULT_SERVICE_CONFIG;
    this.stub = new BrokerServiceClient(target, options.credentials ?? grpcCredentials.createInsecure(), {
      ...DEFAULT_CHANNEL_OPTIONS,
      "grpc.service_config": JSON.stringify(this.serviceConfig),
      "grpc.max_receive_message_length": maxMessageBytes,
      "grpc.max_send_message_length": maxMessageBytes,
      ...options.channelOptions,
    });
    this.propagator = options.propagator ?? defaultPropagator();
    this.deadlineMs = options.deadlineMs;
  }

  /** Closes the channel. Calls in flight fail with CANCELLED. */
  close(): void {
    this.stub.close();
  }

  /**
   * One unary call. `retryHere`: the service config does not retry the method, but this
   * call is safe to repeat (an enqueue with idempotency keys), so retry it here with the
   * config's policy of GetJob.
   */
  private call<Req, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
    opts: CallOptions | undefined,
    retryHere = false,
    defaultDeadlineMs = this.deadlineMs,
  ): Promise<Res> {
    return invoke(method.bind(this.stub), request, {
      deadlineMs: opts?.deadlineMs ?? defaultDeadlineMs,
      retry: retryHere ? methodPolicy(this.serviceConfig, "GetJob").retry : undefined,
      signal: opts?.signal,
    });
  }

  private jobSpec(payload: Payload, o: JobOptions, ctx: Context | undefined): JobSpec {
    const { data, contentType } = encodeValue(payload, o.contentType);
    const spec: JobSpec = {
      payload: data,
      contentType,
      headers: { ...o.headers },
      priority: o.priority ?? 0,
      maxAttempts: o.maxAttempts ?? 0,
      idempotencyKey: o.idempotencyKey ?? "",
      idempotencyMode: o.idempotencyMode ? IDEMPOTENCY_MODES[o.idempotencyMode] : IdempotencyMode.IDEMPOTENCY_MODE_UNSPECIFIED,
      concurrencyKey: o.concurrencyKey ?? "",
      concurrencyLimit: o.concurrencyLimit ?? 0,
      dependsOn: [...(o.dependsOn ?? [])],
      onDependencyFailure: o.onDependencyFailure
        ? DEPENDENCY_FAILURE_POLICIES[o.onDependencyFailure]
        : DependencyFailurePolicy.DEPENDENCY_FAILURE_POLICY_UNSPECIFIED,
    };
    if (o.startDeadline !== undefined) spec.startDeadline = o.startDeadline;
    if (o.delayMs !== undefined) spec.delay = msToDuration(o.delayMs);
    if (o.runTime !== undefined) spec.runTime = o.runTime;
    if (o.backoff !== undefined) spec.backoff = backoffPolicy(o.backoff);
    if (o.leaseDurationMs !== undefined) spec.leaseDuration = msToDuration(o.leaseDurationMs);
    if (o.executionTimeoutMs !== undefined) spec.executionTimeout = msToDuration(o.executionTimeoutMs);
    if (o.idempotencyWindowMs !== undefined) spec.idempotencyWindow = msToDuration(o.idempotencyWindowMs);
    const trace = injectTraceContext(this.propagator, ctx);
    if (trace) spec.traceContext = trace;
    return spec;
  }

  /**
   * Adds a job to `queue`. The active OpenTelemetry context (span and baggage) travels
   * with it. The service config does not retry Enqueue (a retry could create a second
   * job); with an idempotency key the client retries it itself, with GetJob's policy.
   */
  async enqueue(queue: string, payload: Payload, options: EnqueueOptions = {}): Promise<EnqueueResult> {
    const job = this.jobSpec(payload, options, options.context);
    const res = await this.call(this.stub.enqueue, { queue, job }, options, job.idempotencyKey !== "");
    return enqueueResult(res);
  }

  /** Adds up to 1000 jobs to one queue, all or none. Retried as `enqueue` is when every job has an idempotency key. */
  async enqueueBatch(queue: string, jobs: readonly BatchJob[], options: EnqueueBatchOptions = {}): Promise<EnqueueResult[]> {
    const specs = jobs.map((j) => this.jobSpec(j.payload, j, options.context));
    const idempotent = specs.length > 0 && specs.every((s) => s.idempotencyKey !== "");
    const res = await this.call(this.stub.enqueueBatch, { queue, jobs: specs }, options, idempotent);
    return res.results.map(enqueueResult);
  }

  /** The job as stored now. Throws NotFoundError for an unknown or expired job. */
  async getJob(jobId: string, options?: CallOptions): Promise<Job> {
    const res = await this.call(this.stub.getJob, { jobId }, options);
    if (!res.job) throw new JobwireError(`broker returned no job for ${jobId}`);
    return res.job;
  }

  /**
   * Cancels a job: at once when pending (returns CANCELLED), through its worker when
   * active (returns ACTIVE). Throws JobFinishedError for a completed or dead job.
   */
  async cancel(jobId: string, options?: CallOptions): Promise<JobState> {
    const res = await this.call(this.stub.cancelJob, { jobId }, options);
    return res.state;
  }

  /**
   * The job's events: first a snapshot, then every change, ending after a terminal
   * state. A dropped stream is resumed from the last event seen, with the backoff of the
   * service config's retry policy of StreamProgress, up to its maxAttempts in a row.
   */
  async *watch(jobId: string, options: WatchOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    const { signal } = options;
    const deadline = options.deadlineMs === undefined ? undefined : new Date(Date.now() + options.deadlineMs);
    let after = options.afterEventId ?? "";
    let failures = 0;
    const retry = methodPolicy(this.serviceConfig, "StreamProgress").retry;
    for (;;) {
      signal?.throwIfAborted();
      const stream = this.stub.streamProgress({ jobId, afterEventId: after }, deadline ? { deadline } : {});
      const onAbort = (): void => stream.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      let dropped: JobwireError;
      try {
        for await (const message of stream as AsyncIterable<StreamProgressResponse>) {
          failures = 0;
          after = message.eventId;
          const event: JobEvent = { eventId: message.eventId, kind: message.kind, eventTime: message.eventTime, job: message.job };
          yield event;
          if (isFinalEvent(event)) return;
        }
        dropped = new UnavailableError(`progress stream of ${jobId} ended before the job finished`);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        const error = fromGrpcError(err);
        // CANCELLED that we did not ask for means the server or a proxy dropped the stream.
        if (!(error instanceof UnavailableError) && error.code !== Code.CANCELLED) throw error;
        dropped = error;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        stream.cancel();
      }
      failures++;
      if (!retry || failures >= retry.maxAttempts) throw dropped;
      await sleep(backoffMs(retry, failures, dropped.retryDelayMs), signal);
    }
  }

  /**
   * Leases up to `maxJobs` jobs, waiting up to `waitMs` for work. Not retried (a lost
   * reply would strand the jobs until their leases expire). The deadline defaults to the
   * wait plus a margin: the service config gives Lease no timeout.
   */
  async lease(queue: string, options: LeaseOptions = {}): Promise<LeasedJob[]> {
    return (await this.leaseWithRetryAfter(queue, options)).jobs;
  }

  /**
   * `lease`, with the broker's `retry_after` too: set when a rate limit held ready jobs
   * back, it says how long to wait before the next call. The Worker waits that long.
   */
  async leaseWithRetryAfter(queue: string, options: LeaseOptions = {}): Promise<LeaseResult> {
    // fromPartial: fields this client does not set keep their defaults.
    const request = LeaseRequest.fromPartial({
      queue,
      maxJobs: options.maxJobs ?? 1,
      workerId: options.workerId ?? "",
      wait: options.waitMs ? msToDuration(options.waitMs) : undefined,
      maxResponseBytes: options.maxResponseBytes ?? 0,
    });
    const res = await this.call(this.stub.lease, request, options, false, (options.waitMs ?? 0) + LEASE_DEADLINE_MARGIN_MS);
    return { jobs: res.jobs, retryAfterMs: durationToMs(res.retryAfter) };
  }

  /** Extends a lease and records progress. Throws LeaseLostError when the lease is gone. */
  async heartbeat(jobId: string, leaseToken: string, options: HeartbeatOptions = {}): Promise<HeartbeatResponse> {
    const p = options.progress;
    return this.call(
      this.stub.heartbeat,
      {
        jobId,
        leaseToken,
        leaseExtension: options.leaseExtensionMs === undefined ? undefined : msToDuration(options.leaseExtensionMs),
        progress: p ? { percent: p.percent, message: p.message ?? "", details: p.details } : undefined,
      },
      options,
    );
  }

  /** Finishes a leased job with a result. Throws LeaseLostError when the lease is gone. */
  async complete(jobId: string, leaseToken: string, result?: Payload, options: CompleteOptions = {}): Promise<void> {
    const encoded = result === undefined ? { data: Buffer.alloc(0), contentType: options.contentType ?? "" } : encodeValue(result, options.contentType);
    await this.call(this.stub.complete, { jobId, leaseToken, result: encoded.data, resultContentType: encoded.contentType }, options);
  }

  /** Reports a failed attempt: the job retries after its backoff, or goes dead. */
  async fail(jobId: string, leaseToken: string, error: JobFailure, options: FailOptions = {}): Promise<FailResponse> {
    return this.call(
      this.stub.fail,
      {
        jobId,
        leaseToken,
        error: {
          type: truncateUtf8(error.type || "Error", 256),
          message: truncateUtf8(error.message ?? "", 8192),
          nonRetryable: error.nonRetryable ?? false,
        },
        retryDelay: options.retryDelayMs === undefined ? undefined : msToDuration(options.retryDelayMs),
        release: options.release ?? false,
        rateLimitDelay: options.rateLimitDelayMs === undefined ? undefined : msToDuration(options.rateLimitDelayMs),
      },
      options,
    );
  }
}

function enqueueResult(r: EnqueueResponse): EnqueueResult {
  return { jobId: r.jobId, duplicate: r.duplicate, state: r.state };
}

function isFinalEvent(e: JobEvent): boolean {
  return (
    (e.kind === EventKind.EVENT_KIND_SNAPSHOT || e.kind === EventKind.EVENT_KIND_STATE_CHANGED) &&
    e.job !== undefined &&
    isTerminal(e.job.state)
  );
}
