/**
 * Failover under load: SIGKILL the leader N times (restarting it each time) and time kill → next acknowledged
 * write, for a 3-process Mooring KV cluster and a 3-node etcd cluster in the same run. At the end every
 * acknowledged write is read back (lost writes must be 0).
 *   npm run bench:failover -- [--json] [--rounds N] [--clients C] [--no-append] [--no-etcd] [--etcd-election-ms MS]
 * --json prints {"mooring": {p50Ms, p99Ms, maxMs, samples, ackedWrites, lostWrites}, "etcd": {...} | null,
 *                "machine": {...}}.
 * "Next acknowledged write": the first write acknowledged more than `inFlightGraceMs` after the kill by any of the
 * C closed-loop writers (acks in that first window can only be replies the dead leader sent before it died).
 * Clients retry with a short backoff (Mooring: KvClient 10 → 100 ms; etcd: a 300 ms call deadline, then the next
 * endpoint after 10 ms).
 */
import { performance } from 'node:perf_hooks';
import { KvClient } from '../src/kvstore/client.js';
import { EtcdCluster, etcdBinary, etcdClient, etcdFailoverCallDeadlineMs, etcdInstallHint } from './lib/etcd-cluster.js';
import { KvCluster } from './lib/kv-cluster.js';
import { appendResults, machineInfo, parseArgs, percentile, round, sleep, table } from './lib/report.js';

const args = parseArgs();
const rounds = args.num('rounds', 20);
const clients = args.num('clients', 8);
const etcdElectionMs = args.num('etcd-election-ms', 1000);
const etcdHeartbeatMs = args.num('etcd-heartbeat-ms', 100);
/**
 * Acks this soon after the kill are replies to writes committed before it (in flight from the dead leader, or,
 * in etcd, from a follower that forwarded the write). No election completes this fast in either system (minimum
 * election timeouts 150 ms and 1000 ms), so an ack after it is a write committed by a new leader.
 */
const inFlightGraceMs = 50;
/** Load before the first kill and after each restart, so every kill hits a warm, caught-up cluster. */
const settleMs = 700;
const value = 'v'.repeat(256);

function log(msg: string): void {
  if (!args.json) process.stderr.write(`${msg}\n`);
}

interface Outcome {
  samples: number[];
  acked: Map<string, string>;
  lost: number;
}

/** Closed-loop writers of unique keys; records every ack time. */
class Writers {
  readonly acked = new Map<string, string>();
  lastAckAt = 0;
  private ackWaiters: { after: number; resolve: (t: number) => void }[] = [];
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly put: (w: number, key: string, value: string) => Promise<void>) {}

  start(n: number): void {
    this.loops = Array.from({ length: n }, (_, w) => this.loop(w));
  }

  /** Resolves with the time of the first ack later than `after`. */
  nextAckAfter(after: number): Promise<number> {
    return new Promise((resolve) => this.ackWaiters.push({ after, resolve }));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  private async loop(w: number): Promise<void> {
    for (let n = 0; !this.stopped; n++) {
      const key = `f-${w}-${n}`;
      try {
        await this.put(w, key, value);
      } catch {
        continue; // outcome unknown: not counted as acknowledged
      }
      const t = performance.now();
      this.acked.set(key, value);
      this.lastAckAt = t;
      if (this.ackWaiters.length > 0) {
        const keep = [];
        for (const x of this.ackWaiters) if (t > x.after) x.resolve(t); else keep.push(x);
        this.ackWaiters = keep;
      }
    }
  }
}

