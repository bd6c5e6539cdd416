/**
 * Bounded drains (state version 2): the leader's plan lists at most maxDrainObjectsPerCommand keys, so a drain of a
 * large segment is several short commands; the version is raised only once every other member supports it.
 */
import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { maxDrainObjectsPerCommand } from '../../src/statemachine/limits.js';
import { drainedKeys, planDrain, planStateVersion } from '../../src/statemachine/planners.js';
import { supportedStateVersion } from '../../src/statemachine/state-version.js';
import { Driver, seg } from './helpers.js';

function setup(n: number, version: number): Driver {
  const d = new Driver();
  for (const id of ['s1', 's2']) d.ok({ type: 'MountSegment', clientId: `n-${id}`, segment: seg(id, 2 ** 30, { tier: id === 's2' ? 'DISK' : 'DRAM' }) });
  for (let i = 0; i < n; i += 1_000) {
    const keys = Array.from({ length: Math.min(1_000, n - i) }, (_, j) => `k${i + j}`);
    d.ok({ type: 'BatchPutStart', clientId: 'c', items: keys.map((key) => ({ key, size: 64, replicaNum: 1, preferredSegments: ['s1'] })) });
    d.ok({ type: 'BatchPutEnd', clientId: 'c', keys });
  }
  if (version >= 2) d.ok({ type: 'SetStateVersion', version });
  d.ok({ type: 'UnmountSegment', clientId: 'n-s1', segmentId: 's1', graceful: true });
  return d;
}

describe('bounded drains', () => {
  it('at version 2 a drain of 2 × max + 100 objects takes three commands of at most maxDrainObjectsPerCommand keys', () => {
    const n = 2 * maxDrainObjectsPerCommand + 100;
    const d = setup(n, 2);
    const leases = new LeaseTable(10_000);
    leases.grant('k5', d.now); // leased: skipped until its lease ends
    const sizes: number[] = [];
    for (let round = 0; round < 10 && d.core.segments.has('s1'); round++) {
      const plan = planDrain(d.core, leases, d.now)!;
      expect(plan.skipKeys).toEqual(sizes.length < 3 ? ['k5'] : []);
      if (sizes.length < 3) expect(plan.keys).not.toContain('k5');
      expect(new Set(drainedKeys(d.core, plan))).toEqual(new Set(plan.keys));
      sizes.push(plan.keys!.length);
      d.ok(plan);
      if (sizes.length === 3) d.now += 20_000; // the lease ran out
    }
    expect(sizes).toEqual([maxDrainObjectsPerCommand, maxDrainObjectsPerCommand, 99, 1]);
    expect(d.core.objects.size).toBe(0);
    expect(d.core.segments.has('s1')).toBe(false);
  });

  it('at version 1 the plan is the old form (no keys): one command drops everything', () => {
    const d = setup(maxDrainObjectsPerCommand + 10, 1);
    const plan = planDrain(d.core, new LeaseTable(10_000), d.now)!;
    expect(plan.keys).toBeUndefined();
    expect(d.ok(plan)).toEqual([{ segmentId: 's1', status: 'DRAINED' }]);
    expect(d.core.objects.size).toBe(0);
  });

  it('the version is raised only once every other member announced it', () => {
    const v1 = { stateVersion: 1 };
    const versions = new Map<string, number | undefined>([['m2', supportedStateVersion], ['m3', 1]]);
    expect(planStateVersion(v1, ['m2', 'm3'], (m) => versions.get(m))).toBeNull(); // m3 runs an older Mooring
    versions.set('m3', undefined);
    expect(planStateVersion(v1, ['m2', 'm3'], (m) => versions.get(m))).toBeNull(); // m3 not heard from yet
    versions.set('m3', supportedStateVersion);
    expect(planStateVersion(v1, ['m2', 'm3'], (m) => versions.get(m))).toEqual({ type: 'SetStateVersion', version: supportedStateVersion });
    expect(planStateVersion({ stateVersion: supportedStateVersion }, ['m2', 'm3'], (m) => versions.get(m))).toBeNull();
  });
});
