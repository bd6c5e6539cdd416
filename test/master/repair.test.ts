/**
 * Re-replication in the state machine (RepairStart / RepairEnd / RepairRevoke, replicaNum, reclaim, drain) and
 * the leader's RepairScheduler planning from that state (task owner, limits, settling).
 */
import { describe, expect, it } from 'vitest';
import { RepairScheduler } from '../../src/master/repair.js';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { liveReplicas, needsRepair } from '../../src/statemachine/objects.js';
import { planDrain } from '../../src/statemachine/planners.js';
import { Driver, seg } from '../statemachine/helpers.js';

const MiB = 1 << 20;

/** Three clients c1..c3, one 4 MiB segment each in zones z1..z3, and an object k with 2 replicas. */
function setup(objects = 1, placement: 'zone-spread' | 'random' = 'zone-spread'): Driver {
  const d = Driver.with({ placement });
  for (let i = 1; i <= 3; i++) d.ok({ type: 'MountSegment', clientId: `c${i}`, segment: seg(`s${i}`, 4 * MiB, { zone: `z${i}` }) });
  for (let i = 0; i < objects; i++) {
    const key = i === 0 ? 'k' : `k${i}`;
    d.ok({ type: 'PutStart', clientId: 'c1', key, size: 1000, replicaNum: 2 });
    d.ok({ type: 'PutEnd', clientId: 'c1', key });
  }
  return d;
}

/** setup(40), a fourth node s4, and s2 unmounted: several objects under-replicated, s4 a target for them. */
function underReplicated40(): { d: Driver; under: number } {
  const d = setup(40);
  d.ok({ type: 'MountSegment', clientId: 'c4', segment: seg('s4', 4 * MiB, { zone: 'z4' }) });
  d.ok({ type: 'UnmountSegment', clientId: 'admin', segmentId: 's2' });
  const under = [...d.core.objects.values()].filter((o) => needsRepair(o, d.core.segments)).length;
  expect(under).toBeGreaterThan(4);
  return { d, under };
}

