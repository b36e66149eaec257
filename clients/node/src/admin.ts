// JobwireAdmin: the jobwire.v1.AdminService calls (queues, their jobs, dead letters,
// events, workers), on a JobwireClient's channel or on one made with the same options,
// so transport, message limits and the service config are the client's.

import { credentials as grpcCredentials, status as Code, type ClientReadableStream } from "@grpc/grpc-js";
import {
  AdminServiceClient,
  ListOrder,
  type DeadLetterGroup,
  type JobFilter as JobFilterMessage,
  type Queue,
  type QueueSettings,
  type WatchQueueResponse,
  type Worker as WorkerRecord,
} from "./gen/jobwire/v1/admin_service.js";
import { JobState, type Job } from "./gen/jobwire/v1/job.js";
import { JobwireClient, type JobwireClientOptions } from "./client.js";
import { fromGrpcError, InternalError, UnavailableError } from "./errors.js";
import { invoke, type CallOptions, type UnaryMethod } from "./internal/call.js";
import { msToDuration } from "./internal/convert.js";

export interface JobwireAdminOptions {
  /**
   * A deadline for every unary call, unless the call says otherwise. Default: the
   * `deadlineMs` of `clientOptions`, else none but the service config's (a given
   * JobwireClient keeps its own `deadlineMs` to itself: pass it again here). Streams
   * (`redriveDeadLetters`, `watchQueue`) only get the one their own options give.
   */
  deadlineMs?: number;
  /** Options of the channel the admin makes when given a target, as a JobwireClient takes them. */
  clientOptions?: JobwireClientOptions;
}

/** Narrows a set of jobs; every field given must match. */
export interface JobFilter {
  /** The last error's type, e.g. `TimeoutError` or `LEASE_EXPIRED`. */
  errorType?: string;
  /** The job has this header... */
  headerKey?: string;
  /** ...with exactly this value (with `headerKey`; unset: any value). */
  headerValue?: string;
  /** The dead job's group (`DeadLetterGroup.fingerprint`). */
  errorFingerprint?: string;
}

/** One page of a list call. */
export interface Page<T> {
  items: T[];
  /** Pass as `pageToken` for the page after this one; empty after the last page. */
  nextPageToken: string;
}

export interface PageOptions extends CallOptions {
  /** Most items per page; 0 or unset: the call's default. */
  pageSize?: number;
  /** `nextPageToken` of the previous page; unset for the first. */
  pageToken?: string;
}

export interface ListJobsOptions extends PageOptions {
  /**
   * Default `oldest-first`, the state's own order: by due time for scheduled jobs, by
   * lease order (priority, then FIFO) for ready ones, by lease expiry for active ones,
   * by finish time for finished ones. `newest-first` is the reverse.
   */
  order?: "oldest-first" | "newest-first";
  /**
   * Narrows the jobs. With a filter a page may hold fewer than `pageSize` jobs, even
   * none, before the last: the broker examines at most 5000 jobs per call.
   */
  filter?: JobFilter;
  /** Fill in `spec.payload` and `result` (empty otherwise); a page then also ends before 4 MiB. */
  includePayloads?: boolean;
}

/**
 * Jobs of one queue for `retryJobs` and `deleteJobs`: the ones `jobIds` names (at most
 * 1000, all or nothing), or every job in `state` that matches `filter`.
 */
export type JobSelection = { jobIds: readonly string[] } | { state: JobState; filter?: JobFilter };

/** Where a redrive stands. */
export interface RedriveProgress {
  /** Jobs the redrive matched when it started (`limit` applied). */
  matched: number;
  /** Jobs sent back to ready so far. */
  redriven: number;
  /** Set on the last message. */
  done: boolean;
}

export interface RedriveOptions extends CallOptions {
  /** One group's `fingerprint`; unset: every dead job that `filter` matches. */
  fingerprint?: string;
  filter?: JobFilter;
  /** Most jobs sent back per second, in [0, 100,000]; 0 or unset: as fast as batches go. */
  rate?: number;
  /** Redrive at most this many jobs, the oldest first; 0 or unset: all. */
  limit?: number;
  /** Only count the jobs that would be redriven (`matched`); change nothing. */
  dryRun?: boolean;
  /** Called with every progress message the broker streams, the last one included. */
  onProgress?: (progress: RedriveProgress) => void;
}

/**
 * Dead jobs for `purgeDeadLetters`: one group, those dead longer than `olderThanMs`,
 * both (the group's jobs dead that long), or every one with `all` (required when
 * neither of the others is given).
 */
