/**
 * Failover under load, for a 3-process Mooring KV cluster and a 3-node etcd cluster with the same timers (25 ms
 * heartbeat, 150 ms election timeout by default), in the same run. Two faults, N rounds each:
 *   - kill:  SIGKILL the leader (its kernel resets its connections: peers and clients see it at once), restart it;
 *   - stop:  SIGSTOP the leader (a black hole: no reset, only silence) until a new leader served a write, then SIGCONT.
 * Time = fault signal → the first write acknowledged after the old leader is known silent (its exit observed, or
 * its state 'T' in /proc for SIGSTOP) and every reply it sent before was drained (one event-loop poll), so a reply
 * of the old leader never counts. At the end every acknowledged write is read back (lost writes must be 0).
 *   npm run bench:failover -- [--json] [--rounds N] [--clients C] [--cases kill,stop] [--no-append] [--no-etcd]
 *                             [--heartbeat-ms MS] [--election-ms MS] [--client-timeout-ms MS] [--no-fast-failover]
 * --json prints {"kill": {"mooring": {p50Ms, p99Ms, maxMs, samples, ackedWrites, lostWrites, leaderChanges,
 *                fastPreVotes}, "etcd": {...} | null}, "stop": {...}, "machine": {...}, "timers": {...}}.
 * Diagnostics: FAILOVER_LOG_LEVEL=info keeps the nodes' logs ("leader changed", "lost the leader's connection"),
 * FAILOVER_KEEP=1 keeps the cluster's temp dir (logs included) after a Mooring case; FAILOVER_NODE_ARGS="--trace-gc"
 * passes node flags to the Mooring nodes (their output goes to the same logs).
 * Soak mode: MOORING_FAILOVER_SOAK_SECONDS=N runs only a fault-free soak of N seconds under the same write load
 * with the fast path on and reports the leader changes every node saw (0 expected), the fast pre-votes, the terms,
 * and lost writes: `MOORING_FAILOVER_SOAK_SECONDS=600 npm run bench:failover -- --json`. MOORING_FAILOVER_SOAK_RATE=N paces
 * the writers to N writes/s in total instead of a closed loop.
 * Clients: Mooring KvClient with a per-attempt timeout of --client-timeout-ms (default 200) and backoff 10 → 100 ms;
 * etcd: the same call deadline, then the next endpoint after 10 ms.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { KvClient } from '../src/kvstore/client.js';
import { EtcdCluster, etcdBinary, etcdClient, etcdInstallHint } from './lib/etcd-cluster.js';
import { KvCluster } from './lib/kv-cluster.js';
import { appendResults, machineInfo, parseArgs, percentile, round, sleep, table } from './lib/report.js';

const args = parseArgs();
const rounds = args.num('rounds', 20);
const clients = args.num('clients', 8);
const heartbeatMs = args.num('heartbeat-ms', 25);
const electionMs = args.num('election-ms', 150);
const clientTimeoutMs = args.num('client-timeout-ms', 200);
/** --no-fast-failover: the same runs with RaftConfig.fastFailover off (for comparison). */
const fastFailover = !args.has('--no-fast-failover');
const tickMs = heartbeatMs;
const electionTicks = Math.max(3, Math.round(electionMs / tickMs));
type Fault = 'kill' | 'stop';
const casesArg = process.argv.find((a, i) => process.argv[i - 1] === '--cases');
const cases: Fault[] = (casesArg ?? 'kill,stop').split(',').filter((c): c is Fault => c === 'kill' || c === 'stop');
/** Load before the first fault and after each recovery, so every fault hits a warm, caught-up cluster. */
const settleMs = 700;
const value = 'v'.repeat(256);

function log(msg: string): void {
  if (!args.json) process.stderr.write(`${msg}\n`);
}

interface Outcome {
  samples: number[];
  acked: Map<string, string>;
  lost: number;
  leaderChanges?: number;
  fastPreVotes?: number;
}

/** Closed-loop writers of unique keys; records when each acknowledged write was issued and acknowledged. */
class Writers {
  readonly acked = new Map<string, string>();
  private ackWaiters: { after: number; resolve: (t: number) => void }[] = [];
  private stopped = false;
  private loops: Promise<void>[] = [];

