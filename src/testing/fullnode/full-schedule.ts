/**
 * Seeded random fault schedules for the full-node simulator, and the run that checks one: faults during a
 * fault phase (crash + restart with unsynced writes lost and torn, pause + resume, partition, isolation, lossy /
 * duplicating / reordering links, clock drift, slow disks, failing fsyncs, a corrupted log read), then every
 * fault heals, a probe write must be acknowledged within the liveness bound, the cluster quiesces and checks.ts
 * judges the run. The seed fixes the schedule and the whole run: the same seed replays bit for bit (traceHash).
 */
import { createHash } from 'node:crypto';
import type { RaftTunables } from '../../raft/node/options.js';
import { snapshotChunkAckTimeoutMs } from '../../raft/node/snapshot-send.js';
import { SeededRng } from '../../util/rng.js';
import { checkBackups, SimBackupClient, simBackupTimeoutMs, type BackupMode } from './backup-client.js';
import { checkRun, quiesce, type CheckReport } from './checks.js';
import { FullSim, type CrashKind } from './full-sim.js';
import { chance, randInt } from './rand.js';
import type { DiskFaults, DiskStats } from './sim-fs.js';
import type { LeaseFault } from './sim-leases.js';

export type FullFault =
  /** `how`: a power loss (absent: also) or a process crash that keeps the page cache and the boot id. */
  | { atMs: number; kind: 'crash'; node: number; how?: CrashKind }
  | { atMs: number; kind: 'restart'; node: number }
  | { atMs: number; kind: 'corrupt'; node: number }
  | { atMs: number; kind: 'pause'; node: number }
  | { atMs: number; kind: 'resume'; node: number }
  | { atMs: number; kind: 'partition'; mask: number }
  | { atMs: number; kind: 'isolate'; node: number }
  | { atMs: number; kind: 'heal' }
  | { atMs: number; kind: 'rates'; drop: number; duplicate: number; reorder: number }
  | { atMs: number; kind: 'drift'; node: number; rate: number }
  | { atMs: number; kind: 'disk'; node: number; slowWriteProbability: number; fsyncFailProbability: number }
  | { atMs: number; kind: 'campaign'; node: number };

export interface FullSchedule {
  voters: number;
  /** Length of the fault phase (virtual ms); everything heals at its end. */
  faultMs: number;
  faults: FullFault[];
  /** Overrides of production's Raft defaults (none unless a schedule needs them). */
  raft?: Partial<RaftTunables>;
  disk?: Partial<DiskFaults>;
  /** WAL segment size (small: segments roll, are prepared in the background and deleted by compaction). */
  walSegmentBytes?: number;
  /** When a backup client starts an online backup (virtual ms into the fault phase; see backup-client.ts). */
  backupsAtMs?: number[];
  /** The masters' read-lease TTL (sim-leases.ts); absent: the simulator's default. */
  leaseTtlMs?: number;
  /** The workload's clients open sessions (state version 3) and write with their epochs. */
  sessions?: boolean;
}

export interface FullRunResult extends CheckReport {
  livenessOk: boolean;
  /** Virtual ms from the final heal to the probe write's acknowledgement. */
  recoveryMs: number;
  operations: number;
  unknownOutcomes: number;
  /** Gets served by a follower (ReadIndex from the leader, then the follower's state). */
  followerReads: number;
  coveredReads: number;
  /** Reads a follower served under its follower read lease, with no round to the leader. */
  followerLeaseReads: number;
  /** Leased gets answered ok in a compact form (those in version 2: binaryRowReads), and leased gets of two keys in one read. */
  compactReads: number;
  binaryRowReads: number;
  batchReads: number;
  /** Client sessions opened (schedules with sessions). */
  sessionsOpened: number;
  /** Client expiry runs: clients the masters expired, and pings answered OK. */
  clientsExpired: number;
  pingsOk: number;
  /** Online backups taken during the fault phase (each restored and checked at the end). */
  backups: number;
  events: number;
  virtualMs: number;
  traceHash: string;
  /** Every node's disk counters summed, plus crashes and crash-stops. */
  faultsSeen: DiskStats & { crashes: number; fatalStops: number };
}

