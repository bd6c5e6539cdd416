/**
 * A 3-process KV cluster on 127.0.0.1 under a concurrent client load, with the leader and followers SIGKILLed
 * again and again and restarted from the same data dirs. Afterwards: every acknowledged write reads back through
 * the leader, all replicas hold identical state, and the recorded history is linearizable.
 * Needs `npm run build:ts` first (the nodes run dist/).
 */
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { checkLinearizability, kvModel } from '../../src/testing/linearizability.js';
import { KvCluster, Workload, sleep } from '../helpers/process-cluster.js';

let cluster: KvCluster | null = null;

afterEach(async () => {
  await cluster?.destroy();
  cluster = null;
});

/** Kill → downtime → restart rounds: leaders and followers alternately. */
const killRounds = 8;

describe('3-process KV cluster under SIGKILL', () => {
  it('loses no acknowledged write, converges to identical state, and stays linearizable', async () => {
    cluster = await KvCluster.create({ size: 3 });
    const c = cluster;
    await c.startAll();
    await c.waitForLeader();
    const load = new Workload(c.endpoints(), c.clusterId, { clients: 4, sharedKeys: 6 });
    load.start();
    try {
      await sleep(500);
      for (let round = 0; round < killRounds; round++) {
        const leader = await c.waitForLeader();
        const victim = round % 2 === 0 ? leader : c.running().find((id) => id !== leader)!;
        const before = load.ackedCount;
        await c.kill(victim, 'SIGKILL');
        await sleep(200 + (round % 3) * 250);
        await c.start(victim);
        // Progress between faults, so every round kills a node with fresh writes in flight.
        const t0 = Date.now();
        while (load.ackedCount < before + 20 && Date.now() - t0 < 15_000) await sleep(50);
        expect(load.ackedCount, `no write acknowledged after killing ${victim} (round ${round})\n${c.logTail(victim)}`).toBeGreaterThan(before);
      }
    } finally {
      await load.stop();
    }

    await c.waitForLeader();
    const reader = load.reader();
    // Every acknowledged unique-key write is there (read through the leader, linearizable).
    const acked = [...load.acked.entries()];
    expect(acked.length).toBeGreaterThan(100);
    const missing: string[] = [];
    const readers = Array.from({ length: 8 }, () => load.reader());
    await Promise.all(readers.map(async (r, i) => {
      for (let j = i; j < acked.length; j += readers.length) {
        const [k, v] = acked[j]!;
        if ((await r.get(k)) !== v) missing.push(k);
      }
    }));
    expect(missing).toEqual([]);
    // Final reads of the shared keys join the history.
    for (let k = 0; k < 6; k++) {
      const key = `s-${k}`;
      const call = performance.now();
      const value = await reader.get(key);
      load.history.push({ clientId: 'final', op: 'get', key, input: { kind: 'get' }, output: { value }, call, return: performance.now() });
    }
    // All replicas converge on the same state.
    // (They agree on one leader; on a loaded machine it may have changed since the reads above: no fault is pending.)
    const sts = await c.waitForStatus(c.running(), (s) => s.every((x) => x.stateHash === s[0]!.stateHash && x.applied === s[0]!.applied && x.leader === s[0]!.leader), 30_000, 'identical state', { stateHash: true });
    expect(sts.every((s) => s.leader !== null && s.leader === sts[0]!.leader)).toBe(true);
    expect(sts[0]!.stateHash).toMatch(/^\d+:[0-9a-f]+$/); // asked for, so present (and compared above)
    expect(await c.status(sts[0]!.id)).not.toHaveProperty('stateHash'); // a plain status skips the whole-state walk
    const result = checkLinearizability(load.history, kvModel);
    const unknown = load.history.filter((o) => o.return === undefined).length;
    console.log(`process-cluster: ${load.history.length} ops, ${acked.length} acked unique writes, ${unknown} unknown outcomes, errors ${JSON.stringify(Object.fromEntries(load.errors))}`);
    expect(result.counterexample?.explanation, 'history not linearizable').toBeUndefined();
    expect(result.ok).toBe(true);
    expect(result.inconclusiveKeys).toEqual([]);
    await load.close();
  }, 120_000);
});