export interface PurgeOptions extends CallOptions {
  fingerprint?: string;
  olderThanMs?: number;
  all?: boolean;
  /** Only count the jobs that would be deleted. */
  dryRun?: boolean;
}

export interface UpdateQueueOptions extends CallOptions {
  /**
   * `QueueSettings` field names (as in the proto: `max_attempts`, `backoff`, ...) to
   * change; a field named but unset in `settings` goes back to the broker's default.
   * Unset or empty: every field set in `settings`.
   */
  fields?: readonly string[];
}

export interface WatchQueueOptions extends CallOptions {
  /** Continue after this event. Unset: only events from now on; `"0"`: from the oldest kept. */
  afterEventId?: string;
}

export interface ListWorkersOptions extends CallOptions {
  /** Only workers of this queue; unset: every queue. */
  queue?: string;
  /** Include gone workers. */
  includeGone?: boolean;
}

function filterMessage(f: JobFilter | undefined): JobFilterMessage | undefined {
  if (!f) return undefined;
  return { errorType: f.errorType ?? "", headerKey: f.headerKey ?? "", headerValue: f.headerValue ?? "", errorFingerprint: f.errorFingerprint ?? "" };
}

function selection(s: JobSelection): { jobIds: string[]; state: JobState; filter: JobFilterMessage | undefined } {
  if ("jobIds" in s) return { jobIds: [...s.jobIds], state: JobState.JOB_STATE_UNSPECIFIED, filter: undefined };
  return { jobIds: [], state: s.state, filter: filterMessage(s.filter) };
}

/**
 * Operates queues: counts and settings, pausing, listing and bulk-editing their jobs,
 * dead letters (grouped by error fingerprint, redriven, purged), their events and the
 * workers seen on them. Errors are the JobwireError classes of the client; the broker
 * adds the reasons QUEUE_NOT_FOUND (a NotFoundError), WRONG_STATE and QUEUE_BUSY
 * (FailedPreconditionError) for these calls.
 */
export class JobwireAdmin {
  /** The generated grpc-js stub, for calls this class does not wrap. */
  readonly stub: AdminServiceClient;
  private readonly deadlineMs: number | undefined;
  /** The client whose channel this admin made; undefined when the channel is shared. */
  private readonly owned: JobwireClient | undefined;

  /**
   * An admin on a JobwireClient's channel (closing the client closes it; the admin's own
   * `close()` leaves it open), or, given a target, on a channel of its own made exactly
   * as a JobwireClient's is, from `clientOptions` (`close()` closes that one).
   */
  constructor(client: JobwireClient | string, options: JobwireAdminOptions = {}) {
    const base = typeof client === "string" ? new JobwireClient(client, options.clientOptions) : client;
    this.owned = base === client ? undefined : base;
    // With channelOverride grpc-js uses the given channel and ignores target and credentials.
    this.stub = new AdminServiceClient(base.target, grpcCredentials.createInsecure(), { channelOverride: base.stub.getChannel() });
    this.deadlineMs = options.deadlineMs ?? options.clientOptions?.deadlineMs;
  }

  /** Closes the channel made from a target (calls in flight fail with CANCELLED); a client's stays open. */
  close(): void {
    this.owned?.close();
  }

