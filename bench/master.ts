/**
 * Master throughput and latency as a client sees it: three real `mooring master` processes on loopback
 * (LocalCluster, default raft settings, fsync on), clients in this process.
 *   - put pairs: putStart + putEnd of one 4 KiB object (replicaNum 1), closed loop;
 *   - get-replica-list: single calls, and batched (batchGetReplicaList of 64 keys; counted per key);
 *   - batch put: batchPutStart + batchPutEnd of 32 objects (counted per object and per batch);
 *   - put pairs rate-limited at 50% of the measured peak (open loop: latency measured from the scheduled start, so
 *     queueing is not hidden);
 *   - put pairs from 8× the sessions (overload: the leader's BUSY refusals, its queueing, and what clients see);
 *   - batched get-replica-list from all masters (MasterClient readFrom 'any': followers serve linearizable reads by
 *     ReadIndex), alternating with the same case on the leader only: each master's share of the reads and its server CPU
 *     (user+system from /proc) per key read.
 * Many logical sessions (clientId + seq, one request in flight each: the masters' reply window is 16 seqs per
 * session) pipelined over a few connections.
 *   npm run bench:master [-- --json] [--seconds N] [--concurrency N] [--connections N] [--cpu-prof] [--no-record]
 *                        [--reads-only]   (put pairs to fill keys, then only the read cases)
 *                        [--writes-only]  (only the write cases: put pairs, batch put, half peak, overload)
 *                        [--mixed]        (with the read cases: put pairs at 500/s while every master serves reads)
 *                        [--follower-lease-ticks N]  (raft.followerLeaseTicks for the masters)
 *                        [--read-rounds R]  (default 3: the two batched read cases alternate R times; totals and
 *                                            pooled latencies decide, each round's ratio is listed)
 *   MASTER_NODE_ARGS="--trace-gc" passes node flags to the masters (their output goes to their logs, kept).
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { MasterClient } from '../src/master/client.js';
import { LocalCluster } from '../src/cli/local-cluster.js';
import { closedLoop, type LoadResult } from './lib/load.js';
import { appendResults, machineInfo, parseArgs, percentile, processCpuMs, processCpuSplitMs, processWakeups, round, sleep, table } from './lib/report.js';

const args = parseArgs();
const seconds = args.num('seconds', 5);
const concurrency = args.num('concurrency', 256);
const connections = args.num('connections', 4);
const objectBytes = 4096;
const batchPutItems = 32;
const batchGetKeys = 64;
/** Rounds of the two batched read cases, alternating (--read-rounds R). */
const readRounds = Math.max(1, args.num('read-rounds', 3));
/** All masters ÷ leader only, keys/s, per round (filled by the read cases). */
let readRoundRatios: number[] = [];
const segmentBytes = 2 ** 40; // metadata only: no memory behind it; large enough that eviction never starts
const targets = { putPairsPerSec: 20_000, getsPerSec: 100_000, p99AtHalfMs: 10 };

/** Diagnostics: MASTER_NODE_ARGS="--trace-gc" passes node flags to the masters and keeps their dir (logs) afterwards. */
const extraNodeArgs = (process.env.MASTER_NODE_ARGS ?? '').split(/\s+/).filter((a) => a.length > 0);
const profDir = args.has('--cpu-prof') ? mkdtempSync(path.join(tmpdir(), 'mooring-prof-')) : null;
const m = machineInfo();
/** raft.followerLeaseTicks for the masters (--follower-lease-ticks N; absent: the config default). */
const followerLeaseTicks = args.has('--follower-lease-ticks') ? args.num('follower-lease-ticks', 0) : null;
const cluster = await LocalCluster.create({
  clusterId: 'bench-master',
  logLevel: 'warn',
  ...(followerLeaseTicks !== null ? { extraConfig: { raft: { followerLeaseTicks } } } : {}),
  nodeArgs: [...(profDir !== null ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []), ...extraNodeArgs],
});

interface Session { id: string; seq: number; conn: MasterClient }

interface MasterShare { id: string; role: string; keys: number; share: number; cpuMs: number; sysShare: number; wakeupsPerBatch: number; cpuUsPerKey: number; marginalUsPerKey: number }
/** Each master's CPU ms per second with no client load (heartbeats, timers), measured once before the read cases. */
let idleCpuMsPerSec: number[] | null = null;
const perMasterDetail: Record<string, MasterShare[]> = {};

