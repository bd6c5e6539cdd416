import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { LogStore } from '../../src/raft/log-store.js';
import type { ConfState, Entry, SnapshotMetadata } from '../../src/raft/core/types.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'mooring-log-'));
  dirs.push(d);
  return d;
}
afterEach(async () => {
  while (dirs.length > 0) await rm(dirs.pop()!, { recursive: true, force: true });
});

const conf: ConfState = { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const ent = (index: number, term: number, text = `e${index}`): Entry => ({
  index,
  term,
  type: index % 7 === 0 ? 'confChange' : 'normal',
  data: new TextEncoder().encode(text),
});
const range = (lo: number, hi: number, term: number): Entry[] => Array.from({ length: hi - lo + 1 }, (_, k) => ent(lo + k, term));
const plain = (es: Entry[]) => es.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Array.from(e.data) }));

function entryKey(index: number): Uint8Array {
  const key = new Uint8Array(9);
  key[0] = 0x65;
  new DataView(key.buffer).setUint32(1, Math.floor(index / 2 ** 32));
  new DataView(key.buffer).setUint32(5, index >>> 0);
  return key;
}

async function rawDb(dir: string, fn: (db: Level<Uint8Array, Uint8Array>) => Promise<void>): Promise<void> {
  const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
  await db.open();
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}

