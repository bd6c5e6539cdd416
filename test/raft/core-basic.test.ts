import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { RaftCore } from '../../src/raft/core/core.js';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import { SeededRng } from '../../src/util/rng.js';
import { enc, Net } from './core-harness.js';

describe('RaftCore basics', () => {
  it('restarts with an applied index beyond the stored commit (an unsynced commit update lost at a crash), but not beyond the log', () => {
    // Entries 1..6 of term 1 are stored and a snapshot covers 4, but the hard state's commit says 2: the commit
    // update after 2 was lost while the (synced) snapshot survived. The full-node simulator found this (seed 33882):
    // the node refused to start ("applied 4 beyond commit 2") for good.
    const storage = MemoryStorage.withVoters(['a', 'b', 'c']);
    storage.append([1, 2, 3, 4, 5, 6].map((index) => ({ index, term: 1, type: 'normal' as const, data: enc(`e${index}`) })));
    storage.setHardState({ term: 1, vote: 'a', commit: 2 });
    storage.createSnapshot(4, { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false }, enc('state at 4'));
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1), applied: 4 });
    expect(core.status().commit).toBe(4);
    expect(core.status().applied).toBe(4);
    // An applied index the log does not reach is real damage: refused.
    expect(() => new RaftCore({ id: 'a', storage, rng: new SeededRng(1), applied: 7 })).toThrow(/applied 7 beyond the last index 6/);
  });

  it('a single-node cluster elects itself and commits only on advance', () => {
    const storage = MemoryStorage.withVoters(['a']);
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1) });
    core.campaign();
    // Its own vote counts once its term and vote are durable: then it leads.
    expect(core.status().role).toBe('candidate');
    let rd = core.ready();
    expect(rd.hardState?.vote).toBe('a');
    if (rd.hardState) storage.setHardState(rd.hardState);
    core.advance(rd);
    expect(core.status().role).toBe('leader');
    rd = core.ready();
    expect(rd.entries.length).toBe(1); // the no-op
    expect(rd.committedEntries.length).toBe(0); // own ack not yet counted
    expect(core.status().commit).toBe(0);
    storage.append(rd.entries);
    if (rd.hardState) storage.setHardState(rd.hardState);
    core.advance(rd);
    expect(core.status().commit).toBe(1);
    const p = core.propose(enc('x'));
    expect(p).toEqual({ index: 2, term: 1 });
    rd = core.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([1]);
    expect(rd.entries.map((e) => e.index)).toEqual([2]);
    storage.append(rd.entries);
    core.advance(rd);
    rd = core.ready();
    expect(rd.committedEntries.map((e) => e.index)).toEqual([2]);
    core.advance(rd);
    expect(core.status().applied).toBe(2);
  });

  it('three nodes elect exactly one leader by ticking, and replicate', () => {
    const net = new Net(['a', 'b', 'c']);
    for (let i = 0; i < 40 && net.leaders().length === 0; i++) net.tickAll(1);
    expect(net.leaders().length).toBe(1);
    const leader = net.leaders()[0]!;
    const term = net.core(leader).status().term;
    for (const id of ['a', 'b', 'c']) {
      expect(net.core(id).status().term).toBe(term);
      expect(net.core(id).status().leader).toBe(leader);
    }
    for (let i = 0; i < 10; i++) net.proposeStr(leader, `v${i}`);
    for (const id of ['a', 'b', 'c']) {
      expect(net.appliedStrings(id)).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
    }
  });

  it('a follower refuses proposals with NOT_LEADER and a leader hint', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    expect(net.leaders()).toEqual(['a']);
    try {
      net.core('b').propose(enc('x'));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(MooringError);
      expect((e as MooringError).code).toBe(ErrorCode.NOT_LEADER);
      expect((e as MooringError).leaderHint).toBe('a');
    }
  });

  it('proposeBatch appends many entries in one call and commits them all', () => {
    const net = new Net(['a', 'b', 'c']);
    net.campaign('a');
    const datas = Array.from({ length: 1000 }, (_, i) => enc(`e${i}`));
    const r = net.core('a').proposeBatch(datas);
    expect(r.lastIndex - r.firstIndex + 1).toBe(1000);
    net.stabilize();
    for (const id of ['a', 'b', 'c']) {
      expect(net.node(id).applied.length).toBe(1000);
      expect(net.core(id).status().commit).toBe(r.lastIndex);
    }
  });

  it('commits with a majority and not with a minority', () => {
    const net = new Net(['a', 'b', 'c', 'd', 'e']);
    net.campaign('a');
    net.isolate('c');
    net.isolate('d');
    net.isolate('e');
    const p = net.core('a').propose(enc('lonely'));
    net.stabilize();
    expect(net.core('a').status().commit).toBeLessThan(p.index);
    net.heal();
    net.tickAll(2);
    expect(net.core('a').status().commit).toBeGreaterThanOrEqual(p.index);
    expect(net.appliedStrings('e')).toEqual(['lonely']);
  });
});
