import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { ClientLiveness, planClientExpiry } from '../../src/statemachine/clients.js';
import { planEviction, planEvictionForPut } from '../../src/statemachine/eviction.js';
import { planDrain, planReclaim } from '../../src/statemachine/planners.js';
import { Driver, seg } from './helpers.js';

function filled(n: number, size: number, segBytes: number): Driver {
  const d = new Driver();
  d.ok({ type: 'MountSegment', clientId: 'n', segment: seg('s', segBytes) });
  for (let i = 0; i < n; i++) {
    d.now += 10;
    d.ok({ type: 'PutStart', clientId: 'w', key: `k${i}`, size, replicaNum: 1 });
    d.ok({ type: 'PutEnd', clientId: 'w', key: `k${i}` });
  }
  return d;
}

describe('LeaseTable', () => {
  it('grants, expires, treats everything as leased for one TTL after a new leader, refuses reserved keys', () => {
    const l = new LeaseTable(1000);
    expect(l.grant('a', 0)).toBe(1000);
    expect(l.isLeased('a', 999)).toBe(true);
    expect(l.isLeased('a', 1000)).toBe(false);
    expect(l.isLeased('b', 0)).toBe(false);
    l.resetForNewLeader(5000);
    expect(l.isLeased('anything', 5999)).toBe(true);
    expect(l.allLeased(5999)).toBe(true);
    expect(l.isLeased('anything', 6000)).toBe(false);
    const r1 = l.reserve(['x']);
    const r2 = l.reserve(['x']); // a second eviction of x while the first has not settled
    expect(l.grant('x', 7000)).toBe(0);
    r1.release();
    r1.release(); // once only
    expect(l.grant('x', 7000)).toBe(0); // still reserved by the second
    r2.release();
    expect(l.grant('x', 7000)).toBe(8000);
    l.grant('y', 7500);
    expect(l.prune(8000)).toBe(1);
    expect(l.leasedKeys(8000)).toEqual(['y']);
  });

  it('a hot key re-read within 1/4 TTL keeps its place (no re-insert per read) yet its exact expiry; prune drops it at most that late', () => {
    const l = new LeaseTable(400); // slack 100 ms
    l.grant('hot', 0); // until 400
    l.grant('cold', 10); // until 410
    l.grant('hot', 50); // until 450: stays ahead of 'cold' in the map
    expect(l.expiry('hot')).toBe(450);
    expect(l.isLeased('hot', 440)).toBe(true);
    // At 420 'cold' is expired but waits behind the live 'hot' (within the slack); isLeased is exact.
    expect(l.isLeased('cold', 420)).toBe(false);
    expect(l.prune(420)).toBe(0);
    expect(l.prune(450)).toBe(2);
    // A grant further out than the slack moves the key to the end: the expired one behind it goes at once.
    l.grant('a', 2000); // until 2400
    l.grant('b', 2010); // until 2410
    l.grant('a', 2200); // until 2600: moved behind 'b'
    expect(l.prune(2500)).toBe(1);
    expect(l.leasedKeys(2500)).toEqual(['a']);
  });

  it("an announcer's note stays with the key's entry through extensions and moves, and goes with the lease", () => {
    const l = new LeaseTable(400); // slack 100 ms
    l.grant('k', 0);
    const e = l.entry('k')!;
    e.noteUntil = 2400;
    e.noteSeq = 7;
    l.grant('k', 50); // within the slack: kept in place
    l.grant('x', 60);
    l.grant('k', 500); // beyond it: moved behind 'x', the same entry
    expect(l.entry('k')).toBe(e);
    expect({ until: e.until, noteUntil: e.noteUntil, noteSeq: e.noteSeq }).toEqual({ until: 900, noteUntil: 2400, noteSeq: 7 });
    expect(l.leasedKeys(0)).toEqual(['x', 'k']);
    l.clearNotes();
    expect({ noteUntil: e.noteUntil, noteSeq: e.noteSeq }).toEqual({ noteUntil: 0, noteSeq: 0 });
    e.noteUntil = 2400;
    expect(l.prune(900)).toBe(2);
    expect(l.entry('k')).toBeUndefined();
    l.grant('k', 3000); // a new lease starts with no note
    expect(l.entry('k')!.noteUntil).toBe(0);
  });

  it('prune forgets at most maxDeletes expired leases per call, oldest first, and never a live one', () => {
    const l = new LeaseTable(1000);
    for (let i = 0; i < 10; i++) l.grant(`k${i}`, i); // until 1000 + i
    l.grant('live', 5000);
    expect(l.prune(2000, 4)).toBe(4);
    expect(l.size).toBe(7);
    expect(l.prune(2000, 4)).toBe(4);
    expect(l.prune(2000, 4)).toBe(2);
    expect(l.prune(2000, 4)).toBe(0);
    expect(l.leasedKeys(2000)).toEqual(['live']);
  });

  it('a reservation of an earlier leadership releases nothing', () => {
    const l = new LeaseTable(1000);
    const old = l.reserve(['z']);
    l.resetForNewLeader(7000);
    const fresh = l.reserve(['z']);
    old.release();
    expect(l.grant('z', 9000)).toBe(0);
    fresh.release();
    expect(l.grant('z', 9000)).toBe(10_000);
  });

  it('GetReplicaList grants a lease on the leader table', () => {
    const d = filled(1, 100, 1 << 20);
    const leases = new LeaseTable(10_000);
    expect(d.core.getReplicaList('k0', 50, leases)).toMatchObject({ ok: true, value: { leaseTtlMs: 10_000 } });
    expect(leases.isLeased('k0', 10_049)).toBe(true);
    leases.reserve(['k0']);
    expect(d.core.getReplicaList('k0', 60, leases)).toMatchObject({ ok: false, error: { code: 'OBJECT_NOT_FOUND' } });
  });
});