/**
 * After the last fault heals, a write must be acknowledged within this many election timeouts (plus the
 * snapshot-stream retry time, see runFullNodeSchedule).
 */
export const fullLivenessElectionTimeouts = 20;

export function fullScheduleForSeed(seed: number): FullSchedule {
  const rng = new SeededRng(seed ^ 0x5eed);
  const voters = chance(rng, 0.25) ? 5 : 3;
  const faultMs = 1500 + randInt(rng, 1500);
  const faults: FullFault[] = [];
  const n = 2 + randInt(rng, 7);
  let corrupted = false;
  for (let i = 0; i < n; i++) {
    const atMs = 200 + randInt(rng, faultMs - 300);
    const node = randInt(rng, voters);
    switch (randInt(rng, 10)) {
      case 0:
      case 1: {
        faults.push({ atMs, kind: 'crash', node });
        if (!corrupted && chance(rng, 0.15)) {
          corrupted = true;
          faults.push({ atMs: atMs + 1, kind: 'corrupt', node });
        }
        faults.push({ atMs: Math.min(faultMs - 1, atMs + 20 + randInt(rng, 600)), kind: 'restart', node });
        break;
      }
      case 2:
        faults.push({ atMs, kind: 'pause', node }, { atMs: Math.min(faultMs - 1, atMs + 50 + randInt(rng, 800)), kind: 'resume', node });
        break;
      case 3:
        faults.push({ atMs, kind: 'partition', mask: 1 + randInt(rng, (1 << voters) - 2) });
        break;
      case 4:
        faults.push({ atMs, kind: 'isolate', node });
        break;
      case 5:
        faults.push({ atMs, kind: 'heal' });
        break;
      case 6:
        faults.push({ atMs, kind: 'rates', drop: rng.nextFloat() * 0.2, duplicate: rng.nextFloat() * 0.1, reorder: rng.nextFloat() * 0.2 });
        break;
      case 7:
        // Within simMaxClockRate (sim-leases.ts): the lease check counts on it.
        faults.push({ atMs, kind: 'drift', node, rate: [0.9, 0.95, 1.05, 1.1][randInt(rng, 4)]! });
        break;
      case 8:
        faults.push({ atMs, kind: 'disk', node, slowWriteProbability: rng.nextFloat() * 0.3, fsyncFailProbability: chance(rng, 0.5) ? 0.02 : 0 });
        break;
      default:
        faults.push({ atMs, kind: 'campaign', node });
    }
  }
  faults.sort((a, b) => a.atMs - b.atMs);
  // Half the crashes are process crashes (SIGKILL: the page cache and the boot id stay, so a member keeps its lease
  // file), the others power losses; a crash before a corrupted read stays a power loss. Own stream: the faults stay.
  const krng = new SeededRng(seed ^ 0x9c0de);
  for (const f of faults) {
    if (f.kind !== 'crash') continue;
    const corrupt = faults.some((g) => g.kind === 'corrupt' && g.node === f.node && g.atMs === f.atMs + 1);
    f.how = !corrupt && chance(krng, 0.5) ? 'process' : 'power';
  }
  const schedule: FullSchedule = { voters, faultMs, faults, disk: { tornWriteProbability: 0.5, shortWriteProbability: 0.01, maxWriteMs: 2, slowWriteMs: 80 } };
  // Production snapshots every 10,000 entries, more than a run writes: half the schedules override it so local
  // snapshots, compaction and snapshot streaming to lagging or restarted followers run too.
  if (chance(rng, 0.5)) schedule.raft = { snapshotEveryEntries: 20 + randInt(rng, 100), snapshotKeepEntries: randInt(rng, 10) };
  // Backups under failover: one or two, while the faults are active (their own stream: the faults stay as before).
  const brng = new SeededRng(seed ^ 0xbac0);
  schedule.backupsAtMs = Array.from({ length: 1 + randInt(brng, 2) }, () => 100 + randInt(brng, faultMs - 200)).sort((a, b) => a - b);
  // Read leases: a TTL short enough that leases run out during a run (removes succeed) and long enough to outlive
  // an election (the old leader's leases must survive it). Own stream: the faults stay as before.
  schedule.leaseTtlMs = [250, 500, 1000][randInt(new SeededRng(seed ^ 0x1ea5), 3)]!;
  // The WAL's segment size: its own stream too (the schedules above stay as they were).
  schedule.walSegmentBytes = [4096, 16384, 65536][randInt(new SeededRng(seed ^ 0x3a1), 3)]!;
  // Client sessions (state version 3) in half the schedules: own stream too.
  schedule.sessions = chance(new SeededRng(seed ^ 0x5e55), 0.5);
  return schedule;
}

