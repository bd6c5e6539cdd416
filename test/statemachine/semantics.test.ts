import { describe, expect, it } from 'vitest';
import { validateCommand } from '../../src/statemachine/commands.js';
import { ErrorCode, MooringError } from '../../src/errors.js';
import * as L from '../../src/statemachine/limits.js';
import { Driver, seg } from './helpers.js';

describe('commands: validation', () => {
  const bad = (c: unknown): string | null => {
    try {
      validateCommand(c);
      return null;
    } catch (e) {
      expect(e).toBeInstanceOf(MooringError);
      return (e as MooringError).code;
    }
  };
  it('rejects bad arguments as INVALID_ARGUMENT before the log, and junk without crashing', () => {
    const put = { type: 'PutStart', clientId: 'c', key: 'k', size: 10, replicaNum: 1 };
    expect(bad(put)).toBeNull();
    expect(bad({ ...put, key: '' })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ ...put, key: 'x'.repeat(L.maxKeyBytes + 1) })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ ...put, key: 'é'.repeat(L.maxKeyBytes / 2 + 1) })).toBe(ErrorCode.INVALID_ARGUMENT); // bytes, not chars
    expect(bad({ ...put, size: 0 })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ ...put, size: -5 })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ ...put, size: 1.5 })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ ...put, replicaNum: 0 })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ ...put, replicaNum: L.maxReplicasPerObject + 1 })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ type: 'MountSegment', clientId: 'c', segment: seg('s', L.maxSegmentBytes + 1) })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ type: 'MountSegment', clientId: 'c', segment: { ...seg('s', 10), protocol: 'udp' } })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ type: 'BatchPutStart', clientId: 'c', items: [put, put] })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(bad({ type: 'BatchPutStart', clientId: 'c', items: Array(L.maxBatchSize + 1).fill(put) })).toBe(ErrorCode.INVALID_ARGUMENT);
    for (const junk of [null, 3, 'x', [], { type: 'Nope' }, { type: 'PutEnd' }, { type: 'Evict', items: [{}] }, { type: {} }]) {
      expect(bad(junk)).toBe(ErrorCode.INVALID_ARGUMENT);
    }
  });

  it('apply turns an invalid entry into an error result and changes nothing', () => {
    const d = new Driver();
    const before = d.core.stats();
    const r = d.core.apply({ index: 1, timeMs: 0, command: { type: 'PutStart', clientId: 'c', key: '', size: 1, replicaNum: 1 } as never });
    expect(r.ok).toBe(false);
    expect(d.core.stats()).toEqual({ ...before, appliedIndex: 1 });
  });
});

