/**
 * Client sessions (state version 3, src/statemachine/state-core.ts openSession): a write carries the epoch of the
 * session it belongs to; once that session is not open any more (the client expired, or another process with the
 * same client id opened a newer one) its writes and retries are refused with SESSION_EXPIRED and change nothing.
 * Without sessions, a second process reusing a client id got the first one's replies for its own seqs.
 */
import { describe, expect, it } from 'vitest';
import { MasterState } from '../../src/statemachine/master-state.js';
import { collect, Driver, replay, seg, tempDir } from './helpers.js';

function withSegment(): Driver {
  const d = new Driver();
  d.ok({ type: 'MountSegment', clientId: 'n-s1', segment: seg('s1', 1 << 20) });
  return d;
}

describe('client sessions', () => {
  it('OpenSession is refused below state version 3; from 3 its epoch is its entry index, and the same nonce gets it again', () => {
    const d = withSegment();
    expect(d.code({ type: 'OpenSession', clientId: 'c', nonce: 'x' })).toBe('INVALID_ARGUMENT');
    expect(d.core.clients.has('c')).toBe(false); // refused: not even registered
    d.ok({ type: 'SetStateVersion', version: 3 });
    const { epoch } = d.ok({ type: 'OpenSession', clientId: 'c', nonce: 'x' });
    expect(epoch).toBe(d.index);
    expect(d.ok({ type: 'OpenSession', clientId: 'c', nonce: 'x' })).toEqual({ epoch });
  });

  it('a second process with the same client id gets its own replies, and the first one\'s writes are refused from then on', () => {
    const d = withSegment();
    d.ok({ type: 'SetStateVersion', version: 3 });
    const a = d.ok({ type: 'OpenSession', clientId: 'node-1', nonce: 'first' }).epoch as number;
    const putA = d.ok({ type: 'PutStart', clientId: 'node-1', seq: 1, epoch: a, key: 'key-A', size: 64, replicaNum: 1 });
    const b = d.ok({ type: 'OpenSession', clientId: 'node-1', nonce: 'second' }).epoch as number;
    expect(b).toBeGreaterThan(a);
    // Same seq, new session: executed (key-B allocated), not answered with key-A's reply.
    const putB = d.ok({ type: 'PutStart', clientId: 'node-1', seq: 1, epoch: b, key: 'key-B', size: 64, replicaNum: 1 });
    expect(putB).not.toEqual(putA);
    expect(d.core.objects.has('key-B')).toBe(true);
    // The first process's retry and its next write: refused, nothing changes (key-A stays incomplete).
    expect(d.code({ type: 'PutStart', clientId: 'node-1', seq: 1, epoch: a, key: 'key-A', size: 64, replicaNum: 1 })).toBe('SESSION_EXPIRED');
    expect(d.code({ type: 'PutEnd', clientId: 'node-1', seq: 2, epoch: a, key: 'key-A' })).toBe('SESSION_EXPIRED');
    expect(d.core.objects.get('key-A')?.replicas.every((r) => r.status !== 'COMPLETE')).toBe(true);
    expect(d.core.objects.size).toBe(2);
    expect(d.core.clients.get('node-1')?.epoch).toBe(b);
    // A write of the open session still gets its first reply on a retry.
    expect(d.ok({ type: 'PutStart', clientId: 'node-1', seq: 1, epoch: b, key: 'key-B', size: 64, replicaNum: 1 })).toEqual(putB);
  });

  it('a write retried after its client expired is refused (SESSION_EXPIRED), not executed again', () => {
    const d = new Driver();
    d.ok({ type: 'SetStateVersion', version: 3 });
    d.ok({ type: 'MountSegment', clientId: 'n-dX', segment: { id: 'dX', name: 'dX', base: 0, size: 65536, protocol: 'tcp', endpoint: 'dX:1', zone: 'z0', tier: 'DISK' } });
    const epoch = d.ok({ type: 'OpenSession', clientId: 'n-dX', nonce: 'n' }).epoch as number;
    const unmount = { type: 'UnmountSegment' as const, clientId: 'n-dX', segmentId: 'dX', graceful: false, seq: 1, epoch };
    expect(d.ok(unmount)).toMatchObject({ segmentId: 'dX' });
    d.now += 5_001;
    expect(d.ok({ type: 'ExpireClients', clientIds: ['n-dX'], clientTtlMs: 5000 })).toEqual({ expired: ['n-dX'] });
    expect(d.code(unmount)).toBe('SESSION_EXPIRED');
    expect(d.core.clients.has('n-dX')).toBe(false); // not registered again by the refused write
    // A new session works as a new client.
    const again = d.ok({ type: 'OpenSession', clientId: 'n-dX', nonce: 'n' }).epoch as number;
    expect(again).toBeGreaterThan(epoch);
  });

  it('writes without an epoch keep working as before, with and without a session open', () => {
    const d = withSegment();
    d.ok({ type: 'SetStateVersion', version: 3 });
    const r1 = d.ok({ type: 'PutStart', clientId: 'old', seq: 1, key: 'k1', size: 64, replicaNum: 1 });
    expect(d.ok({ type: 'PutStart', clientId: 'old', seq: 1, key: 'k1', size: 64, replicaNum: 1 })).toEqual(r1); // deduplicated
    // Below version 3 an epoch is ignored (a log written then replays as it applied).
    const e = new Driver();
    e.ok({ type: 'MountSegment', clientId: 'n-s1', segment: seg('s1', 1 << 20) });
    expect(e.code({ type: 'PutStart', clientId: 'c', seq: 1, epoch: 12345, key: 'k', size: 64, replicaNum: 1 })).toBeNull();
  });

  it('the open session survives a reopen (real LevelDB) and a snapshot restore, and is part of the state hash', async () => {
    const a = await tempDir();
    const b = await tempDir();
    try {
      let ms = await MasterState.open(a.dir);
      await ms.applyBatch([
        { index: 1, timeMs: 1, command: { type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 20) } },
        { index: 2, timeMs: 1, command: { type: 'SetStateVersion', version: 3 } },
        { index: 3, timeMs: 1, command: { type: 'PutStart', clientId: 'c', seq: 1, key: 'k', size: 64, replicaNum: 1 } },
      ]);
      await ms.flush();
      const hashWithout = ms.stateHash();
      const [open] = await ms.applyBatch([{ index: 4, timeMs: 1, command: { type: 'OpenSession', clientId: 'c', nonce: 'n' } }]);
      const epoch = (open as { ok: true; value: { epoch: number } }).value.epoch;
      expect(epoch).toBeGreaterThan(0);
      await ms.close();
      ms = await MasterState.open(a.dir);
      expect(ms.clients.get('c')).toMatchObject({ epoch, sessionNonce: 'n' });
      const [stale] = await ms.applyBatch([{ index: 5, timeMs: 1, command: { type: 'PutEnd', clientId: 'c', seq: 2, epoch: epoch + 1, key: 'k' } }]);
      expect(stale).toMatchObject({ ok: false, error: { code: 'SESSION_EXPIRED' } });
      const restored = await MasterState.restore(b.dir, replay(await collect(ms.createSnapshot())));
      expect(restored.clients.get('c')).toMatchObject({ epoch, sessionNonce: 'n' });
      expect(restored.stateHash()).toBe(ms.stateHash());
      expect(ms.stateHash()).not.toBe(hashWithout);
      // The session's reply window was emptied when it opened: seq 1 of the new session is a new write.
      expect(ms.sessionReply('c', 1)).toBeUndefined();
      await restored.close();
      await ms.close();
    } finally {
      await a.cleanup();
      await b.cleanup();
    }
  });
});

