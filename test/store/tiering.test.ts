/**
 * DRAM → NVMe tiering through the log: above the high watermark the leader hands demotion tasks to the owning
 * storage client (in its ping reply), which runs OffloadStart → copy to the DISK segment → OffloadEnd. A get of a
 * demoted object is served from DISK (through the owner's tier RPC for other clients) and, after enough hits,
 * promoted back to DRAM (UpsertStart → write → UpsertEnd). Every byte is checked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { StoreClient } from '../../src/store/index.js';
import { decodeAddress } from '../../src/store/descriptor.js';
import { RpcClient } from '../../src/transport/rpc.js';
import { ErrorCode } from '../../src/errors.js';
import { pattern, startMasters, waitFor, type Masters } from './helpers.js';

let masters: Masters;
let dir: string;
const clients: StoreClient[] = [];
let node: StoreClient;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mooring-tier-'));
  masters = await startMasters(3, { leaseTtlMs: 400, eviction: { highWatermark: 0.6, target: 0.4, checkIntervalMs: 50 } });
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await masters.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tiering', () => {
  it('demotes instead of dropping above the watermark, serves demoted objects from DISK, promotes on hits', async () => {
    node = await StoreClient.create({
      masters: masters.endpoints,
      memory: { size: 1 << 20 },
      disk: { path: path.join(dir, 'nvme.bin'), size: 16 << 20 },
      pingIntervalMs: 100,
      promoteAfterHits: 2,
      stagingSlotBytes: 256 << 10,
    });
    clients.push(node);
    const reader = await StoreClient.create({ masters: masters.endpoints, stagingSlotBytes: 256 << 10, promoteAfterHits: 2 });
    clients.push(reader);
    const size = 100_000;
    const keys: string[] = [];
    // 8 × ~100 KB in 1 MiB of DRAM: above the 0.6 watermark, and within capacity (puts never need to evict).
    for (let i = 0; i < 8; i++) {
      const k = `t${i}`;
      await reader.put(k, pattern(i, size));
      keys.push(k);
    }
    const tiers = async (k: string): Promise<string[]> => (await reader.master.getReplicaList(k, { stale: true })).replicas.map((r) => r.tier);
    await waitFor(async () => node.stats.demotions >= 2, 30_000, 'demotions');
    const stats = await reader.master.stats();
    expect(stats.memoryAllocatedBytes as number).toBeLessThanOrEqual(0.6 * (stats.memoryCapacityBytes as number));
    expect(stats.diskAllocatedBytes as number).toBeGreaterThan(0);
    // Nothing was dropped: every object is still there with its exact bytes (some now from DISK).
    expect(stats.objectCount).toBe(8);
    const demoted: string[] = [];
    for (const k of keys) if ((await tiers(k)).every((t) => t === 'DISK')) demoted.push(k);
    expect(demoted.length).toBeGreaterThan(0);
    for (let i = 0; i < 8; i++) expect((await reader.get(keys[i]!)).equals(pattern(i, size))).toBe(true);
    // The reader got a DISK copy through the owner's tier RPC; a second hit promotes it back to DRAM.
    const hot = demoted[0]!;
    const hotIndex = keys.indexOf(hot);
    expect(reader.stats.diskHits).toBeGreaterThan(0);
    expect((await reader.get(hot)).equals(pattern(hotIndex, size))).toBe(true);
    await reader.settle();
    expect(reader.stats.promotions).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await tiers(hot)).every((t) => t === 'DRAM'), 20_000, 'promotion');
    expect((await node.get(hot)).equals(pattern(hotIndex, size))).toBe(true);

    // A promotion racing with a replacement never installs the old bytes: replace another demoted object, then
    // run the promotion the reader would have started from its (now stale) read.
    const cold = demoted.find((k) => k !== hot);
    expect(cold).toBeDefined();
    {
      const stale = (await reader.master.getReplicaList(cold!, { stale: true })).replicas;
      const oldBytes = await node.get(cold!); // (node: its first DISK hit, so no promotion starts on its own)
      await reader.remove(cold!, true);
      await reader.put(cold!, pattern(999, 5_000));
      const promotionsBefore = reader.stats.promotions;
      const current = (await reader.master.getReplicaList(cold!, { stale: true })).replicas;
      await (reader as unknown as { promote(k: string, b: Buffer, r: unknown): Promise<void> }).promote(cold!, oldBytes, stale);
      expect(reader.stats.promotions).toBe(promotionsBefore);
      expect((await reader.master.getReplicaList(cold!, { stale: true })).replicas).toEqual(current);
      expect((await reader.get(cold!)).equals(pattern(999, 5_000))).toBe(true);
    }
  });

  it('the tier RPC server answers bad requests with errors and keeps serving', async () => {
    const owner = await StoreClient.create({ masters: masters.endpoints, memory: { size: 1 << 20 }, disk: { path: path.join(dir, 'nvme-rpc.bin'), size: 1 << 20 }, stagingSlotBytes: 64 << 10 });
    clients.push(owner);
    const segs = (await owner.master.listSegments()) as Array<{ id: string; name: string; size: number; endpoint: string; tier: 'DISK'; clientId: string }>;
    const addr = decodeAddress(segs.find((x) => x.clientId === owner.clientId && x.tier === 'DISK')!);
    if (addr?.kind !== 'disk') throw new Error('expected a disk segment');
    const [host, port] = addr.tierEndpoint.split(':');
    const rpc = new RpcClient({ host: host!, port: Number(port), clusterId: 'mooring/tier' });
    try {
      const ok = { diskId: addr.diskId, token: addr.token };
      const bad: Array<[unknown, string]> = [
        [{ ...ok, token: '0000000000000000', offset: 0, length: 10 }, ErrorCode.SEGMENT_NOT_FOUND],
        [{ ...ok, offset: -1, length: 10 }, ErrorCode.INVALID_ARGUMENT],
        [{ ...ok, offset: 0, length: 1 << 30 }, ErrorCode.INVALID_ARGUMENT],
        [{ ...ok, offset: (1 << 20) - 5, length: 10 }, ErrorCode.OUT_OF_RANGE],
        [{ ...ok, offset: 'x', length: 10 }, ErrorCode.INVALID_ARGUMENT],
        [null, ErrorCode.INVALID_ARGUMENT],
      ];
      for (const [args, code] of bad) await expect(rpc.call('diskRead', args)).rejects.toMatchObject({ code });
      await expect(rpc.call('diskWrite', { ...ok, offset: 0, data: 'not bytes' })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
      // Still serving: a write and a read of the same bytes round-trip.
      await rpc.call('diskWrite', { ...ok, offset: 4096, data: Buffer.from('hello tier') });
      const back = await rpc.call<Uint8Array>('diskRead', { ...ok, offset: 4096, length: 10 });
      expect(Buffer.from(back).toString()).toBe('hello tier');
      // A reader holding a predecessor's descriptor of that endpoint (the owner restarted; the masters still list the
      // old segment until its client expires): the refusal reaches the get as TRANSFER_FAILED, a replica out of
      // reach, not SEGMENT_NOT_FOUND (which makes a get ask the masters again, for nothing here).
      const reader = await StoreClient.create({ masters: masters.endpoints, stagingSlotBytes: 64 << 10 });
      clients.push(reader);
      const internals = reader as unknown as { staging: { with<T>(fn: (slot: unknown) => Promise<T>): Promise<T> }; readDisk(res: unknown, offset: number, slot: unknown, length: number): Promise<void> };
      const stale = { spec: { id: 'old-disk', clientId: 'old', zone: '', tier: 'DISK', endpoint: addr.tierEndpoint }, address: { ...addr, token: '0000000000000000' }, free: 0 };
      await expect(internals.staging.with((slot) => internals.readDisk(stale, 4096, slot, 10))).rejects.toMatchObject({ code: ErrorCode.TRANSFER_FAILED, message: expect.stringMatching(/no longer holds disk segment old-disk/) });
      const fresh = { ...stale, address: addr };
      await internals.staging.with((slot) => internals.readDisk(fresh, 4096, slot, 10)); // the same call with the live descriptor reads
    } finally {
      await rpc.close();
      await owner.close({ unmount: true }); // leaves the next test alone in the cluster
    }
  });

  it('falls back to dropping when the owner does not carry out its demotion task in time', async () => {
    // A metadata-only owner that pings (so it stays alive) but ignores the tier tasks in its ping replies.
    const lazy = new MasterClient({ endpoints: masters.endpoints, retry: { maxAttempts: 10, initialBackoffMs: 20, maxBackoffMs: 200 } });
    let tasksSeen = 0;
    const timer = setInterval(() => {
      lazy.ping().then((r) => { if (Array.isArray((r as { tierTasks?: unknown[] }).tierTasks)) tasksSeen++; }).catch(() => {});
    }, 100);
    try {
      // Alone in the cluster: the first test's node leaves with its segments and objects.
      await node.close({ unmount: true });
      await lazy.removeAll(true);
      await lazy.mountSegment({ id: 'lazy-mem', name: 'lazy', base: 0, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:1', tier: 'DRAM' });
      await lazy.mountSegment({ id: 'lazy-disk', name: 'lazy-disk', base: 0, size: 16 << 20, protocol: 'tcp', endpoint: '127.0.0.1:2', tier: 'DISK' });
      const before = (await lazy.stats()).objectCount as number;
      for (let i = 0; i < 8; i++) {
        await lazy.putStart(`lazy-${i}`, 100_000, { preferredSegments: ['lazy-mem'] });
        await lazy.putEnd(`lazy-${i}`);
      }
      await waitFor(async () => ((await lazy.stats()).objectCount as number) < before + 8, 30_000, 'fallback drop');
      expect(tasksSeen).toBeGreaterThan(0);
      const st = await lazy.stats();
      expect(st.memoryAllocatedBytes as number).toBeLessThanOrEqual(0.6 * (st.memoryCapacityBytes as number));
    } finally {
      clearInterval(timer);
      await lazy.close();
    }
  });
});