  private call<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: CallOptions | undefined): Promise<Res> {
    return invoke(method.bind(this.stub), request, { deadlineMs: opts?.deadlineMs ?? this.deadlineMs, signal: opts?.signal });
  }

  /** Every queue, by name, with its counts and settings (`lastHour` is empty here; `getQueue` fills it). */
  async listQueues(options?: CallOptions): Promise<Queue[]> {
    return (await this.call(this.stub.listQueues, {}, options)).queues;
  }

  /**
   * One queue: counts per state, paused flag, settings, the age of its oldest ready job,
   * throughput over the last hour and its workers. Throws NotFoundError (reason
   * QUEUE_NOT_FOUND) for an unknown queue.
   */
  async getQueue(queue: string, options?: CallOptions): Promise<Queue> {
    return required((await this.call(this.stub.getQueue, { queue }, options)).queue, queue);
  }

  /** Changes a queue's settings, creating the queue if it is new, and returns it. */
  async updateQueue(queue: string, settings: QueueSettings, options: UpdateQueueOptions = {}): Promise<Queue> {
    const updateMask = options.fields && options.fields.length > 0 ? [...options.fields] : undefined;
    return required((await this.call(this.stub.updateQueue, { queue, settings, updateMask }, options)).queue, queue);
  }

  /**
   * Pauses a queue: enqueues are still accepted, but leases hand out nothing (a
   * long-polling lease keeps waiting) until `resumeQueue`. Active jobs keep their
   * leases. Pausing a paused queue does nothing.
   */
  async pauseQueue(queue: string, options?: CallOptions): Promise<void> {
    await this.call(this.stub.pauseQueue, { queue }, options);
  }

  /** Resumes a paused queue and wakes its long-polling leases on every replica. */
  async resumeQueue(queue: string, options?: CallOptions): Promise<void> {
    await this.call(this.stub.resumeQueue, { queue }, options);
  }

  /** Deletes every ready and scheduled job of a queue; returns how many. Active and finished jobs stay. */
  async drainQueue(queue: string, options?: CallOptions): Promise<number> {
    return (await this.call(this.stub.drainQueue, { queue }, options)).deleted;
  }

  /**
   * Deletes a queue with every job, its settings, events and worker records; returns how
   * many jobs. While jobs are active it throws FailedPreconditionError (reason
   * QUEUE_BUSY), unless `force` is set.
   */
  async deleteQueue(queue: string, options: CallOptions & { force?: boolean } = {}): Promise<number> {
    return (await this.call(this.stub.deleteQueue, { queue, force: options.force ?? false }, options)).deleted;
  }

  /**
   * One page (`pageSize` in [0, 1000]; 0 means 50) of the jobs of a queue in one state.
   * The page token is a position in the state's order, not an offset: a job that stays
   * in the state is listed exactly once across the pages.
   */
  async listJobs(queue: string, state: JobState, options: ListJobsOptions = {}): Promise<Page<Job>> {
    const res = await this.call(
      this.stub.listJobs,
      {
        queue,
        state,
        order: options.order === "newest-first" ? ListOrder.LIST_ORDER_NEWEST_FIRST : ListOrder.LIST_ORDER_OLDEST_FIRST,
        pageSize: options.pageSize ?? 0,
        pageToken: options.pageToken ?? "",
        filter: filterMessage(options.filter),
        includePayloads: options.includePayloads ?? false,
      },
      options,
    );
    return { items: res.jobs, nextPageToken: res.nextPageToken };
  }

  /** Every job of a queue in one state, page after page from `pageToken` on, as `listJobs` lists them. */
  jobs(queue: string, state: JobState, options: ListJobsOptions = {}): AsyncGenerator<Job, void, undefined> {
    return allPages(options.pageToken, (pageToken) => this.listJobs(queue, state, { ...options, pageToken }));
  }

  /**
   * Sends dead or cancelled jobs back to ready with their attempts counted afresh;
   * returns how many. By ids, a job that is not dead or cancelled throws
   * FailedPreconditionError (WRONG_STATE), an unknown one NotFoundError; nothing is
   * retried then.
   */
  async retryJobs(queue: string, jobs: JobSelection, options?: CallOptions): Promise<number> {
    return (await this.call(this.stub.retryJobs, { queue, ...selection(jobs) }, options)).retried;
  }

  /**
   * Deletes jobs that are not active; returns how many. By ids, an active job throws
   * FailedPreconditionError (WRONG_STATE: cancel it first), an unknown one NotFoundError.
   */
  async deleteJobs(queue: string, jobs: JobSelection, options?: CallOptions): Promise<number> {
    return (await this.call(this.stub.deleteJobs, { queue, ...selection(jobs) }, options)).deleted;
  }

  /**
   * Makes scheduled jobs ready now: the given ones (at most 1000, all or nothing), or
   * every scheduled job of the queue when `jobIds` is empty. Returns how many.
   */
  async promoteJobs(queue: string, jobIds: readonly string[] = [], options?: CallOptions): Promise<number> {
    return (await this.call(this.stub.promoteJobs, { queue, jobIds: [...jobIds] }, options)).promoted;
  }

  /**
   * One page (`pageSize` in [0, 1000]; 0 means 100) of a queue's dead jobs grouped by
   * error fingerprint, most recently seen first. The fingerprint is the error type plus
   * its message with numbers, ids, hex strings, addresses and quoted values replaced by
   * placeholders (`messageTemplate`).
   */
  async listDeadLetterGroups(queue: string, options: PageOptions = {}): Promise<Page<DeadLetterGroup>> {
    const res = await this.call(this.stub.listDeadLetterGroups, { queue, pageSize: options.pageSize ?? 0, pageToken: options.pageToken ?? "" }, options);
    return { items: res.groups, nextPageToken: res.nextPageToken };
  }

  /** Every dead-letter group of a queue, page after page, as `listDeadLetterGroups` lists them. */
  deadLetterGroups(queue: string, options: PageOptions = {}): AsyncGenerator<DeadLetterGroup, void, undefined> {
    return allPages(options.pageToken, (pageToken) => this.listDeadLetterGroups(queue, { ...options, pageToken }));
  }

  /**
   * Sends a queue's dead jobs back to ready, as `retryJobs` does, at most `rate` per
   * second, calling `onProgress` with each progress message; resolves with the last one
   * (`done` set). Aborting `signal` stops the redrive (jobs already sent stay sent) and
   * rejects with its reason. A stream that breaks before the end rejects with the
   * mapped error (UnavailableError when it just ended): call again to redrive the rest.
   * Not retried here, and no deadline unless `deadlineMs` is given: a slow rate may
   * take long.
   */
  async redriveDeadLetters(queue: string, options: RedriveOptions = {}): Promise<RedriveProgress> {
    const { signal } = options;
    const dryRun = options.dryRun ?? false;
    const request = { queue, fingerprint: options.fingerprint ?? "", filter: filterMessage(options.filter), rate: options.rate ?? 0, dryRun, limit: options.limit ?? 0 };
    let last: RedriveProgress | undefined;
    for await (const message of messages(() => this.stub.redriveDeadLetters(request, streamOptions(options)), signal)) {
      last = { matched: message.matched, redriven: message.redriven, done: message.done };
      options.onProgress?.(last);
    }
    // A dry run's one message is its whole answer, done flag or not.
    if (last && (last.done || dryRun)) return { ...last, done: true };
    throw new UnavailableError(`redrive of ${queue} ended before it was done`, { code: Code.UNAVAILABLE });
  }

  /** Deletes dead jobs of a queue; returns how many (with `dryRun`, how many it would). */
  async purgeDeadLetters(queue: string, options: PurgeOptions = {}): Promise<number> {
    const request = {
      queue,
      fingerprint: options.fingerprint ?? "",
      olderThan: options.olderThanMs === undefined ? undefined : msToDuration(options.olderThanMs),
      all: options.all ?? false,
      dryRun: options.dryRun ?? false,
    };
    return (await this.call(this.stub.purgeDeadLetters, request, options)).purged;
  }

  /**
   * A queue's events in the order they happened, until the caller stops iterating,
   * `signal` aborts (rejecting with its reason) or the stream breaks (rejecting with the
   * mapped error; watch again after the last `eventId` seen to go on). The first event
   * has `gap` set when events after `afterEventId` were trimmed before this call read
   * them.
   */
  watchQueue(queue: string, options: WatchQueueOptions = {}): AsyncGenerator<WatchQueueResponse, void, undefined> {
    const request = { queue, afterEventId: options.afterEventId ?? "" };
    return messages(() => this.stub.watchQueue(request, streamOptions(options)), options.signal);
  }

  /** The workers seen in the last hour (by the worker id they lease with), by id. */
  async listWorkers(options: ListWorkersOptions = {}): Promise<WorkerRecord[]> {
    return (await this.call(this.stub.listWorkers, { queue: options.queue ?? "", includeGone: options.includeGone ?? false }, options)).workers;
  }
}

