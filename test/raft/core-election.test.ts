import { describe, expect, it } from 'vitest';
import { Net, tickUntilLeader } from './core-harness.js';
import { CHECK_QUORUM_ELECTION_TIMEOUTS } from '../../src/raft/core/core.js';

const ids = ['a', 'b', 'c'];

describe('elections', () => {
  it('elects one leader per term across many seeds (election safety)', () => {
    for (let seed = 1; seed <= 30; seed++) {
      const net = new Net(['a', 'b', 'c', 'd', 'e'], {}, seed);
      const leadersByTerm = new Map<number, string>();
      for (let i = 0; i < 100; i++) {
        net.tickAll(1);
        for (const n of net.nodes.values()) {
          const st = n.core.status();
          if (st.role !== 'leader') continue;
          const prev = leadersByTerm.get(st.term);
          expect(prev === undefined || prev === n.id, `seed ${seed}: two leaders in term ${st.term}`).toBe(true);
          leadersByTerm.set(st.term, n.id);
        }
      }
      expect(leadersByTerm.size, `seed ${seed}`).toBeGreaterThan(0);
    }
  });

  it('a candidate with a stale log cannot win', () => {
    // Written for a 10-tick timeout: c's last campaign must still be in flight when the partition heals.
    const net = new Net(ids, { preVote: false, checkQuorum: false, electionTimeoutTicks: 10 });
    net.campaign('a');
    net.isolate('c');
    net.proposeStr('a', 'x');
    net.heal();
    // c missed 'x': a and b refuse it even in a higher term.
    net.core('c').campaign();
    net.stabilize();
    expect(net.core('c').status().role).not.toBe('leader');
    expect(net.leaders().length).toBeLessThanOrEqual(1);
  });

  it('pre-vote: a partitioned node rejoining does not disrupt the leader or bump terms', () => {
    const net = new Net(ids, { preVote: true, checkQuorum: true });
    const leader = tickUntilLeader(net, ids);
    const term = net.core(leader).status().term;
    const other = ids.find((x) => x !== leader)!;
    net.isolate(other);
    // The isolated node times out repeatedly; pre-vote keeps its term unchanged.
    net.tickAll(100);
    expect(net.core(other).status().term).toBe(term);
    net.heal();
    net.tickAll(5);
    expect(net.core(leader).status().role).toBe('leader');
    expect(net.core(leader).status().term).toBe(term);
    expect(net.core(other).status().leader).toBe(leader);
  });

  it('without pre-vote, the same rejoin disrupts the term (the control)', () => {
    // Written for a 10-tick timeout: c's last campaign must still be in flight when the partition heals.
    const net = new Net(ids, { preVote: false, checkQuorum: false, electionTimeoutTicks: 10 });
    net.campaign('a');
    const term = net.core('a').status().term;
    net.isolate('c');
    net.tickAll(50, ['c']);
    expect(net.core('c').status().term).toBeGreaterThan(term);
    net.heal();
    net.tickAll(1);
    expect(net.core('a').status().term).toBeGreaterThan(term);
  });

  it('check-quorum: a leader that loses its quorum steps down within CHECK_QUORUM_ELECTION_TIMEOUTS election timeouts', () => {
    const net = new Net(ids, { checkQuorum: true, electionTimeoutTicks: 10 });
    const leader = tickUntilLeader(net, ids);
    net.isolate(leader);
    let steppedDownAfter = -1;
    for (let i = 1; i <= 45; i++) {
      net.tickAll(1, [leader]);
      if (net.core(leader).status().role !== 'leader') {
        steppedDownAfter = i;
        break;
      }
    }
    // Counted from the followers' last answers (just before the cut): neither a tick early (a starved follower gets
    // that long to answer) nor later than the tick after.
    expect(steppedDownAfter).toBeGreaterThanOrEqual(CHECK_QUORUM_ELECTION_TIMEOUTS * 10);
    expect(steppedDownAfter).toBeLessThanOrEqual(CHECK_QUORUM_ELECTION_TIMEOUTS * 10 + 1);
  });

  it('check-quorum: a leader whose followers are silent for more than one election timeout, then answer, keeps leading', () => {
    // Starved followers (CPU, GC): their answers stop for 1.5 election timeouts while their own clocks stand still
    // (so they do not campaign either). One-timeout check-quorum stepped down here and started an election.
    const net = new Net(ids, { checkQuorum: true, electionTimeoutTicks: 10 });
    const leader = tickUntilLeader(net, ids);
    const term = net.core(leader).status().term;
    net.isolate(leader);
    net.tickAll(15, [leader]);
    expect(net.core(leader).status().role).toBe('leader');
    net.heal();
    net.tickAll(30);
    expect(net.core(leader).status().role).toBe('leader');
    expect(net.core(leader).status().term).toBe(term);
  });

  it('check-quorum on hold (a driver catching up a stall before reading its sockets): judged on release, with the answers read', () => {
    for (const answered of [true, false]) {
      const net = new Net(ids, { checkQuorum: true, electionTimeoutTicks: 10 });
      const leader = tickUntilLeader(net, ids);
      const others = ids.filter((x) => x !== leader);
      net.isolate(leader);
      net.core(leader).holdCheckQuorum();
      // The stall: time passes well beyond the check-quorum bound while nothing is read.
      for (let i = 0; i < 2 * CHECK_QUORUM_ELECTION_TIMEOUTS * 10; i++) net.tick([leader]);
      net.stabilize();
      expect(net.core(leader).status().role).toBe('leader');
      if (answered) {
        net.heal();
        net.tickAll(1, [leader]); // a heartbeat round: the followers answer (their clocks stood still)
      }
      net.core(leader).releaseCheckQuorum();
      expect({ answered, role: net.core(leader).status().role }).toEqual({ answered, role: answered ? 'leader' : 'follower' });
      if (answered) for (const f of others) expect(net.core(f).status().leader).toBe(leader);
    }
  });

  it('leader stickiness: followers that hear from a leader ignore a vote request', () => {
    const net = new Net(ids, { preVote: false, checkQuorum: true });
    const leader = tickUntilLeader(net, ids);
    const term = net.core(leader).status().term;
    const [f1, f2] = ids.filter((x) => x !== leader) as [string, string];
    // f1 cannot hear the leader, so it campaigns; f2 still hears the leader and must not vote for f1.
    net.cutLink(leader, f1);
    net.tickAll(40);
    expect(net.core(leader).status().role).toBe('leader');
    expect(net.core(f2).status().leader).toBe(leader);
    expect(net.core(f1).status().role).not.toBe('leader');
    expect(net.core(f2).status().term).toBe(term);
  });

  it('a learner never campaigns', () => {
    const net = new Net(['a', 'b'], {}, 3, ['l']);
    net.tickAll(100, ['l']);
    expect(net.core('l').status().role).toBe('follower');
    expect(net.core('l').status().term).toBe(0);
  });

  it('a restarted node keeps its term and vote', () => {
    const net = new Net(ids);
    net.campaign('a');
    const st = net.core('b').status();
    net.restart('b');
    const st2 = net.core('b').status();
    expect(st2.term).toBe(st.term);
    expect(st2.vote).toBe(st.vote);
    expect(st2.commit).toBe(st.commit);
  });

  it('a node does not campaign while a committed conf change is unapplied', () => {
    const net = new Net(ids, { preVote: false });
    net.campaign('a');
    net.core('a').proposeConfChange({ changes: [{ type: 'addLearner', node: 'l' }] });
    // Deliver to b without letting b process its Readys: b learns the commit but has not applied it.
    for (let i = 0; i < 6; i++) {
      net.processReady('a');
      net.processReady('c');
      net.deliver();
    }
    const b = net.core('b');
    expect(b.status().commit).toBeGreaterThan(b.status().applied);
    const term = b.status().term;
    b.campaign();
    expect(b.status().role).toBe('follower');
    expect(b.status().term).toBe(term);
  });
});