  /**
   * `ratePerSec` > 0 paces the writers to that many writes/s in total (each starts its n-th write at
   * t0 + n·writers/rate, at once when behind); 0 = closed loop, as fast as the cluster answers.
   */
  constructor(private readonly put: (w: number, key: string, value: string) => Promise<void>, private readonly ratePerSec = 0) {}

  private writers = 0;

  start(n: number): void {
    this.writers = n;
    this.loops = Array.from({ length: n }, (_, w) => this.loop(w));
  }

  /**
   * The first ack received after `barrier()` resolves (the old leader is known to be unable to send, and replies
   * it sent before are drained). Returns the ack time.
   */
  async nextAckAfter(barrier: () => Promise<void>): Promise<number> {
    const w = { after: Infinity, resolve: (_t: number) => {} };
    const acked = new Promise<number>((resolve) => { w.resolve = resolve; });
    this.ackWaiters.push(w);
    await barrier();
    w.after = performance.now();
    return acked;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  private async loop(w: number): Promise<void> {
    const t0 = performance.now();
    for (let n = 0; !this.stopped; n++) {
      if (this.ratePerSec > 0) {
        const due = t0 + (n * this.writers * 1000) / this.ratePerSec;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
      }
      const key = `f-${w}-${n}`;
      try {
        await this.put(w, key, value);
      } catch {
        continue; // outcome unknown: not counted as acknowledged
      }
      const t = performance.now();
      this.acked.set(key, value);
      if (this.ackWaiters.length > 0) {
        const keep = [];
        for (const x of this.ackWaiters) if (t > x.after) x.resolve(t); else keep.push(x);
        this.ackWaiters = keep;
      }
    }
  }
}

/** Node flags for the Mooring nodes (diagnostics such as --trace-gc), from FAILOVER_NODE_ARGS. */
const nodeArgs = (process.env.FAILOVER_NODE_ARGS ?? '').split(/\s+/).filter((a) => a.length > 0);

/** Starts the KV cluster and the closed-loop writers (the same load for every Mooring case), after a settle. */
async function startWriters(cluster: KvCluster, ratePerSec = 0): Promise<{ base: KvClient; writers: Writers }> {
  await cluster.startAll();
  await cluster.waitForLeader();
  const base = new KvClient({ endpoints: cluster.endpoints(), clusterId: cluster.clusterId, timeoutMs: clientTimeoutMs, maxAttempts: 1_000, backoff: { initialMs: 10, maxMs: 100 } });
  const sessions = Array.from({ length: clients }, () => base.fork());
  const writers = new Writers(async (w, k, v) => { await sessions[w]!.put(k, v); }, ratePerSec);
  writers.start(clients);
  await sleep(settleMs);
  return { base, writers };
}

/** Reads every acknowledged write back (16 readers) and counts the missing or different ones; closes the client. */
async function lostWrites(base: KvClient, writers: Writers): Promise<number> {
  let lost = 0;
  const acked = [...writers.acked.entries()];
  const readers = Array.from({ length: 16 }, () => base.fork());
  await Promise.all(readers.map(async (rd, i) => {
    for (let j = i; j < acked.length; j += readers.length) if ((await rd.get(acked[j]![0])) !== acked[j]![1]) lost++;
  }));
  await base.close();
  return lost;
}

async function mooring(fault: Fault): Promise<Outcome> {
  const cluster = await KvCluster.create({ logLevel: process.env.FAILOVER_LOG_LEVEL ?? 'warn', nodeArgs, nodeConfig: { tickMs, electionTimeoutTicks: electionTicks, heartbeatIntervalTicks: 1, fastFailover } });
  try {
    const { base, writers } = await startWriters(cluster);
    const samples: number[] = [];
    let leaderChanges = 0;
    let fastPreVotes = 0;
    for (let r = 0; r < rounds; r++) {
      const leader = await cluster.waitForLeader();
      const survivors = cluster.running().filter((id) => id !== leader);
      const before = await counters(cluster, survivors);
      const t0 = performance.now();
      const proc = cluster.node(leader).proc!;
      const tAck = await writers.nextAckAfter(async () => {
        if (fault === 'kill') await cluster.kill(leader, 'SIGKILL');
        else await stopAndConfirm(proc.pid!, () => proc.kill('SIGSTOP'));
        await drainTurn();
      });
      samples.push(tAck - t0);
      const after = await counters(cluster, survivors);
      leaderChanges += after.leaderChanges - before.leaderChanges;
      fastPreVotes += after.fastPreVotes - before.fastPreVotes;
      log(`mooring ${fault} round ${r + 1}: ${leader}, first ack after the fault: ${round(tAck - t0, 1)} ms`);
      if (fault === 'kill') await cluster.start(leader);
      else cluster.node(leader).proc!.kill('SIGCONT');
      // Wait until the restarted (or resumed) node has caught up before the next round.
      await cluster.waitForStatus(cluster.running(), (s) => {
        const l = s.find((x) => x.role === 'leader');
        return l !== undefined && s.every((x) => x.leader === l.id && x.applied + 200 >= l.commit);
      }, 30_000, 'catch-up');
      await sleep(settleMs);
    }
    await writers.stop();
    // Read back every acknowledged write through the leader.
    const lost = await lostWrites(base, writers);
    return { samples, acked: writers.acked, lost, leaderChanges, fastPreVotes };
  } finally {
    await cluster.destroy({ keep: process.env.FAILOVER_KEEP === '1' });
    if (process.env.FAILOVER_KEEP === '1') log(`kept ${cluster.root}`);
  }
}

/** Leader changes seen by the first of `ids`, and fast pre-votes summed over `ids` (nodes not faulted this round). */
async function counters(cluster: KvCluster, ids: string[]): Promise<{ leaderChanges: number; fastPreVotes: number }> {
  const sts = (await Promise.all(ids.map((id) => cluster.status(id)))).filter((s) => s !== null);
  return { leaderChanges: sts[0]?.leaderChanges ?? 0, fastPreVotes: sts.reduce((a, s) => a + s.fastPreVotes, 0) };
}

async function etcd(bin: string, fault: Fault): Promise<Outcome> {
  const cluster = await EtcdCluster.create(bin, { electionMs, heartbeatMs });
  const conns = cluster.endpoints().map((h) => etcdClient(h, {}, clientTimeoutMs));
  try {
    await cluster.startAll();
    const current = Array.from({ length: clients }, (_, w) => w % conns.length);
    const writers = new Writers(async (w, k, v) => {
      for (;;) {
        try {
          await conns[current[w]!]!.put(k).value(v).exec();
          return;
        } catch {
          current[w] = (current[w]! + 1) % conns.length;
          await sleep(10);
        }
      }
    });
    writers.start(clients);
    await sleep(settleMs);
    const samples: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let leader: string | null = null;
      while ((leader = await cluster.leader()) === null) await sleep(50);
      const t0 = performance.now();
      const proc = cluster.member(leader).proc!;
      const tAck = await writers.nextAckAfter(async () => {
        if (fault === 'kill') await cluster.kill(leader!, 'SIGKILL');
        else await stopAndConfirm(proc.pid!, () => proc.kill('SIGSTOP'));
        await drainTurn();
      });
      samples.push(tAck - t0);
      log(`etcd ${fault} round ${r + 1}: ${leader}, first ack after the fault: ${round(tAck - t0, 1)} ms`);
      if (fault === 'kill') cluster.start(leader);
      else cluster.member(leader).proc!.kill('SIGCONT');
      await cluster.waitWritable();
      await sleep(settleMs + 1_000); // the restarted member rejoins and catches up
    }
    await writers.stop();
    let lost = 0;
    const acked = [...writers.acked.entries()];
    let leader: string | null = null;
    while ((leader = await cluster.leader()) === null) await sleep(50);
    const reader = etcdClient(`http://127.0.0.1:${cluster.member(leader).clientPort}`);
    for (let j = 0; j < acked.length; j += 64) {
      const batch = acked.slice(j, j + 64);
      const got = await Promise.all(batch.map(([k]) => reader.get(k).string()));
      batch.forEach(([, v], i) => { if (got[i] !== v) lost++; });
    }
    reader.close();
    return { samples, acked: writers.acked, lost };
  } finally {
    for (const c of conns) c.close();
    await cluster.destroy();
  }
}

