// Read leases in the full-node simulator (src/testing/fullnode/sim-leases.ts): the lease check holds on random fault
// schedules, a control that breaks the design is caught, and scripted failovers the random schedules found.
import { describe, expect, it } from 'vitest';
import { FullSim } from '../../src/testing/fullnode/full-sim.js';
import { fullScheduleForSeed, runFullNodeSchedule } from '../../src/testing/fullnode/full-schedule.js';
import { coverMarginMs, maxClockRateRatio } from '../../src/master/follower-lease-cover.js';

/** A 3-voter cluster without random clients, leases of `ttlMs`, and one complete object 'x'. */
async function clusterWithObject(seed: number, ttlMs: number): Promise<FullSim> {
  const sim = new FullSim(seed, { workload: { clients: 0 }, leases: { ttlMs } });
  await sim.start();
  await sim.startWorkload();
  expect(await sim.put('x')).toBe(true);
  expect(await sim.settle(sim.workload!.run('script', 100, 'putEnd', 'x'))).toBe(true);
  return sim;
}

describe('read leases in the full-node simulator', () => {
  it('the lease check is exercised: leased reads, removes refused by a lease and removes applied, no violation', async () => {
    let covered = 0;
    let compact = 0;
    let binary = 0;
    // (7 replaced 6 once vote requests left before the candidate's vote was durable: 6 then applied no remove.)
    for (const seed of [1, 2, 3, 7]) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
      expect({ seed, violations: r.violations, linearizable: r.linearizable }).toEqual({ seed, violations: [], linearizable: true });
      expect(r.leasedReads).toBeGreaterThan(0);
      expect(r.removesRefusedByLease).toBeGreaterThan(0);
      expect(r.removesApplied).toBeGreaterThan(0);
      covered += r.coveredReads;
      compact += r.compactReads;
      binary += r.binaryRowReads;
    }
    // Follower reads served under a lease cover (no grant asked of the leader) are among them.
    expect(covered).toBeGreaterThan(0);
    // Reads answered in the compact form (production's batch path) are checked too.
    expect(compact).toBeGreaterThan(0);
    // Both compact versions: binary rows (MasterClient's) and arrays (what an older master answers).
    expect(binary).toBeGreaterThan(0);
    expect(binary).toBeLessThan(compact);
  }, 60_000);

  it('batch reads (opt-in): compact reads of two keys at once hold their leases too, and the check is exercised', async () => {
    let batch = 0;
    let leased = 0;
    for (const seed of [1, 2, 3, 6]) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed), { batchReads: true });
      expect({ seed, violations: r.violations, linearizable: r.linearizable }).toEqual({ seed, violations: [], linearizable: true });
      batch += r.batchReads;
      leased += r.leasedReads;
    }
    expect(batch).toBeGreaterThan(0);
    expect(leased).toBeGreaterThan(batch);
  }, 60_000);

  // Controls: with the design broken, removes of objects still leased apply, and the check sees it within a few
  // dozen seeds (by hand, 300 seeds: see docs/raft.md "The full-node simulator"). Which seeds hit it depends on the
  // timing: with the pipelined Ready loop no-announce is caught at seeds 15, 78, 94, 96, 105, 107 of 1..120 and
  // no-collection at 4, 12, 15, 23, 33, 39 of 1..40, so the search stops at the second catch or seed 100.
  for (const [fault, what] of [
    ['no-collection', 'a new leader that skips the lease collection (and the blanket)'],
    ['no-announce', 'a leader that answers reads without announcing their leases'],
    // Caught at seeds 2, 23, 26, 28, 30 of 1..30 (85 of 1..300); a leader that grants a follower's keys for one TTL
    // only (not the margin a cover relies on) was caught by hand at 4 of seeds 1..300.
    ['stale-cover', 'a follower whose lease covers never end'],
  ] as const) {
    it(`control: ${what} lets removes of leased objects apply, and the lease check sees it`, async () => {
      const failed: number[] = [];
      for (let seed = 1; seed <= 100 && failed.length < 2; seed++) {
        const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed), { leaseFault: fault });
        if (r.leaseViolations > 0) failed.push(seed);
        expect(r.violations.filter((v) => v.startsWith('lease:')).length).toBe(r.leaseViolations);
      }
      expect(failed.length).toBeGreaterThanOrEqual(2);
    }, 240_000);
  }

  // The regression seeds of the remove/read race (test/testing/full-node.test.ts) still reach it: without the holds
  // (PendingWrites) each of them has a read leased between a remove's admission and its apply. If a change of timing
  // makes one stop failing here, find others with `npm run sim -- --full-node --seeds 1500 --lease-fault no-hold`
  // (45 of seeds 300-1799 on 2026-12-03; 43 on 2026-12-05, after the leader stopped announcing follower reads' leases;
  // 42 of seeds 1-1500 after the WAL's LOG_END records moved the timings; 39 after follower lease covers, 422 no
  // longer among them; 43 once half the schedules open client sessions, 523 no longer among them; 41 once check-quorum
  // waited two election timeouts, 574 no longer among them; 47 once vote requests left before the candidate's vote
  // was durable, 368, 569 and 640 no longer among them).
  it('control: a leader that does not hold the key of an admitted remove leases reads of it before the remove applies, and the lease check sees it', async () => {
    for (const seed of [42, 70, 73, 606]) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed), { leaseFault: 'no-hold' });
      expect({ seed, caught: r.leaseViolations > 0 }).toEqual({ seed, caught: true });
    }
  }, 60_000);

  // The remove/read race, scripted: a remove admitted on the leader, then at once a read of the same key (the read's
  // heartbeat round finishes before the remove's append is synced on a majority). Without the holds (no-hold) the
  // read is leased and answered before the remove applies inside its lease, and the lease check sees it; with them
  // the read waits and answers OBJECT_NOT_FOUND. (The lease check counts a lease running when the remove
  // applies, not only when it was admitted: with only the latter, random seeds reached the race rarely, 4 of 1500.)
  for (const fault of [null, 'no-hold'] as const) {
    it(`${fault === null ? 'regression' : 'control (no-hold)'}: a read right after a remove's admission ${fault === null ? 'waits for the remove' : 'is leased inside the remove\'s window, and the check sees it'}`, async () => {
      let reached = 0;
      for (const seed of [1, 2, 3, 4, 5]) {
        const sim = new FullSim(seed, { workload: { clients: 0 }, leases: { ttlMs: 3_000, fault } });
        await sim.start();
        await sim.startWorkload();
        expect(await sim.put('x')).toBe(true);
        expect(await sim.settle(sim.workload!.run('script', 100, 'putEnd', 'x'))).toBe(true);
        const h = sim.host(sim.leader()!);
        const removed = sim.settle(h.lease!.remove({ type: 'Remove', clientId: 'script', seq: 101, key: 'x' }));
        const read = sim.settle(h.lease!.read('x'));
        const [rm, rd] = await Promise.all([removed, read]);
        expect(rm.ok).toBe(true);
        if (rd.result.ok) sim.leases!.noteRead('x', h.id, rd.grantedAt, rd.since); // the client was given a lease
        const r = await sim.check();
        if (fault === null) {
          expect({ seed, read: rd.result.ok ? 'replicas' : rd.result.error.code }).toEqual({ seed, read: 'OBJECT_NOT_FOUND' });
          expect({ seed, lease: r.leaseViolations }).toEqual({ seed, lease: 0 });
        } else if (rd.result.ok) {
          reached++;
          expect({ seed, lease: r.leaseViolations }).toEqual({ seed, lease: 1 });
        }
      }
      if (fault !== null) expect(reached).toBeGreaterThanOrEqual(3);
    }, 60_000);
  }

  it('a follower read that waited long for the leader\'s answer is recorded until that answer + TTL (seed 1700 with production\'s client)', async () => {
    const ttl = 1_000;
    const sim = await clusterWithObject(5, ttl);
    const old = sim.leader()!;
    const f = sim.ids.find((id) => id !== old)!;
    const began = sim.now;
    const reading = sim.host(f).lease!.read('x'); // begins now on f (its ReadIndex round leaves with the next turn)
    sim.pause(f); // ...which the pause holds: the leader grants a second later
    await sim.run(1_000);
    const resumed = sim.now;
    sim.resume(f);
    const read = await sim.settle(reading);
    expect(read.result.ok).toBe(true);
    expect(read.covered).toBe(false);
    sim.crash(old); // f and the third member elect; the collection meets f's record of the lease
    const leader = await sim.untilLeader(5_000);
    expect(leader).not.toBeNull();
    // Past what f recorded before the fix (the read's start + TTL + coverMs), inside the lease counted from the
    // leader's answer (no earlier than the resume).
    const oldRecordEnd = began + ttl + coverMarginMs(ttl) / maxClockRateRatio;
    if (sim.now < oldRecordEnd + 20) await sim.run(oldRecordEnd + 20 - sim.now);
    expect(sim.now).toBeLessThan(resumed + ttl / 1.1);
    const answer = await sim.settle(sim.host(leader!).lease!.remove({ type: 'Remove', clientId: 'script', seq: 102, key: 'x' })).then(
      (r) => (r.ok ? 'removed' : r.error.code),
      (e: { code?: string }) => e.code ?? String(e),
    );
    expect(answer).toBe('OBJECT_HAS_LEASE');
  });

  it('a member restarted since it acknowledged a lease does not vouch for it: the new leader keeps the blanket', async () => {
    const sim = await clusterWithObject(3, 3_000);
    const old = sim.leader()!;
    const [f1, f2] = sim.ids.filter((id) => id !== old) as [string, string];
    sim.wire.cut(old, f2); // f2 never hears of the lease below
    const read = await sim.settle(sim.host(old).lease!.read('x'));
    expect(read.result.ok).toBe(true); // acknowledged by f1: old + f1 are a majority
    const grantedAt = sim.now;
    await sim.restart(f1); // f1 forgets what it was told
    sim.crash(old);
    sim.heal();
    const leader = await sim.untilLeader(5_000);
    expect(leader === f1 || leader === f2).toBe(true);
    const answer = await sim.settle(sim.host(leader!).lease!.remove({ type: 'Remove', clientId: 'script', seq: 101, key: 'x' })).then(
      (r) => (r.ok ? 'removed' : r.error.code),
      (e: { code?: string }) => e.code ?? String(e),
    );
    expect(sim.now - grantedAt).toBeLessThan(3_000 / 1.1); // still inside the reader's lease
    expect(answer).toBe('OBJECT_HAS_LEASE');
  });
});
