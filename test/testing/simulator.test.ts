import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  describeFailure,
  InvariantChecker,
  KvMachine,
  encodeCommand,
  runSchedule,
  scheduleArb,
  scheduleForSeed,
  SimNetwork,
  Simulator,
  type Schedule,
} from '../../src/testing/index.js';
import { SeededRng } from '../../src/util/rng.js';
import type { Entry, Message } from '../../src/raft/core/types.js';

const msg = (from: string, to: string, term = 1): Message => ({ type: 'heartbeat', from, to, term });

describe('SimNetwork', () => {
  it('delivers after the delay, honours symmetric and one-way cuts, and heals', () => {
    const net = new SimNetwork(new SeededRng(1), { minDelayTicks: 2, maxDelayTicks: 2 });
    net.send(msg('a', 'b'), 0);
    expect(net.deliverDue(1)).toEqual([]);
    expect(net.deliverDue(2)).toHaveLength(1);
    net.partition([['a'], ['b', 'c']], ['a', 'b', 'c']);
    net.send(msg('a', 'b'), 2);
    net.send(msg('b', 'c'), 2);
    expect(net.deliverDue(4).map((m) => `${m.from}${m.to}`)).toEqual(['bc']);
    net.heal();
    net.cutOneWay('a', 'b');
    net.send(msg('a', 'b'), 4);
    net.send(msg('b', 'a'), 4);
    expect(net.deliverDue(6).map((m) => `${m.from}${m.to}`)).toEqual(['ba']);
    // A cut made while a message is in flight swallows it.
    net.heal();
    net.send(msg('c', 'a'), 6);
    net.partition([['a'], ['c']], ['a', 'c']);
    expect(net.deliverDue(8)).toEqual([]);
  });

  it('drops, duplicates and reorders at the configured rates', () => {
    const net = new SimNetwork(new SeededRng(2), { minDelayTicks: 1, maxDelayTicks: 1, maxReorderExtraTicks: 5 });
    net.rates = { drop: 0.5, duplicate: 0, reorder: 0 };
    for (let i = 0; i < 1000; i++) net.send(msg('a', 'b', i), 0);
    const got = net.deliverDue(1).length;
    expect(got).toBeGreaterThan(400);
    expect(got).toBeLessThan(600);
    net.rates = { drop: 0, duplicate: 1, reorder: 0 };
    net.send(msg('a', 'b', 7), 10);
    expect(net.deliverDue(11)).toHaveLength(2);
    net.rates = { drop: 0, duplicate: 0, reorder: 1 };
    for (let i = 0; i < 20; i++) net.send(msg('a', 'b', i), 20);
    const order: number[] = [];
    for (let t = 21; t < 30; t++) order.push(...net.deliverDue(t).map((m) => m.term));
    expect(order).toHaveLength(20);
    expect(order).not.toEqual([...order].sort((x, y) => x - y));
  });
});

describe('KvMachine', () => {
  it('applies a retried write once and answers it with the first reply; snapshots round-trip', () => {
    const m = new KvMachine();
    m.apply(1, encodeCommand({ t: 'put', c: 1, s: 1, k: 'x', v: 'a' }));
    const first = m.apply(2, encodeCommand({ t: 'cas', c: 2, s: 1, k: 'x', e: 'a', v: 'b' }));
    expect(first).toMatchObject({ reply: { ok: true }, duplicate: false });
    const again = m.apply(3, encodeCommand({ t: 'cas', c: 2, s: 1, k: 'x', e: 'a', v: 'b' }));
    expect(again).toMatchObject({ reply: { ok: true }, duplicate: true });
    m.apply(4, encodeCommand({ t: 'append', c: 1, s: 2, k: 'x', v: '!' }));
    m.apply(5, encodeCommand({ t: 'append', c: 1, s: 2, k: 'x', v: '!' }));
    expect(m.get('x')).toBe('b!');
    const r = KvMachine.restore(m.snapshot());
    expect(r.digest()).toBe(m.digest());
    expect(r.appliedIndex).toBe(5);
    expect(r.apply(6, encodeCommand({ t: 'append', c: 1, s: 2, k: 'x', v: '!' }))!.duplicate).toBe(true);
    expect(() => r.apply(6, new Uint8Array())).toThrow();
  });
});

describe('InvariantChecker', () => {
  const e = (index: number, term: number, s: string): Entry => ({ index, term, type: 'normal', data: new TextEncoder().encode(s) });

  it('reports each kind of violation it is fed', () => {
    const c = new InvariantChecker();
    c.onLeader('a', 3);
    c.onLeader('a', 3);
    expect(c.violations).toEqual([]);
    c.onLeader('b', 3);
    expect(c.violations[0]).toContain('election safety');

    const d = new InvariantChecker();
    d.onApply('a', e(1, 1, 'x'));
    d.onApply('b', e(1, 1, 'y'));
    expect(d.violations[0]).toContain('state-machine safety');
    d.onApply('a', e(3, 1, 'z'));
    expect(d.violations[1]).toContain('monotonic applied');

    const f = new InvariantChecker();
    f.onCommit('a', 5);
    f.onCommit('a', 4);
    expect(f.violations[0]).toContain('monotonic commit');
    f.onRestart('a', 2, 5, 0);
    expect(f.violations[1]).toContain('below its durable commit');

    const g = new InvariantChecker();
    g.checkLogs([
      { node: 'a', snapshotIndex: 0, snapshotTerm: 0, entries: [e(1, 1, 'x'), e(2, 2, 'y')] },
      { node: 'b', snapshotIndex: 0, snapshotTerm: 0, entries: [e(1, 1, 'q'), e(2, 2, 'y')] },
    ]);
    expect(g.violations[0]).toContain('log matching');
    g.onPersisted('a', [e(7, 4, 'x')]);
    g.onPersisted('b', [e(7, 4, 'y')]);
    expect(g.violations[1]).toContain('log matching');

    const h = new InvariantChecker();
    h.onApply('a', e(1, 1, 'x'));
    h.checkLeaderCompleteness('b', 2, { node: 'b', snapshotIndex: 0, snapshotTerm: 0, entries: [e(1, 2, 'other')] });
    expect(h.violations[0]).toContain('leader completeness');
  });
});

