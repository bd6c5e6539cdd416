// bench/store: StoreClient end to end on real processes (3 masters, 3 storage nodes, loopback): put and get
// throughput and latency by object size, next to the metadata-only cost of the same operations (PutStart +
// PutEnd, GetReplicaList without moving bytes), so the share of the data path is visible.
// Usage: npm run bench:store [-- --json] [--seconds S] [--no-record]
import { appendFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreClient } from '../src/store/index.js';
import { ProcessCluster } from '../src/testing/jepsen/harness.js';

const args = process.argv.slice(2);
const json = args.includes('--json');
const record = !args.includes('--no-record');
const secIdx = args.indexOf('--seconds');
const phaseSeconds = secIdx >= 0 ? Number(args[secIdx + 1]) : 4;
const concurrency = 8;
const replicas = 2;
const sizes = [4 * 1024, 64 * 1024, 1024 * 1024];
const storageNodeBytes = 256 * 1024 * 1024;
/** Puts per row stay under this share of the cluster's memory: eviction must not drop what the gets read. */
const maxFillRatio = 0.4;
const log = (m: string): void => {
  if (!json) console.error(m);
};

interface Row {
  op: string;
  bytes: number;
  opsPerS: number;
  p50Ms: number;
  p99Ms: number;
  mbPerS: number;
}

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function phase(name: string, bytes: number, moved: boolean, maxOps: number, fn: (worker: number, i: number) => Promise<void>): Promise<Row> {
  const lat: number[] = [];
  const until = Date.now() + phaseSeconds * 1000;
  let n = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, async (_, w) => {
    for (let i = 0; Date.now() < until && n < maxOps; i++) {
      const s = process.hrtime.bigint();
      await fn(w, i);
      lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      n++;
    }
  }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const row = { op: name, bytes, opsPerS: Math.round(n / secs), p50Ms: +pct(lat, 0.5).toFixed(2), p99Ms: +pct(lat, 0.99).toFixed(2), mbPerS: moved ? +((n * bytes) / secs / 1e6).toFixed(1) : 0 };
  log(`${name.padEnd(22)} ${String(bytes).padStart(8)} B  ${String(row.opsPerS).padStart(6)} ops/s  p50 ${row.p50Ms} ms  p99 ${row.p99Ms} ms  ${row.mbPerS} MB/s`);
  return row;
}

async function main(): Promise<void> {
  log('starting 3 masters + 3 storage nodes (256 MiB each)…');
  const cluster = await ProcessCluster.start({ masters: 3, storageNodes: 3, proxies: false, storage: { memoryBytes: storageNodeBytes }, masterConfig: { leaseTtlMs: 200 } });
  const rows: Row[] = [];
  const store = await StoreClient.create({ masters: cluster.endpoints, stagingSlotBytes: 2 * 1024 * 1024, stagingSlots: concurrency * 2, retry: { maxAttempts: 20, initialBackoffMs: 50, maxBackoffMs: 500 } });
  try {
    let gen = 0;
    for (const size of sizes) {
      const payload = Buffer.alloc(size, 7);
      const keys: string[][] = Array.from({ length: concurrency }, () => []);
      const tag = gen++;
      const budget = Math.floor((maxFillRatio * 3 * storageNodeBytes) / (size * replicas));
      rows.push(await phase('put (bytes)', size, true, budget, async (w, i) => {
        const k = `b${tag}/${w}/${i}`;
        await store.put(k, payload, { replicas });
        keys[w]!.push(k);
      }));
      rows.push(await phase('get (bytes, verified)', size, true, Infinity, async (w, i) => {
        const ks = keys[w]!;
        await store.get(ks[i % ks.length]!);
      }));
      await store.master.removeByPrefix(`m${tag}/`, true).catch(() => {});
      rows.push(await phase('put (metadata only)', size, false, budget, async (w, i) => {
        const k = `m${tag}/${w}/${i}`;
        await store.master.putStart(k, size, { replicaNum: replicas });
        await store.master.putEnd(k);
      }));
      rows.push(await phase('get (metadata only)', size, false, Infinity, async (w, i) => {
        const ks = keys[w]!;
        await store.master.getReplicaList(ks[i % ks.length]!);
      }));
      // Make room for the next size (leases are 200 ms here).
      await new Promise((r) => setTimeout(r, 300));
      await store.master.removeAll(true);
    }
  } finally {
    await store.close();
    await cluster.close();
  }
  const machine = `${os.cpus()[0]?.model ?? 'unknown'}, ${os.cpus().length} cores, load ${os.loadavg()[0]!.toFixed(1)}`;
  if (json) {
    process.stdout.write(JSON.stringify({ machine, concurrency, replicas, phaseSeconds, rows }) + '\n');
  } else {
    console.log('| op | object bytes | ops/s | p50 ms | p99 ms | payload MB/s |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.op} | ${r.bytes} | ${r.opsPerS} | ${r.p50Ms} | ${r.p99Ms} | ${r.mbPerS} |`);
  }
  if (record) {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
    const table = ['| op | object bytes | ops/s | p50 ms | p99 ms | payload MB/s |', '|---|---:|---:|---:|---:|---:|', ...rows.map((r) => `| ${r.op} | ${r.bytes} | ${r.opsPerS} | ${r.p50Ms} | ${r.p99Ms} | ${r.mbPerS} |`)].join('\n');
    appendFileSync(path.join(root, 'bench', 'RESULTS.md'), `\n## store — ${new Date().toISOString().slice(0, 10)}\n\nMachine: ${machine}; Node ${process.version}.\nCommand: \`npm run bench:store\` (3 master + 3 storage-node processes on loopback, one StoreClient, ${concurrency} concurrent operations, ${replicas} replicas, ${phaseSeconds} s per row). "metadata only" = the same master calls without moving bytes.\n\n${table}\n`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
