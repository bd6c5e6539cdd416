/**
 * The leader forgets expired leases in slices across event-loop turns (LeaderDuties.pruneLeases): a second's worth
 * of expiries on a busy leader must not hold up the writes and reads queued behind it.
 */
import { expect, it } from 'vitest';
import { LeaderDuties, maxLeasePrunesPerTurn, type LeaderDutiesDeps } from '../../src/master/leader-duties.js';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { silentLogger } from '../../src/transport/logger.js';

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

it('prunes a large backlog of expired leases maxLeasePrunesPerTurn at a time, one slice per turn, and keeps live ones', async () => {
  const leases = new LeaseTable(1_000);
  const expired = 3 * maxLeasePrunesPerTurn + 5;
  for (let i = 0; i < expired; i++) leases.grant(`k${i}`, Date.now() - 10_000);
  leases.grant('live', Date.now());
  const syncSlices: number[] = [];
  const deps = {
    leases,
    logger: silentLogger,
    raft: () => ({ isLeader: true }),
    // LeaseSync's knowledge: work left for two slices.
    leaseSync: () => ({ prune: (_now: number, budget: number) => (syncSlices.push(budget), syncSlices.length < 2) }),
    stopping: () => false,
  } as unknown as LeaderDutiesDeps;
  const duties = new LeaderDuties(deps);
  duties.pruneLeases();
  // The first slice ran in this turn, and only it.
  expect(leases.size).toBe(expired + 1 - maxLeasePrunesPerTurn);
  duties.pruneLeases(); // a second call while slices are pending starts nothing new
  expect(leases.size).toBe(expired + 1 - maxLeasePrunesPerTurn);
  await turn();
  expect(leases.size).toBe(expired + 1 - 2 * maxLeasePrunesPerTurn);
  for (let i = 0; i < 5; i++) await turn();
  expect(leases.size).toBe(1);
  expect(leases.leasedKeys(Date.now())).toEqual(['live']);
  expect(syncSlices.every((b) => b === maxLeasePrunesPerTurn)).toBe(true);
  expect(syncSlices.length).toBe(4); // one per slice: the table needed four
});
