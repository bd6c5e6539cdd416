/**
 * Regression tests for Raft core problems the simulator found (each was first written as a failing `it.fails`
 * reproduction; the core's fix turned it into an ordinary test).
 */
import { describe, expect, it } from 'vitest';
import { encodeCommand, Simulator } from '../../src/testing/index.js';

describe('core findings (regressions)', () => {
  // Found at 14:02 (seeds 106220, 111609 of `npm run sim`), fixed by the core in 4e0386f: a leader that applied its
  // own removal stepped down at once. The remaining voter may not know the removal is committed (configurations
  // take effect when applied), so it still needed the old leader's vote, which the old leader refused because its
  // log was longer (it appended a proposal after the removal): no leader ever again.
  it('liveness: removing the leader of a two-voter cluster can leave it without a leader forever', () => {
    const sim = new Simulator(1, { voters: 2, clients: false, slowPersistProbability: 0 });
    expect(sim.runUntil(() => sim.leader() !== null, 300)).toBe(true);
    const l = sim.leader()!;
    const other = sim.ids.find((id) => id !== l.id)!;
    sim.run(20);
    expect(sim.proposeConfChange(l.id, { changes: [{ type: 'removeNode', node: l.id }] })).toBe(true);
    const i = l.core!.status().lastIndex;
    sim.runUntil(() => sim.node(other).storage.lastIndex() >= i, 50);
    sim.network.cutOneWay(l.id, other); // the follower's acks still arrive; it hears nothing more
    sim.propose(l.id, encodeCommand({ t: 'put', c: 1, s: 1, k: 'x', v: 'y' }));
    expect(sim.runUntil(() => l.sm.appliedIndex >= i, 100)).toBe(true); // the old leader applied its removal
    sim.network.heal();
    expect(sim.runUntil(() => sim.leader() !== null && sim.leader()!.id !== l.id, 2000)).toBe(true);
    expect(sim.runUntil(() => sim.proposeProbe(1) && false, 1)).toBe(false);
    expect(sim.runUntil(() => sim.probesApplied.has(1), 200)).toBe(true);
  });
});
