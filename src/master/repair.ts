/**
 * Re-replication, leader side. An object whose live replicas (COMPLETE, on a segment with status OK) fall below
 * its replicaNum — a storage node expired, a segment unmounted, a node DRAINING — gets a repair task: the owner of
 * one of its live replicas (it reads its own memory) runs RepairStart (the masters allocate one more replica, in a
 * zone the object does not use yet when possible) → copies a checksum-verified replica → RepairEnd; on failure
 * RepairRevoke. Every metadata change goes through the log; this class is leader soft state only:
 *
 * - tasks travel in ping replies, like demotion tasks, re-sent after `repairResendMs`;
 * - bounded: at most `maxInFlight` tasks, and task bytes handed out at most `bytesPerSecond` (a token bucket of one
 *   second's worth);
 * - a task not finished within `taskTimeoutMs` counts as failed and is planned again later; a RepairStart left
 *   behind by a dead copier is reclaimed by ReclaimPuts after putStartReclaimMs, like an abandoned put;
 * - the search for under-replicated objects is a pass over every object, done in slices of `scanObjectsPerRound`
 *   objects per round (one 100 ms round used to scan them all at once: ~30 ms of blocked event loop every second
 *   with 170k objects, the p99 of every write then); a pass starts at most every `scanIntervalMs`;
 * - a drain drops replicas only once a pass that began with its segments already DRAINING has finished
 *   (`coversDrain`): until then the scheduler cannot know which of their objects still wait for a repair;
 * - on losing leadership the tasks are dropped (a new leader plans from the replicated state); RepairStart
 *   re-checks everything at apply (same object version, still under-replicated, nothing in progress), so a stale
 *   or duplicate task is refused and repairs are idempotent.
 */
import type { ObjectRecord } from '../statemachine/objects.js';
import { needsRepair } from '../statemachine/objects.js';
import type { StateView } from '../statemachine/state-view.js';

export interface RepairLimits {
  /** Repair tasks handed out and not finished, cluster-wide. */
  maxInFlight: number;
  /** Object bytes of new tasks per second (the copy rate it allows). */
  bytesPerSecond: number;
  taskTimeoutMs: number;
  resendMs: number;
  /** A pass over every object looking for under-replicated ones starts at most this often. */
  scanIntervalMs: number;
  /** Objects a pass looks at per round (every repairRoundIntervalMs): bounds the leader's time per round. */
  scanObjectsPerRound: number;
}

export const defaultRepairLimits: Readonly<RepairLimits> = Object.freeze({
  maxInFlight: 16,
  bytesPerSecond: 64 * 1024 * 1024,
  taskTimeoutMs: 30_000,
  resendMs: 2_000,
  scanIntervalMs: 1_000,
  // ~0.2 µs per object on the 2-core test VM: ~2 ms per round; a pass over a million objects takes ~12 s.
  scanObjectsPerRound: 8_192,
});
/** How often the leader settles finished repairs and hands out new ones. */
export const repairRoundIntervalMs = 100;
/** Tasks in one ping reply at most. */
export const maxRepairTasksPerPing = 64;

export interface RepairTask {
  kind: 'repair';
  key: string;
  createdIndex: number;
}

interface Pending {
  clientId: string;
  createdIndex: number;
  deadlineMs: number;
  sentAtMs: number;
}

export interface RepairCounters {
  underReplicated: number;
  inFlight: number;
  done: number;
  failed: number;
}

export class RepairScheduler {
  readonly limits: RepairLimits;
  private readonly tasks = new Map<string, Pending>();
  private tokens: number;
  private lastRefillMs: number | null = null;
  private lastScanIndex = -1;
  private lastScanMs = -Infinity;
  /** The pass in progress, if any. */
  private scan: Scan | null = null;
  /** Segments that were DRAINING when the last finished pass began (its `repairable` is complete for them). */
  private scannedDraining: ReadonlySet<string> = new Set();
  /** Keys found by the last full scan, handed out as the limits allow until the next scan. */
  private candidates: string[] = [];
  private underReplicated = 0;
  /** Under-replicated keys a repair can fix now (a target exists): a drain keeps their replicas until then. */
  private repairable = new Set<string>();
  private doneSinceReport = 0;
  private failedSinceReport = 0;
  totalDone = 0;
  totalFailed = 0;

