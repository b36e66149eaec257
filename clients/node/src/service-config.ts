// The gRPC service config shipped with the protos (protos/jobwire/v1/service_config.json):
// the retry policy and timeout of each RPC. The build copies the file next to this module
// (dist/src/service_config.json); the channel gets it as `grpc.service_config`, and the
// client's own retries (an enqueue with idempotency keys, reopening a watch) read their
// policy from it too.

import { readFileSync } from "node:fs";
import { status as Code } from "@grpc/grpc-js";

/** A service config document, in gRPC's JSON format (only the parts this client reads are typed). */
export interface ServiceConfig {
  methodConfig?: MethodConfig[];
  [key: string]: unknown;
}

export interface MethodConfig {
  name: { service?: string; method?: string }[];
  /** A protobuf JSON Duration, e.g. "10s". */
  timeout?: string;
  retryPolicy?: {
    maxAttempts: number;
    initialBackoff: string;
    maxBackoff: string;
    backoffMultiplier: number;
    retryableStatusCodes: (string | number)[];
  };
  [key: string]: unknown;
}

/** A retry policy of the service config, in numbers. */
export interface RetryPolicy {
  /** Attempts in all, the first one included. */
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
  retryableCodes: readonly Code[];
}

/** What the service config says about one method. */
export interface MethodPolicy {
  /** 0: no timeout. */
  timeoutMs: number;
  retry: RetryPolicy | undefined;
}

const SERVICE = "jobwire.v1.BrokerService";
const FILE = new URL("./service_config.json", import.meta.url);

function load(): ServiceConfig {
  let text: string;
  try {
    text = readFileSync(FILE, "utf8");
  } catch (err) {
    throw new Error(`${FILE.pathname} is missing: build the package (make setup-node, or npm run build)`, { cause: err });
  }
  return JSON.parse(text) as ServiceConfig;
}

/** The service config shipped with the protos. Pass a changed copy as `serviceConfig` to use another. */
export const DEFAULT_SERVICE_CONFIG: Readonly<ServiceConfig> = Object.freeze(load());

function durationMs(value: string | undefined): number {
  if (value === undefined) return 0;
  const match = /^(\d+(?:\.\d+)?)s$/.exec(value);
  if (!match) throw new Error(`service config: bad duration ${JSON.stringify(value)}`);
  return Math.round(Number(match[1]) * 1000);
}

function statusCode(value: string | number): Code {
  if (typeof value === "number") return value as Code;
  const code = (Code as unknown as Record<string, Code | undefined>)[value.toUpperCase()];
  if (code === undefined) throw new Error(`service config: unknown status code ${value}`);
  return code;
}

/** The policy of `method` (e.g. "GetJob"), chosen as gRPC does: its own entry, else the service's. */
export function methodPolicy(config: ServiceConfig, method: string): MethodPolicy {
  let serviceWide: MethodConfig | undefined;
  for (const entry of config.methodConfig ?? []) {
    for (const name of entry.name) {
      if ((name.service ?? "") !== SERVICE && (name.service ?? "") !== "") continue;
      if (name.method === method) return toPolicy(entry);
      if (!name.method) serviceWide ??= entry;
    }
  }
  return serviceWide ? toPolicy(serviceWide) : { timeoutMs: 0, retry: undefined };
}

function toPolicy(entry: MethodConfig): MethodPolicy {
  const r = entry.retryPolicy;
  return {
    timeoutMs: durationMs(entry.timeout),
    retry: r && {
      // gRPC caps attempts at 5 whatever the config says.
      maxAttempts: Math.min(r.maxAttempts, 5),
      initialBackoffMs: durationMs(r.initialBackoff),
      maxBackoffMs: durationMs(r.maxBackoff),
      multiplier: r.backoffMultiplier,
      retryableCodes: r.retryableStatusCodes.map(statusCode),
    },
  };
}

/**
 * The pause before retry `n` (from 1): the initial backoff times the multiplier^(n-1), at
 * most the maximum, jittered by ±20% as gRPC does; a longer hint from the broker
 * (`google.rpc.RetryInfo`) wins, up to the maximum.
 */
export function backoffMs(policy: RetryPolicy, n: number, hintMs = 0): number {
  let step = policy.initialBackoffMs;
  for (let i = 1; i < n; i++) step = Math.min(step * Math.max(policy.multiplier, 1), policy.maxBackoffMs);
  return Math.max(step * (0.8 + 0.4 * Math.random()), Math.min(hintMs, policy.maxBackoffMs));
}
