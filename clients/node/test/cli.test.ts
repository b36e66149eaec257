// The jobwire-node CLI as a separate process against a real broker.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { JobState, JobwireClient } from "../src/index.js";
import { PACKAGE_ROOT, startBroker, uniqueQueue, type Broker } from "./broker.js";

const run = promisify(execFile);
const CLI = join(PACKAGE_ROOT, "bin/jobwire-node.js");

describe("jobwire-node CLI", () => {
  let broker: Broker;
  let dir: string;

  before(async () => {
    broker = await startBroker();
    dir = await mkdtemp(join(tmpdir(), "jobwire-node-cli-"));
  });

  after(async () => {
    await broker?.dispose();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("enqueues with headers and a traceparent, then works the jobs", async () => {
    const queue = uniqueQueue("cli");
    const file = join(dir, "payload.bin");
    await writeFile(file, Buffer.from([1, 2, 3, 250]));
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    const ids: string[] = [];
    for (const n of [1, 2]) {
      const args = ["enqueue", "--target", broker.target, "--queue", queue, "--payload-file", file, "--header", `n=${n}`, "--header", "kind=cli"];
      if (n === 1) args.push("--traceparent", traceparent);
      const { stdout } = await run(process.execPath, [CLI, ...args]);
      ids.push(stdout.trim());
    }
    assert.match(ids[0] ?? "", new RegExp(`^${queue}:\\d+$`));

    const { stdout } = await run(process.execPath, [CLI, "work", "--target", broker.target, "--queue", queue, "--count", "2"], { timeout: 20_000 });
    const lines = stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { id: string; payload: string; headers: Record<string, string>; traceparent: string });
    assert.deepEqual(
      lines.map((l) => l.id),
      ids,
    );
    assert.deepEqual(lines[0], { id: ids[0], payload: Buffer.from([1, 2, 3, 250]).toString("base64"), headers: { n: "1", kind: "cli" }, traceparent });
    assert.equal(lines[1]?.traceparent, "");

    const client = new JobwireClient(broker.target);
    try {
      const job = await client.getJob(ids[0] ?? "");
      assert.equal(job.state, JobState.JOB_STATE_COMPLETED);
      assert.deepEqual([...job.result], [1, 2, 3, 250]);
      assert.equal(job.resultContentType, "application/octet-stream");
    } finally {
      client.close();
    }
  });

  it("exits 2 with usage on bad arguments", async () => {
    await assert.rejects(run(process.execPath, [CLI, "work", "--queue"]), (err: unknown) => {
      assert.equal((err as { code?: number }).code, 2);
      return true;
    });
  });
});
