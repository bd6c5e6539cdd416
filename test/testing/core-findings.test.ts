/**
 * Minimal reproductions of Raft core problems the simulator found. They are `it.fails`: each documents the
 * present (wrong) behaviour and keeps CI green; when the core is fixed the test starts failing — flip it to `it`.
 */
import { describe, expect, it } from 'vitest';
import { encodeCommand, Simulator } from '../../src/testing/index.js';
import { MemoryStorage } from '../../src/raft/memory-storage.js';

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

  // The bootstrap membership lives in the index-0 snapshot of each node's storage, not in log entries. A node
  // started with an empty MemoryStorage and then added receives the log from index 1, applies "add me" to an
  // empty configuration, becomes the only voter of its own cluster and elects itself: two leaders, and it
  // commits entries nobody else has.
  it.fails('safety: a joiner started with an empty configuration leads a cluster of one', () => {
    const sim = new Simulator(3, { voters: 3, spares: 1, clients: false });
    sim.crash('n4');
    sim.node('n4').storage = new MemoryStorage(); // what a new member's fresh data dir looks like
    sim.restart('n4');
    expect(sim.runUntil(() => sim.leader() !== null, 300)).toBe(true);
    sim.proposeConfChange(sim.leader()!.id, { changes: [{ type: 'addVoter', node: 'n4' }] });
    sim.run(300);
    for (let p = 1; p <= 5; p++) {
      sim.proposeProbe(p);
      sim.run(20);
    }
    sim.checkLogs();
    expect(sim.status('n4')!.confState.voters.sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
    expect(sim.checker.violations).toEqual([]);
  });
});