/** Sends SIGSTOP and waits until the kernel reports the process stopped (state T in /proc/<pid>/stat). */
async function stopAndConfirm(pid: number, stop: () => void): Promise<void> {
  stop();
  for (let i = 0; i < 10_000; i++) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('T')) return;
    } catch {
      return; // no /proc: best effort
    }
    await new Promise((r) => setImmediate(r));
  }
}

/** One event-loop poll phase: replies already in our sockets' buffers are read before this resolves. */
async function drainTurn(): Promise<void> {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 0));
  await new Promise((r) => setImmediate(r));
}

async function soak(secs: number): Promise<void> {
  const machine = machineInfo();
  const cluster = await KvCluster.create({ logLevel: process.env.FAILOVER_LOG_LEVEL ?? 'warn', nodeArgs, nodeConfig: { tickMs, electionTimeoutTicks: electionTicks, heartbeatIntervalTicks: 1, fastFailover } });
  try {
    const { base, writers } = await startWriters(cluster, soakRate);
    const ids = cluster.running();
    const first = await Promise.all(ids.map((id) => cluster.status(id)));
    const started = performance.now();
    while (performance.now() - started < secs * 1000) {
      await sleep(5_000);
      const sts = await Promise.all(ids.map((id) => cluster.status(id)));
      log(`soak ${round((performance.now() - started) / 1000, 0)} s: terms ${sts.map((x) => x?.term).join('/')}, leader changes ${sts.map((x) => x?.leaderChanges).join('/')}, acked ${writers.acked.size}`);
    }
    let last = await Promise.all(ids.map((id) => cluster.status(id)));
    // A node too starved to answer its status in time (loaded machine): ask again.
    for (let i = 0; i < 10 && last.some((x) => x === null); i++) {
      await sleep(1_000);
      last = await Promise.all(ids.map((id) => cluster.status(id)));
    }
    await writers.stop();
    const lost = await lostWrites(base, writers);
    const perNode = ids.map((id, i) => ({
      id,
      leaderChanges: (last[i]?.leaderChanges ?? NaN) - (first[i]?.leaderChanges ?? NaN),
      fastPreVotes: (last[i]?.fastPreVotes ?? NaN) - (first[i]?.fastPreVotes ?? NaN),
      clockStalls: (last[i]?.clockStalls ?? NaN) - (first[i]?.clockStalls ?? NaN),
      longestClockStallMs: last[i]?.longestClockStallMs ?? NaN,
      termFrom: first[i]?.term ?? NaN,
      termTo: last[i]?.term ?? NaN,
    }));
    const leaderChanges = Math.max(...perNode.map((n) => n.leaderChanges));
    const result = { soak: { seconds: secs, clients, ratePerSec: soakRate > 0 ? soakRate : 'closed loop', ackedWrites: writers.acked.size, lostWrites: lost, leaderChanges, perNode }, machine, timers: { heartbeatMs, electionMs, clientTimeoutMs }, loadavgEnd: machineInfo().loadavg };
    if (args.json) console.log(JSON.stringify(result));
    else console.log(JSON.stringify(result, null, 2));
    if (!args.has('--no-append')) {
      const t = table(['node', 'leader changes seen', 'fast pre-votes', 'clock stalls ≥ ½ election timeout', 'longest stall ms', 'term at start', 'term at end'], perNode.map((n) => [n.id, n.leaderChanges, n.fastPreVotes, n.clockStalls, n.longestClockStallMs, n.termFrom, n.termTo]));
      appendResults('failover-soak', `MOORING_FAILOVER_SOAK_SECONDS=${secs}${soakRate > 0 ? ` MOORING_FAILOVER_SOAK_RATE=${soakRate}` : ''} npm run bench:failover${fastFailover ? '' : ' -- --no-fast-failover'}`, `3 Mooring KV nodes on loopback, fast failover ${fastFailover ? 'on' : 'OFF (--no-fast-failover)'}, heartbeat ${heartbeatMs} ms, election timeout ${electionMs} ms, ${clients} ${soakRate > 0 ? `writers paced at ${soakRate} writes/s in total` : 'closed-loop writers'}, no faults for ${secs} s: ${writers.acked.size} acknowledged writes, ${lost} lost; leader changes (most seen by any node): ${leaderChanges} (0 expected without faults). Load average at the end: ${result.loadavgEnd.join(' / ')}.\n\n${t}`, machine);
    }
  } finally {
    await cluster.destroy({ keep: process.env.FAILOVER_KEEP === '1' });
    if (process.env.FAILOVER_KEEP === '1') log(`kept ${cluster.root}`);
  }
}

