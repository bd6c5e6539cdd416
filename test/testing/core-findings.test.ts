/**
 * Minimal reproductions of Raft core problems the simulator found. They are `it.fails`: each documents the
 * present (wrong) behaviour and keeps CI green; when the core is fixed the test starts failing — flip it to `it`.
 */
import { describe, expect, it } from 'vitest';
import { encodeCommand, Simulator } from '../../src/testing/index.js';

describe('core findings (expected failures until fixed)', () => {
  // A leader that applies its own removal steps down at once. The remaining voter may not know the removal is
  // committed (configurations take effect when applied), so it still needs the old leader's vote, which the old
  // leader refuses because its log is longer (it appended a proposal after the removal). No leader ever again.
  it.fails('liveness: removing the leader of a two-voter cluster can leave it without a leader forever', () => {
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
    expect(sim.runUntil(() => l.role !== 'leader', 100)).toBe(true);
    sim.network.heal();
    expect(sim.runUntil(() => sim.leader() !== null, 2000)).toBe(true); // fails: no leader after 100 election timeouts
  });
});
