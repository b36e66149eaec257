// Worker: long-polls leases in batches, runs up to N handlers per queue at once, keeps
// each lease alive with heartbeats (carrying the latest progress), settles each job
// from the handler's outcome, and closes gracefully.

import { EventEmitter } from "node:events";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import {
  context as otelContext,
  SpanKind,
  SpanStatusCode,
  trace,
  type Span,
  type Tracer,
  type TracerProvider,
} from "@opentelemetry/api";
import {
  ATTR_MESSAGING_CLIENT_ID,
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION_NAME,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  MESSAGING_OPERATION_TYPE_VALUE_PROCESS,
} from "@opentelemetry/semantic-conventions/incubating";
import { JobwireClient, type JobwireClientOptions, type Payload, type ProgressUpdate } from "./client.js";
import { InvalidArgumentError, LeaseLostError, NotFoundError, UnavailableError } from "./errors.js";
import type { LeasedJob } from "./gen/jobwire/v1/broker_service.js";
import type { Job, TraceContext } from "./gen/jobwire/v1/job.js";
import { sleep } from "./internal/call.js";
import { backoffMs, methodPolicy, type RetryPolicy } from "./service-config.js";
import { durationToMs, encodeValue } from "./internal/convert.js";
import { extractTraceContext } from "./tracing.js";
import { VERSION } from "./version.js";

/** Throw it (or a subclass) from a handler to send the job to the dead-letter set at once. */
export class PermanentError extends Error {
  override name = "PermanentError";
}

