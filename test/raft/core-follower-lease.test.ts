/**
 * Follower read leases (src/raft/core/follower-lease.ts): the rules one at a time, on the synchronous core harness.
 * The simulator's 'followerLease' read mode checks the whole (linearizability under faults).
 */
import { describe, expect, it } from 'vitest';
import { MooringError } from '../../src/errors.js';
import { FOLLOWER_LEASE_MARGIN_TICKS } from '../../src/raft/core/follower-lease.js';
import type { RaftConfig } from '../../src/raft/core/types.js';
import { enc, Net, tickUntilLeader } from './core-harness.js';

const ids = ['a', 'b', 'c'];
const D = 3;
const opts: Partial<RaftConfig> = { readOnlyOption: 'lease', electionTimeoutTicks: 10, followerLeaseTicks: D };

/** A cluster whose followers hold read leases (they asked, and the leader granted). */
function leasedCluster(seed = 1): { net: Net; leader: string; followers: string[] } {
  const net = new Net(ids, opts, seed);
  const leader = tickUntilLeader(net, ids);
  const followers = ids.filter((x) => x !== leader);
  net.proposeStr(leader, 'first');
  for (const f of followers) expect(net.core(f).followerLeaseRead()).toBeNull(); // not yet: now they ask
  net.tickAll(2);
  for (const f of followers) expect(net.core(f).followerLeaseRead(), `${f} holds a lease`).not.toBeNull();
  return { net, leader, followers };
}

describe('follower read leases: configuration', () => {
  it('needs lease reads, a lease shorter than the election timeout by the margin, and heartbeats inside it', () => {
    expect(() => new Net(ids, { followerLeaseTicks: 3, electionTimeoutTicks: 10 })).toThrow(/readOnlyOption 'lease'/);
    expect(() => new Net(ids, { readOnlyOption: 'lease', electionTimeoutTicks: 6, followerLeaseTicks: 6 - FOLLOWER_LEASE_MARGIN_TICKS })).toThrow(MooringError);
    expect(() => new Net(ids, { readOnlyOption: 'lease', electionTimeoutTicks: 6, followerLeaseTicks: 3 })).not.toThrow();
    expect(() => new Net(ids, { readOnlyOption: 'lease', electionTimeoutTicks: 10, heartbeatIntervalTicks: 3, followerLeaseTicks: 3 })).toThrow(/lapse between heartbeats/);
    expect(() => new Net(ids, { readOnlyOption: 'lease', followerLeaseTicks: -1 })).toThrow(/non-negative/);
  });

  it('off by default: a follower never holds one', () => {
    const net = new Net(ids, { readOnlyOption: 'lease', electionTimeoutTicks: 10 });
    const leader = tickUntilLeader(net, ids);
    const f = ids.find((x) => x !== leader)!;
    net.core(f).followerLeaseRead();
    net.tickAll(3);
    expect(net.core(f).followerLeaseRead()).toBeNull();
    expect(net.log.some((m) => m.leaseAsk !== undefined || m.leaseCommit !== undefined)).toBe(false);
  });
});

describe('follower read leases: reads', () => {
  it('a lease holder answers with no message, at an index holding everything committed', () => {
    const { net, leader, followers } = leasedCluster();
    net.proposeStr(leader, 'x');
    const commit = net.core(leader).commitIndex;
    for (const f of followers) {
      const before = net.log.length;
      const index = net.core(f).followerLeaseRead();
      expect(index).not.toBeNull();
      expect(index!).toBeGreaterThanOrEqual(commit);
      net.stabilize();
      expect(net.log.slice(before).filter((m) => m.type === 'readIndex')).toEqual([]);
      expect(net.core(f).status().applied).toBeGreaterThanOrEqual(index!);
    }
  });

  it('the lease ends on the holder’s own clock once grants stop coming', () => {
    const { net, leader, followers } = leasedCluster();
    const f = followers[0]!;
    net.cutOneWay(leader, f);
    let ticks = 0;
    while (net.core(f).followerLeaseRead() !== null) {
      net.tick([f]);
      ticks++;
      expect(ticks).toBeLessThanOrEqual(D);
    }
    expect(ticks).toBeGreaterThan(0);
  });
});

describe('follower read leases: the commit gate', () => {
  it('nothing commits before every lease holder has it, until its gate runs out', () => {
    const { net, leader, followers } = leasedCluster();
    const [cutOff, other] = followers as [string, string];
    net.cutOneWay(leader, cutOff); // it holds a lease but hears nothing more
    const { index } = net.proposeStr(leader, 'gated');
    net.stabilize();
    // The other follower acknowledged it: a quorum holds it, yet it must not commit (cutOff would read without it).
    expect(net.core(leader).status().progress![other]!.match).toBeGreaterThanOrEqual(index);
    expect(net.core(leader).commitIndex).toBeLessThan(index);
    expect(net.appliedStrings(other)).not.toContain('gated');
    // Meanwhile the cut-off follower still serves under its lease, from a state without the entry: fine, since
    // nobody can have seen it.
    expect(net.core(cutOff).followerLeaseRead()).not.toBeNull();
    expect(net.core(cutOff).followerLeaseRead()!).toBeLessThan(index);
    // The leader stops granting to a follower that does not answer; the gate runs out and the entry commits.
    let ticks = 0;
    while (net.core(leader).commitIndex < index) {
      net.tick();
      net.stabilize();
      ticks++;
      expect(ticks, 'the gate outlasts the lease by the margin only').toBeLessThanOrEqual(D + FOLLOWER_LEASE_MARGIN_TICKS + 1);
    }
    expect(net.core(cutOff).followerLeaseRead()).toBeNull(); // its lease ended before the gate did
    expect(net.appliedStrings(other)).toContain('gated');
  });

  it('no grant to a follower being probed: it would gate every commit behind its catch-up', () => {
    const { net, leader, followers } = leasedCluster();
    const [probed, other] = followers as [string, string];
    net.core(leader).reportUnreachable(probed);
    const start = net.log.length;
    net.tick([leader]); // a heartbeat to each follower
    net.processReady(leader);
    const sent = net.log.slice(start).filter((m) => m.type === 'heartbeat');
    expect(sent.some((m) => m.to === probed)).toBe(true);
    expect(sent.filter((m) => m.to === probed && m.leaseCommit !== undefined)).toEqual([]);
    expect(sent.some((m) => m.to === other && m.leaseCommit !== undefined)).toBe(true);
  });

  it('without lease holders a quorum commits as usual', () => {
    const net = new Net(ids, opts);
    const leader = tickUntilLeader(net, ids);
    const [cutOff] = ids.filter((x) => x !== leader);
    net.cutOneWay(leader, cutOff!);
    const { index } = net.proposeStr(leader, 'quorum');
    net.stabilize();
    expect(net.core(leader).commitIndex).toBeGreaterThanOrEqual(index);
  });
});

