/**
 * Offset allocator for one segment: a TLSF-like allocator (two-level segregated free lists) over offsets, not
 * memory. alloc and free are O(1) in the class search: a size maps to a (first-level, second-level) class through log2, two bitmaps
 * find the first non-empty class that is large enough, and freeing coalesces with both physical neighbours at
 * once, so a fully freed segment is always one extent again.
 *
 * Sizes are kept in units of `alignmentBytes` so every offset handed out is aligned. Offsets are relative to the
 * segment start. All numbers stay below 2^53 (see limits.maxSegmentBytes), so plain JS numbers are exact.
 *
 * Determinism, stronger than "same calls, same result": free extents are always maximal (no two free
 * neighbours), and within a size class the LOWEST-offset free block is taken (each class is a min-heap by
 * offset, O(log k) for k blocks in that class, k is small in practice). So the allocator's behaviour is a pure
 * function of the SET of allocated extents, not of the order in which they were freed. That is what lets a
 * replica that restarted (rebuilding allocators from the persisted replicas) or restored a snapshot make exactly
 * the same future allocations as one that applied the whole log.
 */
import { assert } from '../errors.js';

const slBits = 4;
const slCount = 1 << slBits;
/** First levels: enough for sizes up to 2^53 units. */
const flCount = 54;
const two32 = 0x1_0000_0000;

function log2floor(x: number): number {
  if (x >= two32) return 32 + (31 - Math.clz32(Math.floor(x / two32)));
  return 31 - Math.clz32(x);
}

/** 2^k for k < 64, so class computations avoid Math.pow. */
const pow2: number[] = Array.from({ length: 64 }, (_, k) => 2 ** k);

function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

/** One extent, free or allocated; blocks form a physical chain covering [0, capacity). */
class Block {
  prevPhys: Block | null = null;
  nextPhys: Block | null = null;
  /** Position in its size class's heap while free; -1 when allocated. */
  heapIndex = -1;
  /** Its size class while free (saves recomputing it on removal). */
  cls = 0;
  free = true;
  constructor(
    public offset: number,
    public size: number,
  ) {}
}

export interface AllocatorStats {
  capacityBytes: number;
  allocatedBytes: number;
  freeBytes: number;
  allocationCount: number;
  freeExtentCount: number;
  largestFreeExtentBytes: number;
  /** 1 − largest free extent / free bytes: 0 when all free space is one extent. */
  fragmentationRatio: number;
}

export class OffsetAllocator {
  readonly alignmentBytes: number;
  readonly capacityBytes: number;
  private readonly capacityUnits: number;
  private flBitmapLo = 0;
  private flBitmapHi = 0;
  private readonly slBitmap = new Uint32Array(flCount);
  private readonly classes: Block[][] = Array.from({ length: flCount * slCount }, () => []);
  /** Allocated blocks by offset (in units): free() finds its block in O(1). */
  private readonly allocated = new Map<number, Block>();
  private allocatedUnits = 0;
  private freeExtents = 0;

  constructor(capacityBytes: number, alignmentBytes: number) {
    assert(Number.isInteger(alignmentBytes) && alignmentBytes > 0, 'alignment must be a positive integer');
    assert(Number.isSafeInteger(capacityBytes) && capacityBytes >= 0, 'capacity must be a safe integer');
    this.alignmentBytes = alignmentBytes;
    this.capacityUnits = Math.floor(capacityBytes / alignmentBytes);
    this.capacityBytes = this.capacityUnits * alignmentBytes;
    if (this.capacityUnits > 0) this.insertFree(new Block(0, this.capacityUnits));
  }

  /**
   * Rebuild an allocator holding exactly the given extents (used when loading state or restoring a snapshot).
   * `extents` are [offsetBytes, lengthBytes] pairs, in any order; they must not overlap.
   */
  static fromAllocations(
    capacityBytes: number,
    alignmentBytes: number,
    extents: ReadonlyArray<readonly [number, number]>,
  ): OffsetAllocator {
    const a = new OffsetAllocator(0, alignmentBytes);
    const units = Math.floor(capacityBytes / alignmentBytes);
    (a as { capacityBytes: number }).capacityBytes = units * alignmentBytes;
    (a as unknown as { capacityUnits: number }).capacityUnits = units;
    const sorted = [...extents].sort((x, y) => x[0] - y[0]);
    let cursor = 0;
    let prev: Block | null = null;
    const link = (b: Block): void => {
      b.prevPhys = prev;
      if (prev) prev.nextPhys = b;
      prev = b;
    };
    for (const [offsetBytes, lengthBytes] of sorted) {
      assert(offsetBytes % alignmentBytes === 0, `extent offset ${offsetBytes} is not aligned`);
      const off = offsetBytes / alignmentBytes;
      const size = a.unitsFor(lengthBytes);
      assert(off >= cursor, `extent at ${offsetBytes} overlaps the previous one`);
      assert(off + size <= units, `extent at ${offsetBytes} goes beyond capacity`);
      if (off > cursor) {
        const gap = new Block(cursor, off - cursor);
        link(gap);
        a.insertFree(gap);
      }
      const b = new Block(off, size);
      b.free = false;
      link(b);
      a.allocated.set(off, b);
      a.allocatedUnits += size;
      cursor = off + size;
    }
    if (cursor < units) {
      const tail = new Block(cursor, units - cursor);
      link(tail);
      a.insertFree(tail);
    }
    return a;
  }

