/**
 * Replicated durable writes: a 3-process Mooring KV cluster vs a 3-node etcd cluster, same machine, same run,
 * loopback, fsync on in both. Closed-loop load with 1 and 256 concurrent clients, 8-byte keys, 256-byte values.
 *   npm run bench:raft-vs-etcd -- [--json] [--seconds S] [--no-append] [--no-etcd] [--cpu-prof]
 * --json prints {"c1": {"mooring": {writesPerSec, p50Ms, p99Ms, ...}, "etcd": {...} | null, "ratio": n | null},
 *                "c256": {...}, "machine": {...}}  (ratio = Mooring writes/s ÷ etcd writes/s).
 * serverCpuUsPerWrite: user+system CPU of the three server processes (from /proc) per acknowledged write — a
 * figure that depends far less than writes/s on what else the shared machine is running. serverWakeupsPerWrite:
 * how often their threads went to sleep and had to be woken again (voluntary context switches), per write; on this
 * VM a wakeup costs hundreds of µs of CPU (bench:transport), so it explains much of the CPU per write.
 * Mooring is driven by KvClient (one session per concurrent client, all sharing one connection per node); etcd by
 * the etcd3 gRPC client (one channel to the leader, one put per concurrent client). The load generator shares the
 * 2 cores with the servers in both cases.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KvClient } from '../src/kvstore/client.js';
import { EtcdCluster, etcdBinary, etcdClient, etcdInstallHint } from './lib/etcd-cluster.js';
import { KvCluster } from './lib/kv-cluster.js';
import { closedLoop, type LoadResult } from './lib/load.js';
import { appendResults, machineInfo, parseArgs, processCpuMs, processWakeups, round, table } from './lib/report.js';

const args = parseArgs();
const seconds = args.num('seconds', 5);
const levels = [1, 256];
const keyBytes = 8;
const valueBytes = 256;
const keySpace = 100_000;
const value = 'v'.repeat(valueBytes);
const key = (w: number, n: number): string => `${(w * 7919 + n) % keySpace}`.padStart(keyBytes, '0');

function log(msg: string): void {
  if (!args.json) process.stderr.write(`${msg}\n`);
}

/** A load result plus the CPU (µs) and thread wakeups the 3 server processes used per acknowledged write (summed). */
type Measured = LoadResult & { serverCpuUsPerWrite: number; serverWakeupsPerWrite: number };

/** Runs `run` and charges the servers' CPU (user + system, from /proc) to its writes, warm-up included. */
async function measured(pids: (number | undefined)[], run: () => Promise<LoadResult>): Promise<Measured> {
  const cpu0 = pids.map(processCpuMs);
  const wake0 = pids.map(processWakeups);
  const r = await run();
  const cpu = pids.map(processCpuMs).reduce((a, c, i) => a + c - cpu0[i]!, 0);
  const wakeups = pids.map(processWakeups).reduce((a, c, i) => a + c - wake0[i]!, 0);
  // Warm-up writes are not in r.ops; scale by the measured share of the run's time.
  const writes = r.ops * ((r.seconds + 1) / r.seconds);
  return { ...r, serverCpuUsPerWrite: round((cpu * 1000) / Math.max(1, writes), 0), serverWakeupsPerWrite: round(wakeups / Math.max(1, writes), 1) };
}

