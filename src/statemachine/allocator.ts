/**
 * Offset allocator for one segment: a TLSF-like allocator (two-level segregated free lists) over offsets, not
 * memory. alloc and free are O(1) in the class search: a size maps to a (first-level, second-level) class through log2, two bitmaps
 * find the first non-empty class that is large enough, and freeing coalesces with both physical neighbours at
 * once, so a fully freed segment is always one extent again.
 *
 * Blocks live in typed arrays (struct of arrays, indexed by block id) rather than one JS object each: offsets
 * beyond 2^31 units would otherwise be boxed doubles, re-allocated on every update (GC pressure measured at
 * several µs per operation on large segments).
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

const none = -1;
const initialBlocks = 16;

/**
 * offset (units, an integer < 2^53) → block id: an open-addressing hash table with linear probing in typed
 * arrays. A Map keyed by numbers beyond the small-integer range allocates a boxed key per insert; this does not.
 */
class OffsetIndex {
  private keys = new Float64Array(16);
  private vals = new Int32Array(16).fill(none);
  private mask = 15;
  size = 0;

  /** Room for `n` keys without a resize (a rebuild knows its count up front). */
  reserve(n: number): void {
    let cap = this.mask + 1;
    while ((n + 1) * 2 > cap) cap *= 2;
    if (cap > this.mask + 1) this.resize(cap);
  }

  private slot(k: number): number {
    const lo = k >>> 0;
    const hi = (k / 0x1_0000_0000) >>> 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    return h & this.mask;
  }

  get(k: number): number {
    for (let i = this.slot(k); ; i = (i + 1) & this.mask) {
      const v = this.vals[i]!;
      if (v === none) return none;
      if (this.keys[i] === k) return v;
    }
  }

  set(k: number, v: number): void {
    if ((this.size + 1) * 2 > this.mask + 1) this.resize((this.mask + 1) * 2);
    for (let i = this.slot(k); ; i = (i + 1) & this.mask) {
      if (this.vals[i] === none) {
        this.keys[i] = k;
        this.vals[i] = v;
        this.size++;
        return;
      }
      if (this.keys[i] === k) {
        this.vals[i] = v;
        return;
      }
    }
  }

  delete(k: number): boolean {
    return this.take(k) !== none;
  }

  /** Remove `k` and return its value (none if absent): one probe sequence where get + delete took two. */
  take(k: number): number {
    let i = this.slot(k);
    for (; ; i = (i + 1) & this.mask) {
      if (this.vals[i] === none) return none;
      if (this.keys[i] === k) break;
    }
    const taken = this.vals[i]!;
    // Backward-shift deletion keeps every probe chain unbroken without tombstones.
    let j = i;
    for (;;) {
      j = (j + 1) & this.mask;
      if (this.vals[j] === none) break;
      const home = this.slot(this.keys[j]!);
      // Move j into the hole at i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        this.keys[i] = this.keys[j]!;
        this.vals[i] = this.vals[j]!;
        i = j;
      }
    }
    this.vals[i] = none;
    this.size--;
    return taken;
  }

  private resize(n: number): void {
    const oldK = this.keys;
    const oldV = this.vals;
    this.keys = new Float64Array(n);
    this.vals = new Int32Array(n).fill(none);
    this.mask = n - 1;
    this.size = 0;
    for (let i = 0; i < oldV.length; i++) if (oldV[i] !== none) this.set(oldK[i]!, oldV[i]!);
  }
}

