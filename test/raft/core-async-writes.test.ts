/**
 * Asynchronous storage writes (etcd-raft's AsyncStorageWrites split): a Ready's entries are "in progress" once
 * taken, become stable only when reported durable (onPersisted) with a still-matching term, the leader counts its
 * own log only after its own sync, and committed entries are handed out only up to what is durable locally.
 */
import { describe, expect, it } from 'vitest';
import { RaftCore } from '../../src/raft/core/core.js';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import type { Entry, Message, Ready } from '../../src/raft/core/types.js';
import { Unstable } from '../../src/raft/core/unstable.js';
import { SeededRng } from '../../src/util/rng.js';
import { enc } from './core-harness.js';

function ent(index: number, term: number, data = ''): Entry {
  return { index, term, type: 'normal', data: enc(data) };
}

function persist(storage: MemoryStorage, rd: Ready): void {
  if (rd.snapshot !== undefined) storage.applySnapshot(rd.snapshot);
  storage.append(rd.entries);
  if (rd.hardState !== undefined) storage.setHardState(rd.hardState);
}

/** A single voter's election: its own vote counts once its term and vote are durable. */
function electAlone(core: RaftCore, storage: MemoryStorage): void {
  core.campaign();
  expect(core.status().role).toBe('candidate');
  const rd = core.ready();
  expect(rd.hardState?.vote).toBe(core.status().id);
  persist(storage, rd);
  core.advance(rd);
  expect(core.status().role).toBe('leader');
}

function app(from: string, to: string, term: number, index: number, logTerm: number, entries: Entry[], commit: number): Message {
  return { type: 'app', from, to, term, index, logTerm, entries, commit };
}

describe('unstable: in-progress entries', () => {
  it('hands entries out once, and a truncation hands the replacing ones out again', () => {
    const u = new Unstable(1);
    u.truncateAndAppend([ent(1, 1), ent(2, 1), ent(3, 1)]);
    expect(u.nextEntries().map((e) => e.index)).toEqual([1, 2, 3]);
    u.acceptInProgress();
    expect(u.nextEntries()).toEqual([]);
    expect(u.hasNextEntries()).toBe(false);
    u.truncateAndAppend([ent(4, 1)]);
    expect(u.nextEntries().map((e) => e.index)).toEqual([4]);
    u.acceptInProgress();
    // A conflicting append from index 3: the in-flight write of 3..4 (term 1) no longer stands for this log.
    u.truncateAndAppend([ent(3, 2)]);
    expect(u.nextEntries().map((e) => [e.index, e.term])).toEqual([[3, 2]]);
    u.acceptInProgress();
    // The old write (…, (4, 1)) completes: index 4 is gone, nothing may be marked stable.
    expect(u.stableTo(4, 1)).toBe(false);
    expect(u.offset).toBe(1);
    // The first write ((3, 1) last) completes after the truncation: (3, 1) no longer matches either.
    expect(u.stableTo(3, 1)).toBe(false);
    expect(u.offset).toBe(1);
    // The write of the replacing entry completes.
    expect(u.stableTo(3, 2)).toBe(true);
    expect(u.offset).toBe(4);
    expect(u.entries).toEqual([]);
  });

  it('a truncation below the stable offset hands everything from there out again', () => {
    const u = new Unstable(5);
    u.truncateAndAppend([ent(5, 1), ent(6, 1)]);
    u.acceptInProgress();
    u.truncateAndAppend([ent(3, 2)]);
    expect(u.offset).toBe(3);
    expect(u.nextEntries().map((e) => e.index)).toEqual([3]);
    expect(u.stableTo(6, 1)).toBe(false);
    expect(u.offset).toBe(3);
  });
});

