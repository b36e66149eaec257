// Starts a real Jobwire broker (embedded Valkey, data in a temp dir) for a test file.
// JOBWIRE_PYTHON names the interpreter; default <repo>/.venv/bin/python.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
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

const READY = /serving on .*\(port (\d+)\)/;

/**
 * Tests stop brokers with streams and long-polls open: a short grace keeps that quick.
 * `args` are more flags for `serve`, e.g. `["--max-payload-bytes", "6291456"]`.
 */
export async function startBroker(options: { port?: number; dataDir?: string; graceSeconds?: number; args?: string[] } = {}): Promise<Broker> {
  const python = process.env["JOBWIRE_PYTHON"] || join(REPO_ROOT, ".venv/bin/python");
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), "jobwire-node-test-")));
  const listen = `127.0.0.1:${options.port ?? 0}`;
  const child = spawn(python, ["-m", "jobwire_broker", "serve", "--listen", listen, "--redis-url", "", "--data-dir", dataDir, "--grace", String(options.graceSeconds ?? 1), ...(options.args ?? [])], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let port: number;
  try {
    port = await waitReady(child);
  } catch (err) {
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
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

function waitReady(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let stdout = "";
    let stderr = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`broker not ready after 30 s\n${stderr}`));
    }, 30_000);
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-8192);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
      const m = READY.exec(stdout);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`broker exited before it was ready (code ${code}, signal ${signal})\n${stderr}`));
    });
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

let counter = 0;

/** A queue name no other test uses. */
export function uniqueQueue(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}