export class OffsetAllocator {
  readonly alignmentBytes: number;
  readonly capacityBytes: number;
  private readonly capacityUnits: number;
  private flBitmapLo = 0;
  private flBitmapHi = 0;
  private readonly slBitmap = new Uint32Array(flCount);
  /** Per size class: a min-heap (by offset) of free block ids. */
  private readonly classes: number[][] = Array.from({ length: flCount * slCount }, () => []);
  /** Allocated block id by offset (in units): free() finds its block in O(1). */
  private readonly allocated = new OffsetIndex();
  private allocatedUnits = 0;
  private freeExtents = 0;
  // Block storage (struct of arrays), grown by doubling; released ids are reused.
  private bOff: Float64Array = new Float64Array(initialBlocks);
  private bSize: Float64Array = new Float64Array(initialBlocks);
  private bPrev: Int32Array = new Int32Array(initialBlocks);
  private bNext: Int32Array = new Int32Array(initialBlocks);
  private bHeap: Int32Array = new Int32Array(initialBlocks);
  private bCls: Int32Array = new Int32Array(initialBlocks);
  private bFree: Uint8Array = new Uint8Array(initialBlocks);
  private blockCount = 0;
  private readonly spareIds: number[] = [];
  /** Id of the block at offset 0 (the head of the physical chain). */
  private head = none;

  constructor(capacityBytes: number, alignmentBytes: number) {
    assert(Number.isInteger(alignmentBytes) && alignmentBytes > 0, 'alignment must be a positive integer');
    assert(Number.isSafeInteger(capacityBytes) && capacityBytes >= 0, 'capacity must be a safe integer');
    this.alignmentBytes = alignmentBytes;
    this.capacityUnits = Math.floor(capacityBytes / alignmentBytes);
    this.capacityBytes = this.capacityUnits * alignmentBytes;
    if (this.capacityUnits > 0) {
      this.head = this.newBlock(0, this.capacityUnits);
      this.insertFree(this.head);
    }
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
    const offsets = new Float64Array(extents.length);
    const lengths = new Float64Array(extents.length);
    extents.forEach(([o, l], i) => {
      offsets[i] = o;
      lengths[i] = l;
    });
    return OffsetAllocator.fromExtents(capacityBytes, alignmentBytes, offsets, lengths, extents.length);
  }

  /**
   * Same as fromAllocations, from the first `count` entries of parallel arrays of offsets and lengths (bytes).
   * No per-extent object and a numeric sort: rebuilding 1M extents took ~3 s with tuples and a comparator sort.
   */
  static fromExtents(
    capacityBytes: number,
    alignmentBytes: number,
    offsetsBytes: ArrayLike<number>,
    lengthsBytes: ArrayLike<number>,
    count: number,
  ): OffsetAllocator {
    const a = new OffsetAllocator(0, alignmentBytes);
    const units = Math.floor(capacityBytes / alignmentBytes);
    (a as { capacityBytes: number }).capacityBytes = units * alignmentBytes;
    (a as unknown as { capacityUnits: number }).capacityUnits = units;
    // Sized once: every extent, plus at most one free gap before each and one at the end.
    a.growTo(2 * count + 1);
    a.allocated.reserve(count);
    // One allocated block per extent, in input order; then the blocks are chained in offset order. Ids are given
    // in input order from 0 (a fresh allocator), so block i is extent i and a sort of (offset, i) pairs orders them.
    let sorted = true;
    let prevOff = -1;
    for (let i = 0; i < count; i++) {
      const offsetBytes = offsetsBytes[i]!;
      // `if (!x) assert(false, ...)`: the message is only built on failure, not once per extent.
      if (offsetBytes % alignmentBytes !== 0) assert(false, `extent offset ${offsetBytes} is not aligned`);
      const off = offsetBytes / alignmentBytes;
      const b = a.newBlock(off, a.unitsFor(lengthsBytes[i]!));
      a.bFree[b] = 0;
      // A repeated offset replaces the index entry; the chaining below then finds the overlap.
      a.allocated.set(off, b);
      if (off < prevOff) sorted = false;
      prevOff = off;
    }
    if (a.allocated.size !== count) assert(false, `${count - a.allocated.size} extents share an offset with another one`);
    let order: Int32Array | null = null;
    if (!sorted) {
      // Block ids by offset: (offset, id) packed into one float when that is exact, else a comparator sort.
      order = new Int32Array(count);
      const idSpan = 2 ** Math.ceil(Math.log2(count + 1));
      if (units * idSpan <= Number.MAX_SAFE_INTEGER) {
        const packed = new Float64Array(count);
        for (let i = 0; i < count; i++) packed[i] = a.bOff[i]! * idSpan + i;
        packed.sort();
        for (let i = 0; i < count; i++) order[i] = packed[i]! % idSpan;
      } else {
        const ids = Array.from({ length: count }, (_, i) => i).sort((x, y) => a.bOff[x]! - a.bOff[y]!);
        for (let i = 0; i < count; i++) order[i] = ids[i]!;
      }
    }
    let cursor = 0;
    let prev = none;
    const link = (id: number): void => {
      a.bPrev[id] = prev;
      if (prev !== none) a.bNext[prev] = id;
      else a.head = id;
      prev = id;
    };
    for (let i = 0; i < count; i++) {
      const b = order === null ? i : order[i]!;
      const off = a.bOff[b]!;
      const size = a.bSize[b]!;
      if (!(off >= cursor)) assert(false, `extent at ${off * alignmentBytes} overlaps the previous one`);
      if (!(off + size <= units)) assert(false, `extent at ${off * alignmentBytes} goes beyond capacity`);
      if (off > cursor) {
        const gap = a.newBlock(cursor, off - cursor);
        link(gap);
        a.insertFree(gap);
      }
      link(b);
      a.allocatedUnits += size;
      cursor = off + size;
    }
    if (cursor < units) {
      const tail = a.newBlock(cursor, units - cursor);
      link(tail);
      a.insertFree(tail);
    }
    return a;
  }

