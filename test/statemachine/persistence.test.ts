import { describe, expect, it } from 'vitest';
import { MasterState } from '../../src/statemachine/master-state.js';
import * as L from '../../src/statemachine/limits.js';
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
    expect(d.code({ type: 'PutStart', clientId: 'w', seq: 1, key: 'k1', size: 10, replicaNum: 1 })).toBe('INVALID_ARGUMENT');
    expect(d.code({ type: 'PutStart', clientId: 'w', seq: 2, key: 'k2', size: 10, replicaNum: 1 })).toBeNull(); // still in the window: first reply
    expect(d.core.objects.size).toBe(L.sessionReplyWindow + 1);
  });
});
