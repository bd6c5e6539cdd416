/**
 * The KV node's batch entry format (many client puts in one log entry) and the state-machine wrapper that splits
 * it: round trip, malformed bytes, exactly-once inside and across batches. In-process, real LevelDB.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { KvStateMachine, encodeKvCommand } from '../../src/kvstore/kv-state-machine.js';
import { BatchingKvStateMachine, decodeCommandBatch, encodeCommandBatch, maxCommandsPerEntry } from '../../src/kvstore/server.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('batch entries', () => {
  it('round-trips any list of commands', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 50 }), (cmds) => {
        const back = decodeCommandBatch(encodeCommandBatch(cmds));
        expect(back?.map((b) => Array.from(b))).toEqual(cmds.map((c) => Array.from(c)));
      }),
    );
  });

  it('rejects truncated, empty and over-long batches instead of misreading them', () => {
    const enc = encodeCommandBatch([Uint8Array.of(1, 2, 3), Uint8Array.of(4)]);
    for (let cut = 1; cut < enc.byteLength; cut++) {
      const d = decodeCommandBatch(enc.subarray(0, cut));
      // A prefix either ends exactly on a command boundary or is refused.
      if (d !== null) expect(d.map((x) => Array.from(x))).toEqual([[1, 2, 3]]);
    }
    expect(decodeCommandBatch(new Uint8Array(0))).toBeNull();
    expect(decodeCommandBatch(encodeCommandBatch(Array.from({ length: maxCommandsPerEntry + 1 }, () => Uint8Array.of(0))))).toBeNull();
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (junk) => {
      decodeCommandBatch(junk); // never throws
    }));
  });

  it('applies each command of a batch once, with per-command results, and keeps sessions across batches', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'mooring-batch-'));
    dirs.push(dir);
    const inner = await KvStateMachine.open(dir);
    const sm = new BatchingKvStateMachine(inner);
    const put = (key: string, value: string, clientId: string, seq: number) => encodeKvCommand({ op: 'put', key, value, clientId, seq });
    const r1 = await sm.apply([
      { index: 2, data: encodeCommandBatch([put('a', '1', 'c1', 1), put('b', '1', 'c2', 1), put('a', '2', 'c3', 1)]) },
      { index: 3, data: encodeCommandBatch([put('a', 'retry-ignored', 'c1', 1)]) },
      { index: 4, data: Uint8Array.of(9, 9) }, // not a batch: one deterministic error result
    ], 4);
    expect(r1).toEqual([
      [{ ok: true, prev: null }, { ok: true, prev: null }, { ok: true, prev: '1' }],
      [{ ok: true, prev: null }], // the retry of (c1, 1) gets the first reply and changes nothing
      [expect.objectContaining({ ok: false })],
    ]);
    expect(inner.get('a')).toBe('2');
    expect(inner.get('b')).toBe('1');
    expect(sm.appliedIndex()).toBe(4);
    await inner.close();
  });
});
