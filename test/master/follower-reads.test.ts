/**
 * Follower reads (src/master/follower-reads.ts): three MasterNodes in one process, real LevelDB stores in temp
 * dirs, real sockets on 127.0.0.1. Reads are sent straight to a follower with a raw RPC client, so a test cannot
 * pass by being redirected to the leader.
 */
import { createServer, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterNode } from '../../src/master/master-node.js';
import { MasterClient } from '../../src/master/client.js';
import { expandReplicaLists } from '../../src/master/replica-lists-wire.js';
import { coverMarginMs, maxClockRateRatio } from '../../src/master/follower-lease-cover.js';
import { RpcClient } from '../../src/transport/rpc.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();

async function cluster(extra: Record<string, unknown> = {}): Promise<{ nodes: MasterNode[]; endpoints: string[] }> {
  // Fewer spurious elections on a loaded machine.
  const nodes = await startMasters(cleanup, { prefix: 'mooring-fr-', config: { raft: { tickMs: 25, electionTimeoutTicks: 10 }, ...extra } });
  return { nodes, endpoints: nodes.map((n) => `127.0.0.1:${n.ports.rpc}`) };
}

function client(endpoints: string[], opts: Partial<ConstructorParameters<typeof MasterClient>[0]> = {}): MasterClient {
  const c = new MasterClient({ endpoints, retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 }, ...opts });
  cleanup.push(() => c.close());
  return c;
}

/**
 * A raw connection to one master: no hints followed. A read refused because the leader changed meanwhile is
 * retried on the same master (an error is never stale state; only answers are checked).
 */
