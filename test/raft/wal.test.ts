import { spawn } from 'node:child_process';
import { cpSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { Wal, recoveringMarker } from '../../src/raft/wal/wal.js';
import { batchTrailer, batchTrailerBytes, beginRecordBytes, encodeSegmentHeader, opBytes, putBegin, putOp, segmentHeaderBytes } from '../../src/raft/wal/format.js';
import type { WalFs } from '../../src/raft/wal/fs.js';
import { nodeWalFs } from '../../src/raft/wal/node-fs.js';
import type { ConfState, Entry, HardState, SnapshotMetadata } from '../../src/raft/core/types.js';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'mooring-wal-'));
  dirs.push(d);
  return d;
}
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
  while (dirs.length > 0) await rm(dirs.pop()!, { recursive: true, force: true });
});

const conf: ConfState = { voters: ['a', 'b', 'c'], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
const conf2: ConfState = { voters: ['a', 'b'], learners: ['d'], votersOutgoing: [], learnersNext: [], autoLeave: false };
const ent = (index: number, term: number, text = `e${index}`): Entry => ({
  index,
  term,
  type: index % 7 === 0 ? 'confChange' : 'normal',
  data: new TextEncoder().encode(text),
});
const range = (lo: number, hi: number, term: number, tag = ''): Entry[] => Array.from({ length: hi - lo + 1 }, (_, k) => ent(lo + k, term, `${tag}e${lo + k}`));
const plain = (es: Entry[]) => es.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Buffer.from(e.data).toString() }));
const all = (w: Wal) => (w.lastIndex() >= w.firstIndex() ? plain(w.entries(w.firstIndex(), w.lastIndex() + 1, Infinity)) : []);
const segFiles = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.wal')).sort();
const small = { walSegmentBytes: 4096 };
/** Entry text that makes 10 entries take ~1 KiB, so 4 KiB segments roll often. */
const pad = 'p'.repeat(80);

async function openWal(dir: string, opts = {}): Promise<Wal> {
  const w = await Wal.open(dir, opts);
  cleanups.push(() => w.close());
  return w;
}

