import { describe, expect, it } from 'vitest';
import { MooringError } from '../../src/errors.js';
import { MasterState } from '../../src/statemachine/master-state.js';
import * as L from '../../src/statemachine/limits.js';
import { Level } from 'level';
import { packr } from '../../src/statemachine/codec.js';
import type { StateStore } from '../../src/statemachine/store.js';
import { Driver, seg, tempDir } from './helpers.js';

describe('MasterState persistence', () => {
  it('keeps state, applied index (incl. no-ops) and exactly-once replies across a reopen; junk entries do not crash', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      const r = await a.applyBatch([
        { index: 1, timeMs: 10, command: { type: 'MountSegment', clientId: 'n', seq: 1, segment: seg('s', 1 << 20) } },
        { index: 2, timeMs: 11, command: { type: 'PutStart', clientId: 'w', seq: 1, key: 'k', size: 100, replicaNum: 1 } },
        { index: 3, timeMs: 12, command: { hello: 'junk' } as never },
        { index: 5, timeMs: 13, command: { type: 'PutEnd', clientId: 'w', seq: 2, key: 'k' } },
      ]);
      expect(r.map((x) => x.ok)).toEqual([true, true, false, true]);
      await a.applyNoop(9);
      await a.flush();
      const hash = a.stateHash();
      await a.close();
      await expect(a.applyBatch([])).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
      const b = await MasterState.open(t.dir);
      expect(b.appliedIndex).toBe(9);
      expect(b.stateHash()).toBe(hash);
      expect(b.existKey('k')).toBe(true);
      // A retry after the restart returns the first reply and changes nothing.
      const [again] = await b.applyBatch([{ index: 10, timeMs: 20, command: { type: 'PutStart', clientId: 'w', seq: 1, key: 'k', size: 100, replicaNum: 1 } }]);
      expect(again).toEqual(r[1]);
      expect(b.stats().objectCount).toBe(1);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });

  it('a seq older than the reply window is refused, not re-applied', () => {
    const d = new Driver();
    d.ok({ type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 20) });
    for (let s = 1; s <= L.sessionReplyWindow + 1; s++) d.ok({ type: 'PutStart', clientId: 'w', seq: s, key: `k${s}`, size: 10, replicaNum: 1 });
    const late = d.apply({ type: 'PutStart', clientId: 'w', seq: 1, key: 'k1', size: 10, replicaNum: 1 });
    // Refused, but seq 1's first attempt applied: the client must not take it as a definite failure.
    expect(late.ok).toBe(false);
    expect(MooringError.fromWire(late.ok ? undefined : late.error)).toMatchObject({ code: 'INVALID_ARGUMENT', definite: false });
    expect(d.code({ type: 'PutStart', clientId: 'w', seq: 2, key: 'k2', size: 10, replicaNum: 1 })).toBeNull(); // still in the window: first reply
    expect(d.core.objects.size).toBe(L.sessionReplyWindow + 1);
  });
});