/** Throw it from a handler to retry the job after exactly `delayMs`, whatever its backoff. */
export class RetryAfterError extends Error {
  override name = "RetryAfterError";
  constructor(
    readonly delayMs: number,
    message = `retry after ${delayMs} ms`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * Throw it from a handler when the service it called is rate limiting: the job is handed
 * back without counting an attempt, ready again after `delayMs`, and the broker leases no
 * job of its concurrency key (or, for a job without one, of its queue) for that long.
 * `delayMs` is clamped to [1 ms, 1 h].
 */
export class RateLimitedError extends Error {
  override name = "RateLimitedError";
  constructor(
    readonly delayMs: number,
    message = `rate limited for ${delayMs} ms`,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** The abort reason when the broker reports that CancelJob was called on the running job. */
export class JobCancelledError extends Error {
  override name = "JobCancelledError";
}

/** The abort reason for jobs still running when a closing worker's grace period ends. */
export class WorkerClosingError extends Error {
  override name = "WorkerClosingError";
}

/** What a handler returns to set the result's content type explicitly. */
export class JobResult {
  constructor(
    readonly data: Uint8Array | string,
    readonly contentType: string,
  ) {}
}

/** A leased job as a handler sees it. */
export class ReceivedJob {
  /** The job as the broker handed it out (state ACTIVE). */
  readonly raw: Job;
  readonly leaseToken: string;
  readonly leaseExpireTime: Date | undefined;
  /** Attempt number of this lease, from 1; use it to fence side effects. */
  readonly attempt: number;

  constructor(leased: LeasedJob) {
    if (!leased.job) throw new TypeError("leased job without a job");
    this.raw = leased.job;
    this.leaseToken = leased.leaseToken;
    this.leaseExpireTime = leased.leaseExpireTime;
    this.attempt = leased.attempt;
  }

  get id(): string {
    return this.raw.id;
  }
  get queue(): string {
    return this.raw.queue;
  }
  get payload(): Buffer {
    return this.raw.spec?.payload ?? Buffer.alloc(0);
  }
  get contentType(): string {
    return this.raw.spec?.contentType ?? "";
  }
  get headers(): Readonly<Record<string, string>> {
    return this.raw.spec?.headers ?? {};
  }
  get maxAttempts(): number {
    return this.raw.spec?.maxAttempts ?? 0;
  }
  get traceContext(): TraceContext | undefined {
    return this.raw.spec?.traceContext;
  }
  /** The payload as UTF-8 text. */
  text(): string {
    return this.payload.toString("utf8");
  }
  /** The payload parsed as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}

export interface HandlerContext {
  /**
   * Aborts when the job must stop: the lease was lost (reason LeaseLostError; the
   * result will be dropped), cancellation was requested (JobCancelledError), or the
   * worker closed past its grace period (WorkerClosingError).
   */
  readonly signal: AbortSignal;
  /** Records progress; sent with the next heartbeat, only the latest value counts. */
  progress(percent: number, message?: string, details?: Record<string, unknown>): void;
}

/**
 * Handles one job. The returned value becomes the result (bytes, text, JSON, or a
 * JobResult); a thrown error fails the attempt with `type = error.name`.
 */
export type Handler = (job: ReceivedJob, ctx: HandlerContext) => Promise<Payload | JobResult | void> | Payload | JobResult | void;

export interface HeartbeatSettings {
  /** Time between heartbeats. Default: a third of the job's lease duration. */
  intervalMs?: number;
  /** Lease length each heartbeat asks for. Default: the job's lease duration. */
  leaseExtensionMs?: number;
  /** Least time between two heartbeats sent early to deliver progress. Default 1 s. */
  progressIntervalMs?: number;
}

export interface ProcessOptions {
  /** Jobs of this queue run at once. Default 1. */
  concurrency?: number;
  /** Most jobs asked for in one Lease call. Default: `concurrency`. */
  leaseBatch?: number;
  /**
   * Automatic heartbeats. `false` sends none (progress is still delivered), so the lease
   * ends after the job's lease duration.
   */
  heartbeat?: HeartbeatSettings | false;
  /** Long-poll wait of each Lease call, at most 60 s. Default 20 s. */
  pollWaitMs?: number;
  /** Stop leasing from this queue after this many jobs; the worker ends when all are done. */
  maxJobs?: number;
}

export interface WorkerOptions {
  /** Identity sent with Lease calls. Default: `<host>:<pid>:<random>`. */
  workerId?: string;
  /** How long close() waits for running jobs before failing them. Default 10 s. */
  graceMs?: number;
  /** Default: the global tracer provider. */
  tracerProvider?: TracerProvider;
  /** Options of the client the worker creates when given a target. */
  clientOptions?: JobwireClientOptions;
}

export type WorkerEvents = {
  /** A job was completed with this result. */
  completed: [job: ReceivedJob, result: unknown];
  /** An attempt failed: the handler threw, the lease was lost, or the worker closed. */
  failed: [job: ReceivedJob, error: unknown];
  /** A call to the broker failed outside any handler (lease, heartbeat, settle). */
  error: [error: unknown, job?: ReceivedJob];
};

const MIN_HEARTBEAT_INTERVAL_MS = 100;
/** When a policy-less service config leaves the worker's own retries without one. */
const NO_RETRY: RetryPolicy = { maxAttempts: 1, initialBackoffMs: 1000, maxBackoffMs: 1000, multiplier: 1, retryableCodes: [] };

/** Runs handlers for jobs of one or more queues. */
export class Worker extends EventEmitter<WorkerEvents> {
  readonly client: JobwireClient;
  readonly workerId: string;
  private readonly ownsClient: boolean;
  private readonly graceMs: number;
  /** @internal */
  readonly tracer: Tracer;
  /**
   * @internal The service config's retry policy of GetJob, for the worker's own retries:
   * settling an attempt after UNAVAILABLE, and the pause of a leasing loop after an error.
   */
  readonly retryPolicy: RetryPolicy;
  private readonly runners: QueueRunner[] = [];
  /** Aborted when close() begins: cancels long-polls and backoff sleeps. */
  private readonly stopping = new AbortController();
  private running = false;
  private runPromise: Promise<void> | undefined;
  private closePromise: Promise<void> | undefined;
  private fatal: unknown;

  constructor(client: JobwireClient | string, options: WorkerOptions = {}) {
    super();
    this.ownsClient = typeof client === "string";
    this.client = typeof client === "string" ? new JobwireClient(client, options.clientOptions) : client;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.graceMs = options.graceMs ?? 10_000;
    this.tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer("@jobwire/client", VERSION);
    this.retryPolicy = methodPolicy(this.client.serviceConfig, "GetJob").retry ?? NO_RETRY;
  }

  /** Registers a handler for a queue. Call before or after run(). */
  process(queue: string, handler: Handler, options: ProcessOptions = {}): this {
    if (this.closePromise) throw new Error("worker is closed");
    const runner = new QueueRunner(this, queue, handler, options);
    this.runners.push(runner);
    if (this.running) runner.start();
    return this;
  }

  /**
   * Starts leasing. Resolves when the worker has closed (by close(), or on its own once
   * every queue with `maxJobs` is done); rejects if leasing failed for good (for example
   * an invalid queue name).
   */
  run(): Promise<void> {
    if (this.runPromise) return this.runPromise;
    if (this.runners.length === 0) return Promise.reject(new Error("nothing to run: call process() first"));
    this.running = true;
    for (const r of this.runners) r.start();
    const allDone = Promise.all(this.runners.map((r) => r.finished));
    this.runPromise = Promise.race([allDone, this.stopped()]).then(() => this.close()).then(() => {
      if (this.fatal !== undefined) throw this.fatal;
    });
    return this.runPromise;
  }

  /**
   * Stops leasing, waits up to `graceMs` for running jobs, then aborts the rest and
   * fails them as retryable. Jobs leased but not yet started are handed back.
   */
  close(options: { graceMs?: number } = {}): Promise<void> {
    this.closePromise ??= this.shutdown(options.graceMs ?? this.graceMs);
    return this.closePromise;
  }

  /** @internal */
  get closing(): boolean {
    return this.stopping.signal.aborted;
  }

  /** @internal */
  get stopSignal(): AbortSignal {
    return this.stopping.signal;
  }

  /** @internal Reports a problem outside a handler; never throws. */
  reportError(error: unknown, job?: ReceivedJob): void {
    if (this.listenerCount("error") > 0) this.emit("error", error, job);
    else console.error(`jobwire worker ${this.workerId}:`, error);
  }

  /** @internal Leasing cannot go on: stop the worker and make run() reject. */
  fail(error: unknown): void {
    this.fatal ??= error;
    void this.close();
  }

  private stopped(): Promise<void> {
    const signal = this.stopping.signal;
    return new Promise((resolve) => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })));
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.stopping.abort(new WorkerClosingError("worker is closing"));
    for (const r of this.runners) r.wake();
    await Promise.all(this.runners.map((r) => r.loopDone));
    const active = this.runners.flatMap((r) => [...r.active]);
    let timer: NodeJS.Timeout | undefined;
    const graceOver = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), graceMs)));
    const outcome = await Promise.race([Promise.all(active.map((a) => a.finished)), graceOver]);
    clearTimeout(timer);
    if (outcome === "timeout") {
      await Promise.all(active.map((a) => a.abandon(new WorkerClosingError(`worker closed after a ${graceMs} ms grace period`))));
    }
    if (this.ownsClient) this.client.close();
  }
}

