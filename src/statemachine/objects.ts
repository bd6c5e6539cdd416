/** Objects and their replicas. */
import type { ReplicaDescriptor, Tier } from './commands.js';
import type { Segment } from './segments.js';

export type ReplicaStatus = 'PROCESSING' | 'COMPLETE';

export interface Replica {
  segmentId: string;
  /** Offset in bytes from the segment start (aligned). */
  offset: number;
  /** Object bytes (the allocator reserved this rounded up to its alignment). */
  length: number;
  status: ReplicaStatus;
  tier: Tier;
}

/** A new version being written by UpsertStart; the current replicas keep serving until UpsertEnd. */
export interface PendingVersion {
  size: number;
  replicas: Replica[];
  startedAtMs: number;
  softPin: boolean;
  hardPin: boolean;
}

/** A DISK replica being written by OffloadStart (demotion). */
export interface PendingOffload {
  replica: Replica;
  startedAtMs: number;
}

export interface ObjectRecord {
  key: string;
  size: number;
  clientId: string;
  /** Log index of the PutStart that created it (guards planned evictions against re-created keys). */
  createdIndex: number;
  createdAtMs: number;
  /** Entry time of the PutEnd (0 while PROCESSING); replicas of one version share one status. */
  completedAtMs: number;
  replicas: Replica[];
  /** Soft pin: evicted only after unpinned objects, until this time (0: none). */
  softPinUntilMs: number;
  hardPin: boolean;
  pending: PendingVersion | null;
  offload: PendingOffload | null;
}

export function isComplete(o: ObjectRecord): boolean {
  return o.replicas.length > 0 && o.replicas[0]!.status === 'COMPLETE';
}

/** Complete and with no upsert or offload in flight: what eviction, drain and non-forced removal require. */
export function isSettled(o: ObjectRecord): boolean {
  return o.pending === null && o.offload === null && isComplete(o);
}

export function isPinned(o: ObjectRecord, nowMs: number): boolean {
  return o.hardPin || o.softPinUntilMs > nowMs;
}

export function describeReplica(r: Replica, seg: Segment): ReplicaDescriptor {
  return {
    segmentId: r.segmentId,
    offset: r.offset,
    length: r.length,
    address: seg.rec.base + r.offset,
    endpoint: seg.rec.endpoint,
    protocol: seg.rec.protocol,
    tier: r.tier,
  };
}