describe('Simulator', () => {
  const quiet: Schedule = { voters: 3, spares: 0, faultTicks: 200, events: [] };

  it('without faults elects one leader, serves clients linearizably and keeps replicas equal', () => {
    const r = runSchedule(7, quiet);
    expect(r.violations).toEqual([]);
    expect(r.linearizable).toBe(true);
    expect(r.livenessOk).toBe(true);
    expect(r.stats.operations).toBeGreaterThan(30);
    expect(r.stats.leaderChanges).toBe(1);
    const sim = new Simulator(3);
    sim.run(300);
    expect(sim.leader()).not.toBeNull();
    sim.clients!.active = false;
    sim.run(60);
    // Every replica applied the same commands: equal data, and something was written.
    expect(new Set(sim.ids.map((id) => sim.node(id).sm.digest())).size).toBe(1);
    expect(sim.node('n1').sm.digest()).not.toBe('[]');
  });

  it('is deterministic: same seed and schedule give the same trace hash; another seed does not', () => {
    const schedule = scheduleForSeed(1234);
    const a = runSchedule(99, schedule);
    const b = runSchedule(99, schedule);
    const c = runSchedule(100, schedule);
    expect(a.traceHash).toBe(b.traceHash);
    expect(a.stats).toEqual(b.stats);
    expect(c.traceHash).not.toBe(a.traceHash);
    // A schedule is a pure function of its seed.
    expect(scheduleForSeed(1234)).toEqual(schedule);
  });

  it('pipelined storage writes (the Ready loop\'s): Readies are taken while earlier ones persist; maxInflightSaves 1 is serial; both keep every check', () => {
    for (const seed of [3, 4, 5]) {
      const schedule = scheduleForSeed(seed);
      const slow = { slowPersistProbability: 0.5 }; // saves that take 1-2 ticks, so later Readies can overlap them
      const piped = runSchedule(seed, schedule, { sim: slow });
      const serial = runSchedule(seed, schedule, { sim: { ...slow, maxInflightSaves: 1 } });
      for (const r of [piped, serial]) {
        expect({ seed, violations: r.violations, linearizable: r.linearizable, live: r.livenessOk }).toEqual({ seed, violations: [], linearizable: true, live: true });
      }
      expect(piped.stats.readiesOverlapped).toBeGreaterThan(0);
      expect(serial.stats.readiesOverlapped).toBe(0);
    }
  });

  it('crashes lose the Ready being persisted', () => {
    // Persistence always slow, frequent crashes: some crash must land inside a persistence window.
    const sched: Schedule = {
      voters: 3, spares: 0, faultTicks: 300,
      events: Array.from({ length: 20 }, (_, i) => ({ at: 10 + i * 14, kind: 'crash' as const, node: i, duration: 3 })),
    };
    const r = runSchedule(5, sched, { sim: { slowPersistProbability: 1, maxPersistDelayTicks: 3 } });
    expect(r.stats.readiesLostInCrash).toBeGreaterThan(0);
    expect(r.violations).toEqual([]);
    expect(r.linearizable).toBe(true);
    expect(r.livenessOk).toBe(true);
  });

  it('follower read leases: reads served by followers with no round stay linearizable under faults (seeds 1–200)', () => {
    // Reads go to any node; a follower holding a lease serves them from its state. Seeds 688 and 1214 are where the
    // same build without the leader's commit gate (an entry committed on a quorum while a lease holder lacked it)
    // returned a stale read (docs/raft.md, "Follower read leases").
    let leaseReads = 0;
    for (const seed of [688, 1214, ...Array.from({ length: 200 }, (_, i) => i + 1)]) {
      const schedule = scheduleForSeed(seed, { readModes: ['followerLease'] });
      const r = runSchedule(seed, schedule);
      if (r.violations.length > 0 || !r.linearizable || !r.livenessOk) console.error(describeFailure(seed, schedule, r));
      expect(r.violations, `seed ${seed}`).toEqual([]);
      expect(r.linearizable, `seed ${seed}`).toBe(true);
      expect(r.livenessOk, `seed ${seed}`).toBe(true);
      leaseReads += r.stats.followerLeaseReads;
    }
    expect(leaseReads, 'followers served reads under their leases').toBeGreaterThan(1_000);
  });

  it('property: random fault schedules keep every invariant, linearizability and liveness (500 runs)', () => {
    let runs = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0x7fffffff }),
        scheduleArb({ readModes: ['readIndex', 'readIndex', 'lease'] }),
        (seed, schedule) => {
          runs++;
          const r = runSchedule(seed, schedule);
          const ok = r.violations.length === 0 && r.linearizable && r.livenessOk;
          if (!ok) console.error(describeFailure(seed, schedule, r));
          return ok;
        },
      ),
      // fast-check prints { seed, path } on failure: SIM_FC_SEED=<seed> SIM_FC_PATH=<path> replays it.
      {
        numRuns: 500,
        ...(process.env.SIM_FC_SEED ? { seed: Number(process.env.SIM_FC_SEED) } : {}),
        ...(process.env.SIM_FC_PATH ? { path: process.env.SIM_FC_PATH } : {}),
      },
    );
    expect(runs).toBeGreaterThanOrEqual(500);
  });
});
