// Shared by bench.mjs and producer.mjs: the standard payload, the clock and the job options.

export const QUEUE = 'bench';

// Wall clock with sub-millisecond resolution (Date.now() has only 1 ms). timeOrigin is
// taken from the system clock at process start, so the producer and worker processes
// agree to within microseconds, which is what the latency figure compares.
export function wallMs() {
  return performance.timeOrigin + performance.now();
}

// The 100-byte JSON of docs/benchmark.md. BullMQ stores JSON.stringify(data), so these are
// exactly the bytes that go to Redis.
export function payload(seq) {
  const data = {
    seq: String(seq).padStart(8, '0'),
    op: 'noop',
    tenant: `t-${String(seq % 16).padStart(4, '0')}`,
    ts: (wallMs() / 1000).toFixed(6),
    pad: '',
  };
  data.pad = 'x'.repeat(100 - JSON.stringify(data).length);
  const size = Buffer.byteLength(JSON.stringify(data));
  if (size !== 100) throw new Error(`payload is ${size} bytes, not 100`);
  return data;
}

// What the BullMQ docs ("Auto-removal of jobs") call good practice and what production
// users set: keep the last 1000 completed and 5000 failed jobs. keepCompleted < 0 keeps
// everything (BullMQ's default), 0 removes each job as it completes.
export function jobOptions(keepCompleted) {
  const removeOnComplete = keepCompleted < 0 ? false : keepCompleted === 0 ? true : keepCompleted;
  return { removeOnComplete, removeOnFail: 5000 };
}