/** The lease loop and running jobs of one queue. */
class QueueRunner {
  readonly active = new Set<ActiveJob>();
  readonly concurrency: number;
  readonly leaseBatch: number;
  readonly heartbeat: HeartbeatSettings | false;
  readonly pollWaitMs: number;
  readonly maxJobs: number | undefined;
  loopDone: Promise<void> = Promise.resolve();
  /** Resolves once the loop ended and every job it started is settled. */
  finished: Promise<void> = new Promise(() => {});
  private leased = 0;
  private wakeUp: (() => void) | undefined;

  constructor(
    readonly worker: Worker,
    readonly queue: string,
    readonly handler: Handler,
    options: ProcessOptions,
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 1);
    this.leaseBatch = Math.max(1, Math.min(options.leaseBatch ?? this.concurrency, 1000));
    this.heartbeat = options.heartbeat ?? {};
    this.pollWaitMs = Math.min(options.pollWaitMs ?? 20_000, 60_000);
    this.maxJobs = options.maxJobs;
  }

  start(): void {
    this.loopDone = this.loop();
    this.finished = this.loopDone.then(async () => {
      while (this.active.size > 0) await Promise.all([...this.active].map((a) => a.finished));
    });
  }

  /** Wakes the loop when it waits for a free slot. */
  wake(): void {
    this.wakeUp?.();
    this.wakeUp = undefined;
  }

  private async loop(): Promise<void> {
    const { worker } = this;
    let failures = 0;
    while (!worker.closing) {
      const remaining = this.maxJobs === undefined ? Infinity : this.maxJobs - this.leased;
      if (remaining <= 0) break;
      const free = this.concurrency - this.active.size;
      if (free <= 0) {
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        continue;
      }
      let jobs: LeasedJob[];
      let retryAfterMs: number | undefined;
      try {
        ({ jobs, retryAfterMs } = await worker.client.leaseWithRetryAfter(this.queue, {
          maxJobs: Math.min(free, this.leaseBatch, remaining),
          waitMs: this.pollWaitMs,
          workerId: worker.workerId,
          signal: worker.stopSignal,
        }));
      } catch (err) {
        if (worker.closing) break;
        if (err instanceof InvalidArgumentError) {
          worker.fail(err);
          break;
        }
        worker.reportError(err);
        failures++;
        await sleep(backoffMs(worker.retryPolicy, failures), worker.stopSignal).catch(() => {});
        continue;
      }
      failures = 0;
      const receivedAt = Date.now();
      for (const leased of jobs) {
        this.leased++;
        if (!leased.job) continue;
        if (worker.closing) void this.release(leased);
        else this.run(new ActiveJob(this, leased, receivedAt));
      }
      // A rate limit holds the queue's jobs back: calling again at once would only spin.
      if (retryAfterMs !== undefined && retryAfterMs > 0) await sleep(retryAfterMs, worker.stopSignal).catch(() => {});
    }
  }

  private run(job: ActiveJob): void {
    this.active.add(job);
    void job
      .execute()
      .catch((err: unknown) => this.worker.reportError(err, job.job)) // e.g. a throwing event listener
      .finally(() => {
        this.active.delete(job);
        this.wake();
      });
  }

  /** Hands back a job leased after close() began, without counting the attempt. */
  private async release(leased: LeasedJob): Promise<void> {
    const id = leased.job?.id ?? "";
    try {
      await this.worker.client.fail(id, leased.leaseToken, { type: "WorkerClosingError", message: "released unstarted: worker closing" }, { release: true });
    } catch (err) {
      this.worker.reportError(err);
    }
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };
/** Whether Complete or Fail reached the broker, or the error that made the worker give up. */
type Delivery = { sent: true } | { sent: false; error: unknown };

