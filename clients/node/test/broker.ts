// Starts a real Jobwire broker (embedded Valkey, data in a temp dir) for a test file.
// JOBWIRE_PYTHON names the interpreter; default <repo>/.venv/bin/python.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** clients/node/dist/test → repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
/** clients/node */
export const PACKAGE_ROOT = resolve(REPO_ROOT, "clients/node");

export interface Broker {
  /** `127.0.0.1:<port>` */
  readonly target: string;
  readonly port: number;
  readonly dataDir: string;
  /** SIGTERM, wait for exit; the data dir is kept for a restart. */
  stop(): Promise<void>;
  /** Stops and removes the data dir. */
  dispose(): Promise<void>;
}

/**
 * Tests stop brokers with streams and long-polls open: a short grace keeps that quick.
 * `args` are more flags for `serve`, e.g. `["--max-payload-bytes", "6291456"]`.
 */
export async function startBroker(options: { port?: number; dataDir?: string; graceSeconds?: number; args?: string[] } = {}): Promise<Broker> {
  const python = process.env["JOBWIRE_PYTHON"] || join(REPO_ROOT, ".venv/bin/python");
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "jobwire-node-test-")));
  // Its own folder: a restart over the same data dir must not find the last run's file.
  const readyDir = await mkdtemp(join(tmpdir(), "jobwire-node-ready-"));
  const readyFile = join(readyDir, "ready.json");
  const listen = `127.0.0.1:${options.port ?? 0}`;
  const child = spawn(python, ["-m", "jobwire_broker", "serve", "--listen", listen, "--redis-url", "", "--data-dir", dataDir, "--ready-file", readyFile, "--grace", String(options.graceSeconds ?? 1), ...(options.args ?? [])], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let port: number;
  try {
    port = await waitReady(child, readyFile);
  } catch (err) {
    await rm(readyDir, { recursive: true, force: true });
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(readyDir, { recursive: true, force: true });
  };
  return {
    target: `127.0.0.1:${port}`,
    port,
    dataDir,
    stop,
    async dispose() {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls for the ready file the broker writes once it serves (renamed into place whole). */
async function waitReady(child: ChildProcess, readyFile: string, timeoutMs = 30_000): Promise<number> {
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-8192);
  });
  let failure: Error | undefined;
  child.once("exit", (code, signal) => {
    failure ??= new Error(`broker exited before it was ready (code ${code}, signal ${signal})\n${stderr}`);
  });
  child.once("error", (err) => {
    failure ??= err;
  });
  const end = Date.now() + timeoutMs;
  for (;;) {
    const text = await readFile(readyFile, "utf8").catch(() => undefined);
    if (text !== undefined) {
      const ready = JSON.parse(text) as { version?: unknown; grpc_port?: unknown };
      if (ready.version !== 1 || typeof ready.grpc_port !== "number") {
        child.kill("SIGKILL");
        throw new Error(`unexpected ready file: ${text}`);
      }
      return ready.grpc_port;
    }
    if (failure) throw failure;
    if (Date.now() > end) {
      child.kill("SIGKILL");
      throw new Error(`broker not ready after ${timeoutMs / 1000} s\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

let counter = 0;

/** A queue name no other test uses. */
export function uniqueQueue(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}
