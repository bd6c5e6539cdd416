/**
 * Placement: which segments receive the replicas of one object. Deterministic: candidates are taken in segment-id
 * order and `random` draws from a SeededRng seeded with the entry's log index, so every replica chooses alike.
 * Every replica of an object lands on a distinct segment; a segment is eligible when its status is OK, its
 * owner's node status is ACTIVE, its tier is the requested one and a free extent can hold the object.
 *
 * - `random` (default): from a random start, scan at most maxRandomScanSegments segments (as Mooncake does).
 * - `free-ratio-first`: the segments with the highest free ratio (all of them when few, else a random sample of
 *   6 × count, as Mooncake does).
 * - `zone-spread`: like free-ratio-first, but each replica goes to a zone not used yet by this object when one
 *   is eligible, falling back to any distinct segment.
 * Preferred segments (from the request) are tried first, in the order given.
 */
import type { PlacementStrategy, Tier } from './commands.js';
import type { Rng } from '../util/rng.js';
import { maxRandomScanSegments } from './limits.js';
import type { Segment } from './segments.js';

export interface PlacementRequest {
  /** All segments in id order. */
  ordered: readonly Segment[];
  byId: ReadonlyMap<string, Segment>;
  size: number;
  count: number;
  tier: Tier;
  preferred?: readonly string[] | undefined;
  strategy: PlacementStrategy;
  rng: Rng;
  /** Segments that must not be chosen (e.g. ones already holding a replica of this object). */
  exclude?: ReadonlySet<string> | undefined;
  /** Is the owner of this client's node ACTIVE? */
  nodeActive: (clientId: string) => boolean;
}

const ratioSampleFactor = 6;
const ratioScanAllSegments = 64;

function eligible(req: PlacementRequest, s: Segment, chosen: readonly Segment[]): boolean {
  return (
    s.rec.status === 'OK' &&
    s.rec.tier === req.tier &&
    !chosen.includes(s) &&
    !(req.exclude?.has(s.rec.id) ?? false) &&
    req.nodeActive(s.rec.clientId) &&
    s.alloc.canFit(req.size)
  );
}

function freeRatio(s: Segment): number {
  return s.alloc.capacityBytes === 0 ? 0 : s.alloc.freeBytes / s.alloc.capacityBytes;
}

/** Highest free ratio first; ties by id (already the order of `ordered`, and sort is stable). */
function byFreeRatio(list: Segment[]): Segment[] {
  return list.sort((a, b) => freeRatio(b) - freeRatio(a));
}

function sample(req: PlacementRequest): Segment[] {
  const n = req.ordered.length;
  if (n <= ratioScanAllSegments) return [...req.ordered];
  const picked = new Set<number>();
  const want = Math.min(n, ratioSampleFactor * req.count);
  for (let tries = 0; picked.size < want && tries < want * 4; tries++) picked.add(req.rng.nextInt(n));
  return [...picked].sort((a, b) => a - b).map((i) => req.ordered[i]!);
}

/** Returns up to `count` distinct segments that can each hold `size` bytes now (possibly fewer, or none). */
export function placeReplicas(req: PlacementRequest): Segment[] {
  const chosen: Segment[] = [];
  for (const id of req.preferred ?? []) {
    if (chosen.length >= req.count) return chosen;
    const s = req.byId.get(id);
    if (s !== undefined && eligible(req, s, chosen)) chosen.push(s);
  }
  if (chosen.length >= req.count || req.ordered.length === 0) return chosen;
  switch (req.strategy) {
    case 'random': {
      const n = req.ordered.length;
      const start = req.rng.nextInt(n);
      const scan = Math.min(n, maxRandomScanSegments);
      for (let i = 0; i < scan && chosen.length < req.count; i++) {
        const s = req.ordered[(start + i) % n]!;
        if (eligible(req, s, chosen)) chosen.push(s);
      }
      return chosen;
    }
    case 'free-ratio-first': {
      for (const s of byFreeRatio(sample(req))) {
        if (chosen.length >= req.count) break;
        if (eligible(req, s, chosen)) chosen.push(s);
      }
      return chosen;
    }
    case 'zone-spread': {
      const ranked = byFreeRatio(sample(req)).filter((s) => eligible(req, s, chosen));
      const zones = new Set(chosen.map((s) => s.rec.zone));
      // First pass: one replica per zone not used yet; second pass: fill with any distinct segment.
      for (const s of ranked) {
        if (chosen.length >= req.count) break;
        if (!zones.has(s.rec.zone)) {
          chosen.push(s);
          zones.add(s.rec.zone);
        }
      }
      for (const s of ranked) {
        if (chosen.length >= req.count) break;
        if (!chosen.includes(s)) chosen.push(s);
      }
      return chosen;
    }
  }
}