/** Keys served by one master so far: its successful batchGetReplicaList RPCs (from /metrics) × keys per batch. */
async function batchReadsServed(httpPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const sum = (prefix: string): number => text.split('\n').filter((l) => l.startsWith(prefix)).reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  const calls = sum('mooring_rpc_requests_total{method="batchGetReplicaList"}');
  const failed = sum('mooring_rpc_failures_total{method="batchGetReplicaList"');
  return (calls - failed) * batchGetKeys;
}

/**
 * Keys the masters served as followers so far: asked the leader to lease, or under a lease cover; and keys their
 * cover refreshes asked the leader to lease again in the background (/status).
 */
async function followerLeaseKeys(): Promise<{ asked: number; covered: number; refreshed: number; leaseReads: number }> {
  const each = await Promise.all(cluster.nodes.map(async (n) => {
    const st = (await (await fetch(`http://127.0.0.1:${n.ports.http}/status`)).json()) as { followerReadLeases?: { asked: number; covered: number; refreshed?: number }; followerLease?: { readsServed: number } };
    const f = st.followerReadLeases ?? { asked: 0, covered: 0 };
    return { asked: f.asked, covered: f.covered, refreshed: f.refreshed ?? 0, leaseReads: st.followerLease?.readsServed ?? 0 };
  }));
  const sum = (k: 'asked' | 'covered' | 'refreshed' | 'leaseReads'): number => each.reduce((a, x) => a + x[k], 0);
  return { asked: sum('asked'), covered: sum('covered'), refreshed: sum('refreshed'), leaseReads: sum('leaseReads') };
}

