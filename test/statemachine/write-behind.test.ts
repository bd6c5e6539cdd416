/**
 * MasterState applies in memory and writes LevelDB behind (applyBatch with waitForWrite: false): coalesced writes,
 * each one the state exactly as of the applied index it carries, and snapshots that describe exactly their index.
 * Real LevelDB in temp dirs.
 */
import { describe, expect, it } from 'vitest';
import type { ApplyEntry } from '../../src/statemachine/state-core.js';
import { MasterState, stateWriteIntervalMs } from '../../src/statemachine/master-state.js';
import type { StateStore, StoreBatch } from '../../src/statemachine/store.js';
import { collect, replay, seg, tempDir } from './helpers.js';

function puts(from: number, count: number, tag: string): ApplyEntry[] {
  return Array.from({ length: count }, (_, i) => ({
    index: from + i,
    timeMs: 5,
    command: { type: 'PutStart' as const, clientId: `w${i % 4}`, seq: from + i, key: `${tag}-${from + i}`, size: 10, replicaNum: 1 },
  }));
}

function storeOf(ms: MasterState): StateStore {
  return (ms as unknown as { store: StateStore }).store;
}

/** Counts the store writes of `ms` from now on. */
function countWrites(ms: MasterState): { readonly n: number } {
  const store = storeOf(ms);
  const realWrite = store.write.bind(store);
  const c = { n: 0 };
  store.write = (b: StoreBatch, sync: boolean) => {
    c.n++;
    return realWrite(b, sync);
  };
  return c;
}

/**
 * Mounts two segments of `segBytes` on a fresh state in `dir`, the second write held: `addChanges` reports the
 * changed objects each encoding takes to `seen`, and the held write (already started, waiting) goes on at `release()`.
 */