async function benchMooring(): Promise<Map<number, Measured>> {
  // An absolute directory: the nodes run in the cluster's temp dir, which is removed when the bench ends.
  const profDir = args.has('--cpu-prof') ? mkdtempSync(path.join(tmpdir(), 'mooring-prof-')) : null;
  const cluster = await KvCluster.create({ logLevel: 'warn', nodeArgs: profDir !== null ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [] });
  if (profDir !== null) log(`CPU profiles go to ${profDir}`);
  const out = new Map<number, Measured>();
  try {
    await cluster.startAll();
    const leader = await cluster.waitForLeader();
    const pids = cluster.running().map((id) => cluster.node(id).proc?.pid);
    const base = new KvClient({ endpoints: [cluster.endpoint(leader), ...cluster.endpoints()], clusterId: cluster.clusterId, timeoutMs: 5_000 });
    for (const c of levels) {
      const sessions = Array.from({ length: c }, () => base.fork());
      log(`mooring: ${c} client(s), ${seconds} s`);
      out.set(c, await measured(pids, () => closedLoop(c, seconds, (w, n) => sessions[w]!.put(key(w, n), value))));
    }
    await base.close();
    if (args.has('--cpu-prof')) for (const id of cluster.running()) await cluster.kill(id, 'SIGTERM');
  } finally {
    await cluster.destroy();
  }
  return out;
}

async function benchEtcd(bin: string): Promise<Map<number, Measured>> {
  const cluster = await EtcdCluster.create(bin);
  const out = new Map<number, Measured>();
  try {
    await cluster.startAll();
    const pids = cluster.members.map((m) => m.proc?.pid);
    const leader = (await cluster.leader()) ?? 'e1';
    const client = etcdClient(`http://127.0.0.1:${cluster.member(leader).clientPort}`);
    for (const c of levels) {
      log(`etcd: ${c} client(s), ${seconds} s`);
      out.set(c, await measured(pids, () => closedLoop(c, seconds, (w, n) => client.put(key(w, n)).value(value).exec())));
    }
    client.close();
  } finally {
    await cluster.destroy();
  }
  return out;
}

async function main(): Promise<void> {
  const machine = machineInfo();
  const bin = args.has('--no-etcd') ? null : etcdBinary();
  if (bin === null && !args.has('--no-etcd')) log(`${etcdInstallHint}; skipping etcd`);
  const mooring = await benchMooring();
  const etcd = bin !== null ? await benchEtcd(bin) : null;
  const summary = (r: Measured) => ({ writesPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, meanMs: r.meanMs, errors: r.errors, serverCpuUsPerWrite: r.serverCpuUsPerWrite, serverWakeupsPerWrite: r.serverWakeupsPerWrite });
  const result: Record<string, unknown> = { machine };
  const rows: (string | number)[][] = [];
  for (const c of levels) {
    const m = mooring.get(c)!;
    const e = etcd?.get(c) ?? null;
    const ratio = e !== null && e.opsPerSec > 0 ? round(m.opsPerSec / e.opsPerSec, 2) : null;
    result[`c${c}`] = { mooring: summary(m), etcd: e !== null ? summary(e) : null, ratio };
    rows.push([c, 'mooring', m.opsPerSec, m.p50Ms, m.p99Ms, m.errors, m.serverCpuUsPerWrite, m.serverWakeupsPerWrite, ratio ?? '-']);
    if (e !== null) rows.push([c, 'etcd 3.4', e.opsPerSec, e.p50Ms, e.p99Ms, e.errors, e.serverCpuUsPerWrite, e.serverWakeupsPerWrite, '']);
  }
  const t = table(['clients', 'system', 'writes/s', 'p50 ms', 'p99 ms', 'errors', 'server CPU µs/write (3 nodes)', 'server thread wakeups/write (3 nodes)', 'ratio writes/s (Mooring/etcd)'], rows);
  if (args.json) console.log(JSON.stringify(result));
  else console.log(t);
  if (!args.has('--no-append')) {
    const body = `3 nodes each, loopback, fsync on in both; closed loop, ${keyBytes}-byte keys, ${valueBytes}-byte values, ${seconds} s per case after 1 s warm-up; client in the bench process.${etcd === null ? ' **No etcd in this run** (not installed or `--no-etcd`): Mooring alone, no same-run comparison.' : ''}\n\n${t}`;
    appendResults('raft-vs-etcd', `npm run bench:raft-vs-etcd -- --seconds ${seconds}`, body, machine);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
