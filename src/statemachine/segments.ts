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
  };
  return { rec, alloc: new OffsetAllocator(spec.size, alignmentForTier(rec.tier, alignmentBytes)) };
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