  constructor(limits: Partial<RepairLimits> = {}) {
    this.limits = { ...defaultRepairLimits, ...limits };
    this.tokens = this.limits.bytesPerSecond;
  }

  /** One leader round: settle finished tasks, then hand out new ones within the limits. */
  plan(st: StateView & { appliedIndex: number }, nowMs: number): void {
    this.refill(nowMs);
    for (const [key, t] of this.tasks) {
      const o = st.objects.get(key);
      if (o === undefined || o.createdIndex !== t.createdIndex) {
        this.tasks.delete(key); // removed or replaced meanwhile: nothing left to repair
      } else if (o.repair === null && !needsRepair(o, st.segments)) {
        this.tasks.delete(key);
        this.doneSinceReport++;
        this.totalDone++;
      } else if (nowMs > t.deadlineMs) {
        this.tasks.delete(key);
        this.failedSinceReport++;
        this.totalFailed++;
      }
    }
    // A pass over every object (O(objects), in slices) starts at most every scanIntervalMs, and only when the state
    // changed or work was left.
    const changed = st.appliedIndex !== this.lastScanIndex;
    if (this.scan === null && (changed || this.underReplicated > 0) && nowMs - this.lastScanMs >= this.limits.scanIntervalMs) {
      this.lastScanIndex = st.appliedIndex;
      this.lastScanMs = nowMs;
      this.scan = newScan(st);
    }
    if (this.scan !== null) this.continueScan(st);
    while (this.candidates.length > 0 && this.tasks.size < this.limits.maxInFlight) {
      const o = st.objects.get(this.candidates[this.candidates.length - 1]!);
      // Objects larger than the bucket still go, one at a time, when it is full.
      if (o !== undefined && this.tokens < Math.min(o.size, this.limits.bytesPerSecond)) break;
      this.candidates.pop();
      if (o === undefined || this.tasks.has(o.key) || !needsRepair(o, st.segments)) continue;
      const owner = sourceOwner(st, o);
      if (owner === undefined) continue;
      this.tokens -= o.size;
      this.tasks.set(o.key, { clientId: owner, createdIndex: o.createdIndex, deadlineMs: nowMs + this.limits.taskTimeoutMs, sentAtMs: 0 });
    }
  }

  /**
   * Looks at up to scanObjectsPerRound more objects of the pass in progress; publishes its result when it ends. A Map
   * iterator stays valid while the map changes (it sees entries added after its position, skips deleted ones): an
   * object that becomes under-replicated behind it is found by the next pass, which that change starts.
   */
  private continueScan(st: StateView): void {
    let scan = this.scan!;
    // A snapshot installed meanwhile replaced the state's maps: start over on the new ones.
    if (scan.objects !== st.objects) scan = this.scan = newScan(st);
    for (let n = 0; n < this.limits.scanObjectsPerRound; n++) {
      const next = scan.iter.next();
      if (next.done === true) {
        this.scan = null;
        this.underReplicated = scan.under;
        this.repairable = scan.repairable;
        this.scannedDraining = scan.draining;
        this.candidates = [...scan.repairable].filter((k) => !this.tasks.has(k));
        return;
      }
      const o = next.value;
      if (!needsRepair(o, st.segments)) continue;
      scan.under++;
      if (hasTarget(st, o)) scan.repairable.add(o.key);
    }
  }

  /**
   * May a DrainSegments of `segmentIds` be planned from awaitingRepair()? Only once a pass that began with all of them
   * DRAINING has finished: before that, an object whose only live copy is on one of them may be missing from the set,
   * and the drain would drop it instead of waiting for its repair.
   */
  coversDrain(segmentIds: readonly string[]): boolean {
    return segmentIds.every((id) => this.scannedDraining.has(id));
  }

