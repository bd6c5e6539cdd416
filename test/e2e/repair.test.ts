/**
 * Re-replication on real processes: three masters (zone-spread placement) and three storage-node processes in
 * zones z1..z3; objects with 2 replicas. One storage node is SIGKILLed: after clientTtlMs its segments expire,
 * the leader plans repairs and the surviving owners copy verified replicas into the third zone, until every
 * object again has 2 live replicas in distinct zones. Then a second node is killed: every object must still read
 * back exactly, now from the one node left — which for the repaired objects is the repaired copy.
 * Run `npm run build:ts` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { StoreClient } from '../../src/store/index.js';
import { ProcessCluster, sleep } from '../../src/testing/jepsen/harness.js';
import { pattern } from '../store/helpers.js';

const objects = 30;
const sizeOf = (seed: number): number => 1 + ((seed * 7919) % 6_000);

let cluster: ProcessCluster;
let client: StoreClient;
let admin: MasterClient;

interface Seg { id: string; clientId: string; zone: string }

/** Per key: zones of its live replicas (replicas on segments of dead clients are not live). */
async function placement(): Promise<Map<string, string[]>> {
  const segs = new Map(((await admin.listSegments()) as Seg[]).map((s) => [s.id, s]));
  const out = new Map<string, string[]>();
  for (let s = 0; s < objects; s++) {
    const { replicas } = await admin.getReplicaList(`rr-${s}`);
    out.set(`rr-${s}`, replicas.map((r) => segs.get(r.segmentId)).filter((g): g is Seg => g !== undefined && !cluster.deadStorageClients.has(g.clientId)).map((g) => g.zone));
  }
  return out;
}

beforeAll(async () => {
  cluster = await ProcessCluster.start({
    masters: 3, storageNodes: 3, proxies: false,
    masterConfig: { placement: { strategy: 'zone-spread' } },
    storage: { memoryBytes: 16 << 20, pingMs: 300 },
  });
  client = await StoreClient.create({ masters: cluster.endpoints, retry: { maxAttempts: 12, initialBackoffMs: 50, maxBackoffMs: 500 }, stagingSlotBytes: 64 << 10 });
  admin = new MasterClient({ endpoints: cluster.endpoints, retry: { maxAttempts: 12, initialBackoffMs: 50, maxBackoffMs: 500 } });
}, 120_000);

afterAll(async () => {
  await admin?.close();
  await client?.close();
  await cluster?.close();
}, 60_000);

describe('re-replication (real processes)', () => {
  it('restores 2 live replicas in distinct zones after a storage node is lost, with exact bytes', async () => {
    for (let s = 0; s < objects; s++) await client.put(`rr-${s}`, pattern(s, sizeOf(s)), { replicas: 2 });
    const first = await placement();
    for (const zones of first.values()) expect(new Set(zones).size).toBe(2);
    const onZ1 = [...first.entries()].filter(([, z]) => z.includes('z1')).map(([k]) => k);
    expect(onZ1.length).toBeGreaterThan(0);

    await cluster.killStorage(0); // zone z1
    const deadline = Date.now() + 90_000;
    let now = first;
    for (;;) {
      now = await placement();
      const healed = [...now.values()].every((z) => z.length === 2 && new Set(z).size === 2 && !z.includes('z1'));
      if (healed) break;
      if (Date.now() > deadline) throw new Error(`not repaired in time: ${JSON.stringify([...now.entries()].filter(([, z]) => z.length !== 2))}`);
      await sleep(500);
    }
    // Every object that had a replica in z1 now has one in z2 and one in z3.
    for (const k of onZ1) expect(now.get(k)!.sort()).toEqual(['z2', 'z3']);

    // Only z3 left: the repaired copies there must hold exactly the bytes.
    await cluster.killStorage(1);
    for (let s = 0; s < objects; s++) {
      const got = await client.get(`rr-${s}`);
      expect(got.equals(pattern(s, sizeOf(s))), `rr-${s}`).toBe(true);
    }
  }, 240_000);
});
