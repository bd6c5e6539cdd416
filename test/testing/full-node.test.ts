// The full-node simulator: real RaftNodes + the real master state machine on a simulated clock, network and
// disk. Property runs print their seed (fast-check) and replay with `npm run sim -- --full-node --seed S`.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkRun, quiesce } from '../../src/testing/fullnode/checks.js';
import { FullSim } from '../../src/testing/fullnode/full-sim.js';
import { fullScheduleForSeed, runFullNodeSchedule } from '../../src/testing/fullnode/full-schedule.js';
import { simEpochMs } from '../../src/testing/fullnode/workload.js';
import { checkBackups, SimBackupClient } from '../../src/testing/fullnode/backup-client.js';
import { backupEndMagic, backupTrailerBytes } from '../../src/master/backup-format.js';
import { verifyBackupBytes } from '../../src/master/backup-restore.js';
import { SeededRng } from '../../src/util/rng.js';
import { createHash } from 'node:crypto';

const healthy = (r: Awaited<ReturnType<typeof runFullNodeSchedule>>): boolean =>
  r.violations.length === 0 && r.linearizable && r.lostAcked === 0 && r.livenessOk;

describe('full-node simulation', () => {
  it('random fault schedules: linearizable, no acknowledged write lost, equal state, live after healing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (seed) => {
        const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
        if (!healthy(r)) throw new Error(`seed ${seed}: ${JSON.stringify({ ...r, explanation: r.explanation?.slice(0, 2000) })}\nreplay: npm run sim -- --full-node --seed ${seed}`);
      }),
      { numRuns: 6 },
    );
  });

  it('regression, seed 1031 (now 142): a follower whose last acknowledged entry is lost (a corrupted last batch cut) is re-replicated, not probed in a loop', async () => {
    // Before the fix the leader re-sent the same probe at network speed forever (~300 events per virtual ms).
    // Seed 1031 found it with the old disk model; on the real WAL (batch trailers and LOG_END records, read leases
    // and their files, pipelined saves, process crashes), seed 142 has a corrupted last batch, cut, and the node
    // recovering until re-replicated (208 until vote requests left before the candidate's vote was durable).
    const r = await runFullNodeSchedule(142, fullScheduleForSeed(142));
    expect(r.faultsSeen.corruptionsRecovered).toBe(1);
    expect(r.faultsSeen.corruptionsCutAsTorn).toBe(0);
    expect(healthy(r)).toBe(true);
    expect(r.events).toBeLessThan(200_000);
  }, 60_000);

  it('regression, seeds 42, 70, 73, 606: a read of a key whose remove is admitted but not yet applied waits for it (no lease inside the remove\'s window)', async () => {
    // Before the fix the leader leased the key and answered its replicas; the remove then applied inside that lease
    // (found as seeds 326, 377, 978, 1248; after the WAL's batch trailers moved the timings, and with the lease check
    // counting a remove's apply too, and the early vote requests, these seeds reach it: full-node-leases.test.ts
    // checks they still do).
    for (const seed of [42, 70, 73, 606]) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
      expect({ seed, leaseViolations: r.leaseViolations, violations: r.violations }).toEqual({ seed, leaseViolations: 0, violations: [] });
      expect(healthy(r)).toBe(true);
    }
  }, 60_000);

  it('regression, seed 900313: one node refused for good (corrupt log), the other lost its tail: it votes, knowing what it lost', async () => {
    // n2's log was corrupted mid-log (refused for good); n1's last batch was damaged and cut, so it was recovering
    // and, before its storage kept the end of the lost batch, never voted: n3 could not win an election, and n1
    // never caught up (liveness lost, an acknowledged write missing on n1). Now n1 votes for n3, which holds all n1
    // may have acknowledged.
    const r = await runFullNodeSchedule(900313, fullScheduleForSeed(900313));
    expect(r.faultsSeen.corruptionsCaught).toBe(1);
    expect(healthy(r)).toBe(true);
  }, 60_000);

  it('regression, seed 15924: a node whose WAL failed a sync during the faults and crash-stops only after the heal is started again (liveness)', async () => {
    // n1's log was corrupted (refused for good); n3's sync failed during the faults and surfaced as a crash-stop only
    // after the heal. Nobody restarted it, so no majority was left (found by the 100k-seed run). The WAL's LOG_END
    // records moved that seed's timings, so the schedule is built: n3 is paused with slow syncs in flight that then
    // fail; it hears of the failures when the heal resumes it. Seeds 2 and 9 fail without the restart after the heal
    // (9 replaced 4 once vote requests left before the candidate's vote was durable: 4's n3 no longer crash-stops).
    for (const seed of [2, 9]) {
      const schedule = fullScheduleForSeed(seed);
      schedule.faultMs = 1500;
      schedule.faults = [
        { atMs: 100, kind: 'crash', node: 0, how: 'power' },
        { atMs: 101, kind: 'corrupt', node: 0 },
        { atMs: 150, kind: 'restart', node: 0 },
        { atMs: 1400, kind: 'disk', node: 2, slowWriteProbability: 1, fsyncFailProbability: 0 },
        { atMs: 1450, kind: 'pause', node: 2 },
        { atMs: 1451, kind: 'disk', node: 2, slowWriteProbability: 1, fsyncFailProbability: 1 },
      ];
      const r = await runFullNodeSchedule(seed, schedule);
      expect(r.faultsSeen.corruptionsCaught).toBe(1);
      expect(r.faultsSeen.fatalStops).toBe(1);
      expect(healthy(r)).toBe(true);
    }
  }, 60_000);

  it('regression, seed 70094: a lease frame lost to one member while a later frame reached it does not count as known to a majority', async () => {
    // The leader counted a member's acknowledgement of a later lease frame for an earlier one it had lost (acks were
    // cumulative); the next leader never learned that lease and a remove applied inside it (found by the 100k run).
    const r = await runFullNodeSchedule(70094, fullScheduleForSeed(70094));
    expect({ lease: r.leaseViolations, violations: r.violations }).toEqual({ lease: 0, violations: [] });
    expect(healthy(r)).toBe(true);
  }, 60_000);

  it('regression, seed 27669: a follower read confirmed before a leader change is not answered with a lease after it', async () => {
    // n3 (lagging: it needed a snapshot) got the old leader's ReadIndex answer and its lease grant, then waited long to
    // apply the read index; the leader crashed, the new one collected leases from a majority that had not heard of
    // the lease (n3 had not recorded it yet), and n3 then answered the read with that lease: a remove applied inside
    // it. The follower now refuses to serve a lease once a term newer than the read's was seen (found by the
    // 10,000-seed run of 2026-12-05).
    const r = await runFullNodeSchedule(27669, fullScheduleForSeed(27669));
    expect({ lease: r.leaseViolations, violations: r.violations }).toEqual({ lease: 0, violations: [] });
    expect(healthy(r)).toBe(true);
  }, 60_000);

  it('regression, seed 77511: a lease announced beyond what members keep is announced again when read again', async () => {
    // The new leader adopted a lease from its collection, and its next announcement (that expiry plus the margin,
    // 1.8 TTL) was cut to 1.5 TTL by the members; later reads skipped announcing, the next leader learned the shorter
    // expiry and a remove applied inside a read's lease (found by the 60,000-seed run).
    const r = await runFullNodeSchedule(77511, fullScheduleForSeed(77511));
    expect(r.leasedReads).toBeGreaterThan(0);
    expect({ lease: r.leaseViolations, violations: r.violations }).toEqual({ lease: 0, violations: [] });
    expect(healthy(r)).toBe(true);
  }, 60_000);

  it('regression, seed 20833: a write whose sync failed is not replayed over newer synced bytes by a later power loss', async () => {
    // A simulator-model bug, not a WAL one (found by the 100k run at bc6d5f4): the failed write stayed pending forever,
    // and a power loss after the node had rewritten and synced that region put the stale batch back in the middle of
    // the log, which the WAL then refused as mid-log corruption. test/testing/sim-fs.test.ts has the model check.
    const r = await runFullNodeSchedule(20833, fullScheduleForSeed(20833));
    expect(r.faultsSeen.failedFsyncs).toBeGreaterThan(0);
    expect(r.violations).toEqual([]);
    expect(healthy(r)).toBe(true);
  }, 60_000);

  it('a seed replays bit for bit', async () => {
    // Power losses and process crashes, a torn WAL write, a corrupted log (the real WAL on the simulated file system).
    // (72 until client sessions moved its timings, then 77 until vote requests left before the candidate's vote was
    // durable, which brought 72's torn write back; test/testing/full-node-sessions.test.ts replays a session seed.)
    const seed = 72;
    const a = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
    const b = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
    expect(fullScheduleForSeed(seed).faults.filter((f) => f.kind === 'crash').map((f) => f.how).sort()).toEqual(['power', 'process', 'process']);
    expect(a.faultsSeen.crashes).toBeGreaterThan(0);
    expect(a.faultsSeen.tornWrites).toBeGreaterThan(0);
    expect(a.faultsSeen.corruptionsInjected).toBe(1);
    expect(b.faultsSeen).toEqual(a.faultsSeen);
    // The simulated disk's write delays make the Ready loop's saves really overlap (pipelined storage writes).
    expect(a.faultsSeen.overlappedWrites).toBeGreaterThan(0);
    expect(b.traceHash).toBe(a.traceHash);
    expect(b.events).toBe(a.events);
  });

  it('control: a disk that acknowledges fsync without persisting loses acknowledged writes, and the checks see it', async () => {
    const sim = new FullSim(5, { disk: { unsafeLyingFsync: true } });
    await sim.start();
    await sim.startWorkload();
    await sim.run(1500);
    for (const id of sim.ids) sim.crash(id); // a power loss: every unsynced write may go
    for (const id of sim.ids) await sim.restart(id);
    sim.workload!.stopped = true;
    await quiesce(sim, 20_000);
    const r = checkRun(sim);
    expect(r.lostAcked > 0 || !r.linearizable).toBe(true);
  });

  it('control: a node whose apply skips a command diverges, and the state-hash check sees it', async () => {
    const sim = new FullSim(6);
    await sim.start();
    await sim.startWorkload();
    let skipped = false;
    sim.applyFault('n2', (_node, commands) => {
      if (skipped || commands.length === 0) return commands;
      skipped = true;
      return commands.slice(1);
    });
    await sim.run(1000);
    sim.workload!.stopped = true;
    await quiesce(sim, 20_000);
    const r = checkRun(sim);
    expect(skipped).toBe(true);
    expect(r.stateHashesEqual).toBe(false);
  });
});