describe('follower read leases: leader changes', () => {
  it('a lease holder refuses (pre)votes while its lease holds', () => {
    const { net, followers } = leasedCluster();
    const [f, other] = followers as [string, string];
    const term = net.core(f).currentTerm;
    net.core(f).step({ type: 'preVote', from: other, to: f, term: term + 1, index: 1_000, logTerm: term });
    net.core(f).step({ type: 'vote', from: other, to: f, term: term + 1, index: 1_000, logTerm: term, context: enc('transfer') });
    const rd = net.core(f).ready();
    expect(rd.messages.concat(rd.persistedMessages).filter((m) => m.type === 'preVoteResp' || m.type === 'voteResp')).toEqual([]);
    expect(net.core(f).currentTerm).toBe(term);
    net.core(f).advance(rd);
  });

  it('losing its leader’s connection ends the lease at once', () => {
    const { net, leader, followers } = leasedCluster();
    const f = followers[0]!;
    net.core(f).reportConnectionLost(leader);
    expect(net.core(f).followerLeaseRead()).toBeNull();
  });

  it('time skipped for the election timer (a stall) still ends the lease', () => {
    const { net, followers } = leasedCluster();
    const f = followers[0]!;
    expect(net.core(f).followerLeaseRead()).not.toBeNull();
    net.core(f).skipTicks(D);
    expect(net.core(f).followerLeaseRead()).toBeNull();
  });

  it('a grant echoing an ask of another incarnation is ignored', () => {
    const { net, leader, followers } = leasedCluster();
    const f = followers[0]!;
    const restarted = net.restart(f, { applied: net.core(f).status().applied });
    const term = restarted.core.currentTerm;
    restarted.core.followerLeaseRead(); // wants one
    restarted.core.step({ type: 'heartbeat', from: leader, to: f, term, commit: 0, index: 0, leaseAsk: 0, leaseEpoch: 12345, leaseCommit: 0 });
    expect(restarted.core.followerLeaseRead()).toBeNull();
  });

  it('a transfer waits for the gates it set to run out before timeoutNow', () => {
    const { net, leader, followers } = leasedCluster();
    const to = followers[0]!;
    const start = net.log.length;
    net.core(leader).transferLeadership(to);
    net.stabilize();
    expect(net.log.slice(start).some((m) => m.type === 'timeoutNow')).toBe(false);
    let ticks = 0;
    while (!net.log.slice(start).some((m) => m.type === 'timeoutNow')) {
      net.tick([leader]);
      net.stabilize();
      ticks++;
      expect(ticks).toBeLessThanOrEqual(D + FOLLOWER_LEASE_MARGIN_TICKS + 1);
    }
    net.stabilize();
    expect(net.leaderOf(ids)).toBe(to);
  });

  it('a node whose gates may still run neither campaigns nor votes', () => {
    const { net, leader, followers } = leasedCluster();
    // The leader steps down (a newer term reaches it) with its gates running.
    const term = net.core(leader).currentTerm;
    net.core(leader).step({ type: 'appResp', from: followers[0]!, to: leader, term: term + 5 });
    expect(net.core(leader).status().role).toBe('follower');
    expect(net.core(leader).followerLeaseStatus().gates).toBeGreaterThan(0);
    net.core(leader).campaign();
    expect(net.core(leader).status().role).toBe('follower');
    net.core(leader).step({ type: 'vote', from: followers[1]!, to: leader, term: term + 5, index: 1_000, logTerm: term + 5 });
    const rd = net.core(leader).ready();
    expect(rd.messages.concat(rd.persistedMessages).filter((m) => m.type === 'voteResp' && m.reject !== true)).toEqual([]);
    net.core(leader).advance(rd);
  });

  it('no grants in a configuration of more than three voters', () => {
    const five = ['a', 'b', 'c', 'd', 'e'];
    const net = new Net(five, opts);
    const leader = tickUntilLeader(net, five);
    net.proposeStr(leader, 'x');
    const f = five.find((x) => x !== leader)!;
    net.core(f).followerLeaseRead();
    net.tickAll(3);
    expect(net.core(f).followerLeaseRead()).toBeNull();
    expect(net.log.some((m) => m.leaseCommit !== undefined)).toBe(false);
  });
});
