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

/** A replica being written by RepairStart; `startedIndex` (the RepairStart's index) names the attempt. */
export interface PendingRepair extends PendingOffload {
  startedIndex: number;
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
  /**
   * Replicas the object should have: the count its PutStart/UpsertStart placed (a demotion sets it to what is
   * left). Live replicas below it make the object under-replicated: the leader plans a repair.
   */
  replicaNum: number;
  /** A replica being added by RepairStart (re-replication); it joins `replicas` at RepairEnd. */
  repair: PendingRepair | null;
  /**
   * Not state: a slot the master keeps soft state of the object's key in (CoverSlot), null on every new record. Never
   * encoded, hashed or read here.
   */
  cover: object | null;
}

/**
 * The one field of an object record the master writes: its soft-state slot. A follower keeps its read-lease cover of
 * the key there (src/master/follower-lease-cover.ts), so a read finds the cover with the lookup of the object it makes
 * anyway instead of a second map's (the same key looked up in two large maps was two sets of cache misses per key).
 */
export interface CoverSlot {
  cover: object | null;
}

export function isComplete(o: ObjectRecord): boolean {
  return o.replicas.length > 0 && o.replicas[0]!.status === 'COMPLETE';
}

/** Complete and with no upsert or offload in flight: what eviction, drain and non-forced removal require. */
export function isSettled(o: ObjectRecord): boolean {
  return o.pending === null && o.offload === null && o.repair === null && isComplete(o);
}

/** Complete replicas on segments that serve (status OK, not DRAINING): what counts towards replicaNum. */
export function liveReplicas(o: ObjectRecord, segments: ReadonlyMap<string, Segment>): Replica[] {
  return o.replicas.filter((r) => r.status === 'COMPLETE' && segments.get(r.segmentId)?.rec.status === 'OK');
}

/** Complete replicas that can still be read (also on DRAINING segments), live ones first: repair sources. */
export function readableReplicas(o: ObjectRecord, segments: ReadonlyMap<string, Segment>): Replica[] {
  const live = liveReplicas(o, segments);
  const draining = o.replicas.filter((r) => r.status === 'COMPLETE' && segments.get(r.segmentId)?.rec.status === 'DRAINING');
  return [...live, ...draining];
}

/** Live replicas below replicaNum, some replica left to copy from, nothing in progress. */
export function needsRepair(o: ObjectRecord, segments: ReadonlyMap<string, Segment>): boolean {
  if (!isSettled(o)) return false;
  let live = 0;
  let readable = 0;
  for (const r of o.replicas) {
    const st = segments.get(r.segmentId)?.rec.status;
    if (r.status !== 'COMPLETE' || st === undefined) continue;
    readable++;
    if (st === 'OK') live++;
  }
  return readable > 0 && live < o.replicaNum;
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
