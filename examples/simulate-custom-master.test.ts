// Scripted and random faults against a simulated cluster of masters: real RaftNodes + the master state machine
// on a virtual clock, network and disk. In your app: import { FullSim, ... } from 'mooring/testing'.
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { FullSim, fullScheduleForSeed, runFullNodeSchedule } from '../src/testing/index.js';

const script = async (seed: number, voters = 3) => {
  const sim = new FullSim(seed, { voters, workload: { clients: 0 } }); // raft: { ...your config's tunables }
  await sim.start(), await sim.startWorkload();
  return { sim, leader: (await sim.untilLeader(5_000))! };
};
const healthy = (r: { violations: string[]; linearizable: boolean; lostAcked: number }) => r.violations.length === 0 && r.linearizable && r.lostAcked === 0;
it("Raft paper's Figure 8: an old-term entry on a majority is not committed by counting replicas", async () => {
  const { sim, leader: s1 } = await script(8, 5);
  const s2 = sim.ids.find((id) => id !== s1)!;
  let drop = sim.intercept((m) => !(m.from === s1 && m.type === 'app' && m.to !== s2)); // (a) s1's entry reaches s2 only
  void sim.put('a'), await sim.run(30);
  sim.crash(s1), drop();
  sim.partition([s2], sim.ids.filter((id) => id !== s1 && id !== s2)); // (b) s5 leads a newer term without it
  await sim.run(500);
  const s5 = sim.leader()!;
  expect([s1, s2]).not.toContain(s5);
  drop = sim.intercept((m) => !(m.from === s5 && m.type === 'app'));
  void sim.put('b'), await sim.run(30);
  sim.crash(s5), drop();
  sim.heal(); // (c) s1 returns, campaigns, and a leader commits only through an entry of its own term
  await sim.restart(s1), sim.campaign(s1);
  await sim.run(500);
  expect(await sim.put('c')).toBe(true);
  sim.crash(sim.leader()!); // (d) whoever leads now must keep 'c'
  await sim.restart(s5), await sim.run(2_000);
  const now = sim.leader()!; // a quorum has matched its commit index
  expect(Object.values(sim.progress(now)).filter((p) => p.match >= sim.commitIndex(now)).length).toBeGreaterThan(1);
  expect(healthy(await sim.check())).toBe(true);
});
it('a leader isolated in the middle of a membership change', async () => {
  const { sim, leader } = await script(9, 5);
  const gone = sim.ids.find((id) => id !== leader)!;
  void sim.host(leader).raft!.removeMember(gone).catch(() => {});
  sim.isolate(leader);
  await sim.run(2_000), sim.heal();
  expect(await sim.put('after-change')).toBe(true);
  expect(healthy(await sim.check())).toBe(true);
});
it('a follower whose disk loses its unsynced tail (and tears the last write) at a crash', async () => {
  const { sim, leader } = await script(10);
  const follower = sim.ids.find((id) => id !== leader)!;
  sim.diskFaults(follower, { tornWriteProbability: 1 });
  for (let i = 0; i < 20; i++) expect(await sim.put(`k${i}`)).toBe(true);
  await sim.restart(follower); // restart = crash (the disk keeps a random prefix of unsynced writes) + start
  expect(sim.commitIndex(follower)).toBeLessThanOrEqual(sim.commitIndex(leader));
  expect(healthy(await sim.check())).toBe(true);
});
it('random schedules, driven by fast-check (the seed replays: npm run sim -- --full-node --seed S)', async () => {
  await fc.assert(fc.asyncProperty(fc.nat(), async (seed) => {
    const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed));
    return healthy(r) && r.livenessOk;
  }), { numRuns: 2 });
});