export interface FullRunOptions {
  /** 'stale-follower': the control, backups from a lagging follower without the barrier (the check must fail). */
  backupMode?: BackupMode;
  /** A control fault that breaks the read-lease design (sim-leases.ts): the lease check must fail. */
  leaseFault?: LeaseFault;
  /** Writes go through production's client (Workload writesThroughClient, sim-client.ts). */
  clientWrites?: boolean;
  /** Compact leased reads ask for two keys (Workload batchReads). */
  batchReads?: boolean;
  /**
   * The masters expire silent clients and every client pings (sim-liveness.ts), with a TTL of 2, 3 or 4 s
   * (drawn from the seed's own stream); the check: no pinging client is expired.
   */
  clientExpiry?: boolean;
  /** raft.followerLeaseTicks for every master (follower read leases; 0 or absent: off). */
  followerLeaseTicks?: number;
  /** One reader per node reading the hot keys from it (Workload hotReaders). */
  hotReads?: boolean;
}

export async function runFullNodeSchedule(seed: number, schedule: FullSchedule, opts: FullRunOptions = {}): Promise<FullRunResult> {
  const sim = new FullSim(seed, {
    voters: schedule.voters,
    ...(schedule.raft !== undefined || opts.followerLeaseTicks !== undefined ? { raft: { ...schedule.raft, ...(opts.followerLeaseTicks !== undefined ? { followerLeaseTicks: opts.followerLeaseTicks } : {}) } } : {}),
    ...(schedule.disk !== undefined ? { disk: schedule.disk } : {}),
    leases: { ...(schedule.leaseTtlMs !== undefined ? { ttlMs: schedule.leaseTtlMs } : {}), fault: opts.leaseFault ?? null },
    ...(schedule.walSegmentBytes !== undefined ? { walSegmentBytes: schedule.walSegmentBytes } : {}),
    ...(schedule.sessions === true ? { sessions: true } : {}),
    workload: { ...(opts.clientWrites === true ? { writesThroughClient: true } : {}), ...(opts.batchReads === true ? { batchReads: true } : {}), ...(opts.hotReads === true ? { hotReaders: schedule.voters } : {}) },
    ...(opts.clientExpiry === true ? { clientExpiry: { ttlMs: [2_000, 3_000, 4_000][randInt(new SeededRng(seed ^ 0x771e), 3)]! } } : {}),
  });
  await sim.start();
  await sim.startWorkload();
  const t0 = sim.now;
  const backups = sim.workload === null ? null : new SimBackupClient(sim.sched, new SeededRng(seed ^ 0xbac1), sim.hosts, sim.workload, opts.backupMode ?? 'normal');
  for (const at of schedule.backupsAtMs ?? []) if (backups !== null) sim.sched.at(t0 + at, () => void backups.take());
  const id = (i: number): string => sim.ids[i % sim.ids.length]!;
  // Half the crashes wait (up to 50 ms) for a WAL write in flight, so torn and lost writes are common. Its own
  // stream: the schedule above stays as it was.
  const crng = new SeededRng(seed ^ 0xc4a5);
  for (const f of schedule.faults) {
    await sim.run(Math.max(0, t0 + f.atMs - sim.now));
    await restartFatalStops(sim);
    switch (f.kind) {
      case 'crash': if (chance(crng, 0.5)) await sim.crashInWrite(id(f.node), 50, f.how); else sim.crash(id(f.node), f.how); break;
      case 'restart': if (sim.host(id(f.node)).status === 'down') await sim.restart(id(f.node)); break;
      case 'corrupt': sim.corruptLog(id(f.node)); break;
      case 'pause': sim.pause(id(f.node)); break;
      case 'resume': sim.resume(id(f.node)); break;
      case 'partition': sim.partition(sim.ids.filter((_, i) => (f.mask >> i) & 1), sim.ids.filter((_, i) => !((f.mask >> i) & 1))); break;
      case 'isolate': sim.isolate(id(f.node)); break;
      case 'heal': sim.heal(); break;
      case 'rates': sim.setRates({ drop: f.drop, duplicate: f.duplicate, reorder: f.reorder }); break;
      case 'drift': sim.drift(id(f.node), f.rate); break;
      case 'disk': sim.diskFaults(id(f.node), { slowWriteProbability: f.slowWriteProbability, fsyncFailProbability: f.fsyncFailProbability }); break;
      case 'campaign': sim.campaign(id(f.node)); break;
    }
  }
  await sim.run(Math.max(0, t0 + schedule.faultMs - sim.now));

  // Heal everything: network, clocks, disks; every stopped process comes back (a corrupted one refuses to).
  sim.heal();
  sim.setRates({ drop: 0, duplicate: 0, reorder: 0 });
  for (const h of sim.hosts) {
    h.clock.resume();
    h.clock.setRate(1);
    sim.diskFaults(h.id, { slowWriteProbability: 0, fsyncFailProbability: 0 });
  }
  for (const h of sim.hosts) if (h.status === 'down') await sim.restart(h.id);
  const healedAt = sim.now;
  // A snapshot stream that lost a chunk or an ack to the faults waits snapshotChunkAckTimeoutMs before it is
  // retried (found by seed 290): a follower that needs the snapshot for a quorum delays recovery that long.
  const boundMs = fullLivenessElectionTimeouts * sim.tunables.electionTimeoutTicks * sim.tunables.tickMs + snapshotChunkAckTimeoutMs;
  let probeOk = false;
  let probeAnswer: string | null = null;
  if (sim.workload !== null) {
    // Probe writes (fresh keys) until one is acknowledged or the bound has passed.
    for (let seq = 1; !probeOk && sim.now - healedAt <= boundMs; seq++) {
      // A WAL poisoned before the heal (a background sync that failed) may crash-stop its node only now: its
      // supervisor starts it again, as during the faults (seed 15924).
      await restartFatalStops(sim);
      const r = await sim.settle(sim.workload.run('probe', seq, 'putStart', `probe-${seq}`), boundMs * 4).catch(() => undefined);
      probeOk = r === true;
    }
    if (!probeOk) probeAnswer = JSON.stringify(sim.workload.history.filter((o) => o.clientId === 'probe').slice(-3));
  }
  const recoveryMs = sim.now - healedAt;
  if (sim.workload !== null) sim.workload.stopped = true;
  if (backups !== null) await sim.run(4 * simBackupTimeoutMs * 20, () => backups.idle);
  const quiet = await quiesce(sim, 20_000);
  const report = checkRun(sim);
  if (backups !== null) {
    if (!backups.idle) report.violations.push('a backup was still running after the run');
    const finalCommit = Math.max(0, ...sim.hosts.filter((h) => h.up).map((h) => h.raft!.commitIndex));
    report.violations.push(...await checkBackups(backups.taken, finalCommit));
  }
  if (probeAnswer !== null) report.violations.push(`liveness probe answered ${probeAnswer}`);
  // Nothing in a run expires a client or reuses its id: an open session refused is a session the cluster lost.
  const expired = sim.workload?.sessionExpired ?? 0;
  if (expired > 0) report.violations.push(`sessions: ${expired} write(s) of an open session refused SESSION_EXPIRED`);
  if (!quiet) report.violations.push('replicas did not converge (quiesce) after the faults healed');
  if (sim.liveness !== null) report.violations.push(...sim.liveness.check());
  const history = sim.workload?.history ?? [];
  const trace = createHash('sha256').update(JSON.stringify(history)).update(`${sim.sched.events}:${sim.now}`);
  for (const h of sim.hosts) trace.update(h.state?.stateHash() ?? '-');
  const disks = sim.hosts.map((h) => h.disk.stats);
  const sum = (k: keyof (typeof disks)[0]): number => disks.reduce((a, d) => a + d[k], 0);
  return {
    ...report,
    livenessOk: probeOk && recoveryMs <= boundMs,
    recoveryMs: Math.round(recoveryMs),
    operations: history.length,
    unknownOutcomes: sim.workload?.unknown ?? 0,
    followerReads: sim.workload?.followerReads ?? 0,
    coveredReads: sim.workload?.coveredReads ?? 0,
    followerLeaseReads: sim.hosts.reduce((a, h) => a + h.followerLeaseReads, 0),
    compactReads: sim.workload?.compactReads ?? 0,
    binaryRowReads: sim.workload?.binaryRowReads ?? 0,
    batchReads: sim.workload?.batchReads ?? 0,
    sessionsOpened: sim.workload?.sessionsOpened ?? 0,
    clientsExpired: sim.liveness?.expired ?? 0,
    pingsOk: sim.workload?.pingsOk ?? 0,
    backups: backups?.taken.length ?? 0,
    events: sim.sched.events,
    virtualMs: Math.round(sim.now),
    traceHash: trace.digest('hex').slice(0, 16),
    faultsSeen: {
      crashes: sim.hosts.reduce((a, h) => a + h.crashes, 0),
      fatalStops: sim.hosts.reduce((a, h) => a + h.fatalStops, 0),
      lostUnsyncedWrites: sum('lostUnsyncedWrites'),
      lostDirOps: sum('lostDirOps'),
      tornWrites: sum('tornWrites'),
      shortWrites: sum('shortWrites'),
      failedFsyncs: sum('failedFsyncs'),
      corruptionsInjected: sum('corruptionsInjected'),
      corruptionsCaught: sum('corruptionsCaught'),
      corruptionsCutAsTorn: sum('corruptionsCutAsTorn'),
      corruptionsRecovered: sum('corruptionsRecovered'),
      overlappedWrites: sum('overlappedWrites'),
    },
  };
}

/** A node that crash-stopped on a failed fsync is restarted, as a supervisor would. */
async function restartFatalStops(sim: FullSim): Promise<void> {
  for (const h of sim.hosts) if (h.status === 'down' && h.fatalStops > 0 && h.crashes > 0 && h.pendingRestart) { h.pendingRestart = false; await sim.restart(h.id); }
}

export function describeFullFailure(seed: number, schedule: FullSchedule, r: FullRunResult): string {
  const lines = [`seed ${seed}: linearizable=${r.linearizable} lostAcked=${r.lostAcked} liveness=${r.livenessOk} (recovery ${r.recoveryMs} ms)`];
  for (const v of r.violations.slice(0, 10)) lines.push(`  violation: ${v}`);
  if (r.explanation) lines.push(r.explanation);
  lines.push(`schedule: ${JSON.stringify(schedule)}`);
  return lines.join('\n');
}