describe('RaftCore with asynchronous storage writes', () => {
  it('the next ready() does not repeat entries whose write is still in progress', () => {
    const storage = MemoryStorage.withVoters(['a']);
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1) });
    electAlone(core, storage);
    const rd1 = core.ready();
    expect(rd1.entries.map((e) => e.index)).toEqual([1]); // the no-op
    core.onApplied(rd1); // handed to storage, not durable yet
    core.propose(enc('x'));
    expect(core.hasReady()).toBe(true);
    const rd2 = core.ready();
    expect(rd2.entries.map((e) => e.index)).toEqual([2]);
    core.onApplied(rd2);
    expect(core.hasReady()).toBe(false); // nothing new: both writes are in flight
    persist(storage, rd1);
    persist(storage, rd2);
    core.onPersisted(rd1);
    core.onPersisted(rd2);
    expect(core.status().commit).toBe(2);
  });

  it('a single-node leader commits only after onPersisted, not on onApplied', () => {
    const storage = MemoryStorage.withVoters(['a']);
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1) });
    electAlone(core, storage);
    const rd = core.ready();
    expect(rd.entries.length).toBe(1);
    core.onApplied(rd);
    expect(core.status().commit).toBe(0);
    expect(core.hasReady()).toBe(false);
    persist(storage, rd);
    core.onPersisted(rd);
    expect(core.status().commit).toBe(1);
    const next = core.ready();
    expect(next.committedEntries.map((e) => e.index)).toEqual([1]);
  });

  it('vote requests leave before the candidate\'s term and vote are durable; its own vote counts only after', () => {
    const storage = MemoryStorage.withVoters(['a', 'b', 'c']);
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1), preVote: false });
    core.campaign();
    const rd = core.ready();
    expect(rd.hardState).toMatchObject({ term: 1, vote: 'a' });
    expect(rd.messages.filter((m) => m.type === 'vote').map((m) => m.to).sort()).toEqual(['b', 'c']); // sent at once
    expect(rd.persistedMessages.filter((m) => m.type === 'vote')).toEqual([]);
    core.onApplied(rd); // the vote is being written
    core.step({ type: 'voteResp', from: 'b', to: 'a', term: 1 });
    expect(core.status().role).toBe('candidate'); // b's vote alone is no majority: ours is not durable yet
    persist(storage, rd);
    core.onPersisted(rd);
    expect(core.status().role).toBe('leader');
    expect(core.ready().entries.map((e) => e.index)).toEqual([1]); // the leader's no-op
  });

  it('a candidate that moved to a later term before its vote was durable does not count the old vote', () => {
    const storage = MemoryStorage.withVoters(['a', 'b', 'c']);
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1), preVote: false });
    core.campaign();
    const rd = core.ready();
    core.onApplied(rd);
    core.step({ type: 'voteResp', from: 'b', to: 'a', term: 1 });
    core.step({ type: 'app', from: 'c', to: 'a', term: 2, index: 0, logTerm: 0, entries: [], commit: 0 }); // c leads term 2
    persist(storage, rd);
    core.onPersisted(rd);
    expect(core.status()).toMatchObject({ role: 'follower', term: 2, leader: 'c' });
  });

  it('a leader does not count its own unsynced log in the commit quorum', () => {
    const storage = MemoryStorage.withVoters(['a', 'b', 'c']);
    const core = new RaftCore({ id: 'a', storage, rng: new SeededRng(1), preVote: false });
    core.campaign();
    let rd = core.ready(); // the vote requests
    persist(storage, rd);
    core.advance(rd);
    core.step({ type: 'voteResp', from: 'b', to: 'a', term: 1 });
    expect(core.status().role).toBe('leader');
    rd = core.ready(); // the no-op, and its appends to b and c
    expect(rd.entries.map((e) => e.index)).toEqual([1]);
    core.onApplied(rd); // the leader's own write is in flight
    // Both followers partitioned: nothing commits even once the leader's write is durable.
    const pending = rd;
    persist(storage, pending);
    core.onPersisted(pending);
    expect(core.status().commit).toBe(0);
    // A second entry, whose write stays in flight; b acknowledges it: 2 of 3 only if the leader's unsynced write counted.
    core.propose(enc('x'));
    rd = core.ready();
    expect(rd.entries.map((e) => e.index)).toEqual([2]);
    core.onApplied(rd);
    core.step({ type: 'appResp', from: 'b', to: 'a', term: 1, index: 2 });
    expect(core.status().commit).toBe(1); // b + the leader's durable entry 1
    persist(storage, rd);
    core.onPersisted(rd);
    expect(core.status().commit).toBe(2);
  });

  it('a truncated in-flight write marks nothing stable, and only durable committed entries are applied', () => {
    const storage = MemoryStorage.withVoters(['a', 'b', 'c']);
    const core = new RaftCore({ id: 'b', storage, rng: new SeededRng(1) });
    core.step(app('a', 'b', 1, 0, 0, [ent(1, 1, 'x1'), ent(2, 1, 'x2'), ent(3, 1, 'x3')], 0));
    const rdA = core.ready();
    expect(rdA.entries.map((e) => e.index)).toEqual([1, 2, 3]);
    expect(rdA.persistedMessages.map((m) => [m.type, m.index])).toEqual([['appResp', 3]]);
    core.onApplied(rdA);
    // A new leader (term 2) overwrites 2..3 and says 3 is committed.
    core.step(app('c', 'b', 2, 1, 1, [ent(2, 2, 'y2'), ent(3, 2, 'y3')], 3));
    const rdB = core.ready();
    expect(rdB.entries.map((e) => [e.index, e.term])).toEqual([[2, 2], [3, 2]]);
    expect(rdB.committedEntries).toEqual([]); // committed, but not durable here yet
    core.onApplied(rdB);
    // Write A completes (the storage now holds 2..3 of term 1): (3, 1) no longer matches the log.
    persist(storage, rdA);
    core.onPersisted(rdA);
    if (core.hasReady()) {
      const rd = core.ready();
      expect(rd.committedEntries).toEqual([]); // the term-1 entries must never be applied
      core.onApplied(rd);
    }
    persist(storage, rdB);
    core.onPersisted(rdB);
    const rd = core.ready();
    expect(rd.committedEntries.map((e) => [e.index, e.term])).toEqual([[1, 1], [2, 2], [3, 2]]);
    core.onApplied(rd);
  });

  it('a follower hands committed entries out only once they are durable locally', () => {
    const storage = MemoryStorage.withVoters(['a', 'b', 'c']);
    const core = new RaftCore({ id: 'b', storage, rng: new SeededRng(1) });
    core.step(app('a', 'b', 1, 0, 0, [ent(1, 1), ent(2, 1)], 2));
    const rd = core.ready();
    expect(rd.entries.length).toBe(2);
    expect(rd.committedEntries).toEqual([]);
    core.onApplied(rd);
    expect(core.hasReady()).toBe(false);
    persist(storage, rd);
    core.onPersisted(rd);
    expect(core.hasReady()).toBe(true);
    expect(core.ready().committedEntries.map((e) => e.index)).toEqual([1, 2]);
  });
});
