/**
 * A node whose storage cut a damaged end of its log that may have been acknowledged (HardState.recovering,
 * src/raft/wal/wal.ts "Recovery") never campaigns, and votes only for a candidate at least as up to date as the log it
 * had before the cut (HardState.recoveringBound), until a leader has brought it up to date. The control
 * case shows what that prevents: the same node voting loses a committed entry (the simulator's seed 11139).
 */
import { describe, expect, it } from 'vitest';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import { validateMessage } from '../../src/raft/core/validate.js';
import { Net, dec, type SimNode } from './core-harness.js';
import type { LogPosition } from '../../src/raft/core/types.js';

const ids = ['a', 'b', 'c'];

/** Restarts `id` from a copy of its storage without the entries after `keep` (its damaged last batch was cut). */
function loseTail(net: Net, id: string, keep: number, recovering: boolean, bound?: LogPosition): SimNode {
  const old = net.node(id).storage;
  const s = MemoryStorage.withVoters(ids);
  s.append(old.entries(old.firstIndex(), keep + 1, Number.POSITIVE_INFINITY));
  const hs = old.hardStateNow();
  s.setHardState({ term: hs.term, vote: hs.vote, commit: Math.min(hs.commit, keep), ...(recovering ? { recovering: true } : {}), ...(bound !== undefined ? { recoveringBound: bound } : {}) });
  return net.addNode(id, s, { applied: 0 });
}

function entryAt(n: SimNode, index: number): string | undefined {
  if (index > n.storage.lastIndex()) return undefined;
  return dec(n.storage.entries(index, index + 1, Number.POSITIVE_INFINITY)[0]!.data);
}

/**
 * a leads; 'x' is committed by a and b only (c misses it, unless `cHasX`); then b loses 'x' and restarts; a is cut
 * off. `bound(term, x)`: what b's storage knows of the end of its log before the cut.
 */
function scenario(recovering: boolean, bound?: (term: number, x: number) => LogPosition, cHasX = false): { net: Net; x: number } {
  const net = new Net(ids, { preVote: false, checkQuorum: false, electionTimeoutTicks: 10 });
  net.campaign('a');
  if (!cHasX) net.cutOneWay('a', 'c');
  const x = net.proposeStr('a', 'x').index;
  expect(net.core('a').status().commit).toBe(x); // acknowledged: committed with b's ack
  expect(net.node('c').storage.lastIndex()).toBe(cHasX ? x : x - 1);
  loseTail(net, 'b', x - 1, recovering, bound?.(net.core('a').status().term, x));
  net.heal();
  net.isolate('a');
  net.core('c').campaign();
  net.stabilize();
  return { net, x };
}