describe('backup under failover (backup-client.ts)', () => {
  it('backups taken during fault schedules restore and hold every write acknowledged before they began', async () => {
    let taken = 0;
    for (const seed of [3, 4, 5]) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
      expect(r.violations).toEqual([]);
      expect(healthy(r)).toBe(true);
      taken += r.backups;
      expect(r.backups).toBeGreaterThanOrEqual(1);
    }
    expect(taken).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('control: "backups" from a lagging follower without the read barrier miss acknowledged writes, and the check sees it', async () => {
    // The same schedules as above; only the backup client is broken.
    const failed: number[] = [];
    for (const seed of [3, 4, 5]) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed), { backupMode: 'stale-follower' });
      expect(r.backups).toBeGreaterThanOrEqual(1);
      if (r.violations.some((v) => /^backup \d+ .*acknowledged before it began are missing/.test(v))) failed.push(seed);
    }
    expect(failed).toEqual([3, 4, 5]);
  }, 60_000);

  it('control: a damaged backup, or one whose image lost its last records (checksum recomputed), fails the restore check', async () => {
    const sim = new FullSim(7);
    await sim.start();
    await sim.startWorkload();
    await sim.run(800);
    const client = new SimBackupClient(sim.sched, new SeededRng(1), sim.hosts, sim.workload!);
    expect(await sim.settle(client.take())).toBe(true);
    sim.workload!.stopped = true;
    await quiesce(sim, 20_000);
    const commit = sim.commitIndex(sim.leader()!);
    const good = client.taken[0]!;
    expect(good.ackedBefore.length).toBeGreaterThan(0);
    expect(await checkBackups([good], commit)).toEqual([]);

    const flipped = Buffer.from(good.bytes);
    flipped[flipped.length - backupTrailerBytes - 5]! ^= 1;
    expect((await checkBackups([{ ...good, bytes: flipped }], commit))[0]).toMatch(/restore failed: .*checksum mismatch/);

    const v = verifyBackupBytes(good.bytes);
    const cut = good.bytes.subarray(0, v.bodyEnd - 16);
    const resealed = Buffer.concat([cut, backupEndMagic, createHash('sha256').update(cut).digest()]);
    expect((await checkBackups([{ ...good, bytes: resealed }], commit))[0]).toMatch(/restore failed/);

    expect(await checkBackups([good], v.header.index - 1)).toEqual([expect.stringMatching(/past the cluster's final commit/)]);
  });
});

// Checked: with the driver's tick catch-up reduced to one tick per round (the old behaviour), seed 2 serves a
// stale read here.
describe('simulated disk faults', () => {
  it('a failed fsync stops the node (crash-stop): it never acknowledges the write, and the cluster goes on', async () => {
    const sim = new FullSim(11, { workload: { clients: 0 } });
    await sim.start();
    await sim.startWorkload();
    const leader = (await sim.untilLeader(5_000))!;
    sim.diskFaults(leader, { fsyncFailProbability: 1 });
    const h = sim.host(leader);
    const direct = await sim.settle(h.propose({ type: 'PutStart', clientId: 'c', seq: 1, key: 'x', size: 1, replicaNum: 1 }, simEpochMs)).then(() => 'acked', (e: Error) => e.message);
    expect(direct).not.toBe('acked');
    expect(h.fatalStops).toBe(1);
    expect(h.status).toBe('down');
    expect(await sim.put('after')).toBe(true); // the others elect a leader
    await sim.restart(leader);
    expect((await sim.check()).violations).toEqual([]);
  });

  it('a crash tears the last unsynced write; recovery cuts it by its checksum and nothing acknowledged is lost', async () => {
    let torn = 0;
    // At least six seeds, and on until one crash really tore a write (which seeds do depends on the workload).
    for (let seed = 12; seed < 60 && (seed < 18 || torn === 0); seed++) {
      const sim = new FullSim(seed, { disk: { tornWriteProbability: 1 } });
      await sim.start();
      await sim.startWorkload();
      await sim.run(400);
      for (const id of sim.ids) sim.crash(id);
      for (const id of sim.ids) await sim.restart(id);
      await sim.run(500);
      torn += sim.hosts.reduce((a, x) => a + x.disk.stats.tornWrites, 0);
      const r = await sim.check();
      expect({ seed, violations: r.violations, linearizable: r.linearizable }).toEqual({ seed, violations: [], linearizable: true });
    }
    expect(torn).toBeGreaterThan(0);
  });

  it('a corrupted log read is caught by its checksum: the node refuses to start and serves nothing', async () => {
    const sim = new FullSim(18, {});
    await sim.start();
    await sim.startWorkload();
    await sim.run(500);
    const victim = sim.ids.find((id) => id !== sim.leader())!;
    sim.corruptLog(victim);
    await sim.restart(victim);
    expect(sim.host(victim).status).toBe('failed');
    expect(sim.host(victim).disk.stats.corruptionsCaught).toBe(1);
    expect(await sim.put('still-live')).toBe(true);
    expect((await sim.check()).violations).toEqual([]);
  });

  it('a corrupted LAST batch may have been acknowledged: the follower cuts it, keeps where its log ended, recovers until a leader re-replicated it, and nothing acknowledged is lost', async () => {
    const sim = new FullSim(19, { workload: { clients: 0 } });
    await sim.start();
    await sim.startWorkload();
    for (let i = 0; i < 5; i++) expect(await sim.put(`k${i}`)).toBe(true);
    const victim = sim.ids.find((id) => id !== sim.leader())!;
    const before = sim.host(victim).logStorage!.lastIndex();
    sim.crash(victim);
    sim.corruptLog(victim, 'tail');
    await sim.restart(victim);
    const h = sim.host(victim);
    expect(h.disk.stats.corruptionsRecovered).toBe(1);
    expect(h.disk.stats.corruptionsCutAsTorn).toBe(0);
    expect(h.status).toBe('up');
    expect(h.raft!.status().recovering).toBe(true);
    expect(h.logStorage!.lastIndex()).toBeLessThan(before); // an acknowledged (synced) batch is gone
    expect(h.logStorage!.initialState().hardState.recoveringBound?.index).toBe(before); // what it may have acknowledged
    expect(await sim.put('after')).toBe(true);
    const r = await sim.check();
    expect(r.violations).toEqual([]);
    expect(sim.host(victim).logStorage!.lastIndex()).toBeGreaterThanOrEqual(before);
    expect(sim.host(victim).raft!.status().recovering).toBeUndefined();
    expect(sim.sched.events).toBeLessThan(100_000); // no probe loop (seed 1031's bug)
  });
});

describe('regression scenarios (driver bugs found before)', () => {
  /** Writes key `k` through the current leader; resolves once acknowledged. */
  async function put(sim: FullSim, seq: number, key: string): Promise<void> {
    const ok = await sim.settle(sim.workload!.run('scenario', seq, 'putStart', key));
    expect(ok).toBe(true);
  }

  it('a follower resumed from a stall longer than the election timeout reads its leader\'s heartbeats first and does not campaign', async () => {
    // The heartbeats the leader sent meanwhile wait in the follower's sockets and are stepped before the Ready round
    // catches up the stalled ticks. Counting the whole stall after them made the follower pre-vote against the
    // healthy leader it had just heard (found in real-process failover traces: with a second follower stalled by the
    // same load, the pre-vote was granted and the leader deposed).
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const sim = new FullSim(seed, { workload: { clients: 0 } });
      await sim.start();
      const leader = (await sim.untilLeader(5_000))!;
      await sim.run(100 + seed * 11);
      const follower = sim.ids.find((id) => id !== leader)!;
      const roles: string[] = [];
      sim.host(follower).raft!.on('roleChange', (r: string) => roles.push(r));
      const term = sim.host(leader).raft!.status().term;
      sim.pause(follower);
      await sim.run(400); // 16 ticks: well past the election timeout (6 ticks by default)
      sim.resume(follower);
      await sim.run(300);
      expect({ seed, roles, leader: sim.leader(), term: sim.host(follower).raft!.status().term }).toEqual({ seed, roles: [], leader, term });
    }
  });

  it('a leader whose followers both stall for more than an election timeout (CPU starvation) stays leader', async () => {
    // Starved followers answer nothing for 200 ms (8 ticks, past the 6-tick election timeout) while their own clocks
    // stand still; then they read the heartbeats that waited and answer. Check-quorum with a one-timeout window deposed
    // the healthy leader here (the overload traces: 4-9 leader changes in 15 s); it now waits two timeouts.
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const sim = new FullSim(seed, { workload: { clients: 0 } });
      await sim.start();
      const leader = (await sim.untilLeader(5_000))!;
      await sim.run(100 + seed * 11);
      const followers = sim.ids.filter((id) => id !== leader);
      const term = sim.host(leader).raft!.status().term;
      for (const f of followers) sim.pause(f);
      await sim.run(200);
      for (const f of followers) sim.resume(f);
      await sim.run(500);
      expect({ seed, leader: sim.leader(), term: sim.host(leader).raft!.status().term }).toEqual({ seed, leader, term });
    }
  });

  it('a leader cut off while it stalled still steps down once its check-quorum hold is released', async () => {
    // Resuming from a stall, it holds check-quorum until it has read its sockets (ready-loop.ts); with nothing to read
    // (cut off), the release must still judge it: it steps down within the check-quorum bound.
    for (const seed of [1, 2, 3, 4]) {
      const sim = new FullSim(seed, { workload: { clients: 0 } });
      await sim.start();
      const leader = (await sim.untilLeader(5_000))!;
      await sim.run(50 + seed * 13);
      sim.pause(leader);
      sim.isolate(leader);
      await sim.run(400);
      sim.resume(leader);
      await sim.run(500); // > CHECK_QUORUM_ELECTION_TIMEOUTS election timeouts of 150 ms
      // Stepped down (then, still cut off, it pre-votes on its own election timeout).
      expect({ seed, leading: sim.host(leader).raft!.status().role === 'leader' }).toEqual({ seed, leading: false });
    }
  });

  it('a leader whose disk is slower than the election timeout keeps sending heartbeats and is not deposed', async () => {
    // Its Ready loop waits on fsyncs of up to 400 ms (maxInflightSaves in flight) while its event loop runs freely:
    // ticks and heartbeats must not wait for the disk (found in the real-process failover soak).
    for (const seed of [1, 2, 3, 4]) {
      const sim = new FullSim(seed, {});
      await sim.start();
      const leader = (await sim.untilLeader(5_000))!;
      const term = sim.host(leader).raft!.status().term;
      await sim.startWorkload();
      sim.diskFaults(leader, { maxWriteMs: 400 });
      await sim.run(3_000);
      expect({ seed, leader: sim.leader(), term: sim.host(leader).raft!.status().term }).toEqual({ seed, leader, term });
      sim.diskFaults(leader, { maxWriteMs: 1 });
      expect((await sim.check()).violations).toEqual([]);
    }
  });

  for (const pauseMs of [2_000, 11_000]) {
    it(`a leader frozen for ${pauseMs} ms (past its lease${pauseMs > 10_000 ? ', and past the default clientTtlMs' : ''}) serves no stale read when it resumes`, async () => {
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const sim = new FullSim(seed, { workload: { clients: 0 } });
        await sim.start();
        const old = (await sim.untilLeader(5_000))!;
        await sim.startWorkload();
        await sim.run(10 + seed * 7); // a different point of the check-quorum window each time
        // Frozen (SIGSTOP, a stalled VM) and cut off: nothing tells it that the others moved on.
        sim.pause(old);
        sim.isolate(old);
        await sim.run(pauseMs);
        expect(sim.leader()).not.toBe(old);
        await put(sim, seed, 'written-while-frozen');
        sim.resume(old);
        // Still isolated, the resumed node must not answer from its stale state: the time it was frozen counts.
        const h = sim.host(old);
        const read = sim.settle(h.raft!.read().then(() => h.state!.getReplicaList('written-while-frozen', simEpochMs + sim.now).ok), 10_000);
        const answer = await read.catch(() => 'refused');
        expect({ seed, answer }).toEqual({ seed, answer: 'refused' });
      }
    });
  }
});
