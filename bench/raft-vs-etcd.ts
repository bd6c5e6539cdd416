/**
 * Replicated durable writes: a 3-process Mooring KV cluster vs a 3-node etcd cluster, same machine, same run,
 * loopback, fsync on in both. Closed-loop load with 1 and 256 concurrent clients, 8-byte keys, 256-byte values.
 *   npm run bench:raft-vs-etcd -- [--json] [--seconds S] [--rounds R] [--no-append] [--no-etcd] [--cpu-prof]
 * --rounds R (default 3): R rounds, each starting a fresh cluster of each system and running both levels on it; the
 * systems alternate which goes first (Mooring first in odd rounds, etcd in even ones), so load that drifts on a
 * shared machine falls on both alike. Writes/s, CPU and wakeups are totals over the rounds; p50 and p99 come from
 * every round's latencies pooled (a 5-s run holds only ~25 samples above its p99 at one client, too few to compare
 * tails that differ by a millisecond); each round's own figures are listed too.
 * --json prints {"c1": {"mooring": {writesPerSec, p50Ms, p99Ms, ...}, "etcd": {...} | null, "ratio": n | null},
 *                "c256": {...}, "rounds": [...], "machine": {...}}  (ratio = Mooring writes/s ÷ etcd writes/s).
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
import { appendResults, machineInfo, parseArgs, percentile, processCpuMs, processWakeups, round, table } from './lib/report.js';

const args = parseArgs();
const seconds = args.num('seconds', 5);
const rounds = Math.max(1, args.num('rounds', 3));
const levels = [1, 256];
const keyBytes = 8;
const valueBytes = 256;
const keySpace = 100_000;
const value = 'v'.repeat(valueBytes);
const key = (w: number, n: number): string => `${(w * 7919 + n) % keySpace}`.padStart(keyBytes, '0');

function log(msg: string): void {
  if (!args.json) process.stderr.write(`${msg}\n`);
}

/**
 * A load result plus the CPU (µs) and thread wakeups the 3 server processes used per acknowledged write (summed), the
 * totals behind them (to add rounds up), and every measured latency (to pool rounds' percentiles).
 */
type Measured = LoadResult & { serverCpuUsPerWrite: number; serverWakeupsPerWrite: number; serverCpuMs: number; serverWakeups: number; writesCharged: number; latencies: number[] };

/** Runs `run` and charges the servers' CPU (user + system, from /proc) to its writes, warm-up included. */
async function measured(pids: (number | undefined)[], run: (sink: number[]) => Promise<LoadResult>): Promise<Measured> {
  const cpu0 = pids.map(processCpuMs);
  const wake0 = pids.map(processWakeups);
  const latencies: number[] = [];
  const r = await run(latencies);
  const cpu = pids.map(processCpuMs).reduce((a, c, i) => a + c - cpu0[i]!, 0);
  const wakeups = pids.map(processWakeups).reduce((a, c, i) => a + c - wake0[i]!, 0);
  // Warm-up writes are not in r.ops; scale by the measured share of the run's time.
  const writes = r.ops * ((r.seconds + 1) / r.seconds);
  return { ...r, ...perWrite(cpu, wakeups, writes), latencies };
}

/** The servers' CPU and wakeups per acknowledged write, with the totals behind them (to add rounds up). */
function perWrite(serverCpuMs: number, serverWakeups: number, writesCharged: number): Pick<Measured, 'serverCpuUsPerWrite' | 'serverWakeupsPerWrite' | 'serverCpuMs' | 'serverWakeups' | 'writesCharged'> {
  return {
    serverCpuUsPerWrite: round((serverCpuMs * 1000) / Math.max(1, writesCharged), 0),
    serverWakeupsPerWrite: round(serverWakeups / Math.max(1, writesCharged), 1),
    serverCpuMs,
    serverWakeups,
    writesCharged,
  };
}