describe('eviction', () => {
  it('does nothing below the high watermark; above it, evicts down to the target, oldest first', () => {
    const leases = new LeaseTable(1000);
    const d = filled(80, 1024, 100 * 1024); // 80% full
    expect(planEviction(d.core, leases, d.now)).toBeNull();
    for (let i = 80; i < 90; i++) {
      d.ok({ type: 'PutStart', clientId: 'w', key: `k${i}`, size: 1024, replicaNum: 1 });
      d.ok({ type: 'PutEnd', clientId: 'w', key: `k${i}` });
    }
    const plan = planEviction(d.core, leases, d.now)!;
    expect(plan.items.map((i) => i.key)).toEqual(Array.from({ length: 15 }, (_, i) => `k${i}`));
    d.ok(plan);
    expect(d.core.stats().memoryUsageRatio).toBeCloseTo(0.75);
    expect(planEviction(d.core, leases, d.now)).toBeNull();
  });

  it('never plans leased, hard-pinned or incomplete objects; soft pins yield last; approximately LRU by lease grants', () => {
    const d = new Driver();
    d.ok({ type: 'MountSegment', clientId: 'n', segment: seg('s', 10 * 1024) });
    const put = (key: string, extra = {}, end = true): void => {
      d.now += 10;
      d.ok({ type: 'PutStart', clientId: 'w', key, size: 1024, replicaNum: 1, ...extra });
      if (end) d.ok({ type: 'PutEnd', clientId: 'w', key });
    };
    put('leased');
    put('hard', { hardPin: true });
    put('incomplete', {}, false);
    put('soft', { softPin: true });
    put('read-recently');
    put('plain1');
    put('plain2');
    put('plain3');
    put('plain4');
    const leases = new LeaseTable(1000);
    d.now += 5000;
    leases.grant('leased', d.now);
    leases.grant('read-recently', d.now - 2000); // expired lease, but it was read after plain1..4 were written
    const plan = planEviction(d.core, leases, d.now, { highWatermarkRatio: 0.85, targetRatio: 0.3 })!;
    const keys = plan.items.map((i) => i.key);
    expect(keys).not.toContain('leased');
    expect(keys).not.toContain('hard');
    expect(keys).not.toContain('incomplete');
    expect(keys.slice(0, 5)).toEqual(['plain1', 'plain2', 'plain3', 'plain4', 'read-recently']);
    expect(keys[5]).toBe('soft'); // soft pins yield only when unpinned ones are not enough
    // A new leader treats every object as leased for one TTL: nothing is planned.
    leases.resetForNewLeader(d.now);
    expect(planEviction(d.core, leases, d.now)).toBeNull();
  });

  it('apply re-checks: an object hard-pinned or re-created since planning is not evicted', () => {
    const d = filled(9, 1024, 10 * 1024);
    const plan = planEviction(d.core, new LeaseTable(), d.now, { targetRatio: 0.5 })!;
    expect(plan.items[0]!.key).toBe('k0');
    // Between planning and apply, k0 is removed and re-put with a hard pin; k1 is re-put plain.
    d.ok({ type: 'Remove', clientId: 'w', key: 'k0' });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'k0', size: 1024, replicaNum: 1, hardPin: true });
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'k0' });
    d.ok({ type: 'Remove', clientId: 'w', key: 'k1' });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'k1', size: 1024, replicaNum: 1 });
    const v = d.ok(plan);
    expect(v.evicted).not.toContain('k0');
    expect(v.evicted).not.toContain('k1');
    expect(d.core.existKey('k0') && d.core.objects.has('k1')).toBe(true);
  });

  it('planEvictionForPut proposes candidates only when nothing fits', () => {
    const d = filled(10, 1024, 10 * 1024);
    const leases = new LeaseTable();
    expect(planEvictionForPut(d.core, leases, d.now, 1024, 1).length).toBeGreaterThan(0);
    d.ok({ type: 'Remove', clientId: 'w', key: 'k5' });
    expect(planEvictionForPut(d.core, leases, d.now, 1024, 1)).toEqual([]);
  });
});

