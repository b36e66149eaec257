// Open-loop producer for the latency figure, forked by bench.mjs so enqueueing does not
// share an event loop with the worker being measured.
// Usage: node producer.mjs HOST PORT JOBS RATE KEEP_COMPLETED
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import { QUEUE, jobOptions, payload } from './common.mjs';

const [host, port, jobs, rate, keep] = process.argv.slice(2);
const n = Number(jobs);
const interval = 1000 / Number(rate);

const queue = new Queue(QUEUE, {
  connection: { host, port: Number(port) },
  defaultJobOptions: jobOptions(Number(keep)),
});
await queue.waitUntilReady();

// Open loop: job i is due at t0 + i*interval whatever happened to earlier adds, so a slow
// Redis reply shows up as latency instead of silently lowering the rate. Timers fire
// late by up to a few ms, so each wake-up sends every job that has come due.
const pending = [];
const t0 = performance.now();
let sent = 0;
while (sent < n) {
  const due = Math.min(n, Math.floor((performance.now() - t0) / interval) + 1);
  for (; sent < due; sent++) pending.push(queue.add('noop', payload(sent)));
  if (sent < n) await sleep(Math.max(0, t0 + sent * interval - performance.now()));
}
await Promise.all(pending);
const seconds = (performance.now() - t0) / 1000;
await queue.close();
process.send({ sent, seconds });
process.disconnect();
