/**
 * Upgrade from 0.1: its allocator aligned every tier, DISK too, to allocAlignmentBytes (64); DISK segments now
 * allocate in 4096-byte blocks. A 0.1 state store holding 64-aligned DISK extents must load (it failed the
 * allocator's alignment assertion), serve those objects, free them, and keep allocating without overlap; a
 * segment mounted after the upgrade gets the new alignment. The store is written here record by record, in 0.1's
 * encoding (segment records without the alignment field), into a real LevelDB in a temp dir.
 */
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import { MasterState } from '../../src/statemachine/master-state.js';
import { appliedKey, clientKey, encodeObject, objectKey, packr, segmentKey } from '../../src/statemachine/codec.js';
import { defaultAllocAlignmentBytes, diskAllocAlignmentBytes } from '../../src/statemachine/limits.js';
import type { ObjectRecord } from '../../src/statemachine/objects.js';
import { collect, replay, seg, tempDir } from './helpers.js';

const segSize = 1 << 20;
/** Object sizes as 0.1 placed them back to back on the DISK segment, each extent rounded up to 64 bytes. */
const sizes = [100, 5000, 64, 1, 4097, 300, 77];

async function write01Store(dir: string): Promise<Array<{ key: string; offset: number; size: number }>> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  const placed: Array<{ key: string; offset: number; size: number }> = [];
  const batch = db.batch();
  // 0.1's segment record: [name, clientId, base, size, protocol, endpoint, zone, tier, status, mountedIndex].
  batch.put(segmentKey('disk'), packr.pack(['disk', 'c', 0, segSize, 'tcp', 'host-disk:1', '', 'DISK', 'OK', 1]));
  batch.put(segmentKey('mem'), packr.pack(['mem', 'c', 0, segSize, 'tcp', 'host-mem:1', '', 'DRAM', 'OK', 2]));
  let offset = 0;
  let index = 2;
  for (const [i, size] of sizes.entries()) {
    const key = `old-${i}`;
    index++;
    const o: ObjectRecord = {
      key, size, clientId: 'c', createdIndex: index, createdAtMs: 1_000, completedAtMs: 1_000, softPinUntilMs: 0, hardPin: false,
      replicas: [{ segmentId: 'disk', offset, length: size, status: 'COMPLETE', tier: 'DISK' }],
      pending: null, offload: null, replicaNum: 1, repair: null, cover: null,
    };
    batch.put(objectKey(key), encodeObject(o));
    placed.push({ key, offset, size });
    offset += Math.ceil(size / defaultAllocAlignmentBytes) * defaultAllocAlignmentBytes;
  }
  batch.put(clientKey('c'), packr.pack(['ACTIVE', 1_000, ['disk', 'mem'], 0]));
  batch.put(appliedKey, packr.pack(index));
  await batch.write({ sync: true });
  await db.close();
  return placed;
}

describe('a 0.1 state store with 64-aligned DISK extents', () => {
  it('loads, serves and frees them; new allocations never overlap; a newly mounted DISK segment gets 4096', async () => {
    const { dir, cleanup } = await tempDir();
    const t2 = await tempDir();
    try {
      const placed = await write01Store(dir);
      expect(placed.some((p) => p.offset % diskAllocAlignmentBytes !== 0)).toBe(true); // what used to fail the load
      let st = await MasterState.open(dir);
      let index = st.appliedIndex;
      const apply = async (command: object): Promise<any> => {
        const [r] = await st.applyBatch([{ index: ++index, timeMs: 2_000, command: command as never }]);
        if (!r!.ok) throw new Error(JSON.stringify(r!.error));
        return r!.value;
      };
      const disk = st.segments.get('disk')!;
      expect(disk.rec.allocAlignmentBytes).toBe(defaultAllocAlignmentBytes);
      expect(disk.alloc.allocationCount).toBe(sizes.length);
      for (const p of placed) {
        const r = st.getReplicaList(p.key, 2_000);
        expect(r.ok && r.value.replicas).toEqual([expect.objectContaining({ segmentId: 'disk', offset: p.offset, length: p.size })]);
      }

      // The same state after a snapshot round trip (0.1's records travel as they are).
      const restored = await MasterState.restore(t2.dir, replay(await collect(st.createSnapshot())));
      expect(restored.stateHash()).toBe(st.stateHash());
      expect(restored.segments.get('disk')!.alloc.extents()).toEqual(disk.alloc.extents());
      await restored.close();

      // Frees: removing old objects gives their extents back.
      await apply({ type: 'Remove', clientId: 'c', key: 'old-1' });
      await apply({ type: 'Remove', clientId: 'c', key: 'old-4' });
      expect(st.existKey('old-1')).toBe(false);
      expect(disk.alloc.allocationCount).toBe(sizes.length - 2);

      // New allocations on the 0.1 segment: its alignment, inside the freed gaps or after, never overlapping.
      for (let i = 0; i < 6; i++) {
        await apply({ type: 'PutStart', clientId: 'c', key: `new-${i}`, size: 700 + i * 1000, replicaNum: 1, tier: 'DISK' });
        await apply({ type: 'PutEnd', clientId: 'c', key: `new-${i}` });
      }
      const spans = [...st.objects.values()].map((o) => o.replicas[0]!).filter((r) => r.segmentId === 'disk').map((r) => [r.offset, r.offset + r.length] as const).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
      for (const [off] of spans) expect(off % defaultAllocAlignmentBytes).toBe(0);

      // A DISK segment mounted now allocates in whole O_DIRECT blocks.
      await apply({ type: 'MountSegment', clientId: 'c', segment: seg('disk2', segSize, { tier: 'DISK' }) });
      expect(st.segments.get('disk2')!.rec.allocAlignmentBytes).toBe(diskAllocAlignmentBytes);
      for (const [i, size] of [100, 5000, 77].entries()) {
        const d = await apply({ type: 'PutStart', clientId: 'c', key: `d2-${i}`, size, replicaNum: 1, tier: 'DISK', preferredSegments: ['disk2'] });
        expect(d.replicas[0]).toMatchObject({ segmentId: 'disk2' });
        expect(d.replicas[0].offset % diskAllocAlignmentBytes).toBe(0);
      }

      // Reloaded: the same allocators (the 0.1 segment keeps its alignment even once its 0.1 extents are gone).
      for (const p of placed) if (st.existKey(p.key)) await apply({ type: 'Remove', clientId: 'c', key: p.key, force: true });
      const hash = st.stateHash();
      const extents = st.segments.get('disk')!.alloc.extents();
      await st.flush();
      await st.close();
      st = await MasterState.open(dir);
      expect(st.stateHash()).toBe(hash);
      expect(st.segments.get('disk')!.rec.allocAlignmentBytes).toBe(defaultAllocAlignmentBytes);
      expect(st.segments.get('disk')!.alloc.extents()).toEqual(extents);
      expect(st.segments.get('disk2')!.rec.allocAlignmentBytes).toBe(diskAllocAlignmentBytes);
      await st.close();
    } finally {
      await cleanup();
      await t2.cleanup();
    }
  });
});
