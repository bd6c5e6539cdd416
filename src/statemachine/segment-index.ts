/**
 * Per segment, the objects with a replica on it (settled, a pending upsert, an offload or a repair target): what a
 * drain (DrainSegments) or a forced removal (UnmountSegment, ExpireClients) must visit. Without it each of them
 * scanned every object: at a million objects ~140 ms per DrainSegments on every replica, re-proposed every second
 * while a segment drains (bench/statemachine).
 *
 * Exact at apply boundaries: StateCore adds an object whenever it allocates replicas for it (`touched`: a put, an
 * upsert, an offload, a repair; every other change only moves a replica between the object's lists or drops one),
 * and queues (`released`) each segment an object freed a replica on; `settle` (at the
 * end of every apply) drops the object from those segments it no longer references, or from all when it is gone.
 * Within an apply a list may still hold an object deleted earlier in it (one ExpireClients drops segments once per
 * client): `current` tells, and visits must ask it.
 * Visiting order does not matter: a drain's outcome is order-free (the allocator is a function of its set of extents,
 * allocator.ts), so the index keeps no order.
 */
import type { ObjectRecord } from './objects.js';

/** Does `o` hold a replica (of any kind) on `segmentId`? */
export function references(o: ObjectRecord, segmentId: string): boolean {
  for (const r of o.replicas) if (r.segmentId === segmentId) return true;
  if (o.pending !== null) for (const r of o.pending.replicas) if (r.segmentId === segmentId) return true;
  return (o.offload !== null && o.offload.replica.segmentId === segmentId) || (o.repair !== null && o.repair.replica.segmentId === segmentId);
}

const none: ReadonlySet<ObjectRecord> = new Set();

export class SegmentIndex {
  private readonly bySegment = new Map<string, Set<ObjectRecord>>();
  /** Segments some object freed a replica on in this apply (parallel arrays: a RemoveAll may queue millions). */
  private releasedObjects: ObjectRecord[] = [];
  private releasedSegments: string[] = [];
  /** Objects deleted in this apply (every one of its replicas was released too). */
  private readonly deleted = new Set<ObjectRecord>();

  /** The objects on `segmentId` (live view: copy before changing objects while iterating). */
  on(segmentId: string): ReadonlySet<ObjectRecord> {
    return this.bySegment.get(segmentId) ?? none;
  }

  /** `o` got replicas on new segments (or was created): every segment it references now lists it. */
  touched(o: ObjectRecord): void {
    for (const r of o.replicas) this.add(r.segmentId, o);
    if (o.pending !== null) for (const r of o.pending.replicas) this.add(r.segmentId, o);
    if (o.offload !== null) this.add(o.offload.replica.segmentId, o);
    if (o.repair !== null) this.add(o.repair.replica.segmentId, o);
  }

  /** `o` was deleted (after releasing its replicas): no visit in this apply may take it. */
  gone(o: ObjectRecord): void {
    this.deleted.add(o);
  }

  /** False for an object deleted in this apply (listed until settle()). */
  current(o: ObjectRecord): boolean {
    return this.deleted.size === 0 || !this.deleted.has(o);
  }

  /** `o` freed a replica on `segmentId` (it may still hold another there): re-checked by settle(). */
  released(o: ObjectRecord, segmentId: string): void {
    this.releasedObjects.push(o);
    this.releasedSegments.push(segmentId);
  }

  /** End of an apply: objects leave the segments they no longer reference, deleted ones every segment. */
  settle(): void {
    const n = this.releasedObjects.length;
    if (n === 0) return;
    for (let i = 0; i < n; i++) {
      const o = this.releasedObjects[i]!;
      const id = this.releasedSegments[i]!;
      if (!references(o, id) || !this.current(o)) this.bySegment.get(id)?.delete(o);
    }
    this.releasedObjects = [];
    this.releasedSegments = [];
    this.deleted.clear();
  }

  /** The segment is gone: forget its list. */
  dropSegment(segmentId: string): void {
    this.bySegment.delete(segmentId);
  }

  /** Rebuilt from scratch (after loading or restoring state). */
  rebuild(objects: Iterable<ObjectRecord>): void {
    this.bySegment.clear();
    this.releasedObjects = [];
    this.releasedSegments = [];
    this.deleted.clear();
    for (const o of objects) this.touched(o);
  }

  /** Segments with a list (for tests: compared against a scan of every object). */
  segmentIds(): IterableIterator<string> {
    return this.bySegment.keys();
  }

  private add(segmentId: string, o: ObjectRecord): void {
    let s = this.bySegment.get(segmentId);
    if (s === undefined) this.bySegment.set(segmentId, (s = new Set()));
    s.add(o);
  }
}
