// Service configs for tests: the shipped one with other retry backoffs.

import type { ServiceConfig } from "../src/index.js";

/** `config` with every retry policy's backoff set to `initial` doubling to `max` (JSON durations such as "1s"). */
export function withBackoff(config: Readonly<ServiceConfig>, initial: string, max: string): ServiceConfig {
  const copy = structuredClone(config) as ServiceConfig;
  for (const entry of copy.methodConfig ?? []) {
    if (entry.retryPolicy) entry.retryPolicy = { ...entry.retryPolicy, initialBackoff: initial, maxBackoff: max, backoffMultiplier: 2 };
  }
  return copy;
}