/** One leased job: its handler, heartbeats, local lease clock and settlement. */
class ActiveJob {
  readonly job: ReceivedJob;
  readonly finished: Promise<void>;
  private readonly controller = new AbortController();
  private resolveFinished!: () => void;
  /** The outcome was sent, or the lease is gone: nothing more goes to the broker. */
  private done = false;
  private lost: LeaseLostError | undefined;
  private abandoned = false;
  /** The Complete or Fail under way, once the outcome is known. */
  private sending: Promise<Delivery> | undefined;
  /** Broker clock minus local clock, estimated at lease time (so skew does not matter). */
  private readonly clockOffsetMs: number;
  private localExpiry: number;
  private readonly leaseMs: number;
  private pendingProgress: ProgressUpdate | undefined;
  private beating = false;
  private lastBeatAt = 0;
  private nextBeatAt = Infinity;
  private beatTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly runner: QueueRunner,
    leased: LeasedJob,
    receivedAt: number,
  ) {
    this.job = new ReceivedJob(leased);
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    const start = this.job.raw.startTime?.getTime();
    this.clockOffsetMs = start === undefined ? 0 : start - receivedAt;
    const expire = leased.leaseExpireTime?.getTime();
    const leaseMs = durationToMs(this.job.raw.spec?.leaseDuration) ?? (expire !== undefined && start !== undefined ? expire - start : 30_000);
    this.leaseMs = leaseMs;
    this.localExpiry = expire === undefined ? receivedAt + leaseMs : expire - this.clockOffsetMs;
  }

  private get client(): JobwireClient {
    return this.runner.worker.client;
  }

  private get heartbeatInterval(): number | undefined {
    const hb = this.runner.heartbeat;
    if (hb === false) return undefined;
    return Math.max(MIN_HEARTBEAT_INTERVAL_MS, hb.intervalMs ?? this.leaseMs / 3);
  }

  async execute(): Promise<void> {
    const { worker, queue, handler } = this.runner;
    const job = this.job;
    const parent = extractTraceContext(this.client.propagator, job.traceContext);
    const span = worker.tracer.startSpan(
      `process ${queue}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          [ATTR_MESSAGING_SYSTEM]: "jobwire",
          [ATTR_MESSAGING_OPERATION_NAME]: "process",
          [ATTR_MESSAGING_OPERATION_TYPE]: MESSAGING_OPERATION_TYPE_VALUE_PROCESS,
          [ATTR_MESSAGING_DESTINATION_NAME]: queue,
          [ATTR_MESSAGING_MESSAGE_ID]: job.id,
          [ATTR_MESSAGING_CLIENT_ID]: worker.workerId,
          "jobwire.job.attempt": job.attempt,
        },
      },
      parent,
    );
    this.armExpiry();
    const interval = this.heartbeatInterval;
    if (interval !== undefined) this.scheduleBeat(interval);
    const ctx: HandlerContext = {
      signal: this.controller.signal,
      progress: (percent, message, details) => this.progress(percent, message, details),
    };
    let outcome: Outcome;
    try {
      const value = await otelContext.with(trace.setSpan(parent, span), async () => handler(job, ctx));
      outcome = { ok: true, value };
    } catch (error) {
      outcome = { ok: false, error };
    }
    try {
      await this.settle(outcome, span);
    } finally {
      span.end();
      this.resolveFinished();
    }
  }

  /**
   * Gives up on a job still running at the end of close()'s grace period: aborts its
   * handler and fails the attempt as retryable. A job whose outcome is already on its
   * way is left to finish sending it.
   */
  abandon(reason: WorkerClosingError): Promise<void> {
    if (this.done) return (this.sending ?? Promise.resolve()).then(() => {});
    this.abandoned = true;
    this.stop();
    this.controller.abort(reason);
    this.runner.worker.emit("failed", this.job, reason);
    return this.sendFail(reason).then(() => {});
  }

  private async settle(outcome: Outcome, span: Span): Promise<void> {
    if (this.lost) {
      this.stop();
      span.setStatus({ code: SpanStatusCode.ERROR, message: `lease lost: ${this.lost.message}` });
      this.runner.worker.emit("failed", this.job, this.lost);
      return;
    }
    if (this.abandoned) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: "worker closed before the job finished" });
      return;
    }
    this.stop();
    const { worker } = this.runner;
    if (outcome.ok) {
      const value = outcome.value;
      const delivery = await this.retrying(() => {
        if (value instanceof JobResult) return this.client.complete(this.job.id, this.job.leaseToken, value.data, { contentType: value.contentType });
        const result = value === undefined ? undefined : encodeValue(value);
        return this.client.complete(this.job.id, this.job.leaseToken, result?.data, result ? { contentType: result.contentType } : {});
      });
      if (delivery.sent) {
        worker.emit("completed", this.job, value);
        return;
      }
      span.setStatus({ code: SpanStatusCode.ERROR, message: "result not delivered" });
      // A result the broker refuses (e.g. too large) would only come back at every retry
      // after the lease expired: fail the attempt with the reason instead.
      if (delivery.error instanceof InvalidArgumentError) {
        await this.sendFail(delivery.error);
        worker.emit("failed", this.job, delivery.error);
      }
      return;
    }
    const error = outcome.error;
    if (!(error instanceof RetryAfterError || error instanceof RateLimitedError)) {
      if (error instanceof Error) span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    }
    await this.sendFail(error);
    worker.emit("failed", this.job, error);
  }

  private sendFail(error: unknown): Promise<Delivery> {
    const err = error instanceof Error ? error : new Error(String(error));
    const retryDelayMs = error instanceof RetryAfterError ? error.delayMs : undefined;
    const rateLimitDelayMs =
      error instanceof RateLimitedError ? Math.min(Math.max(error.delayMs, 1), 3_600_000) : undefined;
    const options = {
      ...(retryDelayMs === undefined ? {} : { retryDelayMs }),
      ...(rateLimitDelayMs === undefined ? {} : { rateLimitDelayMs }),
    };
    return this.retrying(() =>
      this.client.fail(
        this.job.id,
        this.job.leaseToken,
        { type: err.name, message: err.message, nonRetryable: error instanceof PermanentError },
        options,
      ),
    );
  }

  /**
   * Complete and Fail are fenced by the lease token, so repeating one after UNAVAILABLE
   * is safe: a repeat of a call that did land gets LEASE_LOST and writes nothing.
   */
  private retrying(send: () => Promise<unknown>): Promise<Delivery> {
    this.done = true;
    this.sending = this.retryLoop(send);
    return this.sending;
  }

  private async retryLoop(send: () => Promise<unknown>): Promise<Delivery> {
    for (let attempt = 1; ; attempt++) {
      try {
        await send();
        return { sent: true };
      } catch (err) {
        const policy = this.runner.worker.retryPolicy;
        const retry = err instanceof UnavailableError && attempt < policy.maxAttempts && Date.now() < this.localExpiry;
        if (!retry) {
          this.runner.worker.reportError(err, this.job);
          return { sent: false, error: err };
        }
        await sleep(backoffMs(policy, attempt, err.retryDelayMs));
      }
    }
  }

  private stop(): void {
    this.done = true;
    clearTimeout(this.beatTimer);
    clearTimeout(this.expiryTimer);
  }

  private loseLease(error: LeaseLostError): void {
    if (this.done) return;
    this.lost = error;
    this.stop();
    this.controller.abort(error);
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    const left = this.localExpiry - Date.now();
    if (left <= 0) {
      this.loseLease(new LeaseLostError(`lease on job ${this.job.id} expired before it was renewed`));
      return;
    }
    this.expiryTimer = setTimeout(() => this.armExpiry(), left);
  }

  private progress(percent: number, message?: string, details?: Record<string, unknown>): void {
    if (!(percent >= 0 && percent <= 100)) throw new RangeError(`progress percent must be in [0, 100], got ${percent}`);
    if (this.done) return;
    this.pendingProgress = { percent, message: message ?? "", ...(details === undefined ? {} : { details }) };
    if (this.beating) return; // the heartbeat under way reschedules for the pending progress
    const hb = this.runner.heartbeat;
    const spacing = hb === false ? 1000 : (hb.progressIntervalMs ?? 1000);
    const due = Math.max(0, this.lastBeatAt + spacing - Date.now());
    if (Date.now() + due < this.nextBeatAt) this.scheduleBeat(due);
  }

  private scheduleBeat(delayMs: number): void {
    clearTimeout(this.beatTimer);
    this.nextBeatAt = Date.now() + delayMs;
    this.beatTimer = setTimeout(() => void this.beat(), delayMs);
  }

  private async beat(): Promise<void> {
    if (this.done || this.beating) return;
    this.beating = true;
    this.nextBeatAt = Infinity;
    const progress = this.pendingProgress;
    this.pendingProgress = undefined;
    this.lastBeatAt = Date.now();
    const hb = this.runner.heartbeat;
    try {
      const res = await this.client.heartbeat(this.job.id, this.job.leaseToken, {
        ...(hb !== false && hb.leaseExtensionMs !== undefined ? { leaseExtensionMs: hb.leaseExtensionMs } : {}),
        ...(progress ? { progress } : {}),
        deadlineMs: Math.max(1000, this.localExpiry - Date.now()),
      });
      if (this.done) return;
      if (res.leaseExpireTime) {
        this.localExpiry = res.leaseExpireTime.getTime() - this.clockOffsetMs;
        this.armExpiry();
      }
      if (res.cancelRequested && !this.controller.signal.aborted) {
        this.controller.abort(new JobCancelledError(`cancellation of job ${this.job.id} was requested`));
      }
    } catch (err) {
      if (this.done) return;
      if (err instanceof LeaseLostError || err instanceof NotFoundError) {
        this.loseLease(err instanceof LeaseLostError ? err : new LeaseLostError(err.message, { cause: err }));
        return;
      }
      this.pendingProgress ??= progress; // try again with the next heartbeat
      this.runner.worker.reportError(err, this.job);
    } finally {
      this.beating = false;
    }
    if (this.done) return;
    const interval = this.heartbeatInterval;
    if (interval !== undefined) this.scheduleBeat(interval);
    if (this.pendingProgress) {
      const spacing = hb === false ? 1000 : (hb.progressIntervalMs ?? 1000);
      const due = Math.max(0, this.lastBeatAt + spacing - Date.now());
      if (Date.now() + due < this.nextBeatAt) this.scheduleBeat(due);
    }
  }
}
