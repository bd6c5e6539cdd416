import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OffsetAllocator } from '../../src/statemachine/allocator.js';

type Op = { kind: 'alloc'; size: number } | { kind: 'free'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant('alloc' as const), size: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 70_000 })) }),
  fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
);

/** Checks the allocator's invariants against the set of live allocations the test keeps. */
function checkInvariants(a: OffsetAllocator, live: Map<number, number>, align: number): void {
  const ext = a.extents();
  let cursor = 0;
  let prevFree = false;
  let allocatedBytes = 0;
  for (const [off, size, free] of ext) {
    expect(off).toBe(cursor); // chain covers [0, capacity) without gaps or overlap
    expect(off % align).toBe(0);
    if (free) expect(prevFree).toBe(false); // fully coalesced: never two free neighbours
    else {
      expect(live.has(off)).toBe(true);
      expect(size).toBe(Math.ceil(live.get(off)! / align) * align);
      allocatedBytes += size;
    }
    prevFree = free;
    cursor = off + size;
  }
  expect(cursor).toBe(a.capacityBytes); // nothing beyond capacity
  expect(a.allocatedBytes).toBe(allocatedBytes);
  expect(a.allocationCount).toBe(live.size);
  expect(a.freeBytes).toBe(a.capacityBytes - allocatedBytes);
}

describe('OffsetAllocator', () => {
  it('keeps no overlap, nothing beyond capacity, gives bytes back on free and coalesces fully', () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 8, 64), fc.integer({ min: 1, max: 1 << 20 }), fc.array(opArb, { maxLength: 250, size: 'max' }), (align, cap, ops) => {
        const a = new OffsetAllocator(cap, align);
        const live = new Map<number, number>();
        for (const op of ops) {
          if (op.kind === 'alloc') {
            const before = a.freeBytes;
            const off = a.alloc(op.size);
            if (off >= 0) {
              expect(live.has(off)).toBe(false);
              live.set(off, op.size);
              expect(a.freeBytes).toBe(before - Math.ceil(op.size / align) * align);
            } else {
              // NO_SPACE only when no free extent can hold it.
              const need = Math.ceil(op.size / align) * align;
              expect(a.extents().some(([, s, f]) => f && s >= need)).toBe(false);
            }
          } else if (live.size > 0) {
            const keys = [...live.keys()];
            const off = keys[op.pick % keys.length]!;
            const before = a.freeBytes;
            expect(a.free(off)).toBe(true);
            expect(a.freeBytes).toBe(before + Math.ceil(live.get(off)! / align) * align);
            live.delete(off);
            expect(a.free(off)).toBe(false); // double free changes nothing
          }
          checkInvariants(a, live, align);
        }
        for (const off of [...live.keys()]) a.free(off);
        live.clear();
        checkInvariants(a, live, align);
        const cap2 = a.capacityBytes;
        expect(a.extents()).toEqual(cap2 > 0 ? [[0, cap2, true]] : []);
        expect(a.stats().fragmentationRatio).toBe(0);
      }),
      { numRuns: 60 },
    );
  });

  it('behaves as a function of the allocated set: a rebuilt allocator makes the same next allocations', () => {
    // Many same-class holes (sizes of 1-4 units), so class heaps hold several blocks whose order is history.
    const smallOp: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('alloc' as const), size: fc.integer({ min: 1, max: 256 }) }),
      fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(opArb, smallOp, smallOp), { maxLength: 400, size: 'max' }), fc.array(fc.oneof(fc.integer({ min: 1, max: 256 }), fc.integer({ min: 1, max: 5000 })), { maxLength: 30 }), (ops, next) => {
        const align = 64;
        const a = new OffsetAllocator(1 << 20, align);
        const live = new Map<number, number>();
        for (const op of ops) {
          if (op.kind === 'alloc') {
            const off = a.alloc(op.size);
            if (off >= 0) live.set(off, op.size);
          } else if (live.size > 0) {
            const keys = [...live.keys()];
            const off = keys[op.pick % keys.length]!;
            a.free(off);
            live.delete(off);
          }
        }
        const b = OffsetAllocator.fromAllocations(1 << 20, align, [...live.entries()]);
        expect(b.extents()).toEqual(a.extents());
        for (const size of next) expect(b.alloc(size)).toBe(a.alloc(size));
      }),
      { numRuns: 200 },
    );
  });

  it('serves an exact-fit request the good-fit rounding would miss, and reports fragmentation', () => {
    const a = new OffsetAllocator(1000 * 64, 64);
    expect(a.alloc(1000 * 64)).toBe(0);
    expect(a.alloc(1)).toBe(-1);
    a.free(0);
    const offs = Array.from({ length: 10 }, () => a.alloc(100 * 64));
    expect(offs).toEqual(offs.map((_, i) => i * 6400));
    a.free(offs[1]!);
    a.free(offs[3]!);
    const s = a.stats();
    expect(s.freeExtentCount).toBe(2);
    expect(s.largestFreeExtentBytes).toBe(6400);
    expect(s.fragmentationRatio).toBeCloseTo(0.5);
    expect(a.alloc(6401)).toBe(-1);
    expect(a.alloc(6400)).toBe(6400); // lowest offset first
  });

  it('rebuilds from extents in any order, and refuses unaligned, repeated, overlapping or out-of-range ones', () => {
    const extents: Array<[number, number]> = [[0, 100], [128, 64], [4096, 5000], [64 * 200, 1]];
    const inOrder = OffsetAllocator.fromAllocations(1 << 16, 64, extents);
    const shuffled = OffsetAllocator.fromAllocations(1 << 16, 64, [extents[2]!, extents[0]!, extents[3]!, extents[1]!]);
    expect(shuffled.extents()).toEqual(inOrder.extents());
    expect(shuffled.stats()).toEqual(inOrder.stats());
    expect(shuffled.alloc(64)).toBe(inOrder.alloc(64));
    expect(() => OffsetAllocator.fromAllocations(1 << 16, 64, [[32, 10]])).toThrow(/not aligned/);
    expect(() => OffsetAllocator.fromAllocations(1 << 16, 64, [[128, 10], [0, 10], [128, 10]])).toThrow(/share an offset/);
    expect(() => OffsetAllocator.fromAllocations(1 << 16, 64, [[128, 10], [0, 200]])).toThrow(/overlaps/);
    expect(() => OffsetAllocator.fromAllocations(1 << 16, 64, [[(1 << 16) - 64, 65]])).toThrow(/beyond capacity/);
  });
});