/** One unlabelled counter or gauge of every master's /metrics, in cluster.nodes order (0 where absent). */
async function metricOfEach(name: string): Promise<number[]> {
  return Promise.all(cluster.nodes.map(async (n) => {
    const text = await (await fetch(`http://127.0.0.1:${n.ports.http}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  }));
}

/** Proposals and reads the masters refused with BUSY so far (sum of their mooring_raft_busy_refusals_total). */
async function busyRefusals(): Promise<number> {
  return (await metricOfEach('mooring_raft_busy_refusals_total')).reduce((a, b) => a + b, 0);
}

/** Leader changes so far: the most any master saw (mooring_raft_leader_changes_total; each node counts each new leader). */
async function leaderChanges(): Promise<number> {
  return Math.max(...(await metricOfEach('mooring_raft_leader_changes_total')));
}

/** Cumulative bucket counts of mooring_proposal_duration_seconds, summed over the masters (only a leader proposes). */
async function proposalHistogram(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const n of cluster.nodes) {
    const text = await (await fetch(`http://127.0.0.1:${n.ports.http}/metrics`)).text();
    for (const line of text.split('\n')) {
      const m = /^mooring_proposal_duration_seconds_bucket\{le="([^"]+)"\} (\S+)$/.exec(line);
      if (m !== null) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
    }
  }
  return out;
}

/** Between two histogram readings: the smallest bucket bound holding 99% of the proposals, and the share over 0.25 s. */
function histogramDelta(before: Map<string, number>, after: Map<string, number>): { p99Bound: string; overShare: string } {
  const les = [...after.keys()];
  const delta = (le: string): number => (after.get(le) ?? 0) - (before.get(le) ?? 0);
  const total = delta('+Inf');
  if (total <= 0) return { p99Bound: '-', overShare: '-' };
  const bound = les.find((le) => delta(le) >= 0.99 * total) ?? '+Inf';
  return { p99Bound: bound, overShare: `${round((100 * (total - delta('0.25'))) / total, 2)}%` };
}

/**
 * Runs a write case and reports the CPU it took: all three masters' per operation, and how busy the machine's cores
 * were (masters + this client process). Why: a write's CPU cost falls as batches grow, so an open loop at half the
 * closed loop's rate (smaller batches) can still use most of the machine.
 */
async function withCpu<L extends LoadResult>(run: () => Promise<L>, unit = 'put pair'): Promise<{ load: L; note: string }> {
  const pids = cluster.nodes.map((n) => n.proc?.pid);
  // Read outside the timed window: the scrapes cost the masters and this process CPU of their own.
  const changes0 = await leaderChanges();
  const t0 = performance.now();
  const server0 = pids.reduce<number>((a, pid) => a + processCpuMs(pid), 0);
  const client0 = processCpuMs(process.pid);
  const load = await run();
  const serverMs = pids.reduce<number>((a, pid) => a + processCpuMs(pid), 0) - server0;
  const clientMs = processCpuMs(process.pid) - client0;
  const wallMs = performance.now() - t0;
  const changes = (await leaderChanges()) - changes0;
  const ops = Math.max(1, load.opsPerSec * (wallMs / 1000));
  const busy = (100 * (serverMs + clientMs)) / (wallMs * availableParallelism());
  return { load, note: `; server CPU ${round((serverMs * 1000) / ops, 0)} µs per ${unit} (3 masters), bench client ${round((clientMs * 1000) / ops, 0)} µs; cores busy ${round(busy, 0)}% (masters + bench client, ${availableParallelism()} cores); leader changes ${changes}` };
}

/** What one read case measured, as sums (so that rounds of a case add up). */
interface ReadRaw {
  latencies: number[];
  ops: number;
  errors: number;
  seconds: number;
  /** Per master (cluster.nodes order): keys served, CPU ms, CPU ms above idle, system CPU ms, wakeups. */
  keys: number[];
  cpuMs: number[];
  marginalMs: number[];
  sysMs: number[];
  wakeups: number[];
  roles: string[];
  clientCpuMs: number;
  wallSecs: number;
  asked: number;
  covered: number;
  refreshed: number;
  leaseReads: number;
}

/** Runs a read case and charges each master's CPU (from /proc) to the keys it served. */
async function perMaster(run: (sink: number[]) => Promise<LoadResult>): Promise<ReadRaw> {
  const nodes = cluster.nodes;
  if (idleCpuMsPerSec === null) {
    const c0 = nodes.map((n) => processCpuMs(n.proc?.pid));
    await sleep(2_000);
    idleCpuMsPerSec = nodes.map((n, i) => (processCpuMs(n.proc?.pid) - c0[i]!) / 2);
  }
  const leaderBefore = await cluster.waitLeader();
  const t0 = performance.now();
  const reads0 = await Promise.all(nodes.map((n) => batchReadsServed(n.ports.http)));
  const covers0 = await followerLeaseKeys();
  const split0 = nodes.map((n) => processCpuSplitMs(n.proc?.pid));
  const wake0 = nodes.map((n) => processWakeups(n.proc?.pid));
  const client0 = processCpuMs(process.pid);
  const latencies: number[] = [];
  const load = await run(latencies);
  const split1 = nodes.map((n) => processCpuSplitMs(n.proc?.pid));
  const wake1 = nodes.map((n) => processWakeups(n.proc?.pid));
  const clientCpuMs = processCpuMs(process.pid) - client0;
  const secs = (performance.now() - t0) / 1000;
  const reads1 = await Promise.all(nodes.map((n) => batchReadsServed(n.ports.http)));
  const covers1 = await followerLeaseKeys();
  const leaderNow = await cluster.waitLeader();
  const cpuMs = nodes.map((_, i) => split1[i]!.userMs + split1[i]!.sysMs - split0[i]!.userMs - split0[i]!.sysMs);
  // A leader change during the case (spurious elections on a loaded machine) shows as "leader→follower".
  const role = (id: string, leaderId: string | null): string => (id === leaderId ? 'leader' : 'follower');
  return {
    latencies,
    ops: load.ops,
    errors: load.errors,
    seconds: load.seconds,
    keys: nodes.map((_, i) => reads1[i]! - reads0[i]!),
    cpuMs,
    marginalMs: cpuMs.map((c, i) => Math.max(0, c - idleCpuMsPerSec![i]! * secs)),
    sysMs: nodes.map((_, i) => split1[i]!.sysMs - split0[i]!.sysMs),
    wakeups: nodes.map((_, i) => wake1[i]! - wake0[i]!),
    roles: nodes.map((n) => (leaderBefore === leaderNow ? role(n.id, leaderNow) : `${role(n.id, leaderBefore)}→${role(n.id, leaderNow)}`)),
    clientCpuMs,
    wallSecs: secs,
    asked: covers1.asked - covers0.asked,
    covered: covers1.covered - covers0.covered,
    refreshed: covers1.refreshed - covers0.refreshed,
    leaseReads: covers1.leaseReads - covers0.leaseReads,
  };
}

/** Rounds of one read case as one: sums added, latencies pooled (a role that differs between rounds is listed as such). */
function addRounds(rs: ReadRaw[]): ReadRaw {
  const sum = (f: (r: ReadRaw) => number): number => rs.reduce((a, r) => a + f(r), 0);
  const each = (f: (r: ReadRaw) => number[]): number[] => rs[0]!.keys.map((_, i) => rs.reduce((a, r) => a + f(r)[i]!, 0));
  return {
    latencies: rs.flatMap((r) => r.latencies),
    ops: sum((r) => r.ops),
    errors: sum((r) => r.errors),
    seconds: sum((r) => r.seconds),
    keys: each((r) => r.keys),
    cpuMs: each((r) => r.cpuMs),
    marginalMs: each((r) => r.marginalMs),
    sysMs: each((r) => r.sysMs),
    wakeups: each((r) => r.wakeups),
    roles: rs[0]!.roles.map((_, i) => [...new Set(rs.map((r) => r.roles[i]!))].join('/')),
    clientCpuMs: sum((r) => r.clientCpuMs),
    wallSecs: sum((r) => r.wallSecs),
    asked: sum((r) => r.asked),
    covered: sum((r) => r.covered),
    refreshed: sum((r) => r.refreshed),
    leaseReads: sum((r) => r.leaseReads),
  };
}

/** A read case's load result (batches; p50/p99 of the pooled latencies), each master's share and CPU, and a note. */
function describeReads(raw: ReadRaw): { load: LoadResult; masters: MasterShare[]; note: string } {
  const nodes = cluster.nodes;
  const load: LoadResult = {
    ops: raw.ops,
    errors: raw.errors,
    seconds: raw.seconds,
    opsPerSec: round(raw.ops / raw.seconds, 0),
    p50Ms: round(percentile(raw.latencies, 50), 3),
    p99Ms: round(percentile(raw.latencies, 99), 3),
    meanMs: round(raw.latencies.reduce((a, b) => a + b, 0) / Math.max(1, raw.latencies.length), 3),
  };
  const total = Math.max(1, raw.keys.reduce((a, b) => a + b, 0));
  const masters = nodes.map((n, i) => {
    const served = raw.keys[i]!;
    const cpuMs = raw.cpuMs[i]!;
    const sysShare = cpuMs > 0 ? raw.sysMs[i]! / cpuMs : NaN;
    // Wakeups per batch served: how often the process slept and was woken for its share (the costly part of a message).
    const wakeupsPerBatch = served > 0 ? round((raw.wakeups[i]! * batchGetKeys) / served, 2) : NaN;
    return { id: n.id, role: raw.roles[i]!, keys: served, share: served / total, cpuMs, sysShare, wakeupsPerBatch, cpuUsPerKey: served > 0 ? round((cpuMs * 1000) / served, 2) : NaN, marginalUsPerKey: served > 0 ? round((raw.marginalMs[i]! * 1000) / served, 2) : NaN };
  });
  // The clients share the machine's cores with the masters: their CPU says whether they, not the masters, set the pace.
  const clientUsPerKey = round((raw.clientCpuMs * 1000) / total, 2);
  // Of the keys followers served: how many a recent grant covered (no lease asked of the leader: follower-lease-cover.ts).
  // And how many keys cover refreshes leased again meanwhile, per 100 keys followers served (each one a grant and
  // two records, as an asked key costs).
  const coverNote = raw.asked + raw.covered > 0 ? `; followers' keys under a lease cover ${round((100 * raw.covered) / (raw.asked + raw.covered), 0)}%, refreshed ${round((100 * raw.refreshed) / (raw.asked + raw.covered), 1)} per 100` : '';
  // Of the reads followers served: how many needed no round to the leader (follower read lease, raft.followerLeaseTicks).
  const followerBatches = (raw.asked + raw.covered) / batchGetKeys;
  const leaseNote = followerBatches > 0 && followerLeaseTicks !== null && followerLeaseTicks > 0 ? `; follower reads with no round (follower read lease) ${round((100 * raw.leaseReads) / followerBatches, 0)}%` : '';
  const note = `${masters.map((x) => `${x.id} (${x.role}) ${round(x.share * 100, 0)}% at ${Number.isFinite(x.cpuUsPerKey) ? x.cpuUsPerKey : '-'} µs CPU/key (kernel ${Number.isFinite(x.sysShare) ? round(x.sysShare * 100, 0) : '-'}%, ${Number.isFinite(x.wakeupsPerBatch) ? x.wakeupsPerBatch : '-'} wakeups/batch)`).join(', ')}; bench clients ${round(raw.clientCpuMs / raw.wallSecs / 10, 0)}% of a core, ${clientUsPerKey} µs CPU/key${coverNote}${leaseNote}`;
  return { load, masters, note };
}

try {
  await cluster.start();
  const leader = await cluster.waitLeader();
  const conns = Array.from({ length: connections }, () => new MasterClient({
    endpoints: [`127.0.0.1:${cluster.node(leader).ports.rpc}`, ...cluster.endpoints],
    clusterId: cluster.clusterId,
    requestTimeoutMs: 10_000,
    retry: { maxAttempts: 10, initialBackoffMs: 50, maxBackoffMs: 500 },
    readFrom: 'leader',
  }));
  const anyConns = Array.from({ length: connections }, () => new MasterClient({
    endpoints: cluster.endpoints,
    clusterId: cluster.clusterId,
    requestTimeoutMs: 10_000,
    retry: { maxAttempts: 10, initialBackoffMs: 50, maxBackoffMs: 500 },
    readFrom: 'any',
  }));
  const owner = conns[0]!;
  for (let i = 0; i < 4; i++) {
    await owner.mountSegment({ id: `bench-seg-${i}`, name: `bench-seg-${i}`, base: 0, size: segmentBytes, protocol: 'tcp', endpoint: `127.0.0.1:${30000 + i}`, zone: `z${i}` });
  }
  owner.startPing();
  const sessions: Session[] = Array.from({ length: concurrency }, (_, w) => ({ id: `bench-${w}`, seq: 0, conn: conns[w % connections]! }));
  const write = (s: Session, method: string, a: Record<string, unknown>): Promise<unknown> =>
    s.conn.callRaw(method, { ...a, clientId: s.id, seq: ++s.seq });

  const putKeys: string[] = [];
  const putPair = async (w: number, n: number, tag: string, from: Session[] = sessions): Promise<void> => {
    const s = from[w]!;
    const key = `${tag}/${w}/${n}`;
    await write(s, 'putStart', { key, size: objectBytes, replicaNum: 1 });
    await write(s, 'putEnd', { key });
    if (putKeys.length < 200_000) putKeys.push(key);
  };

  const results: Record<string, LoadResult & { unit: string; note: string }> = {};
  // Error codes per case (closedLoop only counts them).
  const codes: Record<string, number> = {};
  const tally = <A extends unknown[]>(op: (...a: A) => Promise<unknown>) => async (...a: A): Promise<unknown> => {
    try {
      return await op(...a);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERROR';
      codes[code] = (codes[code] ?? 0) + 1;
      throw err;
    }
  };
  const errNote = (): string => {
    const s = Object.entries(codes).map(([k, v]) => `${k}×${v}`).join(' ');
    for (const k of Object.keys(codes)) delete codes[k];
    return s.length > 0 ? `; errors: ${s}` : '';
  };
  const say = (t: string): void => { if (!args.json) console.log(t); };

  say(`bench:master — 3 master processes, leader ${leader}, ${concurrency} sessions over ${connections} connections, ${seconds} s per case`);
  const { load: pairs, note: pairsCpu } = await withCpu(() => closedLoop(concurrency, seconds, tally((w: number, n: number) => putPair(w, n, 'pp'))));
  results.putPairs = { ...pairs, unit: 'put pairs/s', note: `putStart+putEnd, 4 KiB, 1 replica${pairsCpu}${errNote()}` };
  say(`put pairs: ${pairs.opsPerSec}/s p50 ${pairs.p50Ms} ms p99 ${pairs.p99Ms} ms errors ${pairs.errors}`);

  const batchConc = Math.max(8, Math.floor(concurrency / 8));
  if (!args.has('--writes-only')) {
  const keys = putKeys.slice();
  const { load: gets, note: getsCpu } = await withCpu(() => closedLoop(concurrency, seconds, tally((w: number, n: number) => sessions[w]!.conn.call('getReplicaList', { key: keys[(w * 7919 + n) % keys.length] }))), 'get');
  results.getReplicaList = { ...gets, unit: 'gets/s', note: `one key per RPC${getsCpu}${errNote()}` };
  say(`getReplicaList: ${gets.opsPerSec}/s p50 ${gets.p50Ms} ms p99 ${gets.p99Ms} ms errors ${gets.errors}`);

  const batchGet = (conn: (w: number) => MasterClient) => tally((w: number, n: number) => {
    const start = ((w * 7919 + n * batchGetKeys) % Math.max(1, keys.length - batchGetKeys));
    // As an embedder reads: MasterClient.batchGetReplicaList (the compact reply, expanded to one result per key).
    return conn(w).batchGetReplicaList(keys.slice(start, start + batchGetKeys));
  });
  // Leader only and all masters, in alternating rounds (leader only first in odd rounds), so load that drifts on a
  // shared machine falls on both cases alike; the verdict compares their totals (and each round is listed).
  const leaderRaws: ReadRaw[] = [];
  const allRaws: ReadRaw[] = [];
  const runLeaderOnly = async (): Promise<void> => {
    leaderRaws.push(await perMaster((sink) => closedLoop(batchConc, seconds, batchGet((w) => sessions[w]!.conn), 1, sink)));
  };
  const runAll = async (): Promise<void> => {
    allRaws.push(await perMaster((sink) => closedLoop(batchConc, seconds, batchGet((w) => anyConns[w % connections]!), 1, sink)));
  };
  for (let r = 0; r < readRounds; r++) {
    if (r % 2 === 0) {
      await runLeaderOnly();
      await runAll();
    } else {
      await runAll();
      await runLeaderOnly();
    }
  }
  readRoundRatios = leaderRaws.map((l, i) => round((allRaws[i]!.ops / allRaws[i]!.seconds) / Math.max(1e-9, l.ops / l.seconds), 2));
  const leaderOnly = describeReads(addRounds(leaderRaws));
  const fromAll = describeReads(addRounds(allRaws));
  const bget = leaderOnly.load;
  const rounds = readRounds > 1 ? `; ${readRounds} rounds alternating with the all-masters case, p50/p99 pooled` : '';
  results.batchGetReplicaList = { ...bget, opsPerSec: bget.opsPerSec * batchGetKeys, unit: 'keys/s', note: `batched: ${batchGetKeys} keys per RPC, ${batchConc} in flight, leader only; latency per batch${rounds}; ${leaderOnly.note}${errNote()}` };
  say(`batchGetReplicaList (leader): ${bget.opsPerSec * batchGetKeys} keys/s (${bget.opsPerSec} batches/s) p50 ${bget.p50Ms} ms p99 ${bget.p99Ms} ms; ${leaderOnly.note}`);

  const aget = fromAll.load;
  results.batchGetReplicaListAll = { ...aget, opsPerSec: aget.opsPerSec * batchGetKeys, unit: 'keys/s', note: `batched from all masters (readFrom 'any'), ${batchConc} in flight${readRounds > 1 ? `; ${readRounds} rounds alternating with the leader-only case` : ''}; ${fromAll.note}${errNote()}` };
  say(`batchGetReplicaList (all masters): ${aget.opsPerSec * batchGetKeys} keys/s p50 ${aget.p50Ms} ms p99 ${aget.p99Ms} ms; ${fromAll.note}`);
  perMasterDetail.leaderOnly = leaderOnly.masters;
  perMasterDetail.allMasters = fromAll.masters;

  if (args.has('--mixed')) {
    // Writes while every master serves batched reads: what the write path pays for follower read leases (with
    // --follower-lease-ticks, a write commits only once every follower serving reads holds it). A fixed write rate
    // (open loop, latency from the scheduled start), so both builds are asked the same.
    const mixedRate = 500;
    const readers = closedLoop(batchConc, seconds, batchGet((w) => anyConns[w % connections]!));
    const { load: mixed, note: mixedCpu } = await withCpu(() => openLoop(mixedRate, seconds, concurrency, tally((w: number, n: number) => putPair(w, n, 'mix'))));
    const rd = await readers;
    results.mixedWrites = { ...mixed, unit: 'put pairs/s', note: `open loop at ${mixedRate}/s while ${batchConc} batched readers read from all masters (${rd.opsPerSec * batchGetKeys} keys/s)${mixed.dropped > 0 ? `; ${mixed.dropped} arrivals dropped` : ''}${mixedCpu}${errNote()}` };
    say(`put pairs at ${mixedRate}/s with all-masters reads: p50 ${mixed.p50Ms} ms p99 ${mixed.p99Ms} ms; reads ${rd.opsPerSec * batchGetKeys} keys/s`);
  }
  }

  if (!args.has('--reads-only')) {
  const bput = await closedLoop(batchConc, seconds, tally(async (w: number, n: number) => {
    const s = sessions[w]!;
    const ks = Array.from({ length: batchPutItems }, (_, i) => `bp/${w}/${n}/${i}`);
    await write(s, 'batchPutStart', { items: ks.map((key) => ({ key, size: objectBytes, replicaNum: 1 })) });
    await write(s, 'batchPutEnd', { keys: ks });
  }));
  results.batchPut = { ...bput, opsPerSec: bput.opsPerSec * batchPutItems, unit: 'objects/s', note: `batchPutStart+batchPutEnd of ${batchPutItems}, ${batchConc} in flight; latency per batch pair (${bput.opsPerSec} batch pairs/s)${errNote()}` };
  say(`batch put: ${bput.opsPerSec * batchPutItems} objects/s (${bput.opsPerSec} batch pairs/s) p50 ${bput.p50Ms} ms p99 ${bput.p99Ms} ms`);

  // Open loop at half the peak: arrivals on a fixed schedule, latency from the scheduled time.
  const rate = Math.max(1, Math.floor(pairs.opsPerSec / 2));
  const { load: half, note: halfCpu } = await withCpu(() => openLoop(rate, seconds, concurrency, tally((w: number, n: number) => putPair(w, n, 'half'))));
  results.putPairsHalfRate = { ...half, unit: 'put pairs/s', note: `open loop at ${rate}/s (50% of peak); latency from scheduled start${half.dropped > 0 ? `; ${half.dropped} arrivals dropped (all ${concurrency} sessions busy)` : ''}${halfCpu}${errNote()}` };
  say(`put pairs at ${rate}/s: achieved ${half.opsPerSec}/s p50 ${half.p50Ms} ms p99 ${half.p99Ms} ms errors ${half.errors}`);

  // Overload: 8× the sessions in a closed loop, so the leader's queue would hold ~8× the peak's in-flight writes
  // (queueing grows with the sessions, Little's law). With admission control the leader refuses what would wait
  // past raft.maxProposalWaitMs with BUSY and the clients come back after retryAfterMs: the leader's queue, and so
  // the time a taken write spends in it (mooring_proposal_duration_seconds), stays bounded.
  const overWorkers = concurrency * 8;
  const overSessions: Session[] = Array.from({ length: overWorkers }, (_, w) => ({ id: `bench-over-${w}`, seq: 0, conn: conns[w % connections]! }));
  const busyBefore = await busyRefusals();
  const changesBefore = await leaderChanges();
  const proposalsBefore = await proposalHistogram();
  const over = await closedLoop(overWorkers, seconds, tally((w: number, n: number) => putPair(w, n, 'over', overSessions)));
  const busy = (await busyRefusals()) - busyBefore;
  const changes = (await leaderChanges()) - changesBefore;
  const server = histogramDelta(proposalsBefore, await proposalHistogram());
  results.putPairsOverload = { ...over, unit: 'put pairs/s', note: `closed loop, ${overWorkers} sessions (8×); latency per pair as the client sees it, BUSY waits included; leader refused ${busy} proposals with BUSY (retried by the clients); server time from proposal to applied: p99 ≤ ${server.p99Bound} s, ${server.overShare} of proposals over 0.25 s; leader changes ${changes}${errNote()}` };
  say(`put pairs, ${overWorkers} sessions (overload): ${over.opsPerSec}/s p50 ${over.p50Ms} ms p99 ${over.p99Ms} ms errors ${over.errors}; BUSY refusals ${busy}; server p99 ≤ ${server.p99Bound} s; leader changes ${changes}`);
  }

  await Promise.all([...conns, ...anyConns].map((c) => c.close()));

  const rows = ([
    ['put pairs (closed loop)', results.putPairs],
    ['get-replica-list', results.getReplicaList],
    ['get-replica-list, batched (leader only)', results.batchGetReplicaList],
    ['batched get-replica-list from all masters', results.batchGetReplicaListAll],
    ['put pairs at 500/s while all masters read (--mixed)', results.mixedWrites],
    ['batch put (32)', results.batchPut],
    ['put pairs at 50% of peak', results.putPairsHalfRate],
    ['put pairs, 8× sessions (overload)', results.putPairsOverload],
  ] as const).filter(([, r]) => r !== undefined);
  const md = table(['case', 'rate', 'unit', 'p50 ms', 'p99 ms', 'errors', 'note'],
    rows.map(([name, r]) => [name, r!.opsPerSec, r!.unit, r!.p50Ms, r!.p99Ms, r!.errors, r!.note]));
  const shareMd = Object.keys(perMasterDetail).length === 0 ? '' : 'Per master (share of the keys read, server CPU of that master\'s process during the case, per key read by it, and above its idle CPU):\n\n' + table(['case', 'master', 'role', 'share of keys read', 'keys read', 'server CPU ms', 'CPU µs per key read', 'above idle, µs per key'],
    Object.entries(perMasterDetail).flatMap(([name, ms]) => ms.map((x) => [name, x.id, x.role, `${round(x.share * 100, 1)}%`, x.keys, round(x.cpuMs, 0), x.cpuUsPerKey, x.marginalUsPerKey])));
  const verdict: string[] = [];
  const all = results.batchGetReplicaListAll?.opsPerSec;
  const lead = results.batchGetReplicaList?.opsPerSec;
  if (all !== undefined && lead !== undefined) verdict.push(
    `All masters vs leader only (batched get-replica-list, same run${readRounds > 1 ? `, ${readRounds} alternating rounds each` : ''}): ${all} vs ${lead} keys/s (×${round(all / Math.max(1, lead), 2)}; goal: not lower → ${all >= lead ? 'met' : 'MISSED'})${readRoundRatios.length > 1 ? `; each round: ${readRoundRatios.map((x) => `×${x}`).join(', ')}` : ''}.`);
  const bestGets = lead !== undefined ? Math.max(results.getReplicaList!.opsPerSec, lead) : undefined;
  if (results.putPairsHalfRate !== undefined) verdict.push(
    `Targets: put pairs ≥ ${targets.putPairsPerSec}/s → ${results.putPairs!.opsPerSec} (${results.putPairs!.opsPerSec >= targets.putPairsPerSec ? 'met' : 'MISSED'}); ` +
    (bestGets !== undefined ? `get-replica-list ≥ ${targets.getsPerSec}/s → ${bestGets} (${bestGets >= targets.getsPerSec ? 'met' : 'MISSED'}, best of single/batched); ` : '') +
    `p99 < ${targets.p99AtHalfMs} ms at 50% of peak → ${results.putPairsHalfRate!.p99Ms} ms (${results.putPairsHalfRate!.p99Ms < targets.p99AtHalfMs ? 'met' : 'MISSED'}).`);
  if (profDir !== null) {
    // Profiles are written on a normal exit: stop gracefully (SIGTERM), not with destroy()'s SIGKILL.
    for (const n of cluster.nodes) await cluster.stop(n.id);
    verdict.push(`CPU profiles: ${readdirSync(profDir).map((f) => path.join(profDir, f)).join(', ')}`);
  }
  if (args.json) {
    console.log(JSON.stringify({ machine: m, seconds, concurrency, connections, results, perMaster: perMasterDetail, readRounds, readRoundRatios, targets }));
  } else {
    console.log(`\n${md}\n\n${shareMd}${shareMd === '' ? '' : '\n\n'}${verdict.join('\n')}`);
  }
  if (!args.has('--no-record')) {
    const idle = idleCpuMsPerSec as number[] | null; // set inside perMaster(), which TypeScript's narrowing does not see
    const only = ['--reads-only', '--writes-only', '--mixed'].filter((f) => args.has(f)).map((f) => ` ${f}`).join('') + (followerLeaseTicks !== null ? ` --follower-lease-ticks ${followerLeaseTicks}` : '') + (args.has('--writes-only') ? '' : ` --read-rounds ${readRounds}`);
    appendResults('master', `npm run bench:master -- --seconds ${seconds} --concurrency ${concurrency} --connections ${connections}${only}`,
      `${idle === null ? '' : `Idle CPU per master (ms/s, no client load): ${idle.map((x) => round(x, 1)).join(' / ')}. `}Three \`mooring master\` processes (LocalCluster, default raft: 25 ms ticks, fsync on) and the clients in one more process, all on the same ${m.cores} cores. ${concurrency} logical sessions over ${connections} connections to the leader (the all-masters case: ${connections} clients with readFrom 'any').\n\n${md}\n\n${shareMd}${shareMd === '' ? '' : '\n\n'}${verdict.join('\n')}\n`, m);
  }
} finally {
  await cluster.destroy({ keepDir: extraNodeArgs.length > 0 });
  if (extraNodeArgs.length > 0) console.error(`kept the masters' dir (logs): ${cluster.dir}`);
}

/** Open loop: starts op number i at t0 + i/rate (any of `maxInFlight` workers free), records latency from that time. */
/** `dropped`: arrivals that found every one of the maxInFlight workers busy (counted in `errors` too). */
async function openLoop(rate: number, secs: number, maxInFlight: number, op: (worker: number, n: number) => Promise<unknown>): Promise<LoadResult & { dropped: number }> {
  const lat: number[] = [];
  let errors = 0;
  const free = Array.from({ length: maxInFlight }, (_, i) => maxInFlight - 1 - i);
  const counters = new Array<number>(maxInFlight).fill(0);
  const t0 = performance.now() + 200;
  const total = Math.floor(rate * secs);
  const inflight = new Set<Promise<void>>();
  let dropped = 0;
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    else if (i % 64 === 0) await new Promise((r) => setImmediate(r));
    const w = free.pop();
    if (w === undefined) { dropped++; errors++; continue; }
    const p = op(w, counters[w]!++).then(
      () => { lat.push(performance.now() - due); },
      () => { errors++; },
    ).finally(() => { free.push(w); inflight.delete(p); });
    inflight.add(p);
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - t0) / 1000;
  return {
    ops: lat.length, errors, dropped, seconds: secs,
    opsPerSec: round(lat.length / Math.max(secs, elapsed), 0),
    p50Ms: round(percentile(lat, 50), 3), p99Ms: round(percentile(lat, 99), 3),
    meanMs: round(lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length), 3),
  };
}