  private newBlock(offset: number, size: number): number {
    let id = this.spareIds.pop();
    if (id === undefined) {
      id = this.blockCount++;
      if (id >= this.bOff.length) this.grow();
    }
    this.bOff[id] = offset;
    this.bSize[id] = size;
    this.bPrev[id] = none;
    this.bNext[id] = none;
    this.bHeap[id] = none;
    this.bFree[id] = 1;
    return id;
  }

  private grow(): void {
    this.growTo(this.bOff.length * 2);
  }

  /** Block storage for at least `n` blocks. */
  private growTo(n: number): void {
    if (n <= this.bOff.length) return;
    const f64 = (old: Float64Array): Float64Array => {
      const x = new Float64Array(n);
      x.set(old);
      return x;
    };
    const i32 = (old: Int32Array): Int32Array => {
      const x = new Int32Array(n);
      x.set(old);
      return x;
    };
    this.bOff = f64(this.bOff);
    this.bSize = f64(this.bSize);
    this.bPrev = i32(this.bPrev);
    this.bNext = i32(this.bNext);
    this.bHeap = i32(this.bHeap);
    this.bCls = i32(this.bCls);
    const fr = new Uint8Array(n);
    fr.set(this.bFree);
    this.bFree = fr;
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
    const b = this.findFit(units);
    if (b === none) return -1;
    this.removeFree(b);
    const size = this.bSize[b]!;
    if (size > units) {
      // Split: the tail stays free.
      const rest = this.newBlock(this.bOff[b]! + units, size - units);
      const next = this.bNext[b]!;
      this.bPrev[rest] = b;
      this.bNext[rest] = next;
      if (next !== none) this.bPrev[next] = rest;
      this.bNext[b] = rest;
      this.bSize[b] = units;
      this.insertFree(rest);
    }
    this.bFree[b] = 0;
    const off = this.bOff[b]!;
    this.allocated.set(off, b);
    this.allocatedUnits += units;
    return off * this.alignmentBytes;
  }

  /** True if alloc(bytes) would succeed now (same search, no change). */
  canFit(bytes: number): boolean {
    const units = this.unitsFor(bytes);
    return units <= this.capacityUnits && this.findFit(units) !== none;
  }