describe('client expiry, reclaim and drain planners', () => {
  it('expires silent clients with their segments; pings and writes keep them; a new leader gives a fresh TTL', () => {
    const d = new Driver();
    d.ok({ type: 'MountSegment', clientId: 'dead', segment: seg('s1', 1 << 20) });
    d.ok({ type: 'MountSegment', clientId: 'alive', segment: seg('s2', 1 << 20) });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'only-on-dead', size: 10, replicaNum: 1, preferredSegments: ['s1'] });
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'only-on-dead' });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'both', size: 10, replicaNum: 2 });
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'both' });
    const live = new ClientLiveness();
    const t0 = d.now;
    live.touch('alive', t0 + 9000);
    live.touch('w', t0 + 9000);
    expect(planClientExpiry(d.core, live, t0 + 9999, 10_000)).toBeNull();
    const plan = planClientExpiry(d.core, live, t0 + 10_000, 10_000)!;
    expect(plan.clientIds).toEqual(['dead']);
    d.now = t0 + 10_000;
    expect(d.ok(plan)).toEqual({ expired: ['dead'] });
    expect(d.core.existKey('only-on-dead')).toBe(false);
    const rl = d.core.getReplicaList('both', d.now);
    expect(rl.ok && rl.value.replicas.map((r) => r.segmentId)).toEqual(['s2']);
    expect(d.core.ping('dead').status).toBe('NEED_REMOUNT');
    expect(d.core.ping('alive').status).toBe('OK');
    // Apply re-checks with the entry time: a client that wrote since planning is not expired.
    const plan2 = { type: 'ExpireClients' as const, clientIds: ['alive'], clientTtlMs: 10_000 };
    d.ok({ type: 'PutStart', clientId: 'alive', key: 'x', size: 1, replicaNum: 1 });
    expect(d.ok(plan2)).toEqual({ expired: [] });
    live.resetForNewLeader(d.now + 50_000);
    expect(planClientExpiry(d.core, live, d.now + 59_999, 10_000)).toBeNull();
  });

  it('reclaims PutStarts never ended (and stale upserts) after the timeout, re-checked at apply', () => {
    const d = new Driver();
    d.ok({ type: 'MountSegment', clientId: 'n', segment: seg('s', 1 << 20) });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'abandoned', size: 10, replicaNum: 1 });
    d.ok({ type: 'PutStart', clientId: 'w', key: 'done', size: 10, replicaNum: 1 });
    d.ok({ type: 'PutEnd', clientId: 'w', key: 'done' });
    d.ok({ type: 'UpsertStart', clientId: 'w', key: 'done', size: 20, replicaNum: 1 });
    expect(planReclaim(d.core, d.now + 999, 1000)).toBeNull();
    const plan = planReclaim(d.core, d.now + 1000, 1000)!;
    expect(plan.keys.sort()).toEqual(['abandoned', 'done']);
    d.now += 500;
    expect(d.ok(plan)).toEqual({ reclaimed: [] }); // the entry's time says it is too early
    d.now += 500;
    expect(d.ok(plan)).toEqual({ reclaimed: ['abandoned', 'done'] });
    expect(d.core.existKey('abandoned')).toBe(false);
    expect(d.core.existKey('done')).toBe(true);
    expect(d.core.stats().memoryAllocatedBytes).toBe(64);
  });

  it('planDrain skips leased keys and waits while a new leader holds every lease', () => {
    const d = filled(2, 10, 1 << 20);
    d.ok({ type: 'UnmountSegment', clientId: 'n', segmentId: 's', graceful: true });
    const leases = new LeaseTable(1000);
    leases.grant('k1', d.now);
    const plan = planDrain(d.core, leases, d.now)!;
    expect(plan.skipKeys).toEqual(['k1']);
    expect(d.ok(plan)).toEqual([{ segmentId: 's', status: 'DRAINING' }]);
    expect(d.core.existKey('k0')).toBe(false);
    leases.resetForNewLeader(d.now);
    expect(planDrain(d.core, leases, d.now)).toBeNull();
    expect(d.ok(planDrain(d.core, leases, d.now + 1000)!)).toEqual([{ segmentId: 's', status: 'DRAINED' }]);
  });
});