  private refill(nowMs: number): void {
    if (this.lastRefillMs !== null) {
      const add = ((nowMs - this.lastRefillMs) / 1000) * this.limits.bytesPerSecond;
      this.tokens = Math.min(this.limits.bytesPerSecond, this.tokens + Math.max(0, add));
    }
    this.lastRefillMs = nowMs;
  }

  /** This client's tasks for its ping reply (each re-sent after resendMs until it ends). */
  tasksFor(clientId: string, nowMs: number): RepairTask[] {
    const out: RepairTask[] = [];
    for (const [key, t] of this.tasks) {
      if (t.clientId !== clientId || nowMs - t.sentAtMs < this.limits.resendMs) continue;
      t.sentAtMs = nowMs;
      out.push({ kind: 'repair', key, createdIndex: t.createdIndex });
      if (out.length >= maxRepairTasksPerPing) break;
    }
    return out;
  }

  awaitingRepair(): ReadonlySet<string> {
    return this.repairable;
  }

  /** Lost leadership: a new leader plans from the replicated state. */
  reset(): void {
    this.tasks.clear();
    this.repairable = new Set();
    this.candidates = [];
    this.lastScanIndex = -1;
    this.lastScanMs = -Infinity;
    this.scan = null;
    this.scannedDraining = new Set();
    this.underReplicated = 0;
  }

  /** Gauges now, and the counts of repairs ended since the last call. */
  report(): RepairCounters {
    const r = { underReplicated: this.underReplicated, inFlight: this.tasks.size, done: this.doneSinceReport, failed: this.failedSinceReport };
    this.doneSinceReport = 0;
    this.failedSinceReport = 0;
    return r;
  }
}

interface Scan {
  /** The map being walked (a snapshot install replaces it). */
  objects: ReadonlyMap<string, ObjectRecord>;
  iter: Iterator<ObjectRecord>;
  under: number;
  repairable: Set<string>;
  /** Segments DRAINING when the pass began. */
  draining: ReadonlySet<string>;
}

function newScan(st: StateView): Scan {
  const draining = new Set<string>();
  for (const s of st.ordered) if (s.rec.status === 'DRAINING') draining.add(s.rec.id);
  return { objects: st.objects, iter: st.objects.values(), under: 0, repairable: new Set(), draining };
}

/** Is there a segment that could take one more replica (what RepairStart's placement would accept)? */
function hasTarget(st: StateView, o: ObjectRecord): boolean {
  const used = new Set(o.replicas.map((r) => r.segmentId));
  const tier = o.replicas.find((r) => r.status === 'COMPLETE')?.tier ?? 'DRAM';
  for (const s of st.ordered) {
    if (s.rec.status !== 'OK' || s.rec.tier !== tier || used.has(s.rec.id)) continue;
    if ((st.clients.get(s.rec.clientId)?.nodeStatus ?? 'ACTIVE') !== 'ACTIVE') continue;
    if (s.alloc.canFit(o.size)) return true;
  }
  return false;
}

/** The owner of a live replica, alive in the state: it copies from its own memory. */
function sourceOwner(st: StateView, o: ObjectRecord): string | undefined {
  for (const r of o.replicas) {
    if (r.status !== 'COMPLETE') continue;
    const seg = st.segments.get(r.segmentId);
    if (seg === undefined || seg.rec.status !== 'OK') continue;
    if (st.clients.has(seg.rec.clientId)) return seg.rec.clientId;
  }
  // Only replicas on DRAINING segments are left: their owner still serves them.
  for (const r of o.replicas) {
    const seg = st.segments.get(r.segmentId);
    if (r.status === 'COMPLETE' && seg !== undefined && st.clients.has(seg.rec.clientId)) return seg.rec.clientId;
  }
  return undefined;
}
