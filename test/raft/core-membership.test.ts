import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { decodeConfChange } from '../../src/raft/core/confchange.js';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import type { ConfChange } from '../../src/raft/core/types.js';
import { enc, Net } from './core-harness.js';

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof MooringError ? e.code : 'other';
  }
  return undefined;
}

function change(net: Net, leader: string, cc: ConfChange): void {
  net.core(leader).proposeConfChange(cc);
  net.stabilize();
}

describe('membership', () => {
  it('a learner receives the log but never votes nor counts for commit', () => {
    const net = new Net(['a', 'b', 'c'], {}, 1);
    net.campaign('a');
    // Bootstrap the joiner with the membership that includes it.
    net.addNode('l', new MemoryStorage({ voters: ['a', 'b', 'c'], learners: ['l'] }));
    change(net, 'a', { changes: [{ type: 'addLearner', node: 'l' }] });
    net.proposeStr('a', 'x');
    net.tickAll(3);
    expect(net.appliedStrings('l')).toEqual(['x']);
    expect(net.core('a').status().confState.learners).toEqual(['l']);
    // With b and c down, a + learner is not a quorum: nothing commits.
    net.isolate('b');
    net.isolate('c');
    const p = net.core('a').propose(enc('y'));
    net.tickAll(3);
    expect(net.core('a').status().commit).toBeLessThan(p.index);
    expect(net.node('l').storage.lastIndex()).toBeGreaterThanOrEqual(p.index);
    // The learner never campaigns, whatever happens.
    net.tickAll(50, ['l']);
    expect(net.core('l').status().role).toBe('follower');
  });

  it('a learner is promoted to voter after catching up', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    for (let i = 0; i < 5; i++) net.proposeStr('a', `v${i}`);
    net.addNode('d', new MemoryStorage({ voters: ['a', 'b', 'c'], learners: ['d'] }));
    change(net, 'a', { changes: [{ type: 'addLearner', node: 'd' }] });
    net.tickAll(3);
    const pr = net.core('a').status().progress!['d']!;
    expect(pr.match).toBe(net.core('a').status().lastIndex);
    change(net, 'a', { changes: [{ type: 'addVoter', node: 'd' }] });
    expect(net.core('a').status().confState.voters).toEqual(['a', 'b', 'c', 'd']);
    expect(net.node('d').confState.voters).toEqual(['a', 'b', 'c', 'd']);
    // d now counts: with b and c down, a + d is not a majority of 4; with c down, a + b + d is.
    net.isolate('c');
    net.proposeStr('a', 'w');
    expect(net.appliedStrings('d')).toContain('w');
  });

  it('allows only one membership change in flight', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.isolate('b');
    net.isolate('c');
    net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', node: 'x' }] });
    expect(code(() => net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', node: 'y' }] }))).toBe(
      ErrorCode.MEMBERSHIP_CHANGE_IN_PROGRESS,
    );
    net.heal();
    net.tickAll(3);
    // Applied: the next change is accepted.
    net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', node: 'y' }] });
  });

  it('refuses invalid changes up front', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    // Two voters at once without a joint config is fine with 'auto' (it goes joint); removing all is not.
    expect(
      code(() =>
        net.core('a').proposeConfChange({
          changes: [
            { type: 'removeNode', node: 'a' },
            { type: 'removeNode', node: 'b' },
            { type: 'removeNode', node: 'c' },
          ],
        }),
      ),
    ).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(code(() => net.core('a').proposeConfChange({ changes: [] }))).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it('joint consensus: replacing two voters goes through a joint config and leaves it automatically', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.proposeStr('a', 'x');
    const joiners = new MemoryStorage({ voters: ['a', 'b', 'c'] });
    net.addNode('d', joiners);
    net.addNode('e', new MemoryStorage({ voters: ['a', 'b', 'c'] }));
    // Hold the auto-leave back to observe the joint config.
    const leaveIdx = { seen: false };
    net.filters = [
      (m) => {
        if (m.type === 'app' && (m.entries ?? []).some((e) => e.type === 'confChange' && decodeConfChange(e.data).changes.length === 0)) leaveIdx.seen = true;
        return true;
      },
    ];
    net.core('a').proposeConfChange({
      changes: [
        { type: 'addVoter', node: 'd' },
        { type: 'addVoter', node: 'e' },
        { type: 'removeNode', node: 'b' },
        { type: 'removeNode', node: 'c' },
      ],
    });
    // Deliver step by step until the joint config is applied on a.
    for (let i = 0; i < 100 && net.core('a').status().confState.votersOutgoing.length === 0; i++) {
      for (const id of [...net.nodes.keys()]) net.processReady(id);
      net.deliver();
    }
    const joint = net.core('a').status().confState;
    expect(joint.voters).toEqual(['a', 'd', 'e']);
    expect(joint.votersOutgoing).toEqual(['a', 'b', 'c']);
    expect(joint.autoLeave).toBe(true);
    net.stabilize();
    const final = net.core('a').status().confState;
    expect(final.voters).toEqual(['a', 'd', 'e']);
    expect(final.votersOutgoing).toEqual([]);
    expect(leaveIdx.seen).toBe(true);
    net.proposeStr('a', 'y');
    expect(net.appliedStrings('d')).toEqual(['x', 'y']);
    expect(net.appliedStrings('e')).toEqual(['x', 'y']);
  });

  it('joint consensus: a decision needs both majorities', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.addNode('d', new MemoryStorage({ voters: ['a', 'b', 'c'] }));
    net.addNode('e', new MemoryStorage({ voters: ['a', 'b', 'c'] }));
    net.core('a').proposeConfChange({
      transition: 'jointExplicit',
      changes: [
        { type: 'addVoter', node: 'd' },
        { type: 'addVoter', node: 'e' },
        { type: 'removeNode', node: 'b' },
        { type: 'removeNode', node: 'c' },
      ],
    });
    net.stabilize();
    const cs = net.core('a').status().confState;
    expect(cs.votersOutgoing).toEqual(['a', 'b', 'c']);
    expect(cs.autoLeave).toBe(false);
    // Incoming {a,d,e} has a majority (a,d,e) but outgoing {a,b,c} only a: no commit.
    net.isolate('b');
    net.isolate('c');
    const p = net.core('a').propose(enc('needs-both'));
    net.tickAll(3);
    expect(net.core('a').status().commit).toBeLessThan(p.index);
    // Restore b: outgoing has a+b, incoming a+d+e: commits.
    net.heal();
    net.isolate('c');
    net.tickAll(3);
    expect(net.core('a').status().commit).toBeGreaterThanOrEqual(p.index);
    // Leaving explicitly.
    net.heal();
    change(net, 'a', { changes: [] });
    expect(net.core('a').status().confState.votersOutgoing).toEqual([]);
    expect(net.core('a').status().confState.voters).toEqual(['a', 'd', 'e']);
  });

  it('removing the leader: it steps down once the removal is applied and hands over at once', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.proposeStr('a', 'x');
    change(net, 'a', { changes: [{ type: 'removeNode', node: 'a' }] });
    expect(net.core('a').status().role).toBe('follower');
    const newLeader = net.leaderOf(['b', 'c']);
    expect(newLeader).toBeDefined();
    expect(net.core(newLeader!).status().confState.voters).toEqual(['b', 'c']);
    net.proposeStr(newLeader!, 'y');
    const other = newLeader === 'b' ? 'c' : 'b';
    expect(net.appliedStrings(other)).toEqual(['x', 'y']);
    // The removed node does not disrupt the cluster.
    net.tickAll(50);
    expect(net.core(newLeader!).status().role).toBe('leader');
    expect(net.core('a').status().role).toBe('follower');
  });

  it('removing the leader through a joint config (it leads while only an outgoing voter)', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.addNode('d', new MemoryStorage({ voters: ['a', 'b', 'c'] }));
    change(net, 'a', {
      changes: [
        { type: 'removeNode', node: 'a' },
        { type: 'addVoter', node: 'd' },
      ],
    });
    net.tickAll(5);
    const l = net.leaderOf(['b', 'c', 'd']);
    expect(l).toBeDefined();
    expect(net.core(l!).status().confState).toMatchObject({ voters: ['b', 'c', 'd'], votersOutgoing: [] });
    net.proposeStr(l!, 'z');
    expect(net.appliedStrings('d')).toEqual(['z']);
  });

  it('removing a follower: the rest carry on', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    change(net, 'a', { changes: [{ type: 'removeNode', node: 'c' }] });
    net.isolate('c');
    net.isolate('b');
    // {a, b}: a alone is not a majority of 2.
    const p = net.core('a').propose(enc('q'));
    net.tickAll(2, ['a']);
    expect(net.core('a').status().commit).toBeLessThan(p.index);
    net.heal();
    net.isolate('c');
    net.tickAll(2);
    expect(net.appliedStrings('b')).toEqual(['q']);
  });

  it('a leader that proposed its own removal takes no more proposals (they would block the remaining voters)', () => {
    const net = new Net(['b', 'c']);
    net.campaign('b');
    const rm = net.core('b').proposeConfChange({ changes: [{ type: 'removeNode', node: 'b' }] });
    // Before the removal is even committed: an entry only b holds could outlive b's removal (next test).
    expect(code(() => net.core('b').propose(enc('x')))).toBe(ErrorCode.PROPOSAL_DROPPED);
    // A refusal before the log: definite (the client may report it as not applied).
    expect(() => net.core('b').propose(enc('x'))).toThrow(expect.objectContaining({ definite: true }));
    expect(code(() => net.core('b').proposeConfChange({ changes: [{ type: 'addLearner', node: 'd' }] }))).toBe(
      ErrorCode.PROPOSAL_DROPPED,
    );
    // c acknowledges the removal, b commits and applies it, and c never hears of the commit: b crashes.
    net.filters = [(m) => !(m.from === 'b' && m.to === 'c' && m.type !== 'app')];
    net.filters.push((m) => !(m.from === 'b' && m.to === 'c' && (m.entries ?? []).length === 0));
    net.stabilize();
    expect(net.node('b').appliedAll.some((e) => e.index === rm.index)).toBe(true);
    expect(net.core('c').status().commit).toBeLessThan(rm.index);
    net.restart('b');
    net.filters = [];
    // b restarts removed (it may not campaign), c still counts b's vote: b must grant it, so c's log must be b's.
    net.tickAll(30);
    expect(net.core('c').status().role).toBe('leader');
    expect(net.core('c').status().confState.voters).toEqual(['c']);
    net.proposeStr('c', 'after');
    expect(net.appliedStrings('c')).toEqual(['after']);
  });

  it('a leader leaving a joint config that drops it takes no proposals after the leave entry', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.addNode('d', new MemoryStorage({ voters: ['a', 'b', 'c'] }));
    const j = net.core('a').proposeConfChange({
      changes: [
        { type: 'removeNode', node: 'a' },
        { type: 'addVoter', node: 'd' },
      ],
    });
    // The joint config commits; nothing after it does.
    net.filters = [(m) => !(m.to === 'a' && m.type === 'appResp' && (m.index ?? 0) > j.index)];
    net.stabilize();
    const st = net.core('a').status();
    expect(st.role).toBe('leader');
    expect(st.confState.votersOutgoing).toContain('a'); // still an outgoing voter: it leads the joint config
    expect(st.lastIndex).toBe(j.index + 1); // the leave entry, appended by auto-leave
    expect(code(() => net.core('a').propose(enc('x')))).toBe(ErrorCode.PROPOSAL_DROPPED);
    net.filters = [];
    net.tickAll(10);
    const l = net.leaderOf(['b', 'c', 'd']);
    expect(l).toBeDefined();
    expect(net.core(l!).status().confState).toMatchObject({ voters: ['b', 'c', 'd'], votersOutgoing: [] });
  });

  it("a restart re-applies the membership changes after the snapshot to the snapshot's membership", () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    net.addNode('d', new MemoryStorage({ voters: ['a', 'b', 'c'] }));
    net.proposeStr('a', 'x');
    const b = net.node('b');
    const at = b.core.status().applied;
    b.storage.createSnapshot(at, b.confState, enc(JSON.stringify(net.appliedStrings('b'))));
    b.storage.compact(at);
    // After the snapshot: a joint change that is left again, then one that stays joint.
    change(net, 'a', { changes: [{ type: 'addVoter', node: 'd' }, { type: 'removeNode', node: 'c' }] });
    expect(net.core('b').status().confState).toMatchObject({ voters: ['a', 'b', 'd'], votersOutgoing: [] });
    change(net, 'a', { changes: [{ type: 'addVoter', node: 'c' }, { type: 'removeNode', node: 'd' }], transition: 'jointExplicit' });
    const before = net.core('b').status().confState;
    expect(before).toMatchObject({ voters: ['a', 'b', 'c'], votersOutgoing: ['a', 'b', 'd'] });
    // Starting from the latest membership instead, the replayed leave-joint would leave the second joint config.
    net.restart('b');
    net.stabilize();
    expect(net.core('b').status().confState).toEqual(before);
  });

  it('a leader re-elected before applying its own removal takes no proposals either', () => {
    const net = new Net(['a', 'b', 'c'], { preVote: false, checkQuorum: false });
    net.campaign('a');
    // Every node gets the removal of a; no acknowledgement reaches a, so it is not committed.
    net.filters = [(m) => !(m.to === 'a' && m.type === 'appResp')];
    net.core('a').proposeConfChange({ changes: [{ type: 'removeNode', node: 'a' }] });
    net.stabilize();
    net.restart('a');
    net.campaign('a'); // a new term; a (a voter until the removal is applied) wins it, the removal still uncommitted
    expect(net.core('a').status().role).toBe('leader');
    expect(net.core('a').status().term).toBe(2);
    expect(net.core('a').status().commit).toBeLessThan(net.core('a').status().lastIndex - 1);
    expect(code(() => net.core('a').propose(enc('x')))).toBe(ErrorCode.PROPOSAL_DROPPED);
    // Once the removal commits, a hands over as usual.
    net.filters = [];
    net.tickAll(10);
    const l = net.leaderOf(['b', 'c']);
    expect(l).toBeDefined();
    expect(net.core(l!).status().confState.voters).toEqual(['b', 'c']);
  });
});
