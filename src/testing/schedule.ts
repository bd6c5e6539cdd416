/**
 * Fault schedules and the runner: a schedule is a list of timed fault events over a fault phase; after it every
 * fault heals and liveness is checked (a leader emerges and a proposal commits within `livenessBoundTicks`);
 * then clients drain and the history is checked for linearizability.
 */
import type { ConfChangeType } from '../raft/core/types.js';
import type { ClientOptions, ReadMode } from './client-model.js';
import { checkLinearizability, kvModel, type Counterexample } from './linearizability.js';
import { Simulator, type SimStats, type SimulatorOptions } from './simulator.js';

/** Node numbers index the node list modulo its size (n1 = 0), so shrinking never produces an invalid node. */
export type FaultEvent =
  /** Symmetric partition: `groups[i]` is node i's side. */
  | { at: number; kind: 'partition'; groups: number[] }
  | { at: number; kind: 'cut'; from: number; to: number }
  | { at: number; kind: 'rates'; drop: number; duplicate: number; reorder: number }
  /** Crash (losing what was not persisted), restart `duration` ticks later (or at heal). */
  | { at: number; kind: 'crash'; node: number; duration: number }
  /** Freeze the process for `duration` ticks (or until heal); its sockets buffer meanwhile. */
  | { at: number; kind: 'pause'; node: number; duration: number }
  /** The node's clock runs at `rate` core ticks per simulator tick until heal. */
  | { at: number; kind: 'skew'; node: number; rate: number }
  | { at: number; kind: 'heal' }
  /** Ask the current leader to hand over to `to`. */
  | { at: number; kind: 'transfer'; to: number }
  /** Ask the current leader to change membership (addVoter on a learner = promotion). */
  | { at: number; kind: 'membership'; change: ConfChangeType; node: number };

export interface Schedule {
  voters: number;
  spares: number;
  /** Length of the fault phase in ticks; every fault heals at its end. */
  faultTicks: number;
  events: FaultEvent[];
  readMode?: ReadMode;
  /** Snapshot + compact every this many applied entries (0 = never); simulator default when absent. */
  compactAfterEntries?: number;
  /** Probability that persisting a Ready takes 1..2 ticks instead of 0; simulator default when absent. */
  slowPersistProbability?: number;
}

export interface RunOptions {
  sim?: Omit<SimulatorOptions, 'voters' | 'spares'>;
  clients?: ClientOptions;
  /**
   * After the final heal a leader must emerge and a proposal commit within this many ticks. Default: 10 election
   * timeouts (200 ticks with the simulator's default electionTimeoutTicks of 20).
   */
  livenessBoundTicks?: number;
  /** Ticks after the liveness phase for in-flight client operations to finish. Default 60. */
  drainTicks?: number;
  checkLinearizability?: boolean;
  /**
   * When false, a `membership` removeNode aimed at the current leader is skipped (to look past a core issue
   * with leader removal, as the removed-leader deadlock of test/testing/core-findings.test.ts was). Default true.
   */
  removeLeader?: boolean;
}

export interface RunResult {
  violations: string[];
  linearizable: boolean;
  counterexample?: Counterexample;
  /** Keys the bounded linearizability search could not decide. */
  inconclusiveKeys: string[];
  livenessOk: boolean;
  /** Ticks from the final heal until the liveness probe committed (-1 if it did not). */
  recoveryTicks: number;
  traceHash: string;
  stats: SimStats & { operations: number; unknownOperations: number };
}

export const livenessElectionTimeouts = 10;
const probeEveryTicks = 5;