describe('recovering a cut log (HardState.recovering)', () => {
  it('control: a node that lost an acknowledged entry and votes lets a leader without it overwrite a committed entry', () => {
    const { net, x } = scenario(false);
    expect(net.core('c').status().role).toBe('leader'); // b voted for c
    net.proposeStr('c', 'y');
    expect(entryAt(net.node('c'), x)).not.toBe('x');
    expect(net.core('c').status().commit).toBeGreaterThanOrEqual(x); // a different entry committed at x
  });

  it('a recovering node refuses votes, so no leader without the committed entry can be elected', () => {
    const { net } = scenario(true);
    expect(net.core('c').status().role).not.toBe('leader');
    expect(net.core('b').isRecovering).toBe(true);
    // Nor does it campaign itself (its own vote would count the same way).
    const term = net.core('b').status().term;
    net.core('b').campaign();
    net.stabilize();
    expect(net.core('b').status().role).toBe('follower');
    expect(net.core('b').status().term).toBe(term);
    net.tickAll(50, ['b', 'c']);
    expect(net.leaderOf(['b', 'c'])).toBeUndefined();
  });

  it('knowing the end of the log it lost, it votes for a candidate at least that up to date: one node down, the other two elect', () => {
    const { net, x } = scenario(true, (term, index) => ({ index, term }), true);
    expect(net.core('c').status().role).toBe('leader'); // b's vote: c holds x
    expect(net.core('b').isRecovering).toBe(true);
    net.proposeStr('c', 'y');
    net.tickAll(5, ['b', 'c']);
    expect(net.core('b').isRecovering).toBe(false);
    for (const id of ['b', 'c']) expect(entryAt(net.node(id), x), id).toBe('x');
  });

  it('knowing the end of the log it lost, it still refuses a candidate without it (the committed entry survives)', () => {
    const { net } = scenario(true, (term, index) => ({ index, term }));
    expect(net.core('c').status().role).not.toBe('leader');
    net.tickAll(50, ['b', 'c']);
    expect(net.leaderOf(['b', 'c'])).toBeUndefined();
  });

  it('control: a bound short of what it acknowledged would elect a leader without the committed entry', () => {
    const { net, x } = scenario(true, (term, index) => ({ index: index - 1, term }));
    expect(net.core('c').status().role).toBe('leader');
    net.proposeStr('c', 'y');
    expect(entryAt(net.node('c'), x)).not.toBe('x');
  });

  it('the leader brings it up to date (its earlier acks voided), then it votes again and the committed entry survives', () => {
    const { net, x } = scenario(true);
    net.heal();
    for (let i = 0; i < 200 && net.leaders().length === 0; i++) net.tickAll(1);
    net.tickAll(30);
    const leader = net.leaders()[0]!;
    expect(leader).not.toBe('b');
    net.proposeStr(leader, 'y');
    net.tickAll(5); // a heartbeat carries `recovered` once b's match passed the recovery point
    expect(net.core('b').isRecovering).toBe(false);
    expect(net.node('b').storage.hardStateNow().recovering).toBeUndefined();
    for (const id of ids) expect(entryAt(net.node(id), x), id).toBe('x');
    // b votes again: with a cut off, b and c elect a leader between them.
    net.isolate(leader);
    const rest = ids.filter((id) => id !== leader);
    for (let i = 0; i < 200 && net.leaderOf(rest) === undefined; i++) net.tickAll(1, rest);
    expect(net.leaderOf(rest)).toBeDefined();
  });

  it('the leader voids the acks from before the cut and resends what the follower lost', () => {
    const net = new Net(ids, { preVote: false, checkQuorum: false, electionTimeoutTicks: 10 });
    net.campaign('a');
    net.cutOneWay('a', 'c');
    const x = net.proposeStr('a', 'x').index;
    // b's old incarnation acknowledged x: a counts b's match as x until b says it is recovering.
    const bMatch = (): number => net.core('a').status().progress!['b']!.match;
    expect(bMatch()).toBe(x);
    loseTail(net, 'b', x - 1, true);
    net.heal();
    net.tickAll(3); // heartbeats: b answers flagged; a finds the match again and resends x
    expect(entryAt(net.node('b'), x)).toBe('x');
    expect(net.core('b').isRecovering).toBe(false);
  });

  it('a late duplicate of a flagged response, after the recovery ended, does not start it again (simulator seed 908)', () => {
    const net = new Net(ids, { preVote: false, checkQuorum: false, electionTimeoutTicks: 10 });
    net.campaign('a');
    net.cutOneWay('a', 'c');
    const x = net.proposeStr('a', 'x').index;
    loseTail(net, 'b', x - 1, true);
    net.heal();
    net.tickAll(3);
    expect(net.core('b').isRecovering).toBe(false);
    const flagged = net.log.find((m) => m.from === 'b' && m.to === 'a' && m.recovering !== undefined)!;
    expect(flagged).toBeDefined();
    net.queue.push({ ...flagged }); // the network delivers it again, late
    net.stabilize();
    const y = net.proposeStr('a', 'y').index;
    net.tickAll(3);
    expect(net.core('a').status().progress!['b']!.match).toBe(y);
    expect(entryAt(net.node('b'), y)).toBe('y');
  });

  it('a sole voter has no one to learn from: it starts without recovering', () => {
    const s = MemoryStorage.withVoters(['a']);
    s.setHardState({ term: 3, vote: 'a', commit: 0, recovering: true });
    const net = new Net([], {});
    net.addNode('a', s);
    expect(net.core('a').isRecovering).toBe(false);
    net.campaign('a');
    expect(net.core('a').status().role).toBe('leader');
  });

  it('recovery markers on the wire must be positive integers', () => {
    const base = { type: 'appResp', from: 'b', to: 'a', term: 1, index: 3 };
    expect(validateMessage({ ...base, recovering: 7 }).recovering).toBe(7);
    expect(() => validateMessage({ ...base, recovering: true })).toThrow();
    expect(() => validateMessage({ ...base, recovered: -1 })).toThrow();
  });
});
