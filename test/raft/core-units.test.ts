import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MooringError } from '../../src/errors.js';
import { applyChange, restoreConfState } from '../../src/raft/core/confchange.js';
import { RaftLog } from '../../src/raft/core/log.js';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import { Inflights, Progress } from '../../src/raft/core/progress.js';
import { jointCommitted, jointVoteResult, majorityCommitted, majorityVoteResult } from '../../src/raft/core/quorum.js';
import { confStateOf } from '../../src/raft/core/tracker.js';
import type { ConfState, Entry } from '../../src/raft/core/types.js';
import { Unstable } from '../../src/raft/core/unstable.js';

const ent = (index: number, term: number): Entry => ({ index, term, type: 'normal', data: new Uint8Array([index & 255]) });
const cs = (voters: string[], extra: Partial<ConfState> = {}): ConfState => ({
  voters,
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
  ...extra,
});

describe('quorum', () => {
  it('majority committed index is the value held by a majority', () => {
    const m = new Map([['a', 5], ['b', 3], ['c', 9]]);
    expect(majorityCommitted(new Set(['a', 'b', 'c']), (id) => m.get(id))).toBe(5);
    expect(majorityCommitted(new Set(['a', 'b', 'c', 'd']), (id) => m.get(id))).toBe(3); // d unknown = 0
    expect(majorityCommitted(new Set(), () => 0)).toBe(Infinity);
  });

  it('property: majorityCommitted equals the brute-force definition', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(50), { minLength: 1, maxLength: 9 }), (acks) => {
        const ids = acks.map((_, i) => `n${i}`);
        const got = majorityCommitted(new Set(ids), (id) => acks[Number(id.slice(1))]);
        const q = Math.floor(ids.length / 2) + 1;
        // The largest x such that at least q nodes acked ≥ x.
        let want = 0;
        for (const x of acks) if (acks.filter((a) => a >= x).length >= q) want = Math.max(want, x);
        expect(got).toBe(want);
      }),
    );
  });

  it('joint committed index is the minimum of both halves', () => {
    const m = new Map([['a', 10], ['b', 10], ['c', 1], ['d', 2], ['e', 2]]);
    expect(jointCommitted(new Set(['a', 'b', 'c']), new Set(['c', 'd', 'e']), (id) => m.get(id))).toBe(2);
    expect(jointCommitted(new Set(['a', 'b', 'c']), new Set(), (id) => m.get(id))).toBe(10);
  });

  it('vote results: won, lost, pending; joint needs both', () => {
    const v = (o: Record<string, boolean>) => new Map(Object.entries(o));
    const abc = new Set(['a', 'b', 'c']);
    expect(majorityVoteResult(abc, v({ a: true, b: true }))).toBe('won');
    expect(majorityVoteResult(abc, v({ a: false, b: false }))).toBe('lost');
    expect(majorityVoteResult(abc, v({ a: true, b: false }))).toBe('pending');
    const cde = new Set(['c', 'd', 'e']);
    expect(jointVoteResult(abc, cde, v({ a: true, b: true }))).toBe('pending');
    expect(jointVoteResult(abc, cde, v({ a: true, b: true, d: false, e: false }))).toBe('lost');
    expect(jointVoteResult(abc, cde, v({ a: true, c: true, d: true }))).toBe('won');
  });
});

const W = { appends: 4, bytes: 1 << 20 };