describe('exactly-once reply records', () => {
  const replyRecords = async (ms: MasterState): Promise<string[]> => {
    const keys: string[] = [];
    for await (const [k] of (ms as unknown as { store: StateStore }).store.records()) if (k.startsWith('r')) keys.push(k);
    return keys;
  };

  it('the store keeps one record per window slot, overwritten in place; expiry deletes them; a reopen restores the window', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      let index = 0;
      await a.applyBatch([{ index: ++index, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } }]);
      // 3 windows' worth of writes from one client, in batches that straddle the window boundary.
      const n = 3 * L.sessionReplyWindow + 5;
      for (let s = 1; s <= n; s += 7) {
        const entries = [];
        for (let q = s; q < Math.min(s + 7, n + 1); q++) {
          entries.push({ index: ++index, timeMs: 2, command: { type: 'PutStart' as const, clientId: 'w', seq: q, key: `k${q}`, size: 10, replicaNum: 1 } });
        }
        await a.applyBatch(entries);
        expect((await replyRecords(a)).filter((k) => k.startsWith('rw\0')).length).toBe(Math.min(L.sessionReplyWindow, s + entries.length - 1));
      }
      const hash = a.stateHash();
      await a.close();
      const b = await MasterState.open(t.dir);
      expect(b.stateHash()).toBe(hash);
      for (let q = n - L.sessionReplyWindow + 1; q <= n; q++) expect(b.sessionReply('w', q)?.ok).toBe(true);
      expect(b.sessionReply('w', n - L.sessionReplyWindow)).toBeUndefined();
      // After the reopen new replies still replace the oldest ones (slots were recovered from the records).
      const [r] = await b.applyBatch([{ index: ++index, timeMs: 3, command: { type: 'PutStart', clientId: 'w', seq: n + 1, key: 'kx', size: 10, replicaNum: 1 } }]);
      expect(r!.ok).toBe(true);
      expect(b.sessionReply('w', n - L.sessionReplyWindow + 1)).toBeUndefined();
      expect((await replyRecords(b)).length).toBe(L.sessionReplyWindow); // the mount carried no seq: no reply of 'n'
      await b.applyBatch([{ index: ++index, timeMs: 100_000, command: { type: 'ExpireClients', clientIds: ['w'], clientTtlMs: 1000 } }]);
      expect(await replyRecords(b)).toEqual([]);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });

  it('reads a client record of the first format (window inline) and moves its replies to reply records', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      await a.applyBatch([
        { index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 20) } },
        { index: 2, timeMs: 2, command: { type: 'PutStart', clientId: 'w', seq: 7, key: 'k', size: 10, replicaNum: 1 } },
        { index: 3, timeMs: 3, command: { type: 'PutEnd', clientId: 'w', seq: 8, key: 'k' } },
      ]);
      const hash = a.stateHash();
      const first = a.sessionReply('w', 7);
      await a.close();
      // Rewrite the store as the first format had it: replies inline in the client record, no reply records.
      const db = new Level<string, Buffer>(t.dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
      await db.open();
      const client = packr.unpack((await db.get('cw'))!) as unknown[];
      const ops: Array<{ type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string }> = [];
      const flat: unknown[] = [];
      for await (const [k, v] of db.iterator({ gte: 'r', lt: 's' })) {
        const [seq, r] = packr.unpack(v) as [number, unknown];
        flat.push(seq, r);
        ops.push({ type: 'del', key: k });
      }
      expect(flat.length).toBe(4);
      ops.push({ type: 'put', key: 'cw', value: packr.pack([...client, flat]) });
      await db.batch(ops);
      await db.close();
      const b = await MasterState.open(t.dir);
      expect(b.stateHash()).toBe(hash);
      expect(b.sessionReply('w', 7)).toEqual(first);
      await b.applyNoop(4); // the next write stores the replies as reply records
      await b.close();
      const c = await MasterState.open(t.dir);
      expect((await replyRecords(c)).length).toBe(2);
      expect(c.sessionReply('w', 7)).toEqual(first);
      await c.close();
    } finally {
      await t.cleanup();
    }
  });
});

describe('loading a damaged store', () => {
  it('refuses a store holding an unknown record (mid-load, with a read ahead pending) and stays closable', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      await a.applyBatch(
        Array.from({ length: 25_000 }, (_, i) => ({
          index: i + 1,
          timeMs: 1,
          command: i === 0 ? { type: 'MountSegment' as const, clientId: 'n', segment: seg('s', 1 << 30) } : { type: 'PutStart' as const, clientId: 'w', key: `k${i}`, size: 10, replicaNum: 1 },
        })),
      );
      await a.close();
      const db = new Level<string, Buffer>(t.dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
      await db.open();
      await db.put('p-junk', Buffer.from([1])); // sorts after the first 10k-record read batch
      await db.close();
      await expect(MasterState.open(t.dir)).rejects.toMatchObject({ code: 'STORAGE_FAILED', message: expect.stringContaining('unknown record key') });
      // The directory is not left locked: it opens again (and fails the same way, not with "cannot open").
      await expect(MasterState.open(t.dir)).rejects.toMatchObject({ code: 'STORAGE_FAILED', message: expect.stringContaining('unknown record key') });
    } finally {
      await t.cleanup();
    }
  });
});

describe('applyBatch without waiting for the write', () => {
  it('resolves after the in-memory apply; flush waits for every queued write; the store reopens to the same state', async () => {
    const t = await tempDir();
    try {
      const a = await MasterState.open(t.dir);
      let index = 0;
      await a.applyBatch([{ index: ++index, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 24) } }]);
      const pending: Array<Promise<unknown>> = [];
      for (let b = 0; b < 20; b++) {
        const entries = Array.from({ length: 10 }, (_, i) => ({
          index: ++index,
          timeMs: 2,
          command: { type: 'PutStart' as const, clientId: `w${i % 3}`, seq: b * 10 + i + 1, key: `k${b}-${i}`, size: 10, replicaNum: 1 },
        }));
        const results = await a.applyBatch(entries, { waitForWrite: false });
        expect(results.every((r) => r.ok)).toBe(true);
        expect(a.appliedIndex).toBe(index); // applied in memory already
        if (b % 2 === 0) pending.push(new Promise((r) => setImmediate(r)));
      }
      await Promise.all(pending);
      await a.flush();
      const hash = a.stateHash();
      await a.close();
      const b = await MasterState.open(t.dir);
      expect(b.appliedIndex).toBe(index);
      expect(b.stateHash()).toBe(hash);
      await b.close();
    } finally {
      await t.cleanup();
    }
  });
});
