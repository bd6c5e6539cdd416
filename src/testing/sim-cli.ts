/**
 * `npm run sim -- --seeds N [--json] [--seed S] [--start S0]`: runs N random fault schedules (seed S0, S0+1, ...;
 * each seed determines both the schedule and the run), prints one JSON summary line, exits non-zero on any
 * safety violation, non-linearizable history or liveness failure, and prints each failing seed with its schedule
 * so `--seed S` replays it exactly.
 */
import { pathToFileURL } from 'node:url';
import { allFaultKinds, scheduleForSeed, type FaultKind, type ScheduleArbOptions } from './arbitraries.js';
import type { ReadMode } from './client-model.js';
import { describeFailure, runSchedule } from './schedule.js';
import type { LeaseFault } from './fullnode/sim-leases.js';
import { describeFullFailure, fullScheduleForSeed, runFullNodeSchedule, type FullRunResult } from './fullnode/full-schedule.js';

interface Args {
  readModes: ReadMode[] | null;
  faults: FaultKind[] | null;
  seeds: number;
  seed: number | null;
  start: number;
  json: boolean;
  verbose: boolean;
  removeLeader: boolean;
  fullNode: boolean;
  /** --lease-fault: a control that breaks the read-lease design (full-node only; the lease check must fail). */
  leaseFault: LeaseFault | null;
  /** --client-writes: writes go through production's client (full-node only). */
  clientWrites: boolean;
  /** --follower-lease-ticks N: raft.followerLeaseTicks (full-node runs). */
  followerLeaseTicks: number | null;
  /** --batch-reads: every compact leased read asks for two keys (full-node only). */
  batchReads: boolean;
  /** --client-expiry: the masters expire silent clients, every client pings (full-node only). */
  clientExpiry: boolean;
  /** --hot-reads: one more client per node reading the hot keys from it (full-node only). */
  hotReads: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: sim [--full-node] --seeds N [--start S0] [--json] | --seed S [--verbose]  (the same --read-modes/--faults to replay)
       [--full-node: real RaftNodes + the master state machine on a simulated clock, network and disk]
       [--lease-fault no-collection|no-announce|no-hold: full-node control runs that break the read-lease design]
       [--client-writes: full-node writes go through production's client (hedges, hints, parking)]
       [--batch-reads: full-node compact leased reads ask for two keys in one read (batchGetReplicaList's path)]
       [--client-expiry: full-node masters expire silent clients; every client pings through production's client]
       [--hot-reads: full-node, one more client per node reading the two hot keys from it (covers, follower leases)]
       [--follower-lease-ticks N: full-node masters run with raft.followerLeaseTicks N]
       [--no-remove-leader: skip removals of the current leader]
       [--read-modes readIndex,lease,localUnsafe] [--faults partition,cut,rates,crash,pause,skew,heal,transfer,membership]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Args = { readModes: null, faults: null, seeds: 100, seed: null, start: 1, json: false, verbose: false, removeLeader: true, fullNode: false, leaseFault: null, clientWrites: false, batchReads: false, clientExpiry: false, hotReads: false, followerLeaseTicks: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!;
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isSafeInteger(v) || v < 0) usage(`${k} needs a non-negative integer`);
      return v;
    };
    if (k === '--seeds') a.seeds = num();
    else if (k === '--seed') a.seed = num();
    else if (k === '--start') a.start = num();
    else if (k === '--json') a.json = true;
    else if (k === '--verbose') a.verbose = true;
    else if (k === '--no-remove-leader') a.removeLeader = false;
    else if (k === '--full-node') a.fullNode = true;
    else if (k === '--client-writes') a.clientWrites = true;
    else if (k === '--follower-lease-ticks') a.followerLeaseTicks = num();
    else if (k === '--hot-reads') a.hotReads = true;
    else if (k === '--batch-reads') a.batchReads = true;
    else if (k === '--client-expiry') a.clientExpiry = true;
    else if (k === '--lease-fault') {
      const f = argv[++i];
      if (f !== 'no-collection' && f !== 'no-announce' && f !== 'no-hold' && f !== 'stale-cover') usage('--lease-fault needs no-collection, no-announce, no-hold or stale-cover');
      a.leaseFault = f;
    }
    else if (k === '--read-modes') a.readModes = (argv[++i] ?? '').split(',') as ReadMode[];
    else if (k === '--faults') a.faults = (argv[++i] ?? '').split(',') as FaultKind[];
    else usage(`unknown argument ${k}`);
  }
  return a;
}

/** The schedule mix of the CLI: one run in three uses lease reads (without clock skew: leases assume bounded drift). */
export function cliSchedule(seed: number, overrides: ScheduleArbOptions = {}) {
  return scheduleForSeed(seed, { readModes: ['readIndex', 'readIndex', 'lease'], ...overrides });
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  if (args.fullNode) {
    void runFullNode(args).catch((e: unknown) => {
      process.stderr.write(`${(e as Error).stack}\n`);
      process.exitCode = 1;
    });
    return;
  }
  const seeds = args.seed !== null ? [args.seed] : Array.from({ length: args.seeds }, (_, i) => args.start + i);
  const overrides: ScheduleArbOptions = {};
  if (args.readModes) overrides.readModes = args.readModes;
  if (args.faults) {
    const bad = args.faults.filter((f) => !allFaultKinds.includes(f));
    if (bad.length > 0) usage(`unknown fault kinds: ${bad.join(',')} (known: ${allFaultKinds.join(',')})`);
    overrides.faults = args.faults;
    overrides.skewWithLease = args.faults.includes('skew');
  }
  // Everything that shapes a run, so the printed replay command reproduces it exactly.
  const replayFlags =
    (args.removeLeader ? '' : ' --no-remove-leader') +
    (args.readModes ? ` --read-modes ${args.readModes.join(',')}` : '') +
    (args.faults ? ` --faults ${args.faults.join(',')}` : '');
  const t0 = process.hrtime.bigint();
  let violations = 0;
  let nonLinearizable = 0;
  let livenessFailures = 0;
  let inconclusive = 0;
  let operations = 0;
  let ticks = 0;
  let readsServed = 0;
  let followerLeaseReads = 0;
  let maxRecoveryTicks = 0;
  const failing: number[] = [];
  for (const seed of seeds) {
    const schedule = cliSchedule(seed, overrides);
    let r: ReturnType<typeof runSchedule>;
    try {
      r = runSchedule(seed, schedule, { removeLeader: args.removeLeader });
    } catch (e) {
      // A throw is a bug in the core or the simulator: report it like a violation, with its replay.
      violations++;
      failing.push(seed);
      process.stderr.write(`seed ${seed} threw: ${(e as Error).stack}\nschedule: ${JSON.stringify(schedule)}\nreplay: npm run sim -- --seed ${seed}${replayFlags}\n\n`);
      continue;
    }
    operations += r.stats.operations;
    ticks += r.stats.ticks;
    readsServed += r.stats.readsServed;
    followerLeaseReads += r.stats.followerLeaseReads;
    maxRecoveryTicks = Math.max(maxRecoveryTicks, r.recoveryTicks);
    if (r.inconclusiveKeys.length > 0) inconclusive++;
    const bad = r.violations.length > 0 || !r.linearizable || !r.livenessOk;
    if (r.violations.length > 0) violations++;
    if (!r.linearizable) nonLinearizable++;
    if (!r.livenessOk) livenessFailures++;
    if (bad) {
      failing.push(seed);
      process.stderr.write(describeFailure(seed, schedule, r) + `\nreplay: npm run sim -- --seed ${seed}${replayFlags}\n\n`);
    } else if (args.verbose) {
      process.stderr.write(`seed ${seed} ok trace ${r.traceHash} ${JSON.stringify(r.stats)}\n`);
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const summary = {
    schedules: seeds.length,
    violations,
    nonLinearizable,
    livenessFailures,
    inconclusive,
    readsServed,
    followerLeaseReads,
    seconds: Math.round(seconds * 10) / 10,
  };
  if (args.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    const rows: [string, string | number][] = [
      ['schedules', seeds.length],
      ['safety violations', violations],
      ['non-linearizable', nonLinearizable],
      ['liveness failures', livenessFailures],
      ['inconclusive checks', inconclusive],
      ['client operations', operations],
      ['simulated ticks', ticks],
      ['reads served', readsServed],
      ['  under follower lease', followerLeaseReads],
      ['max recovery ticks', maxRecoveryTicks],
      ['seconds', summary.seconds],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(22)} ${v}\n`);
    if (failing.length > 0) process.stdout.write(`failing seeds: ${failing.slice(0, 50).join(' ')}\n`);
  }
  process.exitCode = failing.length > 0 ? 1 : 0;
}

/** `--full-node`: whole-node schedules (src/testing/fullnode/); one JSON summary with the same field names. */
async function runFullNode(args: Args): Promise<void> {
  const seeds = args.seed !== null ? [args.seed] : Array.from({ length: args.seeds }, (_, i) => args.start + i);
  const t0 = process.hrtime.bigint();
  const totals = { schedules: seeds.length, violations: 0, nonLinearizable: 0, lostAcked: 0, livenessFailures: 0, inconclusive: 0 };
  const seen = { operations: 0, unknownOutcomes: 0, followerReads: 0, coveredReads: 0, followerLeaseReads: 0, compactReads: 0, binaryRowReads: 0, batchReads: 0, sessionsOpened: 0, leaseViolations: 0, leasedReads: 0, removesRefusedByLease: 0, sealedRefusals: 0, removesApplied: 0, clientWrites: 0, clientsExpired: 0, pingsOk: 0, backups: 0, events: 0, crashes: 0, fatalStops: 0, lostUnsyncedWrites: 0, lostDirOps: 0, tornWrites: 0, shortWrites: 0, failedFsyncs: 0, corruptionsInjected: 0, corruptionsCaught: 0, corruptionsCutAsTorn: 0, corruptionsRecovered: 0, overlappedWrites: 0, maxRecoveryMs: 0 };
  /** Seeds where an injected corruption of the last batch was cut as a torn tail (the torn-vs-corrupt ambiguity). */
  const recoveredSeeds: number[] = [];
  const failing: number[] = [];
  /** The command that replays `seed` with this run's options. */
  const replay = (seed: number): string => `replay: npm run sim -- --full-node --seed ${seed}${args.clientWrites ? ' --client-writes' : ''}${args.batchReads ? ' --batch-reads' : ''}${args.clientExpiry ? ' --client-expiry' : ''}${args.hotReads ? ' --hot-reads' : ''}${args.followerLeaseTicks !== null ? ` --follower-lease-ticks ${args.followerLeaseTicks}` : ''}${args.leaseFault !== null ? ` --lease-fault ${args.leaseFault}` : ''}`;
  for (const seed of seeds) {
    const schedule = fullScheduleForSeed(seed);
    let r: FullRunResult;
    try {
      r = await runFullNodeSchedule(seed, schedule, { ...(args.leaseFault !== null ? { leaseFault: args.leaseFault } : {}), ...(args.clientWrites ? { clientWrites: true } : {}), ...(args.batchReads ? { batchReads: true } : {}), ...(args.clientExpiry ? { clientExpiry: true } : {}), ...(args.hotReads ? { hotReads: true } : {}), ...(args.followerLeaseTicks !== null ? { followerLeaseTicks: args.followerLeaseTicks } : {}) });
    } catch (e) {
      totals.violations++;
      failing.push(seed);
      process.stderr.write(`seed ${seed} threw: ${(e as Error).stack}\nschedule: ${JSON.stringify(schedule)}\n${replay(seed)}\n\n`);
      continue;
    }
    if (r.violations.length > 0) totals.violations++;
    if (!r.linearizable) totals.nonLinearizable++;
    totals.lostAcked += r.lostAcked;
    if (!r.livenessOk) totals.livenessFailures++;
    if (r.inconclusiveKeys.length > 0) totals.inconclusive++;
    seen.operations += r.operations;
    seen.unknownOutcomes += r.unknownOutcomes;
    seen.followerReads += r.followerReads;
    seen.coveredReads += r.coveredReads;
    seen.followerLeaseReads += r.followerLeaseReads;
    seen.compactReads += r.compactReads;
    seen.binaryRowReads += r.binaryRowReads;
    seen.batchReads += r.batchReads;
    seen.sessionsOpened += r.sessionsOpened;
    for (const k of ['leaseViolations', 'leasedReads', 'removesRefusedByLease', 'sealedRefusals', 'removesApplied', 'clientWrites', 'clientsExpired', 'pingsOk'] as const) seen[k] += r[k];
    seen.backups += r.backups;
    seen.events += r.events;
    for (const k of ['crashes', 'fatalStops', 'lostUnsyncedWrites', 'lostDirOps', 'tornWrites', 'shortWrites', 'failedFsyncs', 'corruptionsInjected', 'corruptionsCaught', 'corruptionsCutAsTorn', 'corruptionsRecovered', 'overlappedWrites'] as const) seen[k] += r.faultsSeen[k];
    if (r.faultsSeen.corruptionsRecovered > 0) recoveredSeeds.push(seed);
    seen.maxRecoveryMs = Math.max(seen.maxRecoveryMs, r.recoveryMs);
    if (r.violations.length > 0 || !r.linearizable || r.lostAcked > 0 || !r.livenessOk) {
      failing.push(seed);
      process.stderr.write(`${describeFullFailure(seed, schedule, r)}\n${replay(seed)}\n\n`);
    } else if (args.verbose) {
      process.stderr.write(`seed ${seed} ok trace ${r.traceHash} ops ${r.operations} events ${r.events} recovery ${r.recoveryMs} ms\n`);
    }
  }
  const seconds = Math.round(Number(process.hrtime.bigint() - t0) / 1e8) / 10;
  const summary = { mode: 'full-node', ...totals, ...seen, recoveredSeeds: recoveredSeeds.slice(0, 50), seconds };
  if (args.json) process.stdout.write(JSON.stringify(summary) + '\n');
  else {
    for (const [k, v] of Object.entries(summary)) process.stdout.write(`${k.padEnd(22)} ${v}\n`);
    if (failing.length > 0) process.stdout.write(`failing seeds: ${failing.slice(0, 50).join(' ')}\n`);
  }
  process.exitCode = failing.length > 0 ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
