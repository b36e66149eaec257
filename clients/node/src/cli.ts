// jobwire-node: a small CLI over the client, for scripts and cross-language tests.
//   enqueue: enqueue one job from a file and print its id
//   work:    process N jobs, returning each payload unchanged, one JSON line per job
//   errors:  drive every ErrorReason through the client, one JSON line per case

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { defaultTextMapGetter, ROOT_CONTEXT } from "@opentelemetry/api";
import { JobwireClient } from "./client.js";
import { errorProbe } from "./error-probe.js";
import { CONTENT_TYPE_BYTES } from "./internal/convert.js";
import { JobResult, Worker } from "./worker.js";

const USAGE = `usage:
  jobwire-node enqueue --target HOST:PORT --queue QUEUE --payload-file FILE|-
                       [--content-type TYPE] [--header K=V]... [--traceparent TRACEPARENT]
      Enqueues one job and prints its id.
  jobwire-node work --target HOST:PORT --queue QUEUE [--count N]
      Processes N jobs (default 1), completing each with its payload unchanged, and
      prints one JSON line per completed job: {"id","payload" (base64),"headers","traceparent"}.
  jobwire-node errors --target HOST:PORT [--dead-target HOST:PORT] [--queue PREFIX]
      Triggers every ErrorReason (--dead-target: a broker whose Redis is down) and prints
      the error class the client raised, one JSON line per case (see src/error-probe.ts).`;

class UsageError extends Error {}

function required(value: string | undefined, flag: string): string {
  if (!value) throw new UsageError(`missing --${flag}`);
  return value;
}

async function readPayload(path: string): Promise<Buffer> {
  if (path !== "-") return readFile(path);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function enqueue(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      target: { type: "string", default: "127.0.0.1:50051" },
      queue: { type: "string" },
      "payload-file": { type: "string" },
      "content-type": { type: "string", default: CONTENT_TYPE_BYTES },
      header: { type: "string", multiple: true, default: [] },
      traceparent: { type: "string" },
    },
    strict: true,
  });
  const headers: Record<string, string> = {};
  for (const h of values.header) {
    const eq = h.indexOf("=");
    if (eq <= 0) throw new UsageError(`--header wants K=V, got ${JSON.stringify(h)}`);
    headers[h.slice(0, eq)] = h.slice(eq + 1);
  }
  const payload = await readPayload(required(values["payload-file"], "payload-file"));
  const client = new JobwireClient(values.target);
  try {
    // The given traceparent goes through the propagator like any active span would.
    const context = values.traceparent
      ? client.propagator.extract(ROOT_CONTEXT, { traceparent: values.traceparent }, defaultTextMapGetter)
      : ROOT_CONTEXT;
    const res = await client.enqueue(required(values.queue, "queue"), payload, {
      contentType: values["content-type"],
      headers,
      context,
    });
    process.stdout.write(`${res.jobId}\n`);
  } finally {
    client.close();
  }
}

async function work(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      target: { type: "string", default: "127.0.0.1:50051" },
      queue: { type: "string" },
      count: { type: "string", default: "1" },
    },
    strict: true,
  });
  const count = Number(values.count);
  if (!Number.isInteger(count) || count < 1) throw new UsageError(`--count wants a positive integer, got ${values.count}`);
  const worker = new Worker(values.target);
  worker.on("completed", (job) => {
    const line = { id: job.id, payload: job.payload.toString("base64"), headers: job.headers, traceparent: job.traceContext?.traceparent ?? "" };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  });
  worker.process(required(values.queue, "queue"), (job) => new JobResult(job.payload, job.contentType), { maxJobs: count });
  const stop = (): void => void worker.close();
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  try {
    await worker.run();
  } finally {
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
  }
}

async function errors(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      target: { type: "string", default: "127.0.0.1:50051" },
      "dead-target": { type: "string" },
      queue: { type: "string", default: "node-errors" },
    },
    strict: true,
  });
  await errorProbe({ target: values.target, deadTarget: values["dead-target"], queue: values.queue });
}

/** Runs the CLI; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    if (command === "enqueue") await enqueue(rest);
    else if (command === "work") await work(rest);
    else if (command === "errors") await errors(rest);
    else if (command === "-h" || command === "--help") process.stdout.write(`${USAGE}\n`);
    else throw new UsageError(command ? `unknown command ${command}` : "missing command");
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))) {
      process.stderr.write(`jobwire-node: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`jobwire-node: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}\n`);
    return 1;
  }
}
