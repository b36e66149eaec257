// BullMQ (Node) reference side of the standard benchmark, docs/benchmark.md.
// Usage: node bench.mjs --port 6379 [--host 127.0.0.1] [--jobs 20000] [--repeat 3]
//        [--only enqueue,process,latency] [--rate 500] [--keep-completed 1000] [--json out.json]
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE, jobOptions, payload, wallMs } from './common.mjs';

const { values: args } = parseArgs({
  options: {
    host: { type: 'string', default: process.env.REDIS_HOST ?? '127.0.0.1' },
    port: { type: 'string', default: process.env.REDIS_PORT ?? '6379' },
    jobs: { type: 'string', default: '20000' },
    repeat: { type: 'string', default: '3' },
    only: { type: 'string', default: 'enqueue,process,latency' },
    rate: { type: 'string', default: '500' },
    'keep-completed': { type: 'string', default: '1000' },
    json: { type: 'string' },
  },
});
const N = Number(args.jobs);
const KEEP = Number(args['keep-completed']);
const RATE = Number(args.rate);
const connection = { host: args.host, port: Number(args.port) };
const admin = new Redis(connection);

const FIGURES = [
  ['enqueue', 'enqueue_1by1', 'enqueue 1-by-1', 'jobs/s'],
  ['enqueue', 'enqueue_c100', 'enqueue 100 concurrent', 'jobs/s'],
  ['enqueue', 'enqueue_bulk1000', 'enqueue addBulk 1000', 'jobs/s'],
  ['process', 'process_c1', 'process c=1', 'jobs/s'],
  ['process', 'process_c10', 'process c=10', 'jobs/s'],
  ['process', 'process_c50', 'process c=50', 'jobs/s'],
  ['latency', 'latency_p50_ms', `latency p50 @${RATE}/s`, 'ms'],
  ['latency', 'latency_p99_ms', `latency p99 @${RATE}/s`, 'ms'],
];

// Every measurement starts from an empty store and a fresh Queue, so no figure inherits
// keys or cached state from the one before.
async function freshQueue() {
  await admin.flushall();
  const queue = new Queue(QUEUE, { connection, defaultJobOptions: jobOptions(KEEP) });
  await queue.waitUntilReady();
  return queue;
}

async function timedEnqueue(n, fill) {
  const queue = await freshQueue();
  const t0 = performance.now();
  await fill(queue, n);
  const rate = (n * 1000) / (performance.now() - t0);
  await queue.close();
  return rate;
}

async function addBulk(queue, n, batch = 1000) {
  for (let i = 0; i < n; i += batch) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + batch); j++) jobs.push({ name: 'noop', data: payload(j) });
    await queue.addBulk(jobs);
  }
}

function enqueueOneByOne(n) {
  return timedEnqueue(n, async (queue) => {
    for (let i = 0; i < n; i++) await queue.add('noop', payload(i));
  });
}

function enqueueConcurrent(n, lanes = 100) {
  // 100 lanes each awaiting its own add: always 100 calls in flight, as an HTTP
  // server enqueueing on behalf of 100 concurrent requests would have.
  return timedEnqueue(n, async (queue) => {
    let next = 0;
    const lane = async () => {
      while (next < n) await queue.add('noop', payload(next++));
    };
    await Promise.all(Array.from({ length: lanes }, lane));
  });
}

// Resolves when `count` jobs have completed; rejects on a failed job or if stuck.
function completions(worker, count) {
  return new Promise((resolve, reject) => {
    let done = 0;
    const timer = setTimeout(() => reject(new Error(`stuck at ${done}/${count} jobs`)), 300_000);
    worker.on('completed', () => {
      if (++done === count) {
        clearTimeout(timer);
        resolve(performance.now());
      }
    });
    worker.on('failed', (_job, err) => reject(err));
  });
}

async function processRate(n, concurrency) {
  const queue = await freshQueue();
  await addBulk(queue, n); // pre-fill, not timed
  await queue.close();
  const worker = new Worker(QUEUE, async () => {}, { connection, concurrency, autorun: false });
  const finished = completions(worker, n);
  await worker.waitUntilReady(); // connecting is not part of the figure
  const t0 = performance.now();
  worker.run().catch((err) => console.error('worker.run:', err));
  const t1 = await finished;
  await worker.close();
  return (n * 1000) / (t1 - t0);
}