describe('re-replication in the state machine', () => {
  it('RepairStart places the new replica in a zone the live replica does not use; RepairEnd restores replicaNum', () => {
    const d = setup();
    const o = d.core.objects.get('k')!;
    expect(o.replicaNum).toBe(2);
    const lost = o.replicas[1]!.segmentId;
    d.ok({ type: 'UnmountSegment', clientId: 'admin', segmentId: lost });
    expect(o.replicas).toHaveLength(1);
    expect(needsRepair(o, d.core.segments)).toBe(true);
    const plan = d.ok({ type: 'RepairStart', clientId: 'c1', key: 'k', createdIndex: o.createdIndex });
    const liveZone = d.core.segments.get(o.replicas[0]!.segmentId)!.rec.zone;
    const targetZone = d.core.segments.get(plan.target.segmentId)!.rec.zone;
    expect(targetZone).not.toBe(liveZone);
    expect(plan.target.segmentId).not.toBe(lost);
    expect(plan.source.map((r: { segmentId: string }) => r.segmentId)).toEqual([o.replicas[0]!.segmentId]);
    // In progress: the object is not settled (no eviction/drain under the copy), the new replica is not readable yet.
    expect(d.core.inFlight.has('k')).toBe(true);
    expect((d.core.getReplicaList('k', d.now) as { ok: true; value: { replicas: unknown[] } }).value.replicas).toHaveLength(1);
    expect(d.code({ type: 'RepairEnd', clientId: 'c1', key: 'k', repairId: plan.repairId + 1 })).toBe('INVALID_ARGUMENT');
    const end = { type: 'RepairEnd' as const, clientId: 'c1', seq: 7, key: 'k', repairId: plan.repairId };
    expect(d.code(end)).toBeNull();
    expect(liveReplicas(o, d.core.segments)).toHaveLength(2);
    expect(needsRepair(o, d.core.segments)).toBe(false);
    expect(d.core.inFlight.has('k')).toBe(false);
    // Idempotent: a duplicate task is refused, a retried RepairEnd (same session seq) gets its first reply.
    expect(d.code({ type: 'RepairStart', clientId: 'c1', key: 'k', createdIndex: o.createdIndex })).toBe('INVALID_ARGUMENT');
    expect(d.code(end)).toBeNull();
    expect(o.replicas).toHaveLength(2);
  });

  it('refuses a repair of another version of the key, and RepairRevoke / reclaim free the extent', () => {
    const d = setup();
    const o = d.core.objects.get('k')!;
    d.ok({ type: 'UnmountSegment', clientId: 'admin', segmentId: o.replicas[1]!.segmentId });
    expect(d.code({ type: 'RepairStart', clientId: 'c1', key: 'k', createdIndex: o.createdIndex + 1 })).toBe('OBJECT_NOT_FOUND');
    const allocated = (): number => [...d.core.segments.values()].reduce((n, s) => n + s.alloc.allocatedBytes, 0);
    const before = allocated();
    const first = d.ok({ type: 'RepairStart', clientId: 'c1', key: 'k', createdIndex: o.createdIndex });
    expect(allocated()).toBeGreaterThan(before);
    d.ok({ type: 'RepairRevoke', clientId: 'c1', key: 'k', repairId: first.repairId });
    expect(allocated()).toBe(before);
    expect(o.repair).toBeNull();
    // An abandoned repair (the copier died) is reclaimed like an abandoned put.
    const second = d.ok({ type: 'RepairStart', clientId: 'c1', key: 'k', createdIndex: o.createdIndex });
    d.now += 10_000;
    expect(d.ok({ type: 'ReclaimPuts', keys: ['k'], putTimeoutMs: 5_000 })).toEqual({ reclaimed: ['k'] });
    expect(allocated()).toBe(before);
    expect(needsRepair(o, d.core.segments)).toBe(true);
    // A late RepairEnd / RepairRevoke of the reclaimed attempt cannot touch a newer attempt.
    const third = d.ok({ type: 'RepairStart', clientId: 'c1', key: 'k', createdIndex: o.createdIndex });
    expect(d.code({ type: 'RepairEnd', clientId: 'c1', key: 'k', repairId: second.repairId })).toBe('INVALID_ARGUMENT');
    d.ok({ type: 'RepairRevoke', clientId: 'c1', key: 'k', repairId: second.repairId });
    expect(o.repair?.startedIndex).toBe(third.repairId);
    expect(o.replicas).toHaveLength(1);
  });

  it('a demotion keeps fewer copies on purpose: nothing to repair afterwards', () => {
    const d = setup();
    d.ok({ type: 'MountSegment', clientId: 'c3', segment: seg('disk', 4 * MiB, { zone: 'z3', tier: 'DISK' }) });
    d.ok({ type: 'OffloadStart', clientId: 'c1', key: 'k' });
    d.ok({ type: 'OffloadEnd', clientId: 'c1', key: 'k' });
    const o = d.core.objects.get('k')!;
    expect(o.replicas).toHaveLength(1);
    expect(o.replicaNum).toBe(1);
    expect(needsRepair(o, d.core.segments)).toBe(false);
  });

  it('a DRAINING node keeps its replicas until a repair has copied them elsewhere', () => {
    const d = setup();
    const o = d.core.objects.get('k')!;
    const drainingSeg = o.replicas[0]!.segmentId;
    const node = d.core.segments.get(drainingSeg)!.rec.clientId;
    d.ok({ type: 'SetNodeStatus', clientId: 'admin', nodeId: node, status: 'DRAINING' });
    expect(needsRepair(o, d.core.segments)).toBe(true);
    const leases = new LeaseTable(1_000);
    leases.prune(d.now);
    const sched = new RepairScheduler();
    sched.plan(d.core, d.now);
    expect(sched.awaitingRepair().has('k')).toBe(true);
    const drain = planDrain(d.core, leases, d.now, sched.awaitingRepair())!;
    expect(drain.skipKeys).toContain('k');
    d.ok(drain);
    expect(o.replicas.map((r) => r.segmentId)).toContain(drainingSeg); // held
    // The task goes to the owner of a live replica.
    const tasks = [...d.core.clients.keys()].flatMap((c) => sched.tasksFor(c, d.now).map((t) => ({ c, t })));
    expect(tasks).toHaveLength(1);
    expect(tasks[0]!.t).toMatchObject({ kind: 'repair', key: 'k', createdIndex: o.createdIndex });
    const plan = d.ok({ type: 'RepairStart', clientId: tasks[0]!.c, key: 'k', createdIndex: o.createdIndex });
    d.ok({ type: 'RepairEnd', clientId: tasks[0]!.c, key: 'k', repairId: plan.repairId });
    sched.plan(d.core, d.now + 2_000);
    expect(sched.totalDone).toBe(1);
    expect(sched.awaitingRepair().has('k')).toBe(false);
    d.ok(planDrain(d.core, leases, d.now, sched.awaitingRepair())!);
    expect(o.replicas.map((r) => r.segmentId)).not.toContain(drainingSeg);
    expect(liveReplicas(o, d.core.segments)).toHaveLength(2);
    expect(d.core.segments.has(drainingSeg)).toBe(false); // DRAINED and gone
  });

  it('looks for under-replicated objects in slices of scanObjectsPerRound, publishing a pass only when it ends', () => {
    const { d, under } = underReplicated40();
    const sched = new RepairScheduler({ scanObjectsPerRound: 10 });
    let rounds = 0;
    while (sched.report().underReplicated === 0 && rounds < 100) sched.plan(d.core, d.now + 100 * rounds++);
    // 40 objects, 10 per round: four rounds look at them, the fifth finds the end and publishes.
    expect(rounds).toBe(5);
    expect(sched.report()).toMatchObject({ underReplicated: under });
    expect(sched.awaitingRepair().size).toBeGreaterThan(0);
    // One round is enough when the slice covers every object.
    const whole = new RepairScheduler();
    whole.plan(d.core, d.now);
    expect(whole.report().underReplicated).toBe(under);
  });

  it('a drain waits for a pass that began with its segments already DRAINING', () => {
    const d = setup(30);
    const sched = new RepairScheduler({ scanObjectsPerRound: 10, scanIntervalMs: 1_000 });
    let t = d.now;
    const round = (): void => {
      sched.plan(d.core, t);
      t += 100;
    };
    for (let i = 0; i < 4; i++) round(); // pass 1: 30 objects in three rounds, published in the fourth
    expect(sched.report().underReplicated).toBe(0);
    const drainingSeg = d.core.objects.get('k')!.replicas[0]!.segmentId;
    expect(sched.coversDrain([drainingSeg])).toBe(false);
    // Pass 2 begins (the state changed: one more object, 31 now); the segment turns DRAINING while it runs.
    d.ok({ type: 'PutStart', clientId: 'c1', key: 'extra', size: 1000, replicaNum: 2 });
    d.ok({ type: 'PutEnd', clientId: 'c1', key: 'extra' });
    t += 1_000;
    round();
    const node = d.core.segments.get(drainingSeg)!.rec.clientId;
    d.ok({ type: 'SetNodeStatus', clientId: 'admin', nodeId: node, status: 'DRAINING' });
    for (let i = 0; i < 3; i++) round();
    expect(sched.report().underReplicated).toBeGreaterThan(0); // pass 2 ended (it saw the segment DRAINING late)…
    expect(sched.coversDrain([drainingSeg])).toBe(false); // …but it did not begin with it DRAINING
    // Pass 3 begins scanIntervalMs after pass 2 did, with the segment DRAINING: once it ends, the drain may go.
    t += 1_000;
    for (let i = 0; i < 3; i++) round();
    expect(sched.coversDrain([drainingSeg])).toBe(false); // in the middle of it
    round();
    expect(sched.coversDrain([drainingSeg])).toBe(true);
    expect(sched.awaitingRepair().has('k')).toBe(true);
    sched.reset(); // a new leader knows nothing yet
    expect(sched.coversDrain([drainingSeg])).toBe(false);
  });

  it('the scheduler respects maxInFlight and bytesPerSecond, and forgets its tasks on reset', () => {
    const { d, under } = underReplicated40();
    const byCount = new RepairScheduler({ maxInFlight: 3 });
    byCount.plan(d.core, d.now);
    expect(byCount.report()).toMatchObject({ underReplicated: under, inFlight: 3 });
    const byBytes = new RepairScheduler({ bytesPerSecond: 2_500 }); // 1000-byte objects: two per second
    byBytes.plan(d.core, 0);
    expect(byBytes.report().inFlight).toBe(2);
    byBytes.plan(d.core, 1_000);
    expect(byBytes.report().inFlight).toBe(4);
    byBytes.reset();
    expect(byBytes.report().inFlight).toBe(0);
  });
});
