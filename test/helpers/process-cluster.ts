/**
 * Real-process KV clusters for tests: the launcher lives in bench/lib/kv-cluster.ts (compiled, shared with the
 * benchmarks); this adds a client workload that records a history for the linearizability checker.
 * Run `npm run build:ts` before these tests (the nodes run dist/src/kvstore/server-main.js).
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../../src/kvstore/client.js';
import type { KvInput, KvOutput, Operation } from '../../src/testing/linearizability.js';

export { KvCluster, freePorts, type KvNode } from '../../bench/lib/kv-cluster.js';

export type KvOp = Operation<KvInput, KvOutput>;

export interface WorkloadOptions {
  clients: number;
  /** Keys shared by every client (reads and overwrites: what the linearizability check is about). */
  sharedKeys: number;
  clientTimeoutMs?: number;
  clientMaxAttempts?: number;
}

/**
 * Closed-loop clients mixing unique-key writes (each key written once: every acknowledged one must survive),
 * shared-key writes and shared-key reads. Every operation is recorded with call/return times; a failed write is
 * an unknown outcome (no return), a failed read is dropped by the checker.
 */
export class Workload {
  readonly history: KvOp[] = [];
  /** Unique keys whose write was acknowledged → value. */
  readonly acked = new Map<string, string>();
  readonly errors = new Map<string, number>();
  private stopped = false;
  private loops: Promise<void>[] = [];
  private readonly clients: KvClient[];

  constructor(endpoints: string[], clusterId: string, private readonly opts: WorkloadOptions) {
    const base = new KvClient({ endpoints, clusterId, timeoutMs: opts.clientTimeoutMs ?? 1_000, maxAttempts: opts.clientMaxAttempts ?? 12, backoff: { initialMs: 20, maxMs: 500 } });
    this.clients = [base, ...Array.from({ length: opts.clients - 1 }, () => base.fork())];
  }

  get ackedCount(): number {
    return this.acked.size;
  }

  start(): void {
    this.loops = this.clients.map((c, i) => this.loop(c, i));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  async close(): Promise<void> {
    await this.clients[0]!.close();
  }

  /** A client for the final checks (shares the workload's connections). */
  reader(): KvClient {
    return this.clients[0]!.fork();
  }

  private async loop(c: KvClient, ci: number): Promise<void> {
    let n = 0;
    while (!this.stopped) {
      n++;
      const r = (n * 7 + ci * 13) % 10;
      if (r < 5) {
        const key = `u-${ci}-${n}`;
        const value = `v-${ci}-${n}`;
        const call = performance.now();
        try {
          await c.put(key, value);
          this.acked.set(key, value);
          this.history.push({ clientId: ci, op: 'put', key, input: { kind: 'put', value }, output: null, call, return: performance.now() });
        } catch (err) {
          this.count(err);
          this.history.push({ clientId: ci, op: 'put', key, input: { kind: 'put', value }, call });
        }
      } else if (r < 8) {
        const key = `s-${(n + ci) % this.opts.sharedKeys}`;
        const value = `w-${ci}-${n}`;
        const call = performance.now();
        try {
          await c.put(key, value);
          this.history.push({ clientId: ci, op: 'put', key, input: { kind: 'put', value }, output: null, call, return: performance.now() });
        } catch (err) {
          this.count(err);
          this.history.push({ clientId: ci, op: 'put', key, input: { kind: 'put', value }, call });
        }
      } else {
        const key = `s-${(n * 3 + ci) % this.opts.sharedKeys}`;
        const call = performance.now();
        try {
          const value = await c.get(key);
          this.history.push({ clientId: ci, op: 'get', key, input: { kind: 'get' }, output: { value }, call, return: performance.now() });
        } catch (err) {
          this.count(err);
        }
      }
    }
  }

  private count(err: unknown): void {
    const code = (err as { code?: string }).code ?? 'other';
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