  private unitsFor(bytes: number): number {
    return Math.max(1, Math.ceil(bytes / this.alignmentBytes));
  }

  /** Bytes actually reserved for a request of `bytes` (rounded up to the alignment). */
  reservedBytesFor(bytes: number): number {
    return this.unitsFor(bytes) * this.alignmentBytes;
  }

  /** Allocate `bytes` (> 0); returns the offset in bytes, or -1 if no free extent can hold it. */
  alloc(bytes: number): number {
    const units = this.unitsFor(bytes);
    if (units > this.capacityUnits) return -1;
    let block = this.findFit(units);
    if (block === null) return -1;
    this.removeFree(block);
    if (block.size > units) {
      // Split: the tail stays free.
      const rest = new Block(block.offset + units, block.size - units);
      rest.prevPhys = block;
      rest.nextPhys = block.nextPhys;
      if (block.nextPhys) block.nextPhys.prevPhys = rest;
      block.nextPhys = rest;
      block.size = units;
      this.insertFree(rest);
    }
    block.free = false;
    this.allocated.set(block.offset, block);
    this.allocatedUnits += block.size;
    return block.offset * this.alignmentBytes;
  }

  /** True if alloc(bytes) would succeed now (same search, no change). */
  canFit(bytes: number): boolean {
    const units = this.unitsFor(bytes);
    return units <= this.capacityUnits && this.findFit(units) !== null;
  }

  /** Free the allocation that starts at `offsetBytes`. Returns false if there is none (nothing changes). */
  free(offsetBytes: number): boolean {
    if (offsetBytes % this.alignmentBytes !== 0) return false;
    const off = offsetBytes / this.alignmentBytes;
    let block = this.allocated.get(off);
    if (block === undefined) return false;
    this.allocated.delete(off);
    this.allocatedUnits -= block.size;
    block.free = true;
    const prev = block.prevPhys;
    if (prev !== null && prev.free) {
      this.removeFree(prev);
      prev.size += block.size;
      prev.nextPhys = block.nextPhys;
      if (block.nextPhys) block.nextPhys.prevPhys = prev;
      block = prev;
    }
    const next = block.nextPhys;
    if (next !== null && next.free) {
      this.removeFree(next);
      block.size += next.size;
      block.nextPhys = next.nextPhys;
      if (next.nextPhys) next.nextPhys.prevPhys = block;
    }
    this.insertFree(block);
    return true;
  }

  isAllocated(offsetBytes: number): boolean {
    return offsetBytes % this.alignmentBytes === 0 && this.allocated.has(offsetBytes / this.alignmentBytes);
  }

  get allocatedBytes(): number {
    return this.allocatedUnits * this.alignmentBytes;
  }

  get freeBytes(): number {
    return (this.capacityUnits - this.allocatedUnits) * this.alignmentBytes;
  }

  get allocationCount(): number {
    return this.allocated.size;
  }

  /** All extents in offset order, as [offsetBytes, sizeBytes, free]. For tests and invariant checks (O(n)). */
  extents(): Array<[number, number, boolean]> {
    const out: Array<[number, number, boolean]> = [];
    let b = this.firstBlock();
    while (b !== null) {
      out.push([b.offset * this.alignmentBytes, b.size * this.alignmentBytes, b.free]);
      b = b.nextPhys;
    }
    return out;
  }

  private firstBlock(): Block | null {
    // The chain's first block starts at 0; it is free (in a class heap) or allocated (in the map).
    const a = this.allocated.get(0);
    if (a) return a;
    for (const heap of this.classes) for (const b of heap) if (b.offset === 0) return b;
    return null;
  }

  largestFreeExtentBytes(): number {
    const fl = this.flBitmapHi !== 0 ? 32 + (31 - Math.clz32(this.flBitmapHi)) : this.flBitmapLo !== 0 ? 31 - Math.clz32(this.flBitmapLo) : -1;
    if (fl < 0) return 0;
    const sl = 31 - Math.clz32(this.slBitmap[fl]!);
    let max = 0;
    for (const b of this.classes[fl * slCount + sl]!) if (b.size > max) max = b.size;
    return max * this.alignmentBytes;
  }

