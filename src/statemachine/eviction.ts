/**
 * Eviction planning (leader only; pure functions of the state, the leader's LeaseTable and its clock).
 *
 * Above the high watermark (memory tiers, default 0.85) planEviction proposes an Evict bringing usage down to
 * the target (default 0.75). Victims are approximately least-recently-used: objects are scanned oldest-written
 * first (the state's Map order), then the candidates are ordered by last access = max(PutEnd time, last lease
 * grant). Skipped: leased objects (every object while a new leader's lease window lasts), hard-pinned ones and
 * incomplete ones (PROCESSING, upsert or offload in flight). Soft-pinned objects are taken only when unpinned
 * ones do not free enough. Apply re-checks hard pins, completeness and the object's identity (createdIndex).
 *
 * The leader should `leases.reserve(keys)` when it proposes an Evict and release that reservation once it settled, so
 * no lease is granted on an object about to be freed.
 */
import type { Evict, EvictItem, Tier } from './commands.js';
import type { LeaseTable } from './leases.js';
import { defaultEvictionTargetRatio, defaultHighWatermarkRatio, maxEvictionScanObjects } from './limits.js';
import type { ObjectRecord } from './objects.js';
import { isSettled } from './objects.js';
import { isMemoryTier } from './segments.js';
import type { StateView } from './state-view.js';

export interface EvictionOptions {
  highWatermarkRatio?: number;
  targetRatio?: number;
}

/** Largest evictable list attached to a PutStart (planEvictionForPut). */
export const maxEvictablePerPut = 1024;

function memoryBytes(state: StateView, o: ObjectRecord): number {
  let n = 0;
  for (const r of o.replicas) {
    if (!isMemoryTier(r.tier)) continue;
    const seg = state.segments.get(r.segmentId);
    if (seg !== undefined) n += seg.alloc.reservedBytesFor(r.length);
  }
  return n;
}

/** Candidates freeing about `bytesWanted` of memory, least recently used first. */
export function collectEvictionCandidates(
  state: StateView,
  leases: LeaseTable,
  nowMs: number,
  bytesWanted: number,
  maxItems = Infinity,
): EvictItem[] {
  if (bytesWanted <= 0 || leases.allLeased(nowMs)) return [];
  const unpinned: Array<[ObjectRecord, number]> = [];
  const soft: Array<[ObjectRecord, number]> = [];
  let unpinnedBytes = 0;
  let softBytes = 0;
  let scanned = 0;
  for (const o of state.objects.values()) {
    if (++scanned > maxEvictionScanObjects) break;
    if (o.hardPin || !isSettled(o) || leases.isLeased(o.key, nowMs)) continue;
    const bytes = memoryBytes(state, o);
    if (bytes === 0) continue;
    if (o.softPinUntilMs > nowMs) {
      if (softBytes < 2 * bytesWanted) {
        soft.push([o, bytes]);
        softBytes += bytes;
      }
    } else {
      unpinned.push([o, bytes]);
      unpinnedBytes += bytes;
      // Twice what is needed: enough slack to prefer the least recently read among the oldest written.
      if (unpinnedBytes >= 2 * bytesWanted) break;
    }
  }
  const lastAccess = (o: ObjectRecord): number => Math.max(o.completedAtMs, leases.lastAccessMs(o.key) ?? 0);
  const out: EvictItem[] = [];
  let freed = 0;
  for (const group of [unpinned, soft]) {
    group.sort((a, b) => lastAccess(a[0]) - lastAccess(b[0]));
    for (const [o, bytes] of group) {
      if (freed >= bytesWanted || out.length >= maxItems) return out;
      out.push({ key: o.key, createdIndex: o.createdIndex });
      freed += bytes;
    }
  }
  return out;
}

/** An Evict bringing memory usage from above the high watermark down to the target, or null. */
export function planEviction(state: StateView, leases: LeaseTable, nowMs: number, options: EvictionOptions = {}): Evict | null {
  const high = options.highWatermarkRatio ?? defaultHighWatermarkRatio;
  const target = options.targetRatio ?? defaultEvictionTargetRatio;
  const st = state.stats();
  if (st.memoryCapacityBytes === 0 || st.memoryAllocatedBytes < high * st.memoryCapacityBytes) return null;
  const items = collectEvictionCandidates(state, leases, nowMs, st.memoryAllocatedBytes - target * st.memoryCapacityBytes);
  return items.length === 0 ? null : { type: 'Evict', items };
}

/**
 * For a PutStart the leader's current view says will not fit: candidates to attach as `evictable` (apply evicts
 * from them only if allocation really fails). Returns [] when some eligible segment can hold it now.
 */
export function planEvictionForPut(
  state: StateView,
  leases: LeaseTable,
  nowMs: number,
  size: number,
  replicaNum: number,
  tier: Tier = 'DRAM',
): EvictItem[] {
  for (const s of state.ordered) {
    if (s.rec.status !== 'OK' || s.rec.tier !== tier) continue;
    if ((state.clients.get(s.rec.clientId)?.nodeStatus ?? 'ACTIVE') !== 'ACTIVE') continue;
    if (s.alloc.canFit(size)) return [];
  }
  return collectEvictionCandidates(state, leases, nowMs, 2 * size * replicaNum, maxEvictablePerPut);
}
