/**
 * Determinism, persistence, snapshots and exactly-once, on random logs:
 * - three instances (in-memory; LevelDB with random batch sizes and a restart; restored from a snapshot taken
 *   midway while applies continued) reach identical state hashes and replies;
 * - a log with retried writes reaches the same state as the log without them, and each retry gets the first reply.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { MasterState } from '../../src/statemachine/master-state.js';
import { StateCore } from '../../src/statemachine/state-core.js';
import { computeStateHash } from '../../src/statemachine/hash.js';
import type { Result } from '../../src/statemachine/commands.js';
import { collect, replay, tempDir } from './helpers.js';
import { logArb } from './gen.js';

describe('replication: same log, same state', () => {
  it('three instances (memory, LevelDB with restart, snapshot restore) reach identical state hashes', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 10 }), async (log, cutSeed, batchSizes) => {
        const cut = cutSeed % (log.length + 1);
        const entries = log.map((e, i) => ({ index: i + 1, timeMs: e.timeMs, command: structuredClone(e.command) }));
        // A: pure in-memory core.
        const a = new StateCore();
        const resultsA: Result[] = [];
        let hashAtCut = computeStateHash(a);
        for (const e of entries) {
          resultsA.push(a.apply(structuredClone(e)));
          if (e.index === cut) hashAtCut = computeStateHash(a);
        }
        const tb = await tempDir();
        const tc = await tempDir();
        try {
          // B: LevelDB, batches of random sizes, closed and reopened at the cut.
          let b = await MasterState.open(tb.dir);
          const resultsB: Result[] = [];
          let snapshot: AsyncIterable<Uint8Array> | null = null;
          let i = 0;
          let bi = 0;
          while (i < entries.length) {
            const n = Math.min(batchSizes[bi++ % batchSizes.length]!, (i < cut ? cut : entries.length) - i);
            resultsB.push(...(await b.applyBatch(entries.slice(i, i + n).map((e) => structuredClone(e)))));
            i += n;
            if (i === cut && snapshot === null) {
              await b.close();
              b = await MasterState.open(tb.dir);
              expect(b.stateHash()).toBe(hashAtCut);
              snapshot = b.createSnapshot(); // consumed only after more entries were applied
            }
          }
          if (snapshot === null) snapshot = b.createSnapshot();
          expect(b.appliedIndex).toBe(entries.length);
          expect(b.stateHash()).toBe(computeStateHash(a));
          expect(resultsB).toEqual(resultsA);
          // C: restored from B's snapshot at the cut, then applies the rest.
          const chunks = await collect(snapshot);
          for (const ch of chunks) expect(ch.length).toBeLessThanOrEqual(1024 * 1024);
          const c = await MasterState.restore(tc.dir, replay(chunks));
          const from = c.appliedIndex;
          expect(from).toBe(cut > 0 ? cut : entries.length);
          const resultsC = await c.applyBatch(entries.slice(from).map((e) => structuredClone(e)));
          expect(c.stateHash()).toBe(computeStateHash(a));
          expect(resultsC).toEqual(resultsA.slice(from));
          await c.close();
          await b.close();
        } finally {
          await tb.cleanup();
          await tc.cleanup();
        }
      }),
      { numRuns: 40 },
    );
  });

  it('exactly-once: retries return the first reply and change nothing', () => {
    fc.assert(
      fc.property(logArb, (log) => {
        // Y applies everything; X skips the retries (leaving their indexes unused), so indexes and time match.
        const x = new StateCore();
        const y = new StateCore();
        const firstReply = new Map<string, Result>();
        let retries = 0;
        log.forEach((e, i) => {
          const entry = { index: i + 1, timeMs: e.timeMs, command: structuredClone(e.command) };
          const c = e.command as { clientId?: string; seq?: number; type: string; clientIds?: string[] };
          // A session's replies end with its expiry: a retry after ExpireClients is executed again (the known gap
          // pinned by the it.fails test below), so it is a fresh command here.
          if (c.type === 'ExpireClients') for (const k of [...firstReply.keys()]) if (c.clientIds!.includes(k.slice(0, k.lastIndexOf('/')))) firstReply.delete(k);
          // OpenSession is not deduplicated by seq (its nonce makes it idempotent) and both apply it.
          const id = c.seq !== undefined && c.type !== 'OpenSession' ? `${c.clientId}/${c.seq}` : null;
          const ry = y.apply(entry);
          // A session (re)opened at this entry starts with an empty reply window: earlier seqs run afresh.
          const opened = c.type === 'OpenSession' && ry.ok && (ry.value as { epoch: number }).epoch !== undefined;
          if (opened && (ry.value as { epoch: number }).epoch === y.appliedIndex) for (const k of [...firstReply.keys()]) if (k.slice(0, k.lastIndexOf('/')) === c.clientId) firstReply.delete(k);
          if (id !== null && firstReply.has(id)) {
            retries++;
            expect(ry).toEqual(firstReply.get(id));
            return;
          }
          const rx = x.apply(structuredClone(entry));
          expect(ry).toEqual(rx);
          if (id !== null) firstReply.set(id, rx);
        });
        if (x.appliedIndex !== y.appliedIndex) x.applyNoop(y.appliedIndex);
        expect(computeStateHash(y)).toBe(computeStateHash(x));
        return retries >= 0;
      }),
      { numRuns: 150, ...(process.env.REPLAY_SEED ? { seed: Number(process.env.REPLAY_SEED), path: process.env.REPLAY_PATH, endOnFailure: true } : {}) },
    );
  });

  // Known gap for writes without a session epoch (fast-check found it: seed 298779588): ExpireClients drops the
  // client's reply window, so a write retried after the expiry is executed again instead of answered with its first
  // reply. Clients with sessions (state version 3, MasterClient since 2026-12-06) get SESSION_EXPIRED instead
  // (test/statemachine/sessions.test.ts); a client without an epoch (an older client) keeps the gap, so this fails.
  it.fails('known gap: a write retried after its client expired gets its first reply', () => {
    const core = new StateCore();
    let index = 0;
    const apply = (timeMs: number, command: unknown): Result => core.apply({ index: ++index, timeMs, command: command as never });
    apply(1_000_000, { type: 'MountSegment', clientId: 'n-dX', segment: { id: 'dX', name: 'dX', base: 0, size: 65536, protocol: 'tcp', endpoint: 'dX:1', zone: 'z0', tier: 'DISK' } });
    const unmount = { type: 'UnmountSegment', clientId: 'n-dX', segmentId: 'dX', graceful: false, seq: 1 };
    const first = apply(1_000_001, unmount);
    expect(first.ok).toBe(true);
    apply(1_005_001, { type: 'ExpireClients', clientIds: ['n-dX'], clientTtlMs: 5000 });
    expect(apply(1_005_001, unmount)).toEqual(first);
  });
});

describe('persistence and snapshots', () => {
  it('rejects a truncated or damaged snapshot stream and flags an interrupted restore', async () => {
    const t1 = await tempDir();
    const t2 = await tempDir();
    try {
      const a = await MasterState.open(t1.dir);
      await a.applyBatch([
        { index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: { id: 's', name: 's', base: 0, size: 1 << 20, protocol: 'tcp', endpoint: 'h:1' } } },
        ...Array.from({ length: 200 }, (_, i) => ({ index: i + 2, timeMs: 2, command: { type: 'PutStart' as const, clientId: 'w', key: `key-${i}`, size: 100, replicaNum: 1 } })),
      ]);
      await a.flush();
      const chunks = await collect(a.createSnapshot());
      const whole = Buffer.concat(chunks);
      const truncated = whole.subarray(0, whole.length - 10);
      await expect(MasterState.restore(t2.dir, replay([truncated]))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      // The partial store is flagged: opening it refuses rather than serve half a state.
      await expect(MasterState.open(t2.dir)).rejects.toMatchObject({ code: 'STORAGE_FAILED' });
      const damaged = Buffer.from(whole);
      damaged[damaged.length - 200] ^= 0xff;
      await expect(MasterState.restore(t2.dir, replay([damaged]))).rejects.toBeTruthy();
      // Re-slicing the stream at arbitrary boundaries is fine.
      const slices = [whole.subarray(0, 7), whole.subarray(7, 1000), whole.subarray(1000)];
      const b = await MasterState.restore(t2.dir, replay(slices));
      expect(b.stateHash()).toBe(a.stateHash());
      expect(b.appliedIndex).toBe(201);
      await b.close();
      await a.close();
      const again = await MasterState.open(t2.dir);
      expect(again.stateHash()).toBe(b.stateHash());
      await again.close();
    } finally {
      await t1.cleanup();
      await t2.cleanup();
    }
  });
});