  /** Free the allocation that starts at `offsetBytes`. Returns false if there is none (nothing changes). */
  free(offsetBytes: number): boolean {
    if (offsetBytes % this.alignmentBytes !== 0) return false;
    const off = offsetBytes / this.alignmentBytes;
    let b = this.allocated.take(off);
    if (b === none) return false;
    this.allocatedUnits -= this.bSize[b]!;
    this.bFree[b] = 1;
    const prev = this.bPrev[b]!;
    if (prev !== none && this.bFree[prev] === 1) {
      this.removeFree(prev);
      this.bSize[prev] = this.bSize[prev]! + this.bSize[b]!;
      const next = this.bNext[b]!;
      this.bNext[prev] = next;
      if (next !== none) this.bPrev[next] = prev;
      this.spareIds.push(b);
      b = prev;
    }
    const next = this.bNext[b]!;
    if (next !== none && this.bFree[next] === 1) {
      this.removeFree(next);
      this.bSize[b] = this.bSize[b]! + this.bSize[next]!;
      const nn = this.bNext[next]!;
      this.bNext[b] = nn;
      if (nn !== none) this.bPrev[nn] = b;
      this.spareIds.push(next);
    }
    this.insertFree(b);
    return true;
  }

  isAllocated(offsetBytes: number): boolean {
    return offsetBytes % this.alignmentBytes === 0 && this.allocated.get(offsetBytes / this.alignmentBytes) !== none;
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
    for (let b = this.head; b !== none; b = this.bNext[b]!) {
      out.push([this.bOff[b]! * this.alignmentBytes, this.bSize[b]! * this.alignmentBytes, this.bFree[b] === 1]);
    }
    return out;
  }

  largestFreeExtentBytes(): number {
    const fl = this.flBitmapHi !== 0 ? 32 + (31 - Math.clz32(this.flBitmapHi)) : this.flBitmapLo !== 0 ? 31 - Math.clz32(this.flBitmapLo) : -1;
    if (fl < 0) return 0;
    const sl = 31 - Math.clz32(this.slBitmap[fl]!);
    let max = 0;
    for (const b of this.classes[fl * slCount + sl]!) if (this.bSize[b]! > max) max = this.bSize[b]!;
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

  private findFit(units: number): number {
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
    let best = none;
    for (const b of this.classes[OffsetAllocator.classOf(units)] ?? []) {
      if (this.bSize[b]! >= units && (best === none || this.bOff[b]! < this.bOff[best]!)) best = b;
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

  private insertFree(b: number): void {
    const cls = OffsetAllocator.classOf(this.bSize[b]!);
    const heap = this.classes[cls]!;
    this.bFree[b] = 1;
    this.bCls[b] = cls;
    heap.push(b);
    this.siftUp(heap, heap.length - 1);
    if (heap.length === 1) {
      const fl = Math.floor(cls / slCount);
      this.slBitmap[fl]! |= 1 << (cls % slCount);
      if (fl < 32) this.flBitmapLo |= 1 << fl;
      else this.flBitmapHi |= 1 << (fl - 32);
    }
    this.freeExtents++;
  }

  private removeFree(b: number): void {
    const cls = this.bCls[b]!;
    const heap = this.classes[cls]!;
    const i = this.bHeap[b]!;
    assert(heap[i] === b, 'free block not where its heap index says');
    const last = heap.pop()!;
    if (last !== b) {
      heap[i] = last;
      this.bHeap[last] = i;
      this.siftDown(heap, i);
      this.siftUp(heap, this.bHeap[last]!);
    }
    this.bHeap[b] = none;
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

  // Binary min-heap by offset; each block remembers its index (for O(log k) removal from the middle).
  private siftUp(heap: number[], i: number): void {
    const b = heap[i]!;
    const off = this.bOff[b]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (this.bOff[parent]! <= off) break;
      heap[i] = parent;
      this.bHeap[parent] = i;
      i = p;
    }
    heap[i] = b;
    this.bHeap[b] = i;
  }

  private siftDown(heap: number[], i: number): void {
    const n = heap.length;
    const b = heap[i]!;
    const off = this.bOff[b]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.bOff[heap[r]!]! < this.bOff[heap[l]!]! ? r : l;
      const child = heap[c]!;
      if (this.bOff[child]! >= off) break;
      heap[i] = child;
      this.bHeap[child] = i;
      i = c;
    }
    heap[i] = b;
    this.bHeap[b] = i;
  }
}