describe('progress and inflights', () => {
  it('inflights is a bounded ring freed in order', () => {
    const f = new Inflights({ appends: 3, bytes: 1 << 20 });
    f.add(5, 10);
    f.add(7, 10);
    f.add(9, 10);
    expect(f.full()).toBe(true);
    expect(() => f.add(11, 10)).toThrow();
    f.freeLE(7);
    expect(f.count).toBe(1);
    f.add(11, 10);
    f.add(13, 10);
    expect(f.full()).toBe(true);
    f.freeFirstOne();
    expect(f.count).toBe(2);
    f.freeLE(100);
    expect(f.count).toBe(0);
    expect(f.bytes).toBe(0);
  });

  it('inflights is also full at its byte bound, and freeing acknowledged appends frees their bytes', () => {
    const f = new Inflights({ appends: 256, bytes: 1000 });
    f.add(10, 400);
    f.add(20, 400);
    expect(f.full()).toBe(false);
    f.add(30, 300); // 1100 bytes ≥ 1000: full with 3 of 256 slots used
    expect(f.full()).toBe(true);
    expect(f.bytes).toBe(1100);
    f.freeLE(20);
    expect(f.bytes).toBe(300);
    expect(f.full()).toBe(false);
    const c = f.clone();
    f.reset();
    expect(c.bytes).toBe(300);
    expect(c.count).toBe(1);
    expect(f.bytes).toBe(0);
  });

  it('probe sends one append at a time; replicate pipelines up to the window', () => {
    const pr = new Progress(5, { appends: 2, bytes: 1 << 20 }, false);
    expect(pr.isPaused()).toBe(false);
    pr.sentEntries(3, 30);
    expect(pr.isPaused()).toBe(true); // probe: wait for the answer
    expect(pr.maybeUpdate(4)).toBe(true);
    pr.becomeReplicate();
    expect(pr.next).toBe(5);
    pr.sentEntries(2, 20);
    pr.sentEntries(2, 20);
    expect(pr.next).toBe(9);
    expect(pr.isPaused()).toBe(true); // window of 2 full
    pr.maybeUpdate(6);
    pr.inflights.freeLE(6);
    expect(pr.isPaused()).toBe(false);
  });

  it('maybeDecrTo ignores stale rejections and uses the hint', () => {
    const pr = new Progress(11, { appends: 4, bytes: 1 << 20 }, false);
    expect(pr.maybeDecrTo(5, 3)).toBe(false); // not the probe we sent (next-1 = 10)
    expect(pr.maybeDecrTo(10, 3)).toBe(true);
    expect(pr.next).toBe(4);
    pr.maybeUpdate(3);
    pr.becomeReplicate();
    expect(pr.maybeDecrTo(2, 0)).toBe(false); // ≤ match: stale
  });

  it('maybeDecrTo: a probe rejected below the match (the follower lost acknowledged entries) lowers the match to its hint', () => {
    const pr = new Progress(153, { appends: 4, bytes: 1 << 20 }, false);
    pr.maybeUpdate(152); // acknowledged up to 152
    pr.becomeProbe();
    expect(pr.next).toBe(153);
    expect(pr.maybeDecrTo(152, 151)).toBe(true); // "I do not have 152; my log ends at 151"
    expect(pr.match).toBe(151);
    expect(pr.next).toBe(152); // the next probe is below what it lost, not the same one again
  });
});

describe('unstable and RaftLog', () => {
  it('unstable truncates on conflict and stays stable-aware', () => {
    const u = new Unstable(5);
    u.truncateAndAppend([ent(5, 1), ent(6, 1), ent(7, 1)]);
    u.truncateAndAppend([ent(6, 2)]);
    expect(u.entries.map((e) => [e.index, e.term])).toEqual([[5, 1], [6, 2]]);
    u.stableTo(6, 1); // wrong term: ignored
    expect(u.offset).toBe(5);
    u.stableTo(5, 1);
    expect(u.offset).toBe(6);
    u.truncateAndAppend([ent(3, 3)]); // before offset: replaces everything
    expect(u.offset).toBe(3);
    expect(u.entries.length).toBe(1);
  });

  it('maybeAppend finds the conflict, truncates and commits up to the last new entry', () => {
    const s = MemoryStorage.withVoters(['a']);
    s.append([ent(1, 1), ent(2, 1), ent(3, 2)]);
    const log = new RaftLog(s, 1 << 20);
    expect(log.maybeAppend(1, 1, 10, [ent(2, 1), ent(3, 3), ent(4, 3)])).toBe(4);
    expect(log.termOrUndefined(3)).toBe(3);
    expect(log.committed).toBe(4);
    expect(log.maybeAppend(4, 9, 10, [])).toBeUndefined(); // mismatch
    expect(log.findConflictByTerm(4, 2)).toEqual({ index: 2, term: 1 });
  });

  it('slice spans storage and unstable and honours the byte limit', () => {
    const s = MemoryStorage.withVoters(['a']);
    s.append([ent(1, 1), ent(2, 1)]);
    const log = new RaftLog(s, 1 << 20);
    log.append([ent(3, 1), ent(4, 1)]);
    expect(log.slice(1, 5, Infinity).map((e) => e.index)).toEqual([1, 2, 3, 4]);
    expect(log.slice(1, 5, 2).map((e) => e.index)).toEqual([1, 2]);
    expect(log.slice(2, 5, 0).map((e) => e.index)).toEqual([2]);
  });
});

