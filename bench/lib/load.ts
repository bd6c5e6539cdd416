/**
 * Closed-loop load: `concurrency` workers each run `op(worker, n)` back to back for a fixed time; latencies of
 * the operations that completed inside the measured window are kept (in ms).
 */
import { performance } from 'node:perf_hooks';
import { percentile, round } from './report.js';

export interface LoadResult {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
}

export async function closedLoop(
  concurrency: number,
  seconds: number,
  op: (worker: number, n: number) => Promise<unknown>,
  warmupSeconds = 1,
  /** Receives every measured latency (ms), e.g. to pool several runs' percentiles. */
  sink?: number[],
): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const measureFrom = t0 + warmupSeconds * 1000;
  const end = measureFrom + seconds * 1000;
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    let n = 0;
    for (;;) {
      const start = performance.now();
      if (start >= end) return;
      try {
        await op(w, n++);
        const done = performance.now();
        if (start >= measureFrom && done <= end) latencies.push(done - start);
      } catch {
        if (start >= measureFrom) errors++;
      }
    }
  }));
  const mean = latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length);
  if (sink !== undefined) for (const l of latencies) sink.push(l);
  return {
    ops: latencies.length,
    errors,
    seconds,
    opsPerSec: round(latencies.length / seconds, 0),
    p50Ms: round(percentile(latencies, 50), 3),
    p99Ms: round(percentile(latencies, 99), 3),
    meanMs: round(mean, 3),
  };
}