async function latency(n) {
  await (await freshQueue()).close();
  const lat = new Float64Array(n);
  let started = 0;
  const worker = new Worker(
    QUEUE,
    async (job) => {
      lat[started++] = wallMs() - Number(job.data.ts) * 1000;
    },
    { connection, concurrency: 10 },
  );
  const finished = completions(worker, n);
  await worker.waitUntilReady();
  await sleep(200); // let the worker park in its blocking wait: the figure is for an idle worker
  const producer = fork(new URL('./producer.mjs', import.meta.url), [
    args.host,
    args.port,
    String(n),
    String(RATE),
    String(KEEP),
  ]);
  const crashed = once(producer, 'exit').then(([code]) => {
    throw new Error(`producer exited with ${code} before reporting`);
  });
  const [report] = await Promise.race([once(producer, 'message'), crashed]);
  await finished;
  await worker.close();
  if (report.sent !== n) throw new Error(`producer sent ${report.sent}/${n}`);
  const achieved = report.sent / report.seconds;
  if (Math.abs(achieved - RATE) > 0.05 * RATE)
    console.warn(`producer rate ${achieved.toFixed(0)}/s`);
  lat.sort();
  const pct = (p) => lat[Math.ceil(p * n) - 1]; // nearest rank
  return { latency_p50_ms: pct(0.5), latency_p99_ms: pct(0.99) };
}

async function runGroup(group, n) {
  if (group === 'enqueue') {
    return {
      enqueue_1by1: await enqueueOneByOne(n),
      enqueue_c100: await enqueueConcurrent(n),
      enqueue_bulk1000: await timedEnqueue(n, addBulk),
    };
  }
  if (group === 'process') {
    return {
      process_c1: await processRate(n, 1),
      process_c10: await processRate(n, 10),
      process_c50: await processRate(n, 50),
    };
  }
  return latency(n);
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmt = (x, unit) => (unit === 'ms' ? x.toFixed(2) : Math.round(x).toLocaleString('en-US'));
const version = (pkg) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${pkg}/package.json`, import.meta.url))).version;

async function main() {
  const groups = args.only.split(',').map((g) => g.trim());
  for (const g of groups)
    if (!['enqueue', 'process', 'latency'].includes(g)) throw new Error(`--only: ${g}?`);
  const info = await admin.info('server');
  // Valkey also reports redis_version (its compatibility level), so prefer valkey_version.
  const m = info.match(/^valkey_version:(.*)$/m) ?? info.match(/^redis_version:(.*)$/m);
  const server = m
    ? `${info.includes('valkey_version') ? 'valkey' : 'redis'} ${m[1].trim()}`
    : 'unknown';

  // A short unreported pass first: V8 compiles BullMQ's hot paths during it, which
  // otherwise costs the first figure (1-by-1 enqueue) 10-20%.
  for (const group of groups) await runGroup(group, Math.min(N, 1000));
  // Each round runs every selected figure once, so a slow phase of a noisy machine is
  // spread over all figures instead of landing on the repeats of one.
  const runs = {};
  for (let r = 0; r < Number(args.repeat); r++) {
    for (const group of groups) {
      const result = await runGroup(group, N);
      for (const [key, value] of Object.entries(result)) (runs[key] ??= []).push(value);
    }
  }
  await admin.flushall();
  await admin.quit();

  const figures = {};
  const remove = JSON.stringify(jobOptions(KEEP).removeOnComplete);
  const settings = `N=${N}, repeat=${args.repeat}, removeOnComplete=${remove}`;
  console.log(
    `BullMQ ${version('bullmq')} / ioredis ${version('ioredis')} / Node ${process.version}`,
  );
  console.log(`${server} at ${args.host}:${args.port}, ${settings}\n`);
  console.log(`${'figure'.padEnd(24)} ${'unit'.padEnd(7)} ${'median'.padStart(8)}  min-max`);
  for (const [, key, label, unit] of FIGURES) {
    if (!runs[key]) continue;
    const xs = runs[key];
    figures[key] = {
      label,
      unit,
      median: median(xs),
      min: Math.min(...xs),
      max: Math.max(...xs),
      runs: xs,
    };
    const f = figures[key];
    const range = `${fmt(f.min, unit)}-${fmt(f.max, unit)}`;
    console.log(
      `${label.padEnd(24)} ${unit.padEnd(7)} ${fmt(f.median, unit).padStart(8)}  ${range}`,
    );
  }
  if (args.json) {
    const result = {
      system: 'BullMQ (Node)',
      versions: {
        bullmq: version('bullmq'),
        ioredis: version('ioredis'),
        node: process.version,
        server,
      },
      settings: { jobs: N, repeat: Number(args.repeat), rate: RATE, job_options: jobOptions(KEEP) },
      figures,
    };
    mkdirSync(dirname(args.json), { recursive: true });
    writeFileSync(args.json, `${JSON.stringify(result, null, 2)}\n`);
  }
}

await main();