/** The rounds of one system at one level as one result: totals added, latencies pooled. */
function pooled(rs: Measured[]): Measured {
  const latencies = rs.flatMap((r) => r.latencies);
  const sum = (f: (r: Measured) => number): number => rs.reduce((a, r) => a + f(r), 0);
  const ops = sum((r) => r.ops);
  const secs = sum((r) => r.seconds);
  return {
    ops,
    errors: sum((r) => r.errors),
    seconds: secs,
    opsPerSec: round(ops / secs, 0),
    p50Ms: round(percentile(latencies, 50), 3),
    p99Ms: round(percentile(latencies, 99), 3),
    meanMs: round(latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length), 3),
    ...perWrite(sum((r) => r.serverCpuMs), sum((r) => r.serverWakeups), sum((r) => r.writesCharged)),
    latencies,
  };
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
      out.set(c, await measured(pids, (sink) => closedLoop(c, seconds, (w, n) => sessions[w]!.put(key(w, n), value), 1, sink)));
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
      out.set(c, await measured(pids, (sink) => closedLoop(c, seconds, (w, n) => client.put(key(w, n)).value(value).exec(), 1, sink)));
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
  const runs: { mooring: Map<number, Measured>[]; etcd: Map<number, Measured>[] } = { mooring: [], etcd: [] };
  for (let r = 0; r < rounds; r++) {
    log(`round ${r + 1} of ${rounds}`);
    const order: Array<'mooring' | 'etcd'> = r % 2 === 0 ? ['mooring', 'etcd'] : ['etcd', 'mooring'];
    for (const sys of order) {
      if (sys === 'mooring') runs.mooring.push(await benchMooring());
      else if (bin !== null) runs.etcd.push(await benchEtcd(bin));
    }
  }
  const summary = (r: Measured) => ({ writesPerSec: r.opsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms, meanMs: r.meanMs, errors: r.errors, serverCpuUsPerWrite: r.serverCpuUsPerWrite, serverWakeupsPerWrite: r.serverWakeupsPerWrite });
  const result: Record<string, unknown> = { machine, rounds: [] as unknown[] };
  const rows: (string | number)[][] = [];
  const roundRows: (string | number)[][] = [];
  for (const c of levels) {
    const m = pooled(runs.mooring.map((x) => x.get(c)!));
    const e = runs.etcd.length > 0 ? pooled(runs.etcd.map((x) => x.get(c)!)) : null;
    const ratio = e !== null && e.opsPerSec > 0 ? round(m.opsPerSec / e.opsPerSec, 2) : null;
    result[`c${c}`] = { mooring: summary(m), etcd: e !== null ? summary(e) : null, ratio };
    rows.push([c, 'mooring', m.opsPerSec, m.p50Ms, m.p99Ms, m.errors, m.serverCpuUsPerWrite, m.serverWakeupsPerWrite, ratio ?? '-']);
    if (e !== null) rows.push([c, 'etcd 3.4', e.opsPerSec, e.p50Ms, e.p99Ms, e.errors, e.serverCpuUsPerWrite, e.serverWakeupsPerWrite, '']);
    for (let r = 0; r < rounds; r++) {
      for (const [sys, list] of [['mooring', runs.mooring], ['etcd 3.4', runs.etcd]] as const) {
        const x = list[r]?.get(c);
        if (x === undefined) continue;
        (result.rounds as unknown[]).push({ round: r + 1, clients: c, system: sys, ...summary(x) });
        roundRows.push([r + 1, c, sys, x.opsPerSec, x.p50Ms, x.p99Ms, x.serverCpuUsPerWrite]);
      }
    }
  }
  const t = table(['clients', 'system', 'writes/s', 'p50 ms', 'p99 ms', 'errors', 'server CPU µs/write (3 nodes)', 'server thread wakeups/write (3 nodes)', 'ratio writes/s (Mooring/etcd)'], rows);
  const rt = table(['round', 'clients', 'system', 'writes/s', 'p50 ms', 'p99 ms', 'server CPU µs/write'], roundRows);
  if (args.json) console.log(JSON.stringify(result));
  else console.log(`${t}\n\nEach round:\n\n${rt}`);
  if (!args.has('--no-append')) {
    const body = `3 nodes each, loopback, fsync on in both; closed loop, ${keyBytes}-byte keys, ${valueBytes}-byte values, ${seconds} s per case after 1 s warm-up; client in the bench process. ${rounds} round(s), each on fresh clusters, the systems alternating which goes first; writes/s, CPU and wakeups over all rounds, p50/p99 of all rounds' latencies pooled.${runs.etcd.length === 0 ? ' **No etcd in this run** (not installed or `--no-etcd`): Mooring alone, no same-run comparison.' : ''}\n\n${t}\n\nEach round:\n\n${rt}`;
    appendResults('raft-vs-etcd', `npm run bench:raft-vs-etcd -- --seconds ${seconds} --rounds ${rounds}`, body, machine);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
