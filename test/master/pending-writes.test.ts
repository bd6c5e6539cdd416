// PendingWrites (src/master/pending-writes.ts): the leader's admitted writes a read lease would have refused, held
// until they settle. Counting per key, prefix holds with their skipped keys, and no hold left behind.
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { coverOf, holdUntilSettled, PendingWrites } from '../../src/master/pending-writes.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('PendingWrites', () => {
  it('counts holds per key: two removes of one key in flight keep it held until both settle', async () => {
    const p = new PendingWrites();
    const a = p.hold(coverOf({ type: 'Remove', clientId: 'c', seq: 1, key: 'k' }));
    const b = p.hold(coverOf({ type: 'Remove', clientId: 'c', seq: 2, key: 'k' }));
    let clear = false;
    void p.whenClear(['k', 'other']).then(() => { clear = true; });
    a.release();
    a.release(); // twice: still one release
    await tick();
    expect(p.covers('k')).toBe(true);
    expect(clear).toBe(false);
    b.release();
    await tick();
    expect(p.covers('k')).toBe(false);
    expect(clear).toBe(true);
    expect(p.size).toBe(0);
    expect(p.waiting).toBe(0);
  });

  it('a list of keys (a segment drain planned by the leader) is held key by key and released at once', () => {
    const p = new PendingWrites();
    const single = p.hold({ kind: 'key', key: 'b' });
    const drain = p.hold({ kind: 'keys', keys: ['a', 'b'] });
    expect([p.covers('a'), p.covers('b'), p.covers('c')]).toEqual([true, true, false]);
    drain.release();
    drain.release();
    expect([p.covers('a'), p.covers('b')]).toEqual([false, true]);
    single.release();
    expect(p.size).toBe(0);
  });

  it('a RemoveByPrefix covers its prefix except the keys it skips; RemoveAll covers every key; force covers none', () => {
    const p = new PendingWrites();
    const byPrefix = p.hold(coverOf({ type: 'RemoveByPrefix', clientId: 'c', seq: 1, prefix: 'a/', skipKeys: ['a/leased'] }));
    expect([p.covers('a/x'), p.covers('a/leased'), p.covers('b/x')]).toEqual([true, false, false]);
    byPrefix.release();
    const all = p.hold(coverOf({ type: 'RemoveAll', clientId: 'c', seq: 2, skipKeys: [] }));
    expect(p.covers('anything')).toBe(true);
    all.release();
    expect(coverOf({ type: 'Remove', clientId: 'c', seq: 3, key: 'k', force: true })).toBeNull();
    expect(coverOf({ type: 'RemoveAll', clientId: 'c', seq: 4, force: true })).toBeNull();
    expect(coverOf({ type: 'PutStart', clientId: 'c', seq: 5, key: 'k', size: 1, replicaNum: 1 })).toBeNull();
    expect(coverOf({ type: 'UpsertEnd', clientId: 'c', seq: 6, key: 'k' })).toEqual({ kind: 'key', key: 'k' });
    expect(p.size).toBe(0);
  });

  it('clear (leadership lost) wakes every read and ignores releases of the earlier leadership\'s holds', async () => {
    const p = new PendingWrites();
    const old = p.hold({ kind: 'key', key: 'k' });
    let woke = false;
    void p.whenClear(['k']).then(() => { woke = true; });
    p.clear();
    await tick();
    expect(woke).toBe(true);
    const now = p.hold({ kind: 'key', key: 'k' }); // the next leadership's
    old.release();
    expect(p.covers('k')).toBe(true);
    now.release();
    expect(p.covers('k')).toBe(false);
  });

  it('holdUntilSettled: a timed-out proposal (may still apply) stays held until applied past the log end or leadership is lost', async () => {
    const raft = Object.assign(new EventEmitter(), { isLeader: true, appliedIndex: 5, status: () => ({ lastIndex: 9 }) });
    const p = new PendingWrites();
    // Applied: released.
    holdUntilSettled(p.hold({ kind: 'key', key: 'a' }), Promise.resolve({ ok: true }), raft);
    // Dropped (superseded): released.
    holdUntilSettled(p.hold({ kind: 'key', key: 'b' }), Promise.reject(new MooringError(ErrorCode.PROPOSAL_DROPPED, 'x')), raft);
    // Timed out: kept.
    holdUntilSettled(p.hold({ kind: 'key', key: 'c' }), Promise.reject(new MooringError(ErrorCode.TIMEOUT, 'x')), raft);
    await tick();
    expect([p.covers('a'), p.covers('b'), p.covers('c')]).toEqual([false, false, true]);
    raft.appliedIndex = 8;
    raft.emit('applied', 8);
    expect(p.covers('c')).toBe(true);
    raft.appliedIndex = 9;
    raft.emit('applied', 9);
    expect(p.covers('c')).toBe(false);
    expect(raft.listenerCount('applied') + raft.listenerCount('roleChange')).toBe(0);

    holdUntilSettled(p.hold({ kind: 'key', key: 'd' }), Promise.reject(new MooringError(ErrorCode.TIMEOUT, 'x')), raft);
    raft.status = () => ({ lastIndex: 20 });
    await tick();
    expect(p.covers('d')).toBe(true);
    raft.isLeader = false;
    raft.emit('roleChange', 'follower');
    expect(p.covers('d')).toBe(false);
    expect(raft.listenerCount('applied') + raft.listenerCount('roleChange')).toBe(0);
  });
});