describe('conf changes', () => {
  const base = () => restoreConfState(cs(['a', 'b', 'c']), 10, W);

  it('simple changes add/remove one voter; more than one needs a joint config', () => {
    const r = base();
    const added = applyChange(r.config, r.progress, { changes: [{ type: 'addVoter', node: 'd' }] }, 10, W);
    expect(confStateOf(added.config).voters).toEqual(['a', 'b', 'c', 'd']);
    expect(() =>
      applyChange(r.config, r.progress, { changes: [{ type: 'addVoter', node: 'd' }, { type: 'addVoter', node: 'e' }], transition: 'auto' }, 10, W),
    ).not.toThrow(); // auto with two changes goes joint
    const joint = applyChange(r.config, r.progress, { changes: [{ type: 'addVoter', node: 'd' }, { type: 'removeNode', node: 'a' }] }, 10, W);
    expect(confStateOf(joint.config)).toMatchObject({ voters: ['b', 'c', 'd'], votersOutgoing: ['a', 'b', 'c'], autoLeave: true });
    const left = applyChange(joint.config, joint.progress, { changes: [] }, 10, W);
    expect(confStateOf(left.config)).toMatchObject({ voters: ['b', 'c', 'd'], votersOutgoing: [], autoLeave: false });
    expect(left.progress.has('a')).toBe(false);
  });

  it('demoting a voter in a joint config goes through learnersNext', () => {
    const r = base();
    const joint = applyChange(r.config, r.progress, { changes: [{ type: 'addLearner', node: 'a' }], transition: 'joint' }, 10, W);
    expect(confStateOf(joint.config)).toMatchObject({ voters: ['b', 'c'], votersOutgoing: ['a', 'b', 'c'], learnersNext: ['a'] });
    const left = applyChange(joint.config, joint.progress, { changes: [] }, 10, W);
    expect(confStateOf(left.config)).toMatchObject({ voters: ['b', 'c'], learners: ['a'], learnersNext: [] });
    expect(left.progress.get('a')!.isLearner).toBe(true);
  });

  it('refuses invalid changes without touching the input', () => {
    const r = base();
    const before = JSON.stringify(confStateOf(r.config));
    expect(() => applyChange(r.config, r.progress, { changes: [{ type: 'removeNode', node: 'a' }, { type: 'removeNode', node: 'b' }, { type: 'removeNode', node: 'c' }] }, 10, W)).toThrow(MooringError);
    expect(() => applyChange(r.config, r.progress, { changes: [] }, 10, W)).toThrow(MooringError); // not joint
    const joint = applyChange(r.config, r.progress, { changes: [{ type: 'addVoter', node: 'd' }], transition: 'joint' }, 10, W);
    expect(() => applyChange(joint.config, joint.progress, { changes: [{ type: 'addVoter', node: 'e' }] }, 10, W)).toThrow(MooringError);
    expect(JSON.stringify(confStateOf(r.config))).toBe(before);
    // The dry run of a demotion must not flip the live progress' learner flag.
    applyChange(r.config, r.progress, { changes: [{ type: 'addLearner', node: 'a' }] }, 10, W);
    expect(r.progress.get('a')!.isLearner).toBe(false);
  });
});