function direct(node: MasterNode): { call: (method: string, args: Record<string, unknown>) => Promise<unknown> } {
  const c = new RpcClient({ host: '127.0.0.1', port: node.ports.rpc, clusterId: 'mooring', nodeId: 'test' });
  cleanup.push(() => c.close());
  return {
    call: async (method, args) => {
      for (let i = 0; ; i++) {
        try {
          return await c.call(method, args);
        } catch (err) {
          if (i >= 20 || (err as { code?: string }).code !== ErrorCode.NOT_LEADER) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    },
  };
}

const segment = (id: string) => ({ id, name: id, base: 0x10000000, size: 1 << 30, protocol: 'tcp' as const, endpoint: '127.0.0.1:9000', zone: 'z1' });

async function setup(extra: Record<string, unknown> = {}): Promise<{ nodes: MasterNode[]; leader: MasterNode; follower: MasterNode; c: MasterClient; endpoints: string[] }> {
  const { nodes, endpoints } = await cluster(extra);
  await waitFor(() => nodes.some((n) => n.isLeader) && nodes.every((n) => n.leaderId !== null));
  const leader = nodes.find((n) => n.isLeader)!;
  const follower = nodes.find((n) => !n.isLeader)!;
  const c = client([`127.0.0.1:${leader.ports.rpc}`], { readFrom: 'leader' });
  await c.mountSegment(segment('s1'));
  return { nodes, leader, follower, c, endpoints };
}

describe('follower reads', () => {
  it('a read served by a follower after an acknowledged write never returns the older state', async () => {
    const { follower, c } = await setup();
    const f = direct(follower);
    for (let i = 0; i < 60; i++) {
      const key = `obj-${i}`;
      await c.putStart(key, 4096);
      await c.putEnd(key);
      // Acknowledged: a follower that answered from its own state without ReadIndex would often not have it yet.
      expect(await f.call('existKey', { key }), `${key} after its putEnd`).toBe(true);
      const got = (await f.call('getReplicaList', { key })) as { replicas: unknown[]; leaseTtlMs: number };
      expect(got.replicas.length).toBe(1);
      if (i % 3 === 0) {
        await c.remove(key, true);
        expect(await f.call('existKey', { key }), `${key} after its remove`).toBe(false);
        const batch = (await f.call('batchExistKey', { keys: [key, `obj-${i - 1}`] })) as boolean[];
        expect(batch[0]).toBe(false);
      }
    }
    expect(follower.isLeader).toBe(false);
  }, 60_000);

  it('a key read through a follower cannot be removed while its lease lasts; an unread key can', async () => {
    const leaseTtlMs = 1_500;
    const { leader, follower, c } = await setup({ leaseTtlMs });
    // A new leader treats every object as leased for one TTL: wait that out first.
    await new Promise((r) => setTimeout(r, leaseTtlMs + 200));
    for (const key of ['read-one', 'read-batch', 'unread']) {
      await c.putStart(key, 4096);
      await c.putEnd(key);
    }
    const f = direct(follower);
    const one = (await f.call('getReplicaList', { key: 'read-one' })) as { leaseTtlMs: number };
    expect(one.leaseTtlMs).toBe(leaseTtlMs);
    await f.call('batchGetReplicaList', { keys: ['read-batch'] });
    expect(follower.isLeader).toBe(false);
    expect(leader.isLeader).toBe(true);
    await expect(c.remove('read-one')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    await expect(c.remove('read-batch')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    await c.remove('unread'); // control: only the keys read through the follower are leased
    // The leader leased them one cover margin longer than the reader was promised (follower-lease-cover.ts).
    await new Promise((r) => setTimeout(r, leaseTtlMs + coverMarginMs(leaseTtlMs) + 100));
    await c.remove('read-one');
    await c.remove('read-batch');
  }, 30_000);

  it('a key read again through the same follower within its cover is not asked of the leader, and stays leased', async () => {
    const leaseTtlMs = 2_000;
    const { leader, follower, c } = await setup({ leaseTtlMs });
    await new Promise((r) => setTimeout(r, leaseTtlMs + 200)); // a new leader's blanket lease
    for (const key of ['hot', 'cold']) {
      await c.putStart(key, 4096);
      await c.putEnd(key);
    }
    const f = direct(follower);
    const leases = (): { asked: number; covered: number } => follower.statusReport().followerReadLeases as { asked: number; covered: number };
    const before = leases();
    await f.call('batchGetReplicaList', { keys: ['hot'] });
    const first = leases();
    expect(first.asked - before.asked).toBe(1);
    // Read again at once (well inside the cover, coverMs): served under the first grant.
    await f.call('getReplicaList', { key: 'hot' });
    await f.call('batchGetReplicaList', { keys: ['hot', 'cold'] });
    const after = leases();
    expect({ asked: after.asked - first.asked, covered: after.covered - first.covered }).toEqual({ asked: 1, covered: 2 });
    expect(follower.isLeader).toBe(false);
    expect(leader.isLeader).toBe(true);
    // The grant the covered reads relied on holds at the leader: neither key can be removed.
    await expect(c.remove('hot')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    await expect(c.remove('cold')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    // A read after the cover ended asks again.
    await new Promise((r) => setTimeout(r, coverMarginMs(leaseTtlMs) / maxClockRateRatio + 50));
    await f.call('getReplicaList', { key: 'hot' });
    expect(leases().asked - after.asked).toBe(1);
  }, 30_000);

  it('with follower read leases a follower serves reads with no round, never older than an acknowledged write, and keeps a hot key covered', async () => {
    const leaseTtlMs = 2_000;
    const { leader, follower, c } = await setup({ leaseTtlMs, raft: { tickMs: 25, electionTimeoutTicks: 10, followerLeaseTicks: 3 } });
    const f = direct(follower);
    const lease = (): { heldTicks: number; readsServed: number } => follower.statusReport().followerLease as { heldTicks: number; readsServed: number };
    for (let i = 0; i < 40; i++) {
      const key = `fl-${i}`;
      await c.putStart(key, 4096);
      await c.putEnd(key);
      expect(await f.call('existKey', { key }), `${key} after its putEnd`).toBe(true);
      if (i % 3 === 0) {
        await c.remove(key, true);
        expect(await f.call('existKey', { key }), `${key} after its remove`).toBe(false);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(lease().readsServed, 'reads served under the follower lease').toBeGreaterThan(0);
    // A hot key read through the follower: its cover is refreshed ahead in the background, so it is asked of the
    // leader once, not once per cover (half a margin: 500 ms here), and stays leased at the leader.
    await new Promise((r) => setTimeout(r, leaseTtlMs + 200)); // the new leader's blanket lease
    await c.putStart('hot', 4096);
    await c.putEnd('hot');
    const covers = (): { asked: number; refreshed: number } => follower.statusReport().followerReadLeases as { asked: number; refreshed: number };
    const before = covers();
    const until = Date.now() + 2_600;
    while (Date.now() < until) {
      await f.call('batchGetReplicaList', { keys: ['hot'] });
      await new Promise((r) => setTimeout(r, 60));
    }
    const after = covers();
    expect(after.refreshed - before.refreshed).toBeGreaterThan(0);
    // Without the refresh the key is asked again after each 500 ms cover: 5 or 6 times in 2.6 s (3 in 1.6 s, measured).
    expect(after.asked - before.asked).toBeLessThanOrEqual(2);
    expect(follower.isLeader).toBe(false);
    expect(leader.isLeader).toBe(true);
    await expect(c.remove('hot')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
  }, 60_000);

  it('batch reads come back compact (both versions) from leader and follower alike, and expand to exactly the plain answer', async () => {
    const { leader, follower, c } = await setup();
    const keys: string[] = [];
    for (let i = 0; i < 12; i++) {
      keys.push(`cb-${i}`);
      await c.putStart(`cb-${i}`, 4096 + i);
      await c.putEnd(`cb-${i}`);
    }
    const asked = [...keys, 'cb-missing'];
    for (const node of [leader, follower]) {
      const raw = direct(node);
      const compact = (await raw.call('batchGetReplicaList', { keys: asked, compact: true })) as { v: number; places: unknown[]; rows: unknown[] };
      expect(compact.v).toBe(1);
      expect(compact.places).toHaveLength(1); // one segment: named once
      expect(compact.rows).toHaveLength(asked.length);
      // An older client (no `compact`) still gets the plain form; both say the same.
      const plain = await raw.call('batchGetReplicaList', { keys: asked });
      expect(Array.isArray(plain)).toBe(true);
      expect(expandReplicaLists(compact, asked.length)).toEqual(plain);
      // Binary rows (version 2, what MasterClient asks for): one byte string, the missing key among the errors.
      const binary = (await raw.call('batchGetReplicaList', { keys: asked, compact: true, rows: 'binary' })) as { v: number; places: unknown[]; rows: unknown; errors?: Array<[number, unknown]> };
      expect(binary.v).toBe(2);
      expect(binary.places).toHaveLength(1);
      expect(binary.rows).toBeInstanceOf(Uint8Array);
      expect(binary.errors?.map(([i]) => i)).toEqual([asked.length - 1]);
      expect(expandReplicaLists(binary, asked.length)).toEqual(plain);
    }
    const viaClient = await client([`127.0.0.1:${follower.ports.rpc}`]).batchGetReplicaList(asked);
    expect(viaClient.map((r) => (r.ok ? r.value.size : r.error.code))).toEqual([...keys.map((_, i) => 4096 + i), ErrorCode.OBJECT_NOT_FOUND]);
    await expect(direct(leader).call('batchGetReplicaList', { keys: asked, compact: 'yes' })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await expect(direct(leader).call('batchGetReplicaList', { keys: asked, compact: true, rows: 'text' })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
  });

  it("MasterClient readFrom 'any' spreads reads over every master; 'leader' keeps them on the leader", async () => {
    const { nodes, leader, c, endpoints } = await setup();
    await c.putStart('k', 4096);
    await c.putEnd('k');
    const count = async (n: MasterNode): Promise<number> => {
      const m = await n.metrics.rpcRequests.get();
      return m.values.filter((v) => v.labels.method === 'existKey').reduce((a, v) => a + v.value, 0);
    };
    const before = await Promise.all(nodes.map(count));
    const any = client(endpoints);
    await Promise.all(Array.from({ length: 30 }, () => any.existKey('k')));
    const mid = await Promise.all(nodes.map(count));
    for (let i = 0; i < nodes.length; i++) expect(mid[i]! - before[i]!, nodes[i]!.id).toBeGreaterThan(0);
    const onlyLeader = client(endpoints, { readFrom: 'leader' });
    for (let i = 0; i < 10; i++) expect(await onlyLeader.existKey('k')).toBe(true);
    const after = await Promise.all(nodes.map(count));
    const leaderNow = nodes.find((n) => n.isLeader);
    if (leaderNow === leader) expect(after[nodes.indexOf(leader)]! - mid[nodes.indexOf(leader)]!).toBeGreaterThanOrEqual(10);
  }, 30_000);

  it("a master that accepts but never answers (paused) holds no 'any' read for its attempt timeout", async () => {
    const { c, endpoints } = await setup();
    await c.putStart('k', 4096);
    await c.putEnd('k');
    // A real listening socket that takes connections and stays silent: what a SIGSTOPped master looks like.
    const held: Socket[] = [];
    const silent = createServer((s) => { held.push(s); });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => { for (const s of held) s.destroy(); silent.close(() => r()); }));
    const port = (silent.address() as { port: number }).port;
    const attemptTimeoutMs = 2_000;
    const any = client([`127.0.0.1:${port}`, ...endpoints], { retry: { attemptTimeoutMs, hedgeAfterMs: 100 } });
    // Enough reads that the least-busy rotation sends several to the silent endpoint first.
    const times = await Promise.all(Array.from({ length: 12 }, async () => {
      const t0 = Date.now();
      expect(await any.existKey('k')).toBe(true);
      return Date.now() - t0;
    }));
    // Without hedging, a read sent to the silent endpoint waits its whole attempt (2 s).
    expect(Math.max(...times)).toBeLessThan(attemptTimeoutMs / 2);
  }, 30_000);
});