  stats(): AllocatorStats {
    const free = this.freeBytes;
    const largest = this.largestFreeExtentBytes();
    return {
      capacityBytes: this.capacityBytes,
      allocatedBytes: this.allocatedBytes,
      freeBytes: free,
      allocationCount: this.allocated.size,
      freeExtentCount: this.freeExtents,
      largestFreeExtentBytes: largest,
      fragmentationRatio: free === 0 ? 0 : 1 - largest / free,
    };
  }

  // --- segregated free lists ---

  private static classOf(size: number): number {
    if (size < slCount) return size; // fl 0, sl = size
    const f = log2floor(size);
    const fl = f - slBits + 1;
    const sl = Math.floor(size / pow2[f - slBits]!) - slCount;
    return fl * slCount + sl;
  }

  private findFit(units: number): Block | null {
    // Round the request up to the next class boundary, so any block in the class found is large enough.
    let rounded = units;
    if (units >= slCount) rounded = units + pow2[log2floor(units) - slBits]! - 1;
    const cls = OffsetAllocator.classOf(rounded);
    let fl = Math.floor(cls / slCount);
    const sl = cls % slCount;
    if (fl < flCount) {
      const slMap = this.slBitmap[fl]! & (~0 << sl);
      if (slMap !== 0) return this.classes[fl * slCount + ctz32(slMap)]![0]!;
      fl = this.findFl(fl + 1);
      if (fl >= 0) return this.classes[fl * slCount + ctz32(this.slBitmap[fl]!)]![0]!;
    }
    // Good-fit missed: the request's own class may still hold a block large enough (rare; bounded by that
    // class). Take the lowest offset among those that fit, to stay history-independent.
    let best: Block | null = null;
    for (const b of this.classes[OffsetAllocator.classOf(units)] ?? []) {
      if (b.size >= units && (best === null || b.offset < best.offset)) best = b;
    }
    return best;
  }

  private findFl(from: number): number {
    if (from < 32) {
      const lo = this.flBitmapLo & (~0 << from);
      if (lo !== 0) return ctz32(lo);
      if (this.flBitmapHi !== 0) return 32 + ctz32(this.flBitmapHi);
      return -1;
    }
    if (from >= flCount) return -1;
    const hi = this.flBitmapHi & (~0 << (from - 32));
    return hi !== 0 ? 32 + ctz32(hi) : -1;
  }

  private insertFree(b: Block): void {
    const cls = OffsetAllocator.classOf(b.size);
    const heap = this.classes[cls]!;
    b.free = true;
    b.cls = cls;
    heap.push(b);
    b.heapIndex = heap.length - 1;
    siftUp(heap, b.heapIndex);
    if (heap.length === 1) {
      const fl = Math.floor(cls / slCount);
      this.slBitmap[fl]! |= 1 << (cls % slCount);
      if (fl < 32) this.flBitmapLo |= 1 << fl;
      else this.flBitmapHi |= 1 << (fl - 32);
    }
    this.freeExtents++;
  }

  private removeFree(b: Block): void {
    const cls = b.cls;
    const heap = this.classes[cls]!;
    const i = b.heapIndex;
    assert(heap[i] === b, 'free block not where its heap index says');
    const last = heap.pop()!;
    if (last !== b) {
      heap[i] = last;
      last.heapIndex = i;
      siftDown(heap, i);
      siftUp(heap, last.heapIndex);
    }
    b.heapIndex = -1;
    if (heap.length === 0) {
      const fl = Math.floor(cls / slCount);
      this.slBitmap[fl]! &= ~(1 << (cls % slCount));
      if (this.slBitmap[fl] === 0) {
        if (fl < 32) this.flBitmapLo &= ~(1 << fl);
        else this.flBitmapHi &= ~(1 << (fl - 32));
      }
    }
    this.freeExtents--;
  }
}

// Binary min-heap by offset, each block remembering its index (for O(log k) removal from the middle).
function siftUp(heap: Block[], i: number): void {
  const b = heap[i]!;
  while (i > 0) {
    const p = (i - 1) >> 1;
    const parent = heap[p]!;
    if (parent.offset <= b.offset) break;
    heap[i] = parent;
    parent.heapIndex = i;
    i = p;
  }
  heap[i] = b;
  b.heapIndex = i;
}

function siftDown(heap: Block[], i: number): void {
  const n = heap.length;
  const b = heap[i]!;
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) break;
    const r = l + 1;
    const c = r < n && heap[r]!.offset < heap[l]!.offset ? r : l;
    const child = heap[c]!;
    if (child.offset >= b.offset) break;
    heap[i] = child;
    child.heapIndex = i;
    i = c;
  }
  heap[i] = b;
  b.heapIndex = i;
}