async function withHeldWrite(dir: string, segBytes: number, seen: (dirtyObjects: number) => void): Promise<{ a: MasterState; release: () => void }> {
  const a = await MasterState.open(dir);
  const store = storeOf(a);
  await a.applyBatch([{ index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', segBytes) } }]);
  const realAdd = store.addChanges.bind(store);
  store.addChanges = (core, b) => {
    seen(core.dirtyObjects.size);
    return realAdd(core, b);
  };
  const realWrite = store.write.bind(store);
  let release!: () => void;
  const held = new Promise<void>((r) => { release = r; });
  let first = true;
  store.write = async (b: StoreBatch, sync: boolean) => {
    if (first) {
      first = false;
      await held;
    }
    return realWrite(b, sync);
  };
  void a.applyBatch([{ index: 2, timeMs: 2, command: { type: 'MountSegment', clientId: 'n', segment: seg('s2', segBytes) } }], { waitForWrite: false });
  await new Promise((r) => setImmediate(r)); // the held write starts and waits
  return { a, release };
}

describe('MasterState writes behind the apply', () => {
  it('reports a failed write behind an apply to its failure listeners, once, with no later call needed', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      const seen: unknown[] = [];
      a.onFailure((e) => seen.push(e));
      await a.applyBatch([{ index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } }]);
      expect(seen).toEqual([]);
      await storeOf(a).db.close(); // LevelDB refuses the next write
      await a.applyBatch(puts(2, 3, 'x'), { waitForWrite: false });
      await a.applyBatch(puts(5, 3, 'x'), { waitForWrite: false }).catch(() => undefined);
      await a.flush().catch(() => undefined);
      expect(seen).toHaveLength(1);
      expect(seen[0]).toMatchObject({ code: 'STORAGE_FAILED', message: 'state store write failed' });
      // A listener that comes after the failure still hears of it.
      const late = await new Promise<unknown>((resolve) => a.onFailure(resolve));
      expect(late).toBe(seen[0]);
      await a.close().catch(() => undefined);
    } finally {
      await t.cleanup();
    }
  });

  it('a snapshot taken while applies run ahead of the writes is exactly the state at its index', async () => {
    const t = await tempDir();
    const t2 = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      await a.applyBatch([{ index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } }]);
      let index = 1;
      // None of these waits for its write: memory runs ahead of LevelDB.
      for (let b = 0; b < 5; b++) {
        void a.applyBatch(puts(index + 1, 10, 'before'), { waitForWrite: false });
        index += 10;
      }
      const atIndex = a.appliedIndex;
      const atHash = a.stateHash();
      const image = a.createSnapshot();
      // More applies right after the snapshot was asked for, before any write or the snapshot read has run.
      for (let b = 0; b < 5; b++) {
        void a.applyBatch(puts(index + 1, 10, 'after'), { waitForWrite: false });
        index += 10;
      }
      void a.applyNoop(index + 3, { waitForWrite: false });
      const chunks = await collect(image);
      const restored = await MasterState.restore(t2.dir, replay(chunks));
      expect(restored.appliedIndex).toBe(atIndex);
      expect(restored.stateHash()).toBe(atHash);
      expect(restored.existKey(`after-${atIndex + 1}`)).toBe(false);
      await restored.close();
      await a.flush();
      expect(a.appliedIndex).toBe(index + 3);
      await a.close();
    } finally {
      await t.cleanup();
      await t2.cleanup();
    }
  });

  it('coalesces the writes of applies made while no write has started, and reopens to the same state', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      const writes = countWrites(a);
      await a.applyBatch([{ index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } }]);
      const before = writes.n;
      let index = 1;
      const applied: Array<Promise<unknown>> = [];
      for (let b = 0; b < 100; b++) {
        applied.push(a.applyBatch(puts(index + 1, 5, 'k'), { waitForWrite: false }));
        index += 5;
      }
      await Promise.all(applied);
      await a.flush();
      expect(writes.n - before).toBe(2); // one coalesced write for the 100 applies, one synced flush
      const hash = a.stateHash();
      await a.close();
      const b = await MasterState.open(t.dir);
      expect([b.appliedIndex, b.stateHash()]).toEqual([index, hash]);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });

  it('an object put and completed while the previous write runs is encoded once, at the next write\'s start', async () => {
    const t = await tempDir();
    try {
      let encoded = 0;
      const { a, release } = await withHeldWrite(t.dir, 1 << 24, (n) => { encoded += n; });
      encoded = 0;
      const keys = Array.from({ length: 10 }, (_, i) => `k${i}`);
      void a.applyBatch([{ index: 3, timeMs: 3, command: { type: 'BatchPutStart', clientId: 'c', seq: 1, items: keys.map((key) => ({ key, size: 10, replicaNum: 1 })) } }], { waitForWrite: false });
      const done = a.applyBatch([{ index: 4, timeMs: 4, command: { type: 'BatchPutEnd', clientId: 'c', seq: 2, keys } }], { waitForWrite: false });
      expect(encoded).toBe(0); // nothing encoded while the write waits
      release();
      await done;
      await a.flush();
      expect(encoded).toBe(10); // each object once, completed (encoding at each apply took 20)
      const hash = a.stateHash();
      await a.close();
      const b = await MasterState.open(t.dir);
      expect([b.appliedIndex, b.stateHash()]).toEqual([4, hash]);
      expect(b.getReplicaList('k3', 5).ok).toBe(true);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });

  it('a long wait for LevelDB encodes ahead (no single huge encoding step), and the state reopens the same', async () => {
    const t = await tempDir();
    try {
      const sizes: number[] = [];
      const { a, release } = await withHeldWrite(t.dir, 1 << 26, (n) => sizes.push(n));
      sizes.length = 0;
      let index = 2;
      for (let b = 0; b < 100; b++) {
        void a.applyBatch(puts(index + 1, 100, 'w'), { waitForWrite: false });
        index += 100;
      }
      expect(sizes.length).toBeGreaterThan(0); // encoded ahead while the write waited
      expect(Math.max(...sizes)).toBeLessThanOrEqual(4096 + 100);
      release();
      await a.flush();
      const hash = a.stateHash();
      await a.close();
      const b = await MasterState.open(t.dir);
      expect([b.appliedIndex, b.stateHash()]).toEqual([index, hash]);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });

  it(`applies nobody waits for share one write per stateWriteIntervalMs (${stateWriteIntervalMs} ms); a waited apply, flush and close write at once`, async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      const writes = countWrites(a);
      await a.applyBatch([{ index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } }]);
      expect(writes.n).toBe(1); // waited for: written at once
      let index = 1;
      for (let b = 0; b < 5; b++) {
        await a.applyBatch(puts(index + 1, 3, 'c'), { waitForWrite: false });
        index += 3;
      }
      await new Promise((r) => setImmediate(r));
      expect(writes.n).toBe(1); // the five applies wait for the interval, together
      await new Promise((r) => setTimeout(r, stateWriteIntervalMs + 20));
      expect(writes.n).toBe(2); // one write for all five
      await a.applyBatch(puts(index + 1, 2, 'd'), { waitForWrite: false });
      index += 2;
      await a.flush(); // does not wait out the interval: the open write, then the synced one
      expect(writes.n).toBe(4);
      await a.applyBatch(puts(index + 1, 2, 'e'), { waitForWrite: false });
      index += 2;
      await a.close(); // writes the open write first
      expect(writes.n).toBe(5);
      const b = await MasterState.open(t.dir);
      expect(b.appliedIndex).toBe(index);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });

  it('after a failed write the store holds exactly the state of the last written index (the log replays the rest)', async () => {
    const t = await tempDir();
    const ref = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      const store = storeOf(a);
      const realWrite = store.write.bind(store);
      let writes = 0;
      store.write = async (b: StoreBatch, sync: boolean) => {
        if (++writes > 3) throw new Error('injected LevelDB failure');
        return realWrite(b, sync);
      };
      // A reference state machine applies the same entries, waiting for each write, to know each index's hash.
      const r = await MasterState.open(ref.dir);
      const hashAt = new Map<number, string>();
      const mount = [{ index: 1, timeMs: 1, command: { type: 'MountSegment' as const, clientId: 'n', segment: seg('s', 1 << 24) } }];
      await a.applyBatch(mount, { waitForWrite: false });
      await r.applyBatch(mount);
      hashAt.set(1, r.stateHash());
      let index = 1;
      for (let b = 0; b < 6; b++) {
        const es = puts(index + 1, 7, 'x');
        index += 7;
        await a.applyBatch(es, { waitForWrite: false }).catch(() => undefined);
        await r.applyBatch(es);
        hashAt.set(index, r.stateHash());
        await new Promise((res) => setTimeout(res, stateWriteIntervalMs + 10)); // let the write behind run
      }
      await expect(a.applyBatch(puts(index + 1, 1, 'y'))).rejects.toMatchObject({ code: 'STORAGE_FAILED' });
      await a.close().catch(() => undefined);
      await r.close();
      const b = await MasterState.open(t.dir);
      expect(b.appliedIndex).toBeLessThan(index);
      expect(hashAt.get(b.appliedIndex)).toBe(b.stateHash());
      await b.close();
    } finally {
      await t.cleanup();
      await ref.cleanup();
    }
  });
});
