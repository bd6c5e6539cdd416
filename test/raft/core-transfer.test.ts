import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { enc, Net } from './core-harness.js';

const ids = ['a', 'b', 'c'];

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof MooringError ? e.code : 'other';
  }
  return undefined;
}

describe('leadership transfer', () => {
  it('transfers to an up-to-date follower at once (timeoutNow)', () => {
    const net = new Net(ids);
    net.campaign('a');
    net.proposeStr('a', 'x');
    const term = net.core('a').status().term;
    net.core('a').transferLeadership('b');
    net.stabilize();
    expect(net.core('b').status().role).toBe('leader');
    expect(net.core('b').status().term).toBe(term + 1);
    expect(net.core('a').status().role).toBe('follower');
    expect(net.core('a').status().leader).toBe('b');
    net.proposeStr('b', 'y');
    expect(net.appliedStrings('a')).toEqual(['x', 'y']);
  });

  it('catches a lagging target up first, refusing proposals meanwhile', () => {
    const net = new Net(ids);
    net.campaign('a');
    net.isolate('c');
    for (let i = 0; i < 5; i++) net.proposeStr('a', `v${i}`);
    net.heal();
    net.core('a').transferLeadership('c');
    expect(code(() => net.core('a').propose(enc('no')))).toBe(ErrorCode.LEADERSHIP_TRANSFER_IN_PROGRESS);
    // c is behind: no timeoutNow until it has caught up.
    const rd = net.core('a').ready();
    expect(rd.messages.some((m) => m.type === 'timeoutNow')).toBe(false);
    net.queue.push(...rd.messages, ...rd.persistedMessages);
    net.core('a').advance(rd);
    net.stabilize();
    expect(net.core('c').status().role).toBe('leader');
    expect(net.appliedStrings('c')).toEqual(['v0', 'v1', 'v2', 'v3', 'v4']);
  });

  it('aborts after an election timeout when the target does not take over', () => {
    const net = new Net(ids, { electionTimeoutTicks: 10 });
    net.campaign('a');
    net.isolate('c');
    net.core('a').transferLeadership('c');
    expect(net.core('a').status().leadTransferee).toBe('c');
    net.tickAll(12, ['a', 'b']);
    expect(net.core('a').status().role).toBe('leader');
    expect(net.core('a').status().leadTransferee).toBe(null);
    net.proposeStr('a', 'after-abort');
    expect(net.appliedStrings('b')).toEqual(['after-abort']);
  });

  it('a forced (transfer) vote overrides leader stickiness', () => {
    const net = new Net(ids, { checkQuorum: true, preVote: true });
    net.campaign('a');
    // Followers have just heard from a: a normal vote would be ignored, the transfer vote is not.
    net.core('a').transferLeadership('c');
    net.stabilize();
    expect(net.core('c').status().role).toBe('leader');
  });

  it('refuses to transfer on a follower (NOT_LEADER) or to a non-voter', () => {
    const net = new Net(ids);
    net.campaign('a');
    expect(code(() => net.core('b').transferLeadership('c'))).toBe(ErrorCode.NOT_LEADER);
    expect(code(() => net.core('a').transferLeadership('zz'))).toBe(ErrorCode.INVALID_ARGUMENT);
  });
});
