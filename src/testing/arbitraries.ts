/**
 * fast-check arbitraries for fault schedules, exported so users can write their own property tests:
 *
 *   fc.assert(fc.property(fc.integer(), scheduleArb(), (seed, s) => {
 *     const r = runSchedule(seed, s);
 *     return r.violations.length === 0 && r.linearizable && r.livenessOk;
 *   }));
 */
import type { Arbitrary } from 'fast-check';
import fc from './fast-check.js'; // optional peer dependency, named if missing
import type { ReadMode } from './client-model.js';
import type { FaultEvent, Schedule } from './schedule.js';

export type FaultKind = FaultEvent['kind'];

export const allFaultKinds: readonly FaultKind[] = [
  'partition', 'cut', 'rates', 'crash', 'pause', 'skew', 'heal', 'transfer', 'membership',
];

export interface ScheduleArbOptions {
  /** Initial voter counts to choose from. Default [3, 5]. */
  voters?: number[];
  /** Spare (non-member) nodes to choose from. Default [0, 1]. */
  spares?: number[];
  /** Fault phase length range in ticks. Default 200..800 (10 to 40 default election timeouts). */
  minFaultTicks?: number;
  maxFaultTicks?: number;
  /** Events per schedule: uniformly 0..maxEvents. Default 16. */
  maxEvents?: number;
  /** Which fault kinds may appear. Default all (skew is left out for lease reads, which assume bounded drift). */
  faults?: readonly FaultKind[];
  readModes?: ReadMode[];
  /** Allow clock skew in lease-read schedules (breaks the bounded-drift assumption leases rest on). */
  skewWithLease?: boolean;
}

/** Clock rates for skewed nodes: stopped, slow, fast. */
export const skewRates = [0, 0.5, 1.5, 2] as const;

export function faultEventArb(faultTicks: number, universe: number, kinds: readonly FaultKind[]): Arbitrary<FaultEvent> {
  const at = fc.integer({ min: 0, max: Math.max(0, faultTicks - 1) });
  const node = fc.integer({ min: 0, max: universe - 1 });
  const rate = (max: number): Arbitrary<number> => fc.integer({ min: 0, max: Math.round(max * 100) }).map((x) => x / 100);
  const byKind: Record<FaultKind, Arbitrary<FaultEvent>> = {
    partition: fc.record({ at, kind: fc.constant('partition' as const), groups: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: universe, maxLength: universe }) }),
    cut: fc.record({ at, kind: fc.constant('cut' as const), from: node, to: node }),
    rates: fc.record({ at, kind: fc.constant('rates' as const), drop: rate(0.3), duplicate: rate(0.2), reorder: rate(0.3) }),
    crash: fc.record({ at, kind: fc.constant('crash' as const), node, duration: fc.integer({ min: 1, max: 160 }) }),
    pause: fc.record({ at, kind: fc.constant('pause' as const), node, duration: fc.integer({ min: 1, max: 160 }) }),
    skew: fc.record({ at, kind: fc.constant('skew' as const), node, rate: fc.constantFrom(...skewRates) }),
    heal: fc.record({ at, kind: fc.constant('heal' as const) }),
    transfer: fc.record({ at, kind: fc.constant('transfer' as const), to: node }),
    membership: fc.record({ at, kind: fc.constant('membership' as const), change: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const), node }),
  };
  return fc.oneof(...kinds.map((k) => byKind[k]));
}

export function scheduleArb(options: ScheduleArbOptions = {}): Arbitrary<Schedule> {
  const votersChoices = options.voters ?? [3, 5];
  const sparesChoices = options.spares ?? [0, 1];
  const minTicks = options.minFaultTicks ?? 200;
  const maxTicks = options.maxFaultTicks ?? 800;
  const readModes = options.readModes ?? ['readIndex'];
  return fc
    .record({
      voters: fc.constantFrom(...votersChoices),
      spares: fc.constantFrom(...sparesChoices),
      faultTicks: fc.integer({ min: minTicks, max: maxTicks }),
      readMode: fc.constantFrom(...readModes),
      // Frequent compaction makes snapshots part of churn; 0 keeps whole logs.
      compactAfterEntries: fc.constantFrom(40, 10, 0, 100),
      slowPersistProbability: fc.constantFrom(0.3, 0, 0.9),
    })
    .chain(({ voters, spares, faultTicks, readMode, compactAfterEntries, slowPersistProbability }) => {
      let kinds = options.faults ?? allFaultKinds;
      if ((readMode === 'lease' || readMode === 'followerLease') && !options.skewWithLease) kinds = kinds.filter((k) => k !== 'skew');
      return fc
        .array(faultEventArb(faultTicks, voters + spares, kinds), { maxLength: options.maxEvents ?? 16, size: 'max' })
        .map(
          (events): Schedule => ({
            voters, spares, faultTicks, readMode, compactAfterEntries, slowPersistProbability,
            events: [...events].sort((a, b) => a.at - b.at),
          }),
        );
    });
}

/** The schedule fast-check draws for `seed` (how the CLI turns a seed into a schedule, replayably). */
export function scheduleForSeed(seed: number, options: ScheduleArbOptions = {}): Schedule {
  return fc.sample(scheduleArb(options), { seed, numRuns: 1 })[0]!;
}