async function mooring(): Promise<Outcome> {
  const cluster = await KvCluster.create({ logLevel: 'warn' });
  try {
    await cluster.startAll();
    await cluster.waitForLeader();
    const base = new KvClient({ endpoints: cluster.endpoints(), clusterId: cluster.clusterId, timeoutMs: 1_000, maxAttempts: 1_000, backoff: { initialMs: 10, maxMs: 100 } });
    const sessions = Array.from({ length: clients }, () => base.fork());
    const writers = new Writers(async (w, k, v) => { await sessions[w]!.put(k, v); });
    writers.start(clients);
    await sleep(settleMs);
    const samples: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const leader = await cluster.waitForLeader();
      const t0 = performance.now();
      const next = writers.nextAckAfter(t0 + inFlightGraceMs);
      await cluster.kill(leader, 'SIGKILL');
      const tAck = await next;
      samples.push(tAck - t0);
      log(`mooring round ${r + 1}: killed ${leader}, next ack after ${round(tAck - t0, 1)} ms`);
      await cluster.start(leader);
      // Wait until the restarted node has caught up before the next kill.
      await cluster.waitForStatus(cluster.running(), (s) => {
        const l = s.find((x) => x.role === 'leader');
        return l !== undefined && s.every((x) => x.applied + 200 >= l.commit);
      }, 30_000, 'catch-up');
      await sleep(settleMs);
    }
    await writers.stop();
    // Read back every acknowledged write through the leader.
    let lost = 0;
    const acked = [...writers.acked.entries()];
    const readers = Array.from({ length: 16 }, () => base.fork());
    await Promise.all(readers.map(async (rd, i) => {
      for (let j = i; j < acked.length; j += readers.length) if ((await rd.get(acked[j]![0])) !== acked[j]![1]) lost++;
    }));
    await base.close();
    return { samples, acked: writers.acked, lost };
  } finally {
    await cluster.destroy();
  }
}

async function etcd(bin: string): Promise<Outcome> {
  const cluster = await EtcdCluster.create(bin, { electionMs: etcdElectionMs, heartbeatMs: etcdHeartbeatMs });
  const conns = cluster.endpoints().map((h) => etcdClient(h, {}, etcdFailoverCallDeadlineMs));
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
      const next = writers.nextAckAfter(t0 + inFlightGraceMs);
      await cluster.kill(leader, 'SIGKILL');
      const tAck = await next;
      samples.push(tAck - t0);
      log(`etcd round ${r + 1}: killed ${leader}, next ack after ${round(tAck - t0, 1)} ms`);
      cluster.start(leader);
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

async function main(): Promise<void> {
  const machine = machineInfo();
  const bin = args.has('--no-etcd') ? null : etcdBinary();
  if (bin === null && !args.has('--no-etcd')) log(`${etcdInstallHint}; skipping etcd`);
  const m = await mooring();
  const e = bin !== null ? await etcd(bin) : null;
  const summary = (o: Outcome) => ({
    p50Ms: round(percentile(o.samples, 50), 1),
    p99Ms: round(percentile(o.samples, 99), 1),
    maxMs: round(Math.max(...o.samples), 1),
    samples: o.samples.length,
    ackedWrites: o.acked.size,
    lostWrites: o.lost,
  });
  const result = { mooring: summary(m), etcd: e !== null ? summary(e) : null, machine };
  const rows: (string | number)[][] = [['Mooring (tick 25 ms, election 6 ticks = 150–300 ms)', ...Object.values(result.mooring)]];
  if (result.etcd !== null) rows.push([`etcd 3.4 (heartbeat ${etcdHeartbeatMs} ms, election ${etcdElectionMs} ms)`, ...Object.values(result.etcd)]);
  const t = table(['system', 'p50 ms', 'p99 ms', 'max ms', 'kills', 'acked writes', 'lost acked writes'], rows);
  if (args.json) console.log(JSON.stringify(result));
  else console.log(t);
  if (!args.has('--no-append')) {
    const body = `3 nodes each on loopback, ${clients} closed-loop writers of unique keys (256-byte values) during ${rounds} leader SIGKILLs; time = kill → next acknowledged write; the killed node is restarted and caught up before the next round; lost = acknowledged writes missing when read back through the leader at the end.\n\n${t}`;
    appendResults('failover', `npm run bench:failover -- --rounds ${rounds} --clients ${clients}`, body, machine);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
