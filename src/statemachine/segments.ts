/** Segments: a client's registered memory (or disk) range, with its own offset allocator. */
import { OffsetAllocator } from './allocator.js';
import type { AllocatorStats } from './allocator.js';
import type { Protocol, SegmentSpec, Tier } from './commands.js';
import { diskAllocAlignmentBytes } from './limits.js';

/** OK: allocations allowed. DRAINING: graceful unmount in progress (no new allocations). DRAINED ones are gone. */
export type SegmentStatus = 'OK' | 'DRAINING';

/** The replicated part of a segment (persisted as is). */
export interface SegmentRecord {
  id: string;
  name: string;
  clientId: string;
  base: number;
  size: number;
  protocol: Protocol;
  endpoint: string;
  zone: string;
  tier: Tier;
  status: SegmentStatus;
  mountedIndex: number;
  /**
   * The alignment of this segment's allocator (offsets and reservations), fixed when it is mounted:
   * alignmentForTier at mount time. Recorded rather than recomputed from the tier, because the rule changed:
   * 0.1 aligned every tier to allocAlignmentBytes (64), DISK now uses diskAllocAlignmentBytes (4096). A record
   * written by 0.1 has no such field and loads with 0.1's alignment (codec.ts StateLoader.finish).
   *
   * Why its 0.1 extents are kept as they are (and new ones on that segment keep 0.1's alignment) rather than
   * migrated at load: an extent cannot move (its bytes sit at that offset on the storage node, and the replica
   * offset is what readers use); widening old 64-byte extents to whole 4096-byte blocks would make neighbours
   * that share a block overlap and leave free(offset) of an unaligned offset finding nothing. The allocator's
   * invariant (its future allocations are a pure function of its alignment and its set of extents, so a replica
   * that reloads or restores a snapshot allocates exactly like one that applied the whole log) needs the
   * alignment to be replicated state, never a decision taken from whatever extents a load happens to find
   * (replicas load at different indexes). And the owner of a segment mounted under 0.1 is a 0.1 storage process,
   * which reads and writes its DISK file with buffered I/O (0.1 opened it without O_DIRECT): 64-byte alignment is
   * what it needs. A storage process of this version mounts a new DISK segment, which gets 4096.
   */
  allocAlignmentBytes: number;
}

/** In memory: the record plus its allocator (rebuilt from the replicas on load). */
export interface Segment {
  rec: SegmentRecord;
  alloc: OffsetAllocator;
}

export interface SegmentInfo extends SegmentRecord, AllocatorStats {
  usageRatio: number;
}

/** Allocator alignment of a segment: the configured one, at least diskAllocAlignmentBytes on DISK (O_DIRECT). */
export function alignmentForTier(tier: Tier, alignmentBytes: number): number {
  return tier === 'DISK' ? Math.max(alignmentBytes, diskAllocAlignmentBytes) : alignmentBytes;
}

export function segmentFromSpec(spec: SegmentSpec, clientId: string, index: number, alignmentBytes: number): Segment {
  const rec: SegmentRecord = {
    id: spec.id,
    name: spec.name,
    clientId,
    base: spec.base,
    size: spec.size,
    protocol: spec.protocol,
    endpoint: spec.endpoint,
    zone: spec.zone ?? '',
    tier: spec.tier ?? 'DRAM',
    status: 'OK',
    mountedIndex: index,
    allocAlignmentBytes: alignmentForTier(spec.tier ?? 'DRAM', alignmentBytes),
  };
  return { rec, alloc: new OffsetAllocator(spec.size, rec.allocAlignmentBytes) };
}

/** A remount of the same segment by the same client (idempotent) vs. a conflicting one. */
export function sameSpec(rec: SegmentRecord, spec: SegmentSpec, clientId: string): boolean {
  return (
    rec.clientId === clientId &&
    rec.name === spec.name &&
    rec.base === spec.base &&
    rec.size === spec.size &&
    rec.protocol === spec.protocol &&
    rec.endpoint === spec.endpoint &&
    rec.zone === (spec.zone ?? '') &&
    rec.tier === (spec.tier ?? 'DRAM')
  );
}

/** Two segments of the same endpoint (same host memory) must not overlap. */
export function overlaps(rec: SegmentRecord, spec: SegmentSpec): boolean {
  return rec.endpoint === spec.endpoint && rec.base < spec.base + spec.size && spec.base < rec.base + rec.size;
}

export function segmentInfo(s: Segment): SegmentInfo {
  const st = s.alloc.stats();
  return { ...s.rec, ...st, usageRatio: st.capacityBytes === 0 ? 0 : st.allocatedBytes / st.capacityBytes };
}

/** Memory tiers count toward the eviction watermark; DISK has its own capacity. */
export function isMemoryTier(t: Tier): boolean {
  return t !== 'DISK';
}
