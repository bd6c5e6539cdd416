/**
 * Model-based test (fast-check `commands`): the real StateCore against a simple reference model that keeps,
 * per segment, the extents handed out (from the descriptors) and, per key, its replicas and completeness. The
 * model checks independently: no overlap, nothing beyond capacity, replicas on distinct segments, bytes given
 * back, NO_SPACE only when no gap in an eligible segment could hold the object, and every reply code.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Driver, seg } from './helpers.js';

const align = 64;
const reserved = (n: number): number => Math.ceil(n / align) * align;

interface ModelObject {
  size: number;
  complete: boolean;
  replicas: Array<{ segmentId: string; offset: number }>;
}
interface Model {
  segments: Map<string, { size: number; extents: Map<number, number> }>;
  objects: Map<string, ModelObject>;
}

const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
const segIds = ['s1', 's2', 's3', 's4'];

function gaps(size: number, extents: Map<number, number>): number[] {
  const sorted = [...extents.entries()].sort((x, y) => x[0] - y[0]);
  const out: number[] = [];
  let cursor = 0;
  for (const [off, len] of sorted) {
    out.push(off - cursor);
    cursor = off + len;
  }
  out.push(Math.floor(size / align) * align - cursor);
  return out;
}

function freeModelReplicas(m: Model, o: ModelObject): void {
  for (const r of o.replicas) m.segments.get(r.segmentId)?.extents.delete(r.offset);
}

function checkAgainstModel(m: Model, d: Driver): void {
  for (const [id, s] of m.segments) {
    const real = d.core.segments.get(id)!;
    let used = 0;
    for (const len of s.extents.values()) used += len;
    expect(real.alloc.allocatedBytes).toBe(used);
    for (const g of gaps(s.size, s.extents)) expect(g).toBeGreaterThanOrEqual(0); // no overlap, within capacity
  }
  expect(d.core.segments.size).toBe(m.segments.size);
  expect(d.core.objects.size).toBe(m.objects.size);
  for (const k of keys) expect(d.core.existKey(k)).toBe(m.objects.get(k)?.complete ?? false);
}

class Mount implements fc.Command<Model, Driver> {
  constructor(readonly id: string, readonly size: number) {}
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const code = d.code({ type: 'MountSegment', clientId: `n-${this.id}`, segment: seg(this.id, this.size) });
    if (m.segments.has(this.id)) {
      // Same spec: idempotent; another size: refused.
      expect(code).toBe(m.segments.get(this.id)!.size === this.size ? null : 'SEGMENT_ALREADY_EXISTS');
    } else {
      expect(code).toBeNull();
      m.segments.set(this.id, { size: this.size, extents: new Map() });
    }
    checkAgainstModel(m, d);
  }
  toString = (): string => `Mount(${this.id}, ${this.size})`;
}

class Unmount implements fc.Command<Model, Driver> {
  constructor(readonly id: string) {}
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const code = d.code({ type: 'UnmountSegment', clientId: 'op', segmentId: this.id });
    if (!m.segments.has(this.id)) {
      expect(code).toBe('SEGMENT_NOT_FOUND');
      return;
    }
    expect(code).toBeNull();
    m.segments.delete(this.id);
    for (const [k, o] of m.objects) {
      o.replicas = o.replicas.filter((r) => r.segmentId !== this.id);
      if (o.replicas.length === 0) m.objects.delete(k);
    }
    checkAgainstModel(m, d);
  }
  toString = (): string => `Unmount(${this.id})`;
}

class PutStart implements fc.Command<Model, Driver> {
  constructor(readonly key: string, readonly size: number, readonly replicaNum: number) {}
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const r = d.apply({ type: 'PutStart', clientId: 'w', key: this.key, size: this.size, replicaNum: this.replicaNum });
    if (m.objects.has(this.key)) {
      expect(r).toMatchObject({ ok: false, error: { code: 'OBJECT_ALREADY_EXISTS' } });
      return;
    }
    const need = reserved(this.size);
    const fitting = [...m.segments.entries()].filter(([, s]) => gaps(s.size, s.extents).some((g) => g >= need)).length;
    if (!r.ok) {
      expect(r.error.code).toBe('NO_SPACE');
      expect(fitting).toBe(0);
      return;
    }
    const reps = r.value.replicas as Array<{ segmentId: string; offset: number; length: number }>;
    expect(reps.length).toBe(Math.min(this.replicaNum, fitting));
    expect(new Set(reps.map((x) => x.segmentId)).size).toBe(reps.length);
    for (const x of reps) {
      expect(x.length).toBe(this.size);
      const s = m.segments.get(x.segmentId)!;
      s.extents.set(x.offset, need);
    }
    m.objects.set(this.key, { size: this.size, complete: false, replicas: reps.map((x) => ({ segmentId: x.segmentId, offset: x.offset })) });
    checkAgainstModel(m, d);
  }
  toString = (): string => `PutStart(${this.key}, ${this.size}, ${this.replicaNum})`;
}

class PutEnd implements fc.Command<Model, Driver> {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const code = d.code({ type: 'PutEnd', clientId: 'w', key: this.key });
    const o = m.objects.get(this.key);
    expect(code).toBe(o ? null : 'OBJECT_NOT_FOUND');
    if (o) o.complete = true;
    checkAgainstModel(m, d);
  }
  toString = (): string => `PutEnd(${this.key})`;
}

class PutRevoke implements fc.Command<Model, Driver> {
  constructor(readonly key: string) {}
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const code = d.code({ type: 'PutRevoke', clientId: 'w', key: this.key });
    const o = m.objects.get(this.key);
    if (!o) expect(code).toBe('OBJECT_NOT_FOUND');
    else if (o.complete) expect(code).toBe('INVALID_ARGUMENT');
    else {
      expect(code).toBeNull();
      freeModelReplicas(m, o);
      m.objects.delete(this.key);
    }
    checkAgainstModel(m, d);
  }
  toString = (): string => `PutRevoke(${this.key})`;
}

class Remove implements fc.Command<Model, Driver> {
  constructor(readonly key: string, readonly force: boolean) {}
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const code = d.code({ type: 'Remove', clientId: 'w', key: this.key, force: this.force });
    const o = m.objects.get(this.key);
    if (!o) expect(code).toBe('OBJECT_NOT_FOUND');
    else if (!o.complete && !this.force) expect(code).toBe('OBJECT_NOT_READY');
    else {
      expect(code).toBeNull();
      freeModelReplicas(m, o);
      m.objects.delete(this.key);
    }
    checkAgainstModel(m, d);
  }
  toString = (): string => `Remove(${this.key}, ${this.force})`;
}

class RemoveAll implements fc.Command<Model, Driver> {
  check = (): boolean => true;
  run(m: Model, d: Driver): void {
    const r = d.ok({ type: 'RemoveAll', clientId: 'w' });
    let n = 0;
    for (const [k, o] of m.objects) {
      if (!o.complete) continue;
      freeModelReplicas(m, o);
      m.objects.delete(k);
      n++;
    }
    expect(r).toEqual({ removed: n });
    checkAgainstModel(m, d);
  }
  toString = (): string => 'RemoveAll';
}

const key = fc.constantFrom(...keys);
const segId = fc.constantFrom(...segIds);
const allCommands = [
  fc.tuple(segId, fc.constantFrom(4096, 16_384, 100_000)).map(([id, size]) => new Mount(id, size)),
  segId.map((id) => new Unmount(id)),
  fc.tuple(key, fc.integer({ min: 1, max: 40_000 }), fc.integer({ min: 1, max: 3 })).map(([k, s, r]) => new PutStart(k, s, r)),
  fc.tuple(key, fc.integer({ min: 1, max: 40_000 }), fc.integer({ min: 1, max: 3 })).map(([k, s, r]) => new PutStart(k, s, r)),
  key.map((k) => new PutEnd(k)),
  key.map((k) => new PutEnd(k)),
  key.map((k) => new PutRevoke(k)),
  fc.tuple(key, fc.boolean()).map(([k, f]) => new Remove(k, f)),
  fc.constant(new RemoveAll()),
];

describe('model-based: StateCore against a reference model', () => {
  for (const placement of ['random', 'free-ratio-first', 'zone-spread'] as const) {
    it(`agrees with the model (${placement} placement)`, () => {
      fc.assert(
        fc.property(fc.commands(allCommands, { maxCommands: 120, size: 'medium' }), (cmds) => {
          const model: Model = { segments: new Map(), objects: new Map() };
          fc.modelRun(() => ({ model, real: Driver.with({ placement, allocAlignmentBytes: align }) }), cmds);
        }),
        { numRuns: 150 },
      );
    });
  }
});
