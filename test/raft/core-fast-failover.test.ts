/**
 * Fast failover (RaftCore.reportConnectionLost): a follower that saw its leader's connection reset pre-votes
 * without waiting for its election timeout; a flapping connection cannot depose a healthy leader.
 * Election timeout 10 ticks in every test: "a leader within 2 ticks" can only come from the fast path.
 */
import { describe, expect, it } from 'vitest';
import { Net } from './core-harness.js';

const ids = ['a', 'b', 'c'];
const opts = { electionTimeoutTicks: 10 };

function leaderWithin(net: Net, among: string[], ticks: number): string | undefined {
  for (let i = 0; i <= ticks; i++) {
    const l = net.leaderOf(among);
    if (l !== undefined) return l;
    if (i < ticks) net.tickAll(1, among);
  }
  return undefined;
}

/** A cluster with a leader, in a term that varies with the seed (the succession order rotates with it). */
function ledNet(seed: number): { net: Net; old: string; term: number } {
  const net = new Net(ids, opts, seed);
  net.campaign('a');
  for (let k = 0; k < seed % 3; k++) net.campaign(k % 2 === 0 ? 'b' : 'a');
  const old = net.leaders()[0]!;
  return { net, old, term: net.core(old).status().term };
}

describe('fast failover on connection loss', () => {
  it('followers that lose the leader connection elect a new leader without an election timeout, in one term', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const { net, old, term } = ledNet(seed);
      net.proposeStr(old, `x${seed}`);
      net.isolate(old); // the leader process died: its peers see resets
      const rest = ids.filter((x) => x !== old);
      const order = seed % 2 === 0 ? rest : [...rest].reverse();
      for (const id of order) {
        expect(net.core(id).reportConnectionLost(old), `seed ${seed}`).toBe(true);
        if (seed % 4 < 2) net.stabilize(); // sometimes the first pre-vote arrives before the other saw the reset
      }
      net.stabilize();
      const leader = leaderWithin(net, rest, 2);
      expect(leader, `seed ${seed}: no leader within 2 ticks`).toBeDefined();
      expect(net.core(leader!).status().term, `seed ${seed}: split vote or extra term`).toBe(term + 1);
      const fast = rest.reduce((n, id) => n + net.core(id).fastPreVotes, 0);
      expect(fast, `seed ${seed}`).toBeGreaterThan(0);
      expect(net.appliedStrings(leader!)).toContain(`x${seed}`);
    }
  });

  it('a pre-vote ignored while the voter still heard the leader is granted once it loses the leader too (no tick needed)', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const net = new Net(ids, opts, seed);
      net.campaign('a');
      const term = net.core('a').status().term;
      net.isolate('a');
      for (const id of seed % 2 === 0 ? ['b', 'c'] : ['c', 'b']) { // the one first in line reports first or second
        net.core(id).reportConnectionLost('a');
        net.stabilize(); // the first one's pre-vote reaches the other while it is still in the leader's lease
      }
      expect(leaderWithin(net, ['b', 'c'], 0), `seed ${seed}`).toBeDefined();
      expect(net.core(net.leaderOf(['b', 'c'])!).status().term).toBe(term + 1);
    }
  });

  it('takeUrgentMessages hands out the pre-vote at once (before the Ready that carries it)', () => {
    const net = new Net(ids, opts, 2);
    net.campaign('a');
    net.isolate('a');
    const b = net.core('b');
    b.reportConnectionLost('a');
    b.reportConnectionLost('a'); // idempotent: the leader is already forgotten
    const st = b.status();
    const msgs = b.takeUrgentMessages();
    if (st.role === 'preCandidate') {
      expect(msgs.map((m) => m.type).sort()).toEqual(['preVote', 'preVote']);
      expect(b.takeUrgentMessages()).toEqual([]);
    } else {
      expect(msgs).toEqual([]); // not first in line: it waits 2 ticks
    }
  });

  it('with fastFailover off (or without a report: a black hole) the followers wait for the election timeout', () => {
    for (const variant of ['off', 'no-report'] as const) {
      const net = new Net(ids, { ...opts, ...(variant === 'off' ? { fastFailover: false } : {}) }, 7);
      net.campaign('a');
      net.isolate('a');
      if (variant === 'off') for (const id of ['b', 'c']) expect(net.core(id).reportConnectionLost('a')).toBe(false);
      net.stabilize();
      expect(leaderWithin(net, ['b', 'c'], 2), variant).toBeUndefined();
      expect(leaderWithin(net, ['b', 'c'], 40), variant).toBeDefined();
      expect(net.core('b').fastPreVotes + net.core('c').fastPreVotes).toBe(0);
    }
  });

  it('a black-holed leader (no reset): the first in succession order campaigns at the election timeout, one term, no split vote', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const { net, old, term } = ledNet(seed);
      net.isolate(old);
      const rest = ids.filter((x) => x !== old);
      // The survivors' tick phases differ by up to a tick (their timers are not aligned).
      if (seed % 2 === 0) net.tickAll(1, [rest[seed % 4 < 2 ? 0 : 1]!]);
      // Random timeouts in [10, 20) ticks would often need more than 11 ticks, and split the vote when two survivors
      // draw the same tick.
      const leader = leaderWithin(net, rest, opts.electionTimeoutTicks + 1);
      expect(leader, `seed ${seed}: no leader within the election timeout + 1 tick`).toBeDefined();
      expect(net.core(leader!).status().term, `seed ${seed}: split vote or extra term`).toBe(term + 1);
    }
  });

  it('a follower whose connection flaps does not disrupt a healthy leader (its pre-vote fails while a quorum hears it)', () => {
    for (let seed = 1; seed <= 10; seed++) {
      const net = new Net(ids, opts, seed);
      net.campaign('a');
      const term = net.core('a').status().term;
      for (const follower of ['b', 'c']) {
        // The connection resets and stays down long enough for the pre-vote to go out (up to 2 ticks of delay).
        net.cutLink('a', follower);
        expect(net.core(follower).reportConnectionLost('a')).toBe(true);
        net.stabilize();
        net.tickAll(3);
        expect(net.core(follower).fastPreVotes, `seed ${seed}`).toBe(1);
        net.heal();
        net.tickAll(3);
        expect(net.leaders(), `seed ${seed}`).toEqual(['a']);
        for (const id of ids) {
          expect(net.core(id).status().term, `seed ${seed} ${id}`).toBe(term);
          expect(net.core(id).status().leader).toBe('a');
        }
      }
    }
  });

  /**
   * Leader a in term 1 (succession order: c, then b), one survivor behind in the log (c in odd seeds: the first in
   * order cannot win), the leader gone.
   */
  function behindSetup(seed: number): { net: Net; old: string; behind: string; ahead: string; term: number } {
    const net = new Net(ids, opts, seed);
    net.campaign('a');
    const old = 'a';
    const [behind, ahead] = seed % 2 === 1 ? ['c', 'b'] : ['b', 'c'];
    const term = net.core(old).status().term;
    net.cutLink(old, behind);
    net.proposeStr(old, 'not-on-behind');
    net.isolate(old);
    net.heal();
    net.isolate(old);
    return { net, old, behind, ahead, term };
  }

  it('a follower behind in the log cannot win; the next in line, refusing it, campaigns at once', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const { net, old, behind, ahead, term } = behindSetup(seed);
      for (const id of [behind, ahead]) net.core(id).reportConnectionLost(old);
      net.stabilize();
      // Not after its 2-tick place in line: the refusal itself starts its pre-vote.
      expect(leaderWithin(net, [behind, ahead], 0), `seed ${seed}`).toBe(ahead);
      expect(net.core(ahead).status().term, `seed ${seed}`).toBe(term + 1);
    }
  });

  it('a follower behind in the log asked first, while the next in line still heard the leader: that one campaigns at its own reset', () => {
    // Seen in the failover bench: the first in line, a few entries behind, pre-voted; the other ignored it (in lease),
    // then saw the reset itself, could not grant the remembered pre-vote, and waited its 2-tick place (50 ms).
    for (let seed = 1; seed <= 12; seed++) {
      const { net, old, behind, ahead, term } = behindSetup(seed);
      net.core(behind).reportConnectionLost(old);
      net.stabilize(); // its pre-vote reaches `ahead` while `ahead` is still in the old leader's lease: ignored
      net.core(ahead).reportConnectionLost(old);
      net.stabilize();
      expect(leaderWithin(net, [behind, ahead], 0), `seed ${seed}`).toBe(ahead);
      expect(net.core(ahead).status().term, `seed ${seed}`).toBe(term + 1);
    }
  });

  it('a black hole with the first in order behind in the log: the next one campaigns when its lease ends, not 2 ticks later', () => {
    for (let seed = 1; seed <= 12; seed++) {
      const { net, behind, ahead, term } = behindSetup(seed);
      if (seed % 3 === 0) net.tickAll(1, [behind]); // timers are not aligned
      expect(leaderWithin(net, [behind, ahead], opts.electionTimeoutTicks + 1), `seed ${seed}`).toBe(ahead);
      expect(net.core(ahead).status().term, `seed ${seed}`).toBe(term + 1);
    }
  });

  it('lease reads: a follower that restarted and heard the leader at once grants the first in line after the reset', () => {
    // The startup lease (refuse votes for one election timeout after a restart, as if a leader was just heard) ended
    // only when the node's own election timer expired, which never happens to a follower that hears heartbeats. Such a
    // follower ignored every pre-vote for as long as it ran: after a leader's reset the first in line failed, and the
    // second won 2 ticks (50 ms) later (the failover bench: every other round of leader SIGKILLs).
    for (let seed = 1; seed <= 12; seed++) {
      const net = new Net(ids, { ...opts, readOnlyOption: 'lease' }, seed);
      net.tickAll(40);
      const old = net.leaders()[0]!;
      const rest = ids.filter((x) => x !== old);
      for (const id of rest) {
        net.restart(id);
        net.tickAll(3); // heartbeats reset its election timer: it never times out
      }
      net.proposeStr(old, `x${seed}`);
      const term = net.core(old).status().term;
      net.isolate(old);
      for (const id of seed % 2 === 0 ? rest : [...rest].reverse()) net.core(id).reportConnectionLost(old);
      net.stabilize();
      const leader = leaderWithin(net, rest, 0);
      expect(leader, `seed ${seed}: no leader without a tick`).toBeDefined();
      expect(net.core(leader!).status().term, `seed ${seed}`).toBe(term + 1);
    }
  });

  it('reports about a peer that is not the leader change nothing', () => {
    const net = new Net(ids, opts, 3);
    net.campaign('a');
    expect(net.core('b').reportConnectionLost('c')).toBe(false);
    expect(net.core('b').status().leader).toBe('a');
    expect(net.core('a').reportConnectionLost('b')).toBe(false);
    expect(net.leaders()).toEqual(['a']);
  });

  it('a leader stops counting the lease acknowledgement of a peer whose connection it lost', () => {
    const net = new Net(ids, { ...opts, readOnlyOption: 'lease' }, 5);
    net.tickAll(40);
    const leader = net.leaders()[0]!;
    net.tickAll(2);
    expect(net.core(leader).hasLease()).toBe(true);
    const others = ids.filter((x) => x !== leader);
    net.core(leader).reportConnectionLost(others[0]!);
    expect(net.core(leader).hasLease()).toBe(true); // the other follower still makes a quorum
    net.core(leader).reportConnectionLost(others[1]!);
    expect(net.core(leader).hasLease()).toBe(false);
    net.tickAll(1); // the next heartbeat round acknowledges again
    expect(net.core(leader).hasLease()).toBe(true);
  });

  it('needs pre-vote and check-quorum', () => {
    expect(() => new Net(ids, { fastFailover: true, checkQuorum: false })).toThrow(/fastFailover needs preVote and checkQuorum/);
    expect(() => new Net(ids, { fastFailover: true, preVote: false })).toThrow(/fastFailover needs/);
  });
});
