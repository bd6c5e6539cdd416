/**
 * The state version (src/statemachine/state-version.ts): bounded drains only once it is 2, a version this Mooring
 * does not support stops the replica, and the version survives a reopen (real LevelDB) and a snapshot restore.
 */
import { Level } from 'level';
import { describe, expect, it } from 'vitest';
import { encodeApplied, stateVersionKey } from '../../src/statemachine/codec.js';
import { computeStateHash } from '../../src/statemachine/hash.js';
import { MasterState } from '../../src/statemachine/master-state.js';
import { supportedStateVersion } from '../../src/statemachine/state-version.js';
import { collect, Driver, replay, seg, tempDir } from './helpers.js';

/** Three segments, `n` objects on s1 (and none elsewhere), s1 draining. */
function drainingSetup(n: number): Driver {
  const d = new Driver();
  for (const id of ['s1', 's2', 's3']) d.ok({ type: 'MountSegment', clientId: `n-${id}`, segment: seg(id, 1 << 20) });
  for (let i = 0; i < n; i++) {
    d.ok({ type: 'PutStart', clientId: 'c', key: `k${i}`, size: 64, replicaNum: 1, preferredSegments: ['s1'] });
    d.ok({ type: 'PutEnd', clientId: 'c', key: `k${i}` });
  }
  expect(d.ok({ type: 'UnmountSegment', clientId: 'n-s1', segmentId: 's1', graceful: true })).toEqual({ segmentId: 's1', status: 'DRAINING' });
  return d;
}

describe('state version', () => {
  it('a drain listing its keys is refused at version 1 and bounded to those keys from version 2', () => {
    const d = drainingSetup(6);
    expect(d.code({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: [], keys: ['k0'] })).toBe('INVALID_ARGUMENT');
    expect(d.core.objects.size).toBe(6); // refused: nothing dropped
    expect(d.ok({ type: 'SetStateVersion', version: 2 })).toEqual({ stateVersion: 2 });
    expect(d.core.stateVersion).toBe(2);
    // Only the listed keys, and not the skipped one; an unknown key is no error.
    expect(d.ok({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: ['k1'], keys: ['k0', 'k1', 'k2', 'nope'] })).toEqual([{ segmentId: 's1', status: 'DRAINING' }]);
    expect([...d.core.objects.keys()].sort()).toEqual(['k1', 'k3', 'k4', 'k5']);
    expect(d.ok({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: [], keys: ['k1', 'k3', 'k4'] })).toEqual([{ segmentId: 's1', status: 'DRAINING' }]);
    // The command that drops the last object on the segment also removes it.
    expect(d.ok({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: [], keys: ['k5'] })).toEqual([{ segmentId: 's1', status: 'DRAINED' }]);
    expect(d.core.objects.size).toBe(0);
    expect(d.core.segments.has('s1')).toBe(false);
    // Never lowered.
    expect(d.ok({ type: 'SetStateVersion', version: 1 })).toEqual({ stateVersion: 2 });
  });

  it('a version this Mooring does not support stops the replica (thrown out of apply) before it changes anything', () => {
    const d = drainingSetup(1);
    const before = computeStateHash(d.core);
    expect(() => d.apply({ type: 'SetStateVersion', version: supportedStateVersion + 1 })).toThrow(new RegExp(`supports at most ${supportedStateVersion}: upgrade this master`));
    expect(d.core.stateVersion).toBe(1);
    expect(computeStateHash(d.core)).toBe(before);
  });

  it('survives a reopen and a snapshot restore, and is part of the state hash; a data dir of a newer version is refused', async () => {
    const a = await tempDir();
    const b = await tempDir();
    try {
      let ms = await MasterState.open(a.dir);
      await ms.applyBatch([{ index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 20) } }]);
      const hashAtV1 = ms.stateHash();
      await ms.applyBatch([{ index: 2, timeMs: 1, command: { type: 'SetStateVersion', version: 2 } }]);
      await ms.close();
      ms = await MasterState.open(a.dir);
      expect(ms.stateVersion).toBe(2);
      const restored = await MasterState.restore(b.dir, replay(await collect(ms.createSnapshot())));
      expect(restored.stateVersion).toBe(2);
      expect(restored.stateHash()).toBe(ms.stateHash());
      // Index 2 is the SetStateVersion itself: another state at the same index and version 1 hashes differently.
      expect(ms.stateHash()).not.toBe(hashAtV1);
      await restored.close();
      await ms.close();
      // What a newer Mooring would have left: refused at open, naming the versions.
      const db = new Level<string, Buffer>(a.dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
      await db.put(stateVersionKey, encodeApplied(supportedStateVersion + 1));
      await db.close();
      await expect(MasterState.open(a.dir)).rejects.toThrow(new RegExp(`state version ${supportedStateVersion + 1}, but this Mooring supports at most ${supportedStateVersion}`));
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });
});