const goals: Record<Fault, number> = { kill: 50, stop: 400 };

async function main(): Promise<void> {
  const machine = machineInfo();
  const bin = args.has('--no-etcd') ? null : etcdBinary();
  if (bin === null && !args.has('--no-etcd')) log(`${etcdInstallHint}; skipping etcd`);
  const summary = (o: Outcome) => ({
    p50Ms: round(percentile(o.samples, 50), 1),
    p99Ms: round(percentile(o.samples, 99), 1),
    maxMs: round(Math.max(...o.samples), 1),
    samples: o.samples.length,
    ackedWrites: o.acked.size,
    lostWrites: o.lost,
    ...(o.leaderChanges !== undefined ? { leaderChanges: o.leaderChanges } : {}),
    ...(o.fastPreVotes !== undefined ? { fastPreVotes: o.fastPreVotes } : {}),
  });
  const result: Record<string, unknown> = { machine, timers: { heartbeatMs, electionMs, clientTimeoutMs } };
  const rows: (string | number)[][] = [];
  const verdicts: string[] = [];
  for (const fault of cases) {
    const m = summary(await mooring(fault));
    const e = bin !== null ? summary(await etcd(bin, fault)) : null;
    result[fault] = { mooring: m, etcd: e };
    const what = fault === 'kill' ? 'leader SIGKILL' : 'leader SIGSTOP (black hole)';
    rows.push([what, `Mooring (tick ${tickMs} ms, election ${electionTicks} ticks)`, m.p50Ms, m.p99Ms, m.maxMs, m.samples, m.ackedWrites, m.lostWrites, m.fastPreVotes ?? '-']);
    if (e !== null) rows.push([what, `etcd 3.4 (heartbeat ${heartbeatMs} ms, election ${electionMs} ms)`, e.p50Ms, e.p99Ms, e.maxMs, e.samples, e.ackedWrites, e.lostWrites, '-']);
    verdicts.push(`${what}: goal p99 < ${goals[fault]} ms${fault === 'kill' ? ', 0 lost' : ''} → Mooring p99 ${m.p99Ms} ms, ${m.lostWrites} lost (${m.p99Ms < goals[fault] && m.lostWrites === 0 ? 'met' : 'MISSED'})`);
  }
  const t = table(['fault', 'system', 'p50 ms', 'p99 ms', 'max ms', 'rounds', 'acked writes', 'lost acked writes', 'fast pre-votes'], rows);
  if (args.json) console.log(JSON.stringify(result));
  else console.log(`${t}\n\n${verdicts.join('\n')}`);
  if (!args.has('--no-append')) {
    const body = `3 nodes each on loopback, same timers for both (heartbeat ${heartbeatMs} ms, election timeout ${electionMs} ms), ${clients} closed-loop writers of unique keys (256-byte values), ${rounds} rounds per fault; time = fault → first write acknowledged after the old leader is known silent and its earlier replies drained; a killed leader is restarted (a stopped one resumed) and caught up before the next round; lost = acknowledged writes missing when read back through the leader at the end. Client per-attempt timeout ${clientTimeoutMs} ms (etcd: call deadline).\n\n${t}\n\n${verdicts.join('\n')}`;
    appendResults('failover', `npm run bench:failover -- --rounds ${rounds} --clients ${clients} --cases ${cases.join(',')}`, body, machine);
  }
}

const soakSeconds = Number(process.env.MOORING_FAILOVER_SOAK_SECONDS ?? 0);
/** Soak only: total writes/s the writers are paced to (0 or unset: closed loop, which saturates a small machine). */
const soakRate = Number(process.env.MOORING_FAILOVER_SOAK_RATE ?? 0);
(soakSeconds > 0 ? soak(soakSeconds) : main()).catch((err) => {
  console.error(err);
  process.exit(1);
});