describe('LogStore', () => {
  it('round-trips entries and hard state, and survives reopen', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    expect(s.firstIndex()).toBe(1);
    expect(s.lastIndex()).toBe(0);
    expect(s.term(0)).toBe(0);
    await s.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: 'a', commit: 4 } }, { sync: true });
    expect(s.lastIndex()).toBe(10);
    expect(plain(s.entries(3, 6, Infinity))).toEqual(plain(range(3, 5, 1)));
    expect(s.term(10)).toBe(1);
    await s.close();

    const r = await LogStore.open(dir);
    expect(r.recovery.cutEntries).toBe(0);
    expect(r.initialState().hardState).toEqual({ term: 1, vote: 'a', commit: 4 });
    expect(plain(r.entries(1, 11, Infinity))).toEqual(plain(range(1, 10, 1)));
    expect(r.entries(1, 11, 0)).toHaveLength(1); // at least one entry even over maxBytes
    expect(r.entries(1, 11, 5)).toHaveLength(2); // 'e1'+'e2' = 4 bytes ≤ 5; adding 'e3' exceeds
    await r.close();
  });

  it('truncates on conflict: rewriting an index deletes it and every later entry', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ entries: range(1, 10, 1) }, { sync: true });
    await s.save({ entries: [ent(6, 2, 'new6'), ent(7, 2, 'new7')] }, { sync: true });
    expect(s.lastIndex()).toBe(7);
    expect(s.term(5)).toBe(1);
    expect(s.term(6)).toBe(2);
    await s.close();
    const r = await LogStore.open(dir);
    expect(r.lastIndex()).toBe(7);
    expect(new TextDecoder().decode(r.entries(7, 8, Infinity)[0]!.data)).toBe('new7');
    expect(r.recovery.cutEntries).toBe(0); // 8..10 were deleted in the batch, not left behind
    await r.close();
  });

  it('applySnapshot replaces the log; compact keeps the term of the compaction point', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ entries: range(1, 20, 3), hardState: { term: 3, vote: null, commit: 20 } }, { sync: true });
    await expect(s.compact(10)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT }); // no snapshot covers 10
    const meta: SnapshotMetadata = { index: 12, term: 3, confState: conf };
    await s.compact(10, meta);
    expect(s.firstIndex()).toBe(11);
    expect(s.term(10)).toBe(3);
    expect(() => s.term(9)).toThrow(MooringError);
    expect(() => s.entries(10, 12, Infinity)).toThrowError(expect.objectContaining({ code: ErrorCode.COMPACTED }));
    expect(s.snapshot().metadata.index).toBe(12);
    expect(s.initialState().confState.voters).toEqual(['a', 'b', 'c']);
    await s.close();

    const r = await LogStore.open(dir);
    expect(r.firstIndex()).toBe(11);
    expect(r.lastIndex()).toBe(20);
    expect(r.term(10)).toBe(3);
    await r.applySnapshot({ index: 30, term: 5, confState: { ...conf, voters: ['a', 'b'] } });
    expect(r.firstIndex()).toBe(31);
    expect(r.lastIndex()).toBe(30);
    expect(r.term(30)).toBe(5);
    expect(r.hardState().commit).toBe(30);
    await r.save({ entries: range(31, 33, 5) }, { sync: true });
    await expect(r.applySnapshot({ index: 29, term: 5, confState: conf })).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
    await r.close();

    const q = await LogStore.open(dir);
    expect([q.firstIndex(), q.lastIndex(), q.term(30)]).toEqual([31, 33, 5]);
    expect(q.initialState().confState.voters).toEqual(['a', 'b']);
    await q.close();
  });

  it('bootstraps membership as snapshot point 0, and installs snapshot + entries + hard state in one save', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.applySnapshot({ index: 0, term: 0, confState: conf }); // what RaftNode does for a brand-new cluster
    expect([s.firstIndex(), s.lastIndex(), s.term(0)]).toEqual([1, 0, 0]);
    expect(s.initialState().confState.voters).toEqual(['a', 'b', 'c']);
    await s.save({ entries: range(1, 5, 1) }, { sync: true });
    // A follower installing a leader's snapshot in the same Ready as the entries that follow it.
    await s.save(
      { snapshotMeta: { index: 50, term: 4, confState: conf }, entries: range(51, 53, 4), hardState: { term: 4, vote: 'b', commit: 51 } },
      { sync: true },
    );
    await s.close();
    const r = await LogStore.open(dir);
    expect([r.firstIndex(), r.lastIndex(), r.term(50), r.term(53)]).toEqual([51, 53, 4, 4]);
    expect(r.hardState()).toEqual({ term: 4, vote: 'b', commit: 51 });
    expect(r.recovery.cutEntries).toBe(0); // entries 1..5 were deleted in the same batch
    await r.close();
  });

  it("records a conf state across reopen; initialState reports the snapshot's", async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ confState: { ...conf, learners: ['d'] } }, { sync: true });
    await s.close();
    const r = await LogStore.open(dir);
    expect(r.recordedConfState()?.learners).toEqual(['d']);
    expect(r.initialState().confState).toEqual(r.snapshot().metadata.confState);
    await r.close();
  });

  it('cuts a corrupt tail back on open, durably, and clamps commit', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ entries: range(1, 10, 2), hardState: { term: 2, vote: 'b', commit: 10 } }, { sync: true });
    await s.close();
    await rawDb(dir, async (db) => {
      const v9 = (await db.get(entryKey(9)))!;
      const bad = new Uint8Array(v9);
      bad[bad.length - 1] ^= 0xff; // flip a data bit: checksum mismatch
      await db.put(entryKey(9), bad);
      await db.put(entryKey(10), Uint8Array.of(1, 2)); // undecodable (too short)
    });
    const warnings: object[] = [];
    const logger = { debug() {}, info() {}, error() {}, warn: (o: object) => void warnings.push(o) };
    const r = await LogStore.open(dir, { logger });
    expect(r.lastIndex()).toBe(8);
    expect(r.recovery).toMatchObject({ cutEntries: 2, firstBadIndex: 9, reason: 'checksum', commitClampedFrom: 10 });
    expect(r.hardState().commit).toBe(8);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ cutEntries: 2 });
    await r.close();
    // The cut was durable: a second open finds a clean log.
    const q = await LogStore.open(dir);
    expect(q.recovery.cutEntries).toBe(0);
    expect(q.lastIndex()).toBe(8);
    await q.close();
  });

  it('cuts at a gap (a missing middle key) and drops everything after it', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ entries: range(1, 10, 1), hardState: { term: 1, vote: null, commit: 3 } }, { sync: true });
    await s.close();
    await rawDb(dir, (db) => db.del(entryKey(5)));
    const r = await LogStore.open(dir);
    expect(r.lastIndex()).toBe(4);
    expect(r.recovery).toMatchObject({ cutEntries: 5, firstBadIndex: 5, reason: 'gap', commitClampedFrom: null });
    expect(r.hardState().commit).toBe(3);
    await r.close();
  });

  it('refuses to open with CORRUPT_LOG when a middle entry is corrupt but later ones are valid', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ entries: range(1, 10, 1) }, { sync: true });
    await s.close();
    await rawDb(dir, async (db) => {
      const v = new Uint8Array((await db.get(entryKey(4)))!);
      v[6] ^= 1; // corrupt the term
      await db.put(entryKey(4), v);
    });
    await expect(LogStore.open(dir)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_LOG });
  });

  it('refuses to open with CORRUPT_LOG when the hard state record is corrupt', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ hardState: { term: 4, vote: 'a', commit: 0 } }, { sync: true });
    await s.close();
    await rawDb(dir, async (db) => {
      const v = new Uint8Array((await db.get(Uint8Array.of(0x68)))!);
      v[v.length - 2] ^= 4;
      await db.put(Uint8Array.of(0x68), v);
    });
    await expect(LogStore.open(dir)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_LOG });
  });

  it('is poisoned after a failed write: that save rejects and every later call throws STORAGE_FAILED', async () => {
    const dir = await tempDir();
    const s = await LogStore.open(dir);
    await s.save({ entries: range(1, 3, 1) }, { sync: true });
    // Make the next LevelDB write fail for real by closing the handle underneath the store.
    await (s as unknown as { db: Level<Uint8Array, Uint8Array> }).db.close();
    await expect(s.save({ entries: [ent(4, 1)] }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    expect(() => s.lastIndex()).toThrowError(expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }));
    expect(() => s.entries(1, 2, 100)).toThrowError(expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }));
    await expect(s.save({ entries: [ent(4, 1)] }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    await expect(s.compact(1)).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
  });

  it('property: random appends/truncations/compactions/snapshots then reopen equal an in-memory reference', async () => {
    type Op =
      | { kind: 'append'; back: number; count: number; term: number }
      | { kind: 'compact'; frac: number }
      | { kind: 'snapshot'; ahead: number }
      | { kind: 'hard'; commitFrac: number };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.record({ kind: fc.constant('append' as const), back: fc.nat(6), count: fc.integer({ min: 1, max: 8 }), term: fc.integer({ min: 1, max: 5 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), ahead: fc.nat(5) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('hard' as const), commitFrac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 25 }), async (ops) => {
        const dir = await tempDir();
        const s = await LogStore.open(dir);
        // Reference model: the compaction point plus the live entries.
        let first = 1;
        let prevTerm = 0;
        let ref: Entry[] = [];
        let commit = 0;
        let snapIndex = 0;
        let seq = 0;
        const last = () => first - 1 + ref.length;
        const termAt = (i: number) => (i === first - 1 ? prevTerm : ref[i - first]!.term);
        for (const op of ops) {
          if (op.kind === 'append') {
            const start = Math.max(first, last() + 1 - op.back);
            const es = Array.from({ length: op.count }, (_, k) => ent(start + k, op.term, `v${seq++}`));
            await s.save({ entries: es }, { sync: true });
            ref = [...ref.slice(0, start - first), ...es];
            commit = Math.min(commit, last());
          } else if (op.kind === 'compact') {
            const idx = first - 1 + Math.floor(op.frac * ref.length);
            if (idx > first - 1) {
              const meta = { index: idx, term: termAt(idx), confState: conf };
              await s.compact(idx, meta);
              prevTerm = termAt(idx);
              ref = ref.slice(idx - first + 1);
              first = idx + 1;
              snapIndex = Math.max(snapIndex, idx);
            }
          } else if (op.kind === 'snapshot') {
            const idx = Math.max(last() + op.ahead, snapIndex);
            const term = 9;
            await s.applySnapshot({ index: idx, term, confState: conf });
            ref = [];
            first = idx + 1;
            prevTerm = term;
            snapIndex = idx;
            commit = Math.max(commit, idx);
          } else {
            const c = first - 1 + Math.floor(op.commitFrac * ref.length);
            commit = Math.max(c, first - 1);
            await s.save({ hardState: { term: 9, vote: 'x', commit } }, { sync: true });
          }
          expect([s.firstIndex(), s.lastIndex()]).toEqual([first, last()]);
        }
        // The in-memory mirror (what the core reads) equals the reference before any reload...
        expect(plain(ref.length > 0 ? s.entries(first, last() + 1, Infinity) : [])).toEqual(plain(ref));
        expect(s.term(first - 1)).toBe(prevTerm);
        await s.close();
        // ...and so does what is reloaded from disk.
        const r = await LogStore.open(dir);
        try {
          expect(r.recovery.cutEntries).toBe(0);
          expect([r.firstIndex(), r.lastIndex(), r.term(first - 1)]).toEqual([first, last(), prevTerm]);
          expect(plain(ref.length > 0 ? r.entries(first, last() + 1, Infinity) : [])).toEqual(plain(ref));
          expect(r.snapshot().metadata.index).toBe(snapIndex);
          expect(r.hardState().commit).toBeLessThanOrEqual(last());
        } finally {
          await r.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});