describe('sealed lease refusals (SealRefusal, state version 4)', () => {
  const seal = (seq: number, epoch: number) => ({ type: 'SealRefusal' as const, clientId: 'c', seq, epoch, code: 'OBJECT_HAS_LEASE' as const, message: 'k is under a read lease' });

  function withObject(): { d: Driver; epoch: number } {
    const d = withSegment();
    d.ok({ type: 'SetStateVersion', version: 4 });
    const epoch = d.ok({ type: 'OpenSession', clientId: 'c', nonce: 'n' }).epoch as number;
    d.ok({ type: 'PutStart', clientId: 'c', seq: 1, epoch, key: 'k', size: 64, replicaNum: 1 });
    d.ok({ type: 'PutEnd', clientId: 'c', seq: 2, epoch, key: 'k' });
    return { d, epoch };
  }

  it('a seal closes the seq with the refusal: an attempt of the write applied after it changes nothing and gets the refusal', () => {
    const { d, epoch } = withObject();
    const r = d.apply(seal(3, epoch));
    expect(r).toMatchObject({ ok: false, error: { code: 'OBJECT_HAS_LEASE', sealed: true } });
    // The remove's parked attempt, proposed later under the same seq: the sealed answer, the object stays.
    expect(d.apply({ type: 'Remove', clientId: 'c', seq: 3, epoch, key: 'k' })).toEqual(r);
    expect(d.core.objects.has('k')).toBe(true);
  });

  it('an attempt applied before the seal keeps its answer: the seal gets that reply and changes nothing', () => {
    const { d, epoch } = withObject();
    expect(d.apply({ type: 'Remove', clientId: 'c', seq: 3, epoch, key: 'k' })).toEqual({ ok: true, value: null });
    expect(d.core.objects.has('k')).toBe(false);
    expect(d.apply(seal(3, epoch))).toEqual({ ok: true, value: null });
  });

  it('is refused unrecorded below version 4 (as a replica that does not know it), and for a closed session', () => {
    const d = withSegment();
    d.ok({ type: 'SetStateVersion', version: 3 });
    const epoch = d.ok({ type: 'OpenSession', clientId: 'c', nonce: 'n' }).epoch as number;
    expect(d.code(seal(1, epoch))).toBe('INVALID_ARGUMENT');
    // Not recorded: the seq is still open.
    d.ok({ type: 'PutStart', clientId: 'c', seq: 1, epoch, key: 'k', size: 64, replicaNum: 1 });
    expect(d.core.objects.has('k')).toBe(true);
    d.ok({ type: 'SetStateVersion', version: 4 });
    expect(d.code(seal(2, epoch + 1_000))).toBe('SESSION_EXPIRED');
  });

  it('validates its fields: a seq, a sealable code, a bounded message', () => {
    const { d, epoch } = withObject();
    expect(d.code({ ...seal(3, epoch), seq: undefined } as never)).toBe('INVALID_ARGUMENT');
    expect(d.code({ ...seal(3, epoch), code: 'OBJECT_NOT_FOUND' } as never)).toBe('INVALID_ARGUMENT');
    expect(d.code({ ...seal(3, epoch), message: 'x'.repeat(2_000) })).toBe('INVALID_ARGUMENT');
    // None of them closed seq 3.
    expect(d.apply({ type: 'Remove', clientId: 'c', seq: 3, epoch, key: 'k' })).toEqual({ ok: true, value: null });
  });
});