describe('segments', () => {
  it('mounts, refuses unknown/overlapping/duplicate segments, remounts idempotently', () => {
    const d = new Driver();
    expect(d.ok({ type: 'MountSegment', clientId: 'a', segment: seg('s1', 1 << 20, { endpoint: 'h:1', base: 0 }) })).toEqual({ segmentId: 's1', status: 'OK' });
    expect(d.code({ type: 'MountSegment', clientId: 'a', segment: seg('s2', 1 << 20, { endpoint: 'h:1', base: 1000 }) })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(d.code({ type: 'MountSegment', clientId: 'a', segment: seg('s2', 1 << 20, { endpoint: 'h:1', base: 1 << 20 }) })).toBeNull();
    expect(d.code({ type: 'MountSegment', clientId: 'b', segment: seg('s1', 1 << 20, { endpoint: 'h:1' }) })).toBe(ErrorCode.SEGMENT_ALREADY_EXISTS);
    const rm = d.ok({ type: 'ReMountSegment', clientId: 'a', segments: [seg('s1', 1 << 20, { endpoint: 'h:1', base: 0 }), seg('s3', 4096)] });
    expect(rm.map((r: any) => r.ok)).toEqual([true, true]);
    expect(d.core.listSegments().map((s) => s.id)).toEqual(['s1', 's2', 's3']);
    expect(d.code({ type: 'UnmountSegment', clientId: 'a', segmentId: 'nope' })).toBe(ErrorCode.SEGMENT_NOT_FOUND);
  });

  it('forced unmount drops replicas; objects with no replica left disappear', () => {
    const d = Driver.with({ placement: 'free-ratio-first' });
    d.ok({ type: 'MountSegment', clientId: 'a', segment: seg('s1', 1 << 20) });
    d.ok({ type: 'MountSegment', clientId: 'b', segment: seg('s2', 1 << 20) });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'two', size: 100, replicaNum: 2 });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'one', size: 100, replicaNum: 1, preferredSegments: ['s1'] });
    d.ok({ type: 'BatchPutEnd', clientId: 'w', keys: ['two', 'one'] });
    d.ok({ type: 'UnmountSegment', clientId: 'a', segmentId: 's1' });
    expect(d.core.existKey('one')).toBe(false);
    const rl = d.core.getReplicaList('two', d.now);
    expect(rl.ok && rl.value.replicas.map((r) => r.segmentId)).toEqual(['s2']);
  });

  it('graceful unmount: DRAINING (no new allocations) until no replica remains, then DRAINED and gone', () => {
    const d = new Driver();
    d.ok({ type: 'MountSegment', clientId: 'a', segment: seg('s1', 1 << 20) });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'k', size: 100, replicaNum: 1 });
    expect(d.ok({ type: 'UnmountSegment', clientId: 'a', segmentId: 's1', graceful: true })).toEqual({ segmentId: 's1', status: 'DRAINING' });
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'k2', size: 100, replicaNum: 1 })).toBe(ErrorCode.NO_SPACE);
    // A PROCESSING replica is waited for; a leased key is skipped; otherwise replicas are dropped.
    expect(d.ok({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: [] })).toEqual([{ segmentId: 's1', status: 'DRAINING' }]);
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'k' });
    expect(d.ok({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: ['k'] })).toEqual([{ segmentId: 's1', status: 'DRAINING' }]);
    expect(d.ok({ type: 'DrainSegments', segmentIds: ['s1'], skipKeys: [] })).toEqual([{ segmentId: 's1', status: 'DRAINED' }]);
    expect(d.core.segments.size).toBe(0);
    expect(d.core.existKey('k')).toBe(false);
  });

  it('SetNodeStatus: MAINTENANCE stops allocations on that node, ACTIVE resumes', () => {
    const d = new Driver();
    d.ok({ type: 'MountSegment', clientId: 'n1', segment: seg('s1', 1 << 20) });
    d.ok({ type: 'SetNodeStatus', clientId: 'op', nodeId: 'n1', status: 'MAINTENANCE' });
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'k', size: 1, replicaNum: 1 })).toBe(ErrorCode.NO_SPACE);
    d.ok({ type: 'SetNodeStatus', clientId: 'op', nodeId: 'n1', status: 'ACTIVE' });
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'k', size: 1, replicaNum: 1 })).toBeNull();
    expect(d.code({ type: 'SetNodeStatus', clientId: 'op', nodeId: 'ghost', status: 'ACTIVE' })).toBe(ErrorCode.CLIENT_NOT_FOUND);
  });
});