describe('Wal', () => {
  it('round-trips entries, hard state, conf state and snapshot metadata across reopen', async () => {
    const dir = await tempDir();
    const w = await Wal.open(dir);
    expect([w.firstIndex(), w.lastIndex(), w.term(0)]).toEqual([1, 0, 0]);
    await w.applySnapshot({ index: 1, term: 1, confState: conf });
    await w.save({ entries: range(2, 10, 1), hardState: { term: 1, vote: 'nœud-ä', commit: 4 } }, { sync: true }); // multi-byte vote
    await w.save({ entries: range(8, 12, 2, 'x'), confState: conf2 }, { sync: true }); // truncates 8..10
    expect(w.lastIndex()).toBe(12);
    expect(plain(w.entries(3, 6, Infinity))).toEqual(plain(range(3, 5, 1)));
    expect(w.entries(2, 13, 1)).toHaveLength(1); // maxBytes: at least one entry
    await w.close();
    const r = await openWal(dir);
    expect([r.firstIndex(), r.lastIndex(), r.term(1), r.term(7), r.term(8)]).toEqual([2, 12, 1, 1, 2]);
    expect(all(r)).toEqual(plain([...range(2, 7, 1), ...range(8, 12, 2, 'x')]));
    // A restart starts from the snapshot's membership (Storage.initialState); the recorded one is kept.
    expect(r.initialState()).toEqual({ hardState: { term: 1, vote: 'nœud-ä', commit: 4 }, confState: conf });
    expect(r.recordedConfState()).toEqual(conf2);
    expect(r.snapshot().metadata).toEqual({ index: 1, term: 1, confState: conf });
    expect(r.recovery.cutAt).toBeNull();
    expect(() => r.entries(1, 3, Infinity)).toThrowError(expect.objectContaining({ code: ErrorCode.COMPACTED }));
  });

  it('serializes overlapping saves in call order, including a truncating one (pipelined Ready loop)', async () => {
    const dir = await tempDir();
    const w = await Wal.open(dir, small);
    const order: number[] = [];
    // Issued without waiting, as the pipelined Ready loop does: each one sees the log the earlier ones left.
    const saves = [
      w.save({ entries: range(1, 20, 1, pad), hardState: { term: 1, vote: 'a', commit: 0 } }, { sync: true }),
      w.save({ entries: range(21, 40, 1, pad) }, { sync: true }),
      w.save({ entries: range(15, 18, 2, 'x'), hardState: { term: 2, vote: null, commit: 10 } }, { sync: true }), // truncates 15..40
      w.save({ hardState: { term: 2, vote: null, commit: 12 } }, { sync: false }),
      w.save({ entries: range(19, 22, 2, 'y') }, { sync: true }),
    ].map((p, i) => p.then(() => { order.push(i); }));
    await Promise.all(saves);
    expect(order).toEqual([0, 1, 2, 3, 4]);
    const expected = plain([...range(1, 14, 1, pad), ...range(15, 18, 2, 'x'), ...range(19, 22, 2, 'y')]);
    expect(all(w)).toEqual(expected);
    await w.close();
    const r = await openWal(dir, small);
    expect(all(r)).toEqual(expected);
    expect(r.hardState()).toEqual({ term: 2, vote: null, commit: 12 });
  });

  it('an overlapping save after a failed one rejects too: nothing after a failed fsync is acknowledged', async () => {
    const dir = await tempDir();
    let writes = 0;
    const w = await Wal.open(dir, {
      walSyncMode: 'fdatasync',
      io: {
        datasync: async (fh) => {
          if (++writes === 2) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          await fh.datasync();
        },
      },
    });
    cleanups.push(() => w.close());
    const a = w.save({ entries: range(1, 3, 1) }, { sync: true });
    const b = w.save({ entries: range(4, 6, 1) }, { sync: true });
    const c = w.save({ entries: range(7, 9, 1) }, { sync: true });
    await expect(a).resolves.toBeUndefined();
    await expect(b).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    await expect(c).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
    expect(writes).toBe(2);
  });

  it('rolls to new preallocated segments and reads them back in order', async () => {
    const dir = await tempDir();
    const w = await Wal.open(dir, small);
    for (let i = 1; i <= 200; i += 10) await w.save({ entries: range(i, i + 9, 3, pad), hardState: { term: 3, vote: null, commit: i } }, { sync: true });
    expect(w.segmentCount).toBeGreaterThan(3);
    // Every segment was zero-filled to its full size when created.
    for (const f of segFiles(dir).slice(0, -1)) expect(readFileSync(join(dir, f)).byteLength).toBe(4096);
    await w.close();
    const r = await openWal(dir, small);
    expect(all(r)).toEqual(plain(range(1, 200, 3, pad)));
    expect(r.hardState()).toEqual({ term: 3, vote: null, commit: 191 });
  });

  it('holds a sync:false commit change in memory, writes it with the next batch or on close, and loses only it in a crash', async () => {
    const dir = await tempDir();
    const w = await Wal.open(dir);
    await w.save({ entries: range(1, 5, 1), hardState: { term: 1, vote: 'a', commit: 1 } }, { sync: true });
    const pos = w.position.offset;
    await w.save({ hardState: { term: 1, vote: 'a', commit: 3 } }, { sync: false });
    expect(w.position.offset).toBe(pos); // nothing written
    expect(w.hardState().commit).toBe(3);
    await w.abandonForTest();
    const r = await Wal.open(dir);
    expect([r.hardState().commit, r.lastIndex()]).toEqual([1, 5]);
    await r.save({ hardState: { term: 1, vote: 'a', commit: 4 } }, { sync: false });
    await r.close();
    const q = await openWal(dir);
    expect(q.hardState().commit).toBe(4);
  });

  describe('torn tail', () => {
    /** A WAL with 3 batches; returns the byte range of the last one. */
    async function threeBatches(dir: string): Promise<{ start: number; end: number; file: string }> {
      const w = await Wal.open(dir, small);
      await w.save({ entries: range(1, 4, 1), hardState: { term: 1, vote: 'a', commit: 2 } }, { sync: true });
      await w.save({ entries: range(5, 6, 1), hardState: { term: 1, vote: 'a', commit: 4 } }, { sync: true });
      const start = w.position.offset;
      // Same term and vote: one batch (a term or vote change is written twice: see 'recovering' below).
      await w.save({ entries: range(7, 8, 2, 'last'), hardState: { term: 1, vote: 'a', commit: 8 } }, { sync: true });
      const { offset: end, file } = w.position;
      await w.abandonForTest();
      return { start, end, file };
    }

    /**
     * `damaged`: false when the whole batch is gone (then the log simply ends before it: nothing to cut).
     * `suspect`: whether the cut batch may have been complete (then the node must start recovering).
     */
    async function expectCutToTwo(dir: string, damaged = true, suspect?: boolean): Promise<void> {
      const r = await Wal.open(dir, small);
      try {
        expect(all(r)).toEqual(plain(range(1, 6, 1)));
        expect(r.hardState()).toEqual({ term: 1, vote: 'a', commit: 4 });
        expect(r.recovery.cutAt === null).toBe(!damaged);
        if (suspect !== undefined) {
          expect(r.recovery.cutSuspect).toBe(suspect);
          expect(r.initialState().hardState.recovering === true).toBe(suspect);
          expect(readdirSync(dir).includes(recoveringMarker)).toBe(suspect);
        }
        // It goes on appending where the tail was cut, and that survives another reopen.
        await r.save({ entries: [ent(7, 5, 'after')], hardState: { term: 5, vote: null, commit: 6 } }, { sync: true });
      } finally {
        await r.close();
      }
      const q = await Wal.open(dir, small);
      try {
        expect(q.recovery.cutAt).toBeNull();
        expect(all(q)).toEqual(plain([...range(1, 6, 1), ent(7, 5, 'after')]));
      } finally {
        await q.close();
      }
    }

    it('is cut back to the last whole batch when the file ends at any byte of the last batch', async () => {
      const base = await tempDir();
      const { start, end, file } = await threeBatches(base);
      const name = file.slice(base.length + 1);
      for (let b = start; b < end; b++) {
        const dir = await tempDir();
        cpSync(base, dir, { recursive: true });
        truncateSync(join(dir, name), b);
        await expectCutToTwo(dir, b > start, b > start ? false : undefined);
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('is cut back when the last batch was persisted only up to any byte (the rest still zeros)', async () => {
      const base = await tempDir();
      const { start, end, file } = await threeBatches(base);
      const name = file.slice(base.length + 1);
      for (let b = start; b < end; b++) {
        const dir = await tempDir();
        cpSync(base, dir, { recursive: true });
        const buf = readFileSync(join(dir, name));
        buf.fill(0, b, end);
        writeFileSync(join(dir, name), buf);
        // Provably torn (the trailer's last two bytes are zeros) unless exactly its last byte is missing, which a
        // flipped byte could look like.
        await expectCutToTwo(dir, b > start, b > start ? b === end - 1 : undefined);
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('is cut back when any single sector-sized piece of the last batch is missing (out-of-order writeback)', async () => {
      const base = await tempDir();
      const { start, end, file } = await threeBatches(base);
      const name = file.slice(base.length + 1);
      for (let b = start; b < end; b += 7) {
        const dir = await tempDir();
        cpSync(base, dir, { recursive: true });
        const buf = readFileSync(join(dir, name));
        buf.fill(0, b, Math.min(end, b + 16)); // a hole with valid bytes of the same batch after it
        writeFileSync(join(dir, name), buf);
        await expectCutToTwo(dir);
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('a damaged last batch (recovering)', () => {
    it('any byte of a complete last batch flipped: cut, and the node recovers (a RECOVERING marker), never taken for torn', async () => {
      const base = await tempDir();
      const w = await Wal.open(base, small);
      await w.save({ entries: range(1, 6, 1), hardState: { term: 1, vote: 'a', commit: 4 } }, { sync: true });
      const start = w.position.offset;
      await w.save({ entries: range(7, 8, 1, 'last'), hardState: { term: 1, vote: 'a', commit: 6 } }, { sync: true });
      const { offset: end, file } = w.position;
      await w.abandonForTest();
      const name = file.slice(base.length + 1);
      for (let b = start; b < end; b++) {
        const original = readFileSync(join(base, name))[b]!;
        for (const flip of [1, original === 0 ? 0x80 : original]) { // any change, and one to zero
          const dir = await tempDir();
          cpSync(base, dir, { recursive: true });
          const buf = readFileSync(join(dir, name));
          buf[b] = buf[b]! ^ flip;
          writeFileSync(join(dir, name), buf);
          const r = await Wal.open(dir, small);
          expect(r.recovery.cutAt, `byte ${b}`).not.toBeNull();
          expect(r.recovery.cutSuspect, `byte ${b} ^ ${flip}`).toBe(true);
          expect(r.initialState().hardState.recovering).toBe(true);
          // The batch's end survives in one of its two LOG_END records: what this node may have acknowledged.
          expect(r.initialState().hardState.recoveringBound, `byte ${b} ^ ${flip}`).toEqual({ index: 8, term: 1 });
          expect(r.lastIndex()).toBe(6);
          await r.close();
          await rm(dir, { recursive: true, force: true });
        }
      }
    });

    it('a multi-sector last batch: a missing (all-zero) sector piece is provably torn, a flipped byte anywhere is suspect', async () => {
      const base = await tempDir();
      const w = await Wal.open(base, small);
      await w.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: 'a', commit: 2 } }, { sync: true });
      const start = w.position.offset;
      await w.save({ entries: range(4, 20, 1, pad), hardState: { term: 1, vote: 'a', commit: 3 } }, { sync: true });
      const { offset: end, file } = w.position;
      await w.abandonForTest();
      expect(end - start).toBeGreaterThan(3 * 512);
      const name = file.slice(base.length + 1);
      const open = async (mutate: (buf: Buffer) => void): Promise<boolean> => {
        const dir = await tempDir();
        cpSync(base, dir, { recursive: true });
        const buf = readFileSync(join(dir, name));
        mutate(buf);
        writeFileSync(join(dir, name), buf);
        const r = await Wal.open(dir, small);
        expect(r.lastIndex()).toBe(3);
        const suspect = r.recovery.cutSuspect;
        await r.close();
        await rm(dir, { recursive: true, force: true });
        return suspect;
      };
      // Out-of-order writeback: one sector piece of the write never reached the disk.
      const pieces: Array<[number, number]> = [];
      for (let ps = start, pe = (Math.floor(start / 512) + 1) * 512; ps < end; ps = pe, pe = Math.min(end, pe + 512)) pieces.push([ps, pe]);
      for (const [ps, pe] of pieces) expect(await open((b) => b.fill(0, ps, pe)), `piece ${ps}-${pe}`).toBe(false);
      for (let b = start; b < end; b += 5) expect(await open((buf) => { buf[b] = buf[b]! ^ 0x41; }), `byte ${b}`).toBe(true);
    });

    it('the marker outlives a crash before recovery ends, and goes (durably) with the first hard state without it', async () => {
      const dir = await tempDir();
      const w = await Wal.open(dir, small);
      await w.save({ entries: range(1, 4, 1), hardState: { term: 1, vote: 'a', commit: 2 } }, { sync: true });
      const { file, offset } = w.position;
      await w.abandonForTest();
      const buf = readFileSync(file);
      buf[offset - 1] = buf[offset - 1]! ^ 0x10; // the last batch's last byte
      writeFileSync(file, buf);
      const r = await Wal.open(dir, small);
      expect(r.initialState().hardState.recovering).toBe(true);
      expect(r.lastIndex()).toBe(4); // the cut batch was the hard state's second copy
      await r.save({ entries: range(5, 6, 1) }, { sync: true });
      await r.abandonForTest(); // crashed while recovering: the cut bytes are zeros now, the marker still says so
      const q = await Wal.open(dir, small);
      expect(q.recovery.cutAt).toBeNull();
      expect(q.initialState().hardState.recovering).toBe(true);
      await q.save({ entries: range(7, 8, 1), hardState: { term: 1, vote: 'a', commit: 4, recovering: true } }, { sync: true });
      expect(readdirSync(dir)).toContain(recoveringMarker);
      await q.save({ hardState: { term: 1, vote: 'a', commit: 8 } }, { sync: true });
      expect(readdirSync(dir)).not.toContain(recoveringMarker);
      await q.close();
      const z = await openWal(dir, small);
      expect(z.initialState().hardState.recovering).toBeUndefined();
      expect(z.lastIndex()).toBe(8);
    });

    it('cut again while recovering: the marker keeps the later log end; a marker without one (older versions) gives none', async () => {
      const dir = await tempDir();
      const flipLast = (file: string, offset: number): void => {
        const buf = readFileSync(file);
        buf[offset - 1] = buf[offset - 1]! ^ 0x10;
        writeFileSync(file, buf);
      };
      const w = await Wal.open(dir, small);
      await w.save({ entries: range(1, 4, 1), hardState: { term: 1, vote: 'a', commit: 2 } }, { sync: true });
      await w.save({ entries: range(5, 6, 1) }, { sync: true });
      let at = w.position;
      await w.abandonForTest();
      flipLast(at.file, at.offset);
      const r = await Wal.open(dir, small);
      expect(r.initialState().hardState.recoveringBound).toEqual({ index: 6, term: 1 });
      expect(r.lastIndex()).toBe(4);
      // Recovering, it takes a leader's entries in a later term (a shorter log), then loses that batch too.
      await r.save({ entries: [ent(5, 2, 'new')], hardState: { term: 2, vote: null, commit: 4, recovering: true } }, { sync: true });
      await r.save({ entries: [ent(6, 2, 'new')] }, { sync: true });
      at = r.position;
      await r.abandonForTest();
      flipLast(at.file, at.offset);
      const q = await Wal.open(dir, small);
      expect(q.lastIndex()).toBe(5);
      expect(q.initialState().hardState.recoveringBound).toEqual({ index: 6, term: 2 }); // later than (6, 1)
      await q.abandonForTest();
      // A marker an older version wrote names no log end: the node recovers without voting, as before.
      writeFileSync(join(dir, recoveringMarker), `${JSON.stringify({ cutAt: { segment: 1, offset: 100 }, cutBytes: 50 })}\n`);
      const z = await openWal(dir, small);
      expect(z.initialState().hardState.recovering).toBe(true);
      expect(z.initialState().hardState.recoveringBound).toBeUndefined();
    });

    it('a term or vote is written twice, so cutting a damaged last batch never forgets a vote that was sent', async () => {
      const dir = await tempDir();
      const w = await Wal.open(dir, small);
      await w.save({ entries: range(1, 3, 1), hardState: { term: 1, vote: 'a', commit: 1 } }, { sync: true });
      await w.save({ hardState: { term: 2, vote: 'b', commit: 1 } }, { sync: true });
      const { file, offset } = w.position;
      await w.abandonForTest();
      const buf = readFileSync(file);
      buf[offset - 1] = buf[offset - 1]! ^ 0x01;
      writeFileSync(file, buf);
      const r = await openWal(dir, small);
      expect(r.recovery.cutSuspect).toBe(true);
      expect(r.hardState()).toEqual({ term: 2, vote: 'b', commit: 1 });
    });

    it('reads and appends to a format-1 segment (no batch trailers) written by an older version', async () => {
      const dir = await tempDir();
      const salt = 0x1234567;
      const seg = Buffer.alloc(4096);
      encodeSegmentHeader({ seq: 1, salt, version: 1 }).copy(seg, 0);
      const ops = [...range(1, 3, 1).map((entry) => ({ kind: 'entry' as const, entry })), { kind: 'hardState' as const, hard: { term: 1, vote: 'a', commit: 2 } }];
      let bytes = beginRecordBytes;
      for (const op of ops) bytes += opBytes(op);
      let off = putBegin(seg, segmentHeaderBytes, { seq: 1, bytes, records: ops.length }, salt);
      for (const op of ops) off = putOp(seg, off, op, salt);
      writeFileSync(join(dir, '0000000000000001.wal'), seg);
      const w = await Wal.open(dir, small);
      expect(all(w)).toEqual(plain(range(1, 3, 1)));
      await w.save({ entries: range(4, 5, 1) }, { sync: true });
      await w.close();
      const r = await openWal(dir, small);
      expect(all(r)).toEqual(plain(range(1, 5, 1)));
      expect(r.recovery.cutAt).toBeNull();
    });
  });

  it('reads batches without LOG_END records (written before they existed); a damaged one of them recovers without a bound', async () => {
    const salt = 0x2345678;
    const seg = Buffer.alloc(4096);
    encodeSegmentHeader({ seq: 1, salt, version: 2 }).copy(seg, 0);
    let off = segmentHeaderBytes;
    const starts: number[] = [];
    for (const [seq, ops] of [
      [1, [...range(1, 3, 1).map((entry) => ({ kind: 'entry' as const, entry })), { kind: 'hardState' as const, hard: { term: 1, vote: 'a', commit: 2 } }]],
      [2, range(4, 5, 1).map((entry) => ({ kind: 'entry' as const, entry }))],
    ] as const) {
      starts.push(off);
      let bytes = beginRecordBytes + batchTrailerBytes;
      for (const op of ops) bytes += opBytes(op);
      off = putBegin(seg, off, { seq, bytes, records: ops.length }, salt);
      for (const op of ops) off = putOp(seg, off, op, salt);
      off += batchTrailer.copy(seg, off);
    }
    const dir = await tempDir();
    writeFileSync(join(dir, '0000000000000001.wal'), seg);
    const damaged = await tempDir();
    const bad = Buffer.from(seg);
    bad[starts[1]! + beginRecordBytes + 20] ^= 0x20; // inside entry 4 of the last batch
    writeFileSync(join(damaged, '0000000000000001.wal'), bad);

    const w = await Wal.open(dir, small);
    expect(all(w)).toEqual(plain(range(1, 5, 1)));
    await w.save({ entries: range(6, 7, 1) }, { sync: true }); // new batches (with LOG_END) after old ones
    await w.close();
    const r = await openWal(dir, small);
    expect(all(r)).toEqual(plain(range(1, 7, 1)));

    const d = await openWal(damaged, small);
    expect(d.lastIndex()).toBe(3);
    expect(d.initialState().hardState.recovering).toBe(true);
    expect(d.initialState().hardState.recoveringBound).toBeUndefined(); // unknown: it does not vote until recovered
  });

  describe('corruption in the middle', () => {
    async function build(dir: string): Promise<{ starts: number[]; file: string }> {
      const w = await Wal.open(dir, small);
      const starts: number[] = [];
      for (let i = 0; i < 4; i++) {
        starts.push(w.position.offset);
        await w.save({ entries: range(i * 5 + 1, i * 5 + 5, 1), hardState: { term: 1, vote: 'a', commit: i * 5 } }, { sync: true });
      }
      const file = w.position.file;
      await w.close();
      return { starts, file };
    }

    it('refuses to open (CORRUPT_LOG) when any byte of a middle batch is flipped', async () => {
      const base = await tempDir();
      const { starts, file } = await build(base);
      const name = file.slice(base.length + 1);
      for (let b = starts[1]!; b < starts[2]!; b++) {
        const dir = await tempDir();
        cpSync(base, dir, { recursive: true });
        const buf = readFileSync(join(dir, name));
        buf[b]! ^= 0x40;
        writeFileSync(join(dir, name), buf);
        await expect(Wal.open(dir, small), `byte ${b}`).rejects.toMatchObject({ code: ErrorCode.CORRUPT_LOG });
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses to open when a middle batch is zeroed (a hole) or a segment is missing', async () => {
      const dir = await tempDir();
      const { starts, file } = await build(dir);
      const buf = readFileSync(file);
      buf.fill(0, starts[1]!, starts[2]!);
      writeFileSync(file, buf);
      await expect(Wal.open(dir, small)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_LOG });

      const dir2 = await tempDir();
      const w = await Wal.open(dir2, small);
      for (let i = 1; i <= 200; i += 10) await w.save({ entries: range(i, i + 9, 3, pad) }, { sync: true });
      await w.close();
      const segs = segFiles(dir2);
      expect(segs.length).toBeGreaterThan(2);
      await rm(join(dir2, segs[1]!));
      await expect(Wal.open(dir2, small)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_LOG });
    });

    it('refuses to open when a damaged batch in one segment is followed by valid batches in the next', async () => {
      const dir = await tempDir();
      const w = await Wal.open(dir, small);
      for (let i = 1; i <= 200; i += 10) await w.save({ entries: range(i, i + 9, 3, pad) }, { sync: true });
      await w.close();
      const segs = segFiles(dir);
      const file = join(dir, segs[segs.length - 2]!);
      const buf = readFileSync(file);
      let last = buf.byteLength - 1;
      while (buf[last] === 0) last--;
      buf[last - 3]! ^= 1; // inside the last batch of the second-to-last segment
      writeFileSync(file, buf);
      await expect(Wal.open(dir, small)).rejects.toMatchObject({ code: ErrorCode.CORRUPT_LOG });
    });
  });

  it('compaction deletes whole segments behind the first live entry; reopen gives the same log', async () => {
    const dir = await tempDir();
    const w = await Wal.open(dir, small);
    await w.applySnapshot({ index: 1, term: 1, confState: conf });
    for (let i = 2; i <= 401; i += 10) await w.save({ entries: range(i, i + 9, 2, pad), hardState: { term: 2, vote: 'a', commit: i + 9 } }, { sync: true });
    const before = segFiles(dir).length;
    expect(before).toBeGreaterThan(5);
    await w.compact(350, { index: 380, term: 2, confState: conf2 });
    const after = segFiles(dir);
    expect(after.length).toBeLessThan(before - 2);
    expect(w.segmentCount).toBe(after.length);
    expect([w.firstIndex(), w.term(350)]).toEqual([351, 2]);
    await w.close();
    const r = await Wal.open(dir, small);
    expect([r.firstIndex(), r.lastIndex(), r.term(350)]).toEqual([351, 401, 2]);
    expect(all(r)).toEqual(plain(range(351, 401, 2, pad)));
    expect(r.snapshot().metadata).toEqual({ index: 380, term: 2, confState: conf2 });
    expect(r.hardState()).toEqual({ term: 2, vote: 'a', commit: 401 });
    // A snapshot from a leader drops the whole log: only the current segment is left.
    await r.applySnapshot({ index: 1000, term: 7, confState: conf });
    expect(segFiles(dir)).toHaveLength(1);
    await r.close();
    const q = await openWal(dir, small);
    expect([q.firstIndex(), q.lastIndex(), q.term(1000), q.hardState().commit]).toEqual([1001, 1000, 7, 1000]);
  });

  describe('crash-stop on a failed write or fsync', () => {
    it('an injected fdatasync error rejects with STORAGE_FAILED, is never retried, and stops the WAL', async () => {
      const dir = await tempDir();
      let syncs = 0;
      let fail = false;
      const w = await Wal.open(dir, {
        walSyncMode: 'fdatasync',
        io: {
          datasync: async (fh) => {
            syncs++;
            if (fail) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
            await fh.datasync();
          },
        },
      });
      cleanups.push(() => w.close());
      await w.save({ entries: range(1, 3, 1) }, { sync: true });
      fail = true;
      const n = syncs;
      await expect(w.save({ entries: [ent(4, 1)] }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      expect(syncs).toBe(n + 1);
      expect(() => w.lastIndex()).toThrowError(expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }));
      expect(() => w.entries(1, 2, 100)).toThrowError(expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }));
      await expect(w.save({ entries: [ent(4, 1)] }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      await expect(w.compact(1)).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      expect(syncs).toBe(n + 1); // never retried
    });

    it('with O_DSYNC (the default) a failing durable write is STORAGE_FAILED, never retried', async () => {
      const dir = await tempDir();
      let writes = 0;
      let fail = false;
      const w = await Wal.open(dir, {
        io: {
          write: async (fh, buf, pos) => {
            writes++;
            if (fail) throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
            await fh.write(buf, 0, buf.byteLength, pos);
          },
        },
      });
      cleanups.push(() => w.close());
      await w.save({ entries: range(1, 3, 1) }, { sync: true });
      fail = true;
      await expect(w.save({ entries: [ent(4, 1)] }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      const n = writes;
      await expect(w.save({ hardState: { term: 1, vote: null, commit: 1 } }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      expect(writes).toBe(n);
      expect(() => w.term(1)).toThrowError(expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }));
    });

    it('a real failing write (file closed underneath) is STORAGE_FAILED too', async () => {
      const dir = await tempDir();
      const w = await openWal(dir);
      await w.save({ entries: range(1, 3, 1) }, { sync: true });
      await (w as unknown as { cur: { fh: { close(): Promise<void> } } }).cur.fh.close();
      await expect(w.save({ entries: [ent(4, 1)] }, { sync: true })).rejects.toMatchObject({ code: ErrorCode.STORAGE_FAILED });
      expect(() => w.firstIndex()).toThrowError(expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }));
    });
  });

  it('short writes (a write that reports fewer bytes) are completed everywhere, segment headers included', async () => {
    // Found by the full-node simulator's short writes: a new segment's header written short was refused at the
    // next open ("has no valid header", CORRUPT_LOG).
    const dir = await tempDir();
    const shortFs: WalFs = {
      ...nodeWalFs,
      async open(file, mode) {
        const fh = await nodeWalFs.open(file, mode);
        return {
          write: (buf, off, len, pos) => fh.write(buf, off, Math.min(len, 7), pos),
          datasync: () => fh.datasync(),
          sync: () => fh.sync(),
          close: () => fh.close(),
        };
      },
    };
    const w = await Wal.open(dir, { ...small, fs: shortFs });
    for (let i = 1; i <= 60; i += 10) await w.save({ entries: range(i, i + 9, 1, pad) }, { sync: true });
    expect(w.segmentCount).toBeGreaterThan(1);
    await w.close();
    const r = await openWal(dir, small);
    expect(all(r)).toEqual(plain(range(1, 60, 1, pad)));
  });

  describe('dir lock', () => {
    it('a second open of the same dir fails with "another process holds DIR"', async () => {
      const dir = await tempDir();
      await openWal(dir);
      await expect(Wal.open(dir)).rejects.toThrow(/another process holds/);
    });

    it('a lock held by another live process is refused; one left by a dead process is taken over', async () => {
      const dir = await tempDir();
      const w = await Wal.open(dir);
      await w.close();
      const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
      cleanups.push(() => { sleeper.kill('SIGKILL'); });
      const stat = readFileSync(`/proc/${sleeper.pid}/stat`, 'utf8');
      const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      writeFileSync(join(dir, 'LOCK'), JSON.stringify({ pid: sleeper.pid, startTime }));
      await expect(Wal.open(dir)).rejects.toThrow(new RegExp(`another process holds .* \\(pid ${sleeper.pid}`));
      // The same pid with another start time is a recycled pid: stale.
      writeFileSync(join(dir, 'LOCK'), JSON.stringify({ pid: sleeper.pid, startTime: '1' }));
      const r = await Wal.open(dir);
      await r.close();
      sleeper.kill('SIGKILL');
      await new Promise((res) => sleeper.once('exit', res));
      writeFileSync(join(dir, 'LOCK'), JSON.stringify({ pid: sleeper.pid, startTime }));
      const q = await Wal.open(dir);
      await q.close();
    });
  });

  it('property: random save/compact/applySnapshot/crash sequences equal an in-memory model after every reopen', async () => {
    type Op =
      | { kind: 'append'; back: number; count: number; term: number; sync: boolean }
      | { kind: 'hard'; commitFrac: number; sync: boolean }
      | { kind: 'compact'; frac: number }
      | { kind: 'snapshot'; ahead: number }
      | { kind: 'crash'; tear: number | null }
      | { kind: 'reopen' };
    const opArb: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), back: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(6) }), count: fc.integer({ min: 1, max: 12 }), term: fc.integer({ min: 1, max: 5 }), sync: fc.boolean() }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('hard' as const), commitFrac: fc.double({ min: 0, max: 1, noNaN: true }), sync: fc.boolean() }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), frac: fc.double({ min: 0, max: 1, noNaN: true }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), ahead: fc.nat(5) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), tear: fc.option(fc.double({ min: 0, max: 0.999, noNaN: true }), { nil: null }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const) }) },
    );
    interface Model { first: number; prevTerm: number; ref: Entry[]; hard: HardState; snap: SnapshotMetadata }
    const copy = (m: Model): Model => ({ ...m, ref: [...m.ref], hard: { ...m.hard } });
    const seed = Number(process.env.WAL_PROPERTY_SEED ?? Date.now() % 1_000_000);
    console.log(`wal property seed ${seed} (replay: WAL_PROPERTY_SEED=${seed})`);
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), async (ops) => {
        const dir = await tempDir();
        const opts = { walSegmentBytes: 1024 };
        let w = await Wal.open(dir, opts);
        let m: Model = { first: 1, prevTerm: 0, ref: [], hard: { term: 0, vote: null, commit: 0 }, snap: { index: 0, term: 0, confState: conf } };
        let durable = copy(m); // the state after the last written batch
        let beforeLast = copy(m); // the state before it (what a torn last batch leaves)
        let lastBatch: { file: string; start: number; end: number } | null = null;
        // A term or vote change is written twice (the change, then a second one-record batch): a tear that leaves the
        // first copy whole keeps the change. Only the hard state differs between the two outcomes then.
        let lastWasVoteChange = false;
        let keptIfFirstCopyWhole: Model | null = null;
        let seq = 0;
        const last = () => m.first - 1 + m.ref.length;
        const termAt = (i: number) => (i === m.first - 1 ? m.prevTerm : m.ref[i - m.first]!.term);
        const wrote = async (fn: () => Promise<void>) => {
          const start = w.position;
          await fn();
          const end = w.position;
          if (end.offset !== start.offset || end.segment !== start.segment) {
            lastWasVoteChange = m.hard.term !== durable.hard.term || m.hard.vote !== durable.hard.vote;
            beforeLast = durable;
            durable = copy(m);
            lastBatch = end.segment === start.segment ? { file: end.file, start: start.offset, end: end.offset } : null;
          }
        };
        const check = (x: Wal, want: Model, hard: HardState) => {
          expect([x.firstIndex(), x.lastIndex(), x.term(want.first - 1)]).toEqual([want.first, want.first - 1 + want.ref.length, want.prevTerm]);
          expect(all(x)).toEqual(plain(want.ref));
          expect(x.hardState()).toEqual(hard);
          expect(x.snapshot().metadata.index).toBe(want.snap.index);
        };
        try {
          for (const op of ops) {
            if (op.kind === 'append') {
              const start = Math.max(m.first, last() + 1 - op.back);
              const es = Array.from({ length: op.count }, (_, k) => ent(start + k, op.term, `v${seq++}-${"x".repeat(30)}`));
              m.ref = [...m.ref.slice(0, start - m.first), ...es];
              m.hard = { ...m.hard, commit: Math.min(m.hard.commit, last()) };
              await wrote(() => w.save({ entries: es, hardState: m.hard }, { sync: op.sync }));
            } else if (op.kind === 'hard') {
              m.hard = { term: 9, vote: 'x', commit: Math.max(m.first - 1, m.first - 1 + Math.floor(op.commitFrac * m.ref.length)) };
              await wrote(() => w.save({ hardState: m.hard }, { sync: op.sync }));
            } else if (op.kind === 'compact') {
              const idx = m.first - 1 + Math.floor(op.frac * m.ref.length);
              if (idx > m.first - 1) {
                const meta = { index: idx, term: termAt(idx), confState: conf };
                m.prevTerm = termAt(idx);
                m.ref = m.ref.slice(idx - m.first + 1);
                m.first = idx + 1;
                if (idx > m.snap.index) m.snap = meta;
                await wrote(() => w.compact(idx, meta));
                lastBatch = null; // segments were deleted after it was durable: it can no longer be the torn write
              }
            } else if (op.kind === 'snapshot') {
              const idx = Math.max(last() + op.ahead, m.snap.index);
              m.snap = { index: idx, term: 9, confState: conf };
              m.ref = [];
              m.first = idx + 1;
              m.prevTerm = 9;
              m.hard = { ...m.hard, commit: Math.max(m.hard.commit, idx) };
              await wrote(() => w.applySnapshot(m.snap));
              lastBatch = null;
            } else {
              if (op.kind === 'reopen') {
                await w.close();
                durable = copy(m); // close writes held state
              } else {
                await w.abandonForTest();
                keptIfFirstCopyWhole = lastWasVoteChange ? durable : null;
                const lb = lastBatch as { file: string; start: number; end: number } | null;
                if (op.tear !== null && lb !== null) {
                  const buf = readFileSync(lb.file);
                  const from = lb.start + Math.floor(op.tear * (lb.end - lb.start));
                  // Zeroing bytes that were zero anyway tears nothing: the batch is still whole.
                  if (buf.subarray(from, lb.end).some((x) => x !== 0)) durable = beforeLast;
                  buf.fill(0, from, lb.end);
                  writeFileSync(lb.file, buf);
                }
              }
              m = copy(durable);
              w = await Wal.open(dir, opts);
              const kept = keptIfFirstCopyWhole;
              keptIfFirstCopyWhole = null;
              if (op.kind === 'crash' && kept !== null && kept !== durable && w.hardState().term === kept.hard.term && w.hardState().vote === kept.hard.vote) {
                m = copy(kept); // the tear fell in the second copy of the term/vote change: the first copy is whole
              }
              // A crash may lose a held commit-index change; the model then has the durable commit.
              m.hard = { ...m.hard, commit: Math.min(Math.max(m.hard.commit, m.first - 1), last()) };
              check(w, m, m.hard);
              beforeLast = durable = copy(m);
              lastBatch = null;
            }
            expect([w.firstIndex(), w.lastIndex()]).toEqual([m.first, last()]);
          }
          check(w, m, m.hard);
          // ...and what a final clean reopen reads back from disk.
          await w.close();
          w = await Wal.open(dir, opts);
          check(w, m, { ...m.hard, commit: Math.max(m.hard.commit, m.first - 1) }); // open: the snapshot point is committed
          expect(w.recovery.cutAt).toBeNull();
        } finally {
          await w.close();
        }
      }),
      { numRuns: 100, seed },
    );
  }, 120_000);
});