/** Runs one schedule under one seed. Same seed + schedule ⇒ same traceHash. */
export function runSchedule(seed: number, schedule: Schedule, options: RunOptions = {}): RunResult {
  const readMode = options.clients?.readMode ?? schedule.readMode ?? 'readIndex';
  const simOpts: SimulatorOptions = {
    ...(schedule.compactAfterEntries !== undefined ? { compactAfterEntries: schedule.compactAfterEntries } : {}),
    ...(schedule.slowPersistProbability !== undefined ? { slowPersistProbability: schedule.slowPersistProbability } : {}),
    ...options.sim,
    voters: schedule.voters,
    spares: schedule.spares,
    clients: { ...options.clients, readMode },
  };
  if ((readMode === 'lease' || readMode === 'followerLease') && !options.sim?.readOnlyOption) simOpts.readOnlyOption = 'lease';
  const sim = new Simulator(seed, simOpts);
  const ids = sim.ids;
  const pick = (i: number): string => ids[((i % ids.length) + ids.length) % ids.length]!;
  const byTick = new Map<number, (() => void)[]>();
  const at = (t: number, f: () => void): void => {
    let l = byTick.get(t);
    if (!l) byTick.set(t, (l = []));
    l.push(f);
  };
  for (const ev of schedule.events) {
    if (ev.at < 0 || ev.at >= schedule.faultTicks) continue;
    switch (ev.kind) {
      case 'partition': {
        const groups = new Map<number, string[]>();
        ids.forEach((id, i) => {
          const g = ev.groups[i] ?? 0;
          let l = groups.get(g);
          if (!l) groups.set(g, (l = []));
          l.push(id);
        });
        at(ev.at, () => sim.network.partition([...groups.values()], ids));
        break;
      }
      case 'cut':
        if (pick(ev.from) !== pick(ev.to)) at(ev.at, () => sim.network.cutOneWay(pick(ev.from), pick(ev.to)));
        break;
      case 'rates':
        at(ev.at, () => {
          sim.network.rates = { drop: ev.drop, duplicate: ev.duplicate, reorder: ev.reorder };
        });
        break;
      case 'crash':
        at(ev.at, () => sim.crash(pick(ev.node)));
        if (ev.at + ev.duration < schedule.faultTicks) at(ev.at + ev.duration, () => sim.restart(pick(ev.node)));
        break;
      case 'pause':
        at(ev.at, () => sim.pause(pick(ev.node)));
        if (ev.at + ev.duration < schedule.faultTicks) at(ev.at + ev.duration, () => sim.resume(pick(ev.node)));
        break;
      case 'skew':
        at(ev.at, () => {
          sim.node(pick(ev.node)).tickRate = ev.rate;
        });
        break;
      case 'heal':
        at(ev.at, () => sim.network.heal());
        break;
      case 'transfer':
        at(ev.at, () => {
          const l = sim.leader();
          if (l && l.id !== pick(ev.to)) sim.transferLeadership(l.id, pick(ev.to));
        });
        break;
      case 'membership':
        at(ev.at, () => {
          const l = sim.leader();
          if (!l) return;
          if (ev.change === 'removeNode' && pick(ev.node) === l.id && options.removeLeader === false) return;
          sim.proposeConfChange(l.id, { changes: [{ type: ev.change, node: pick(ev.node) }] });
        });
        break;
    }
  }

  for (let t = 0; t < schedule.faultTicks; t++) {
    for (const f of byTick.get(t) ?? []) f();
    sim.tick();
  }
  sim.healAll();

  // Liveness: a leader must emerge and a fresh proposal commit within the bound.
  const bound = options.livenessBoundTicks ?? livenessElectionTimeouts * sim.opts.electionTimeoutTicks;
  const probe = 1;
  let recoveryTicks = -1;
  for (let i = 0; i <= bound; i++) {
    if (sim.probesApplied.has(probe)) {
      recoveryTicks = i;
      break;
    }
    if (i % probeEveryTicks === 0) sim.proposeProbe(probe);
    sim.tick();
  }
  const livenessOk = recoveryTicks >= 0;

  // Drain: no new operations; let the running ones finish or time out.
  if (sim.clients) sim.clients.active = false;
  const drain = options.drainTicks ?? 60;
  for (let i = 0; i < drain && !(sim.clients?.idle() ?? true); i++) sim.tick();
  sim.checkLogs();
  const history = sim.clients ? sim.clients.finish(sim.now) : [];
  let linearizable = true;
  let counterexample: Counterexample | undefined;
  let inconclusiveKeys: string[] = [];
  if (options.checkLinearizability ?? true) {
    const r = checkLinearizability(history, kvModel);
    linearizable = r.ok;
    counterexample = r.counterexample;
    inconclusiveKeys = r.inconclusiveKeys;
  }
  const stats = {
    ...sim.finalStats(),
    operations: history.length,
    unknownOperations: history.filter((o) => o.return === undefined).length,
  };
  const result: RunResult = {
    violations: [...sim.checker.violations],
    linearizable,
    inconclusiveKeys,
    livenessOk,
    recoveryTicks,
    traceHash: sim.trace.digest(),
    stats,
  };
  if (counterexample) result.counterexample = counterexample;
  return result;
}

/** A one-paragraph description of a failing run (for test failures and the CLI). */
export function describeFailure(seed: number, schedule: Schedule, r: RunResult): string {
  const lines = [`seed ${seed} failed: violations=${r.violations.length} linearizable=${r.linearizable} liveness=${r.livenessOk}`];
  for (const v of r.violations.slice(0, 10)) lines.push(`  ${v}`);
  if (r.counterexample) lines.push(r.counterexample.explanation);
  lines.push(`schedule: ${JSON.stringify(schedule)}`);
  return lines.join('\n');
}
