/** Snapshot stream versions: version 2 is written; a version-1 stream (msgpack record batches) still restores. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MasterState } from '../../src/statemachine/master-state.js';
import { packr } from '../../src/statemachine/codec.js';
import type { StateStore } from '../../src/statemachine/store.js';
import { collect, replay, seg, tempDir } from './helpers.js';

function frame(payload: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(payload.length);
  return Buffer.concat([len, payload]);
}

async function filled(dir: string): Promise<MasterState> {
  const a = await MasterState.open(dir);
  await a.applyBatch([
    { index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } },
    ...Array.from({ length: 300 }, (_, i) => ({ index: i + 2, timeMs: 2 + i, command: { type: 'PutStart' as const, clientId: 'w', seq: i + 1, key: `key-${i}-é`, size: 100 + i, replicaNum: 1 } })),
  ]);
  await a.flush();
  return a;
}

/** A filled source state in one temp dir and an empty second dir to restore into; both removed afterwards. */
async function withSourceAndTarget(fn: (a: MasterState, target: string) => Promise<void>): Promise<void> {
  const t1 = await tempDir();
  const t2 = await tempDir();
  try {
    const a = await filled(t1.dir);
    try {
      await fn(a, t2.dir);
    } finally {
      await a.close();
    }
  } finally {
    await t1.cleanup();
    await t2.cleanup();
  }
}

describe('snapshot stream versions', () => {
  it('restores a version-1 stream (the first format) to the same state', async () => {
    await withSourceAndTarget(async (a, target) => {
      const records: Array<[string, Buffer]> = [];
      for await (const kv of (a as unknown as { store: StateStore }).store.records()) records.push(kv);
      const h = createHash('sha256');
      const flat: unknown[] = [];
      for (const [k, v] of records) {
        h.update(k);
        h.update('\0');
        h.update(v);
        flat.push(k, v);
      }
      const half = flat.length / 2 - ((flat.length / 2) % 2);
      const stream = Buffer.concat([
        frame(packr.pack({ format: 'mooring-master-state', version: 1 })),
        frame(packr.pack(flat.slice(0, half))),
        frame(packr.pack(flat.slice(half))),
        frame(packr.pack({ count: records.length, sha256: h.digest('hex') })),
      ]);
      const b = await MasterState.restore(target, replay([stream.subarray(0, 100), stream.subarray(100)]));
      expect(b.stateHash()).toBe(a.stateHash());
      await b.close();
    });
  });

  it('a version-2 stream round-trips; an unknown version and a damaged record frame are refused', async () => {
    await withSourceAndTarget(async (a, target) => {
      const whole = Buffer.concat(await collect(a.createSnapshot()));
      const b = await MasterState.restore(target, replay([whole]));
      expect(b.stateHash()).toBe(a.stateHash());
      await b.close();
      const v3 = Buffer.concat([frame(packr.pack({ format: 'mooring-master-state', version: 3 })), whole.subarray(4 + whole.readUInt32BE(0))]);
      await expect(MasterState.restore(target, replay([v3]))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      // Break a record length inside the first record frame: refused, never half-applied silently.
      const bad = Buffer.from(whole);
      const recordFrame = 4 + whole.readUInt32BE(0);
      bad.writeUInt16BE(0xffff, recordFrame + 4 + 1);
      await expect(MasterState.restore(target, replay([bad]))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(MasterState.open(target)).rejects.toMatchObject({ code: 'STORAGE_FAILED' });
    });
  });
});

describe('MasterState.restoreToStore (a restore that only writes the store)', () => {
  it('writes the same store restore() does, and reports its applied index and object count', async () => {
    await withSourceAndTarget(async (a, target) => {
      const stream = Buffer.concat(await collect(a.createSnapshot()));
      const r = await MasterState.restoreToStore(target, replay([stream.subarray(0, 1000), stream.subarray(1000)]));
      expect(r).toEqual({ appliedIndex: a.appliedIndex, objectCount: a.objects.size });
      const b = await MasterState.open(target);
      expect(b.stateHash()).toBe(a.stateHash());
      await b.close();
    });
  });

  it('still refuses an image whose extents overlap, and a damaged stream', async () => {
    await withSourceAndTarget(async (a, target) => {
      // Two objects on one extent: every record decodes and the stream's hash matches, but the allocator refuses it.
      const records: Array<[string, Buffer]> = [];
      for await (const kv of (a as unknown as { store: StateStore }).store.records()) records.push(kv);
      const first = records.find(([k]) => k.startsWith('o'))!;
      records.push(['o' + 'a-copy', first[1]]);
      const { encodeSnapshot } = await import('../../src/statemachine/snapshot.js');
      const bad = Buffer.concat(await collect(encodeSnapshot((async function* () { yield records; })())));
      await expect(MasterState.restoreToStore(target, replay([bad]))).rejects.toThrow(/share an offset|overlaps/);
      const stream = Buffer.concat(await collect(a.createSnapshot()));
      stream[stream.length - 40]! ^= 1;
      await expect(MasterState.restoreToStore(target, replay([stream]))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    });
  });
});