function required(queue: Queue | undefined, name: string): Queue {
  if (!queue) throw new InternalError(`broker returned no queue for ${name}`);
  return queue;
}

function streamOptions(opts: CallOptions): { deadline?: Date } {
  return opts.deadlineMs === undefined ? {} : { deadline: new Date(Date.now() + opts.deadlineMs) };
}

/**
 * The messages of a server stream, with errors mapped. The call starts with the first
 * `next()`, so a generator never iterated opens nothing; stopping early or aborting
 * cancels it.
 */
async function* messages<T>(open: () => ClientReadableStream<T>, signal: AbortSignal | undefined): AsyncGenerator<T, void, undefined> {
  signal?.throwIfAborted();
  const stream = open();
  const onAbort = (): void => stream.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const message of stream as AsyncIterable<T>) yield message;
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    throw fromGrpcError(err);
  } finally {
    signal?.removeEventListener("abort", onAbort);
    stream.cancel();
  }
}

/** Follows page tokens from `start` until the last page. */
async function* allPages<T>(start: string | undefined, list: (pageToken: string) => Promise<Page<T>>): AsyncGenerator<T, void, undefined> {
  let token = start ?? "";
  for (;;) {
    const page = await list(token);
    yield* page.items;
    if (!page.nextPageToken) return;
    token = page.nextPageToken;
  }
}