describe('objects', () => {
  function setup(n = 3, size = 1 << 20): Driver {
    const d = new Driver();
    for (let i = 0; i < n; i++) d.ok({ type: 'MountSegment', clientId: `n${i}`, segment: seg(`s${i}`, size, { zone: `z${i % 2}` }) });
    return d;
  }

  it('put start/end/revoke lifecycle with descriptors on distinct segments', () => {
    const d = setup();
    const v = d.ok({ type: 'PutStart', clientId: 'w', key: 'k', size: 1000, replicaNum: 3 });
    expect(new Set(v.replicas.map((r: any) => r.segmentId)).size).toBe(3);
    for (const r of v.replicas) {
      expect(r).toMatchObject({ length: 1000, protocol: 'tcp', tier: 'DRAM' });
      expect(r.offset % 64).toBe(0);
    }
    expect(d.core.existKey('k')).toBe(false);
    expect(d.core.getReplicaList('k', d.now)).toMatchObject({ ok: false, error: { code: 'OBJECT_NOT_READY' } });
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'k', size: 1, replicaNum: 1 })).toBe(ErrorCode.OBJECT_ALREADY_EXISTS);
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'k' });
    expect(d.core.existKey('k')).toBe(true);
    expect(d.code({ type: 'PutRevoke', clientId: 'w', key: 'k' })).toBe(ErrorCode.INVALID_ARGUMENT);
    d.ok({ type: 'PutStart', clientId: 'w', key: 'r', size: 1000, replicaNum: 1 });
    const used = d.core.stats().memoryAllocatedBytes;
    d.ok({ type: 'PutRevoke', clientId: 'w', key: 'r' });
    expect(d.core.stats().memoryAllocatedBytes).toBe(used - 1024);
    expect(d.code({ type: 'PutEnd', clientId: 'w', key: 'r' })).toBe(ErrorCode.OBJECT_NOT_FOUND);
  });

  it('batch forms: one entry, one result per key', () => {
    const d = setup(1, 4096);
    const res = d.ok({
      type: 'BatchPutStart',
      clientId: 'w',
      items: [
        { key: 'a', size: 1000, replicaNum: 1 },
        { key: 'b', size: 5000, replicaNum: 1 },
        { key: 'c', size: 1000, replicaNum: 1 },
      ],
    });
    expect(res.map((r: any) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'NO_SPACE', 'ok']);
    const ends = d.ok({ type: 'BatchPutEnd', clientId: 'w', keys: ['a', 'b', 'c'] });
    expect(ends.map((r: any) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'OBJECT_NOT_FOUND', 'ok']);
    expect(d.index).toBe(3);
  });

  it('upsert keeps the old version serving until UpsertEnd swaps atomically', () => {
    const d = setup(2);
    d.ok({ type: 'PutStart', clientId: 'w', key: 'k', size: 100, replicaNum: 1 });
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'k' });
    const old = d.core.getReplicaList('k', d.now);
    d.ok({ type: 'UpsertStart', clientId: 'w', key: 'k', size: 5000, replicaNum: 2 });
    // The old version keeps serving (same replicas and size); the status says a new version is in flight.
    const during = d.core.getReplicaList('k', d.now);
    expect(during).toEqual({ ...old, value: { ...(old as { value: object }).value, status: 'UPSERTING' } });
    expect(d.code({ type: 'UpsertStart', clientId: 'w', key: 'k', size: 5, replicaNum: 1 })).toBe(ErrorCode.OBJECT_NOT_READY);
    d.ok({ type: 'UpsertEnd', clientId: 'w', key: 'k' });
    const now = d.core.getReplicaList('k', d.now);
    expect(now.ok && now.value.replicas.map((r) => r.length)).toEqual([5000, 5000]);
    expect(d.core.stats().memoryAllocatedBytes).toBe(2 * 5056);
    d.ok({ type: 'UpsertStart', clientId: 'w', key: 'k', size: 7, replicaNum: 1 });
    d.ok({ type: 'UpsertRevoke', clientId: 'w', key: 'k' });
    expect(d.core.getReplicaList('k', d.now)).toEqual(now);
    expect(d.core.stats().memoryAllocatedBytes).toBe(2 * 5056);
    // Upsert of a missing key is a put.
    d.ok({ type: 'UpsertStart', clientId: 'w', key: 'new', size: 7, replicaNum: 1 });
    d.ok({ type: 'UpsertEnd', clientId: 'w', key: 'new' });
    expect(d.core.existKey('new')).toBe(true);
  });

  it('remove honours pins and incomplete writes unless forced; RemoveAll/ByPrefix skip leased keys', () => {
    const d = setup();
    const put = (key: string, extra = {}): void => {
      d.ok({ type: 'PutStart', clientId: 'w', key, size: 10, replicaNum: 1, ...extra });
      d.ok({ type: 'PutEnd', clientId: 'w', key });
    };
    put('a/1');
    put('a/2', { hardPin: true });
    put('a/3', { softPin: true });
    put('a/4');
    put('b/1');
    d.ok({ type: 'PutStart', clientId: 'w', key: 'a/5', size: 10, replicaNum: 1 });
    expect(d.code({ type: 'Remove', clientId: 'w', key: 'a/2' })).toBe(ErrorCode.OBJECT_PINNED);
    expect(d.code({ type: 'Remove', clientId: 'w', key: 'a/3' })).toBe(ErrorCode.OBJECT_PINNED);
    expect(d.code({ type: 'Remove', clientId: 'w', key: 'a/5' })).toBe(ErrorCode.OBJECT_NOT_READY);
    expect(d.code({ type: 'Remove', clientId: 'w', key: 'zz' })).toBe(ErrorCode.OBJECT_NOT_FOUND);
    expect(d.ok({ type: 'RemoveByPrefix', clientId: 'w', prefix: 'a/', skipKeys: ['a/4'] })).toEqual({ removed: 1 });
    expect([...d.core.objects.keys()].sort()).toEqual(['a/2', 'a/3', 'a/4', 'a/5', 'b/1']);
    d.now += L.defaultSoftPinTtlMs; // the soft pin runs out
    expect(d.ok({ type: 'RemoveAll', clientId: 'w', skipKeys: [] })).toEqual({ removed: 3 });
    expect(d.ok({ type: 'RemoveAll', clientId: 'w', force: true })).toEqual({ removed: 2 });
    expect(d.core.stats().memoryAllocatedBytes).toBe(0);
  });

  it('NO_SPACE only after the leader-attached evictable list was tried', () => {
    const d = setup(1, 4096);
    d.ok({ type: 'PutStart', clientId: 'w', key: 'old', size: 4096, replicaNum: 1 });
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'old' });
    const createdIndex = d.core.objects.get('old')!.createdIndex;
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'n', size: 100, replicaNum: 1 })).toBe(ErrorCode.NO_SPACE);
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'n', size: 100, replicaNum: 1, evictable: [{ key: 'old', createdIndex: createdIndex + 1 }] })).toBe(ErrorCode.NO_SPACE);
    expect(d.core.existKey('old')).toBe(true);
    expect(d.code({ type: 'PutStart', clientId: 'w', key: 'n', size: 100, replicaNum: 1, evictable: [{ key: 'old', createdIndex }] })).toBeNull();
    expect(d.core.existKey('old')).toBe(false);
  });

  it('offload (demotion) records a DISK replica and frees the memory one', () => {
    const d = setup(1);
    d.ok({ type: 'MountSegment', clientId: 'disk', segment: seg('d1', 1 << 30, { tier: 'DISK' }) });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'k', size: 1000, replicaNum: 1 });
    expect(d.code({ type: 'OffloadStart', clientId: 'w', key: 'k' })).toBe(ErrorCode.OBJECT_NOT_READY);
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'k' });
    const v = d.ok({ type: 'OffloadStart', clientId: 'w', key: 'k' });
    expect(v.target).toMatchObject({ segmentId: 'd1', tier: 'DISK', length: 1000 });
    expect(v.source.map((r: any) => r.tier)).toEqual(['DRAM']);
    expect(d.core.stats()).toMatchObject({ memoryAllocatedBytes: 1024, diskAllocatedBytes: 4096 });
    d.ok({ type: 'OffloadEnd', clientId: 'w', key: 'k' });
    expect(d.core.stats()).toMatchObject({ memoryAllocatedBytes: 0, diskAllocatedBytes: 4096 });
    const rl = d.core.getReplicaList('k', d.now);
    expect(rl.ok && rl.value.replicas.map((r) => r.tier)).toEqual(['DISK']);
    expect(d.code({ type: 'OffloadStart', clientId: 'w', key: 'k' })).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(d.code({ type: 'OffloadEnd', clientId: 'w', key: 'k' })).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it('placement zone-spread puts replicas in distinct zones when it can', () => {
    const d = Driver.with({ placement: 'zone-spread' });
    for (let i = 0; i < 6; i++) d.ok({ type: 'MountSegment', clientId: `n${i}`, segment: seg(`s${i}`, 1 << 20, { zone: `z${i % 3}` }) });
    for (let k = 0; k < 20; k++) {
      const v = d.ok({ type: 'PutStart', clientId: 'w', key: `k${k}`, size: 1000 + k, replicaNum: 3 });
      const zones = v.replicas.map((r: any) => d.core.segments.get(r.segmentId)!.rec.zone);
      expect(new Set(zones).size).toBe(3);
    }
    const v = d.ok({ type: 'PutStart', clientId: 'w', key: 'six', size: 10, replicaNum: 6 });
    expect(new Set(v.replicas.map((r: any) => r.segmentId)).size).toBe(6);
  });
});
