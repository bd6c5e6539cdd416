/**
 * FollowerLeaseCover: which keys a follower may serve again without asking the leader to lease them.
 *
 * A follower read of getReplicaList sends the keys it will lease with its ReadIndex request (follower-reads.ts). The
 * leader grants such a key for `leaseTtlMs + coverMarginMs` (one margin longer than a reader is promised) and records
 * it; the follower records the key as served until the start of that read plus `leaseTtlMs + coverMs`
 * (LeaseSync.recordServed) and notes here when that read started. For the next `coverMs` after that start a
 * read of the key on this follower still needs its ReadIndex round (the data must be linearizable) but not the
 * key's grant: a reader's lease starts before its read reaches this follower and ends at most `leaseTtlMs` later,
 * within the leader's grant and within what this follower recorded, so a new leader's lease collection still meets
 * one of the two. Hot keys read through a follower thus cost the leader nothing per read.
 *
 * `coverMs` is the margin / maxClockRateRatio: the read's start is measured on this follower's clock and the grant on
 * the leader's; with clock rates within that factor of each other, coverMs on this clock stays within the whole margin
 * on the leader's. (Half the margin, a factor of 2, until the twenty-fourth session: every key read through a follower
 * was leased again 60% more often for a bound no working clock comes near.) The cover is this follower's soft state for
 * one term: a leader change clears it (a new leader knows the old grants only through its lease collection, which the
 * follower's own record serves). Time is the caller's monotonic clock (production: performance.now; the simulator: the
 * node's virtual clock); nothing here reads one.
 *
 * Where a cover is kept: on the key's object record (its soft-state slot, ObjectRecord.cover), found through the
 * `slots` lookup — the record a read looks up anyway to answer, so checking a read's covers costs no second large map
 * and the answer's own lookup right after finds the record in cache. A key with no object (its reads are leased too:
 * the leader grants keys, not objects) is covered by key in the cover's own map. The map also keeps
 * every cover in start order for the sweeps. A new record of a key starts without a cover (its reads ask again):
 * less coverage, never more.
 */
import type { CoverSlot } from '../statemachine/objects.js';
import { announceAheadMs } from './lease-sync.js';

/** Keys a follower keeps covers for at most; past it, further keys are simply asked for on every read. */
export const maxFollowerCoverKeys = 1_000_000;
/** Covers a prune or a refresh sweep looks at per call at most (bounded work per read). */
const maxCoverVisitsPerCall = 4_096;
/** takeRefresh's answer when there is nothing to refresh: shared, so a follower read allocates nothing for it. */
const noKeys: readonly string[] = Object.freeze([]);
/**
 * Keys one cover refresh asks the leader to lease again at most (~80 KiB of keys, well inside
 * maxFollowerReadLeaseBytes); keys beyond it wait for the next refresh or are asked for by their reads.
 */
export const maxCoverRefreshKeys = 4_096;
/** Key bytes one refresh sends at most: half of maxFollowerReadLeaseBytes (follower-reads.ts), whatever the key sizes. */
export const maxCoverRefreshBytes = 128 * 1024;

/** At most one log line per this many ms (the cover's clock) for refreshes that failed unexpectedly (bugs). */
export const unexpectedRefreshLogIntervalMs = 60_000;

/**
 * Whether a follower refreshes its covers ahead (FollowerLeaseCover.refreshAhead): only with a follower read lease
 * (raft.followerLeaseTicks > 0), where a fully covered read needs no round; without one every read takes its round
 * anyway. MasterNode and the simulator's master host both decide it here.
 */
export function refreshCoversAhead(followerLeaseTicks: number): boolean {
  return followerLeaseTicks > 0;
}

/**
 * The most two masters' clock rates may differ by, as a factor, for a cover to stay inside the leader's grant (see
 * the file comment). The simulator's drift faults run clocks at 0.9–1.1 × real time (a factor of 1.22 at worst);
 * real clocks differ by parts per million.
 */
export const maxClockRateRatio = 1.25;

/** How much longer than its TTL the leader leases a key a follower read asked for (the announce-ahead margin). */
export function coverMarginMs(leaseTtlMs: number): number {
  return announceAheadMs(leaseTtlMs);
}

/**
 * When in its cover a key read since its grant is leased again in the background (see takeRefresh): at 7/8, leaving
 * 1/8 (250 ms at the default TTL) less one sweep interval for the refresh's round. 3/4 leased keys again a quarter
 * more often for no more keys covered in bench:master.
 */
export const coverRefreshShare = 0.875;
/** Refresh sweeps per cover at most (one every coverMs / this, unless the last one left keys waiting). */
const coverSweepsPerCover = 32;

/** The slot of a key's object record, or undefined when the key has no object (MasterState.coverSlot). */
export type CoverSlots = (key: string) => CoverSlot | undefined;
const noSlots: CoverSlots = () => undefined;

/**
 * One key's cover: when its granting read began, and whether a read was served under it since. Mutated in place. A
 * class so a slot's content is checked for what it is (`instanceof`): the slot's type is the state machine's `object`.
 */
class CoverEntry {
  constructor(
    public start: number,
    public read: boolean,
    /** The object record whose slot holds this entry; null for a key with no object (kept by key only). */
    readonly slot: CoverSlot | null,
    /** The term it was granted in; -1 once dropped from the cover (then no longer valid in its slot). */
    public term: number,
  ) {}
}

export class FollowerLeaseCover {
  /** Key → its cover; Map order is start order (entries re-inserted on every grant). Reads look covers up in `slots`. */
  private readonly since = new Map<string, CoverEntry>();
  private term = 0;
  /** How long after a granting read's start the key counts as covered: the margin / maxClockRateRatio. */
  readonly coverMs: number;
  /** Keys served from a cover since start, and keys asked for (metrics, tests). */
  coveredKeys = 0;
  askedKeys = 0;
  /**
   * Refresh ahead: lease again, in the background (one refresh in flight at a time), the keys read under their cover
   * once that cover is 7/8 through, so a key read often stays covered and its reads need nothing from the leader. Only
   * with a follower read lease (raft.followerLeaseTicks), where it pays off.
   */
  refreshAhead = false;
  private refreshing = false;
  /** When (this clock) the last refresh sweep ran, and whether it left keys waiting (then the next runs at once). */
  private lastSweepAt = Number.NEGATIVE_INFINITY;
  private sweepLeft = false;
  private readonly refreshAfterMs: number;
  private readonly sweepEveryMs: number;
  /** Keys sent in refreshes since start (metrics, tests). */
  refreshedKeys = 0;
  /** Refreshes that failed with something other than a MooringError (a bug), and when the last was logged. */
  unexpectedRefreshFailures = 0;
  private lastUnexpectedLogAt = Number.NEGATIVE_INFINITY;

  /**
   * `slots`: where covers are kept (MasterState.coverSlot; none: every key by key, as for keys with no object).
   * `coverMs`: tests only (the simulator's control that must break the design: covers that never end).
   */
  constructor(readonly leaseTtlMs: number, private readonly slots: CoverSlots = noSlots, private readonly maxKeys = maxFollowerCoverKeys, coverMs?: number) {
    if (!(leaseTtlMs > 0)) throw new RangeError(`leaseTtlMs must be > 0, got ${leaseTtlMs}`);
    this.coverMs = coverMs ?? coverMarginMs(leaseTtlMs) / maxClockRateRatio;
    this.refreshAfterMs = this.coverMs * coverRefreshShare;
    this.sweepEveryMs = this.coverMs / coverSweepsPerCover;
  }

  /** Whether a read of `key` starting at `nowMs` in `term` is covered (what `uncovered` would decide; no side effects). */
  covers(key: string, nowMs: number, term: number): boolean {
    if (term !== this.term) return false;
    const e = this.find(key, this.slots(key));
    return e !== undefined && nowMs >= e.start && nowMs - e.start <= this.coverMs;
  }

  /**
   * `key`'s cover of the current term: in `slot`, its object's (`slots(key)`), or by key when it has no object. (An
   * entry in a slot is the one the map holds for the key: granted sets both, drop clears the slot, a term change ends
   * every entry.)
   */
  private find(key: string, slot: CoverSlot | undefined): CoverEntry | undefined {
    const e = slot === undefined ? this.since.get(key) : slot.cover;
    return e instanceof CoverEntry && e.term === this.term ? e : undefined;
  }

  /** `e` leaves the cover: its slot no longer holds it, and it is no longer valid wherever it is still referenced. */
  private drop(e: CoverEntry): void {
    e.term = -1;
    if (e.slot !== null && e.slot.cover === e) e.slot.cover = null;
  }

  /**
   * The keys of a read starting at `nowMs` in `term` that the leader must still lease (the others are covered by a
   * grant whose read started at most `coverMs` before). Keeps the order of `keys`.
   */
  uncovered(keys: readonly string[], nowMs: number, term: number): string[] {
    this.prune(nowMs);
    if (term !== this.term) {
      // Entries left in slots are of the old term: find() no longer takes them.
      this.since.clear();
      this.term = term;
    }
    if (this.since.size === 0) {
      this.askedKeys += keys.length;
      return keys.slice();
    }
    const out: string[] = [];
    // A clock that went backwards (never, for a monotonic one) counts as uncovered too. (covers() inlined: the same
    // lookup also notes the read for the refresh.)
    for (const k of keys) {
      const e = this.find(k, this.slots(k));
      if (e === undefined || nowMs < e.start || nowMs - e.start > this.coverMs) out.push(k);
      else e.read = true;
    }
    this.coveredKeys += keys.length - out.length;
    this.askedKeys += out.length;
    return out;
  }

  /** The leader leased `keys` to a read that started at `startMs` in `term` (and this follower recorded them). */
  granted(keys: readonly string[], startMs: number, term: number): void {
    if (term !== this.term) return; // a leader change since: the next read clears the cover anyway
    for (const k of keys) {
      const slot = this.slots(k);
      const cur = this.find(k, slot);
      if (cur !== undefined && cur.start >= startMs) continue;
      if (cur === undefined && this.since.size >= this.maxKeys) continue;
      const e = cur ?? new CoverEntry(startMs, false, slot ?? null, term);
      e.start = startMs;
      e.read = false;
      // The key's previous entry (of an object since removed, or kept by key before the object was created) ends.
      const prev = this.since.get(k);
      if (prev !== undefined && prev !== e) this.drop(prev);
      // Re-inserted at the end: Map order stays start order for prune() and takeRefresh().
      this.since.delete(k);
      this.since.set(k, e);
      if (slot !== undefined) slot.cover = e;
    }
  }

  get size(): number {
    return this.since.size;
  }

  /**
   * A refresh sweep, when one is due at `nowMs` (refreshAhead on, none in flight, at most one per coverMs / 32 unless
   * the last left keys waiting): the keys whose cover is coverRefreshShare (7/8) through and that were read under it,
   * up to maxCoverRefreshKeys and maxCoverRefreshBytes; a refresh is then in flight until refreshDone(). Empty: nothing
   * to do.
   *
   * Keys found that far through and not read since their grant lose their cover here (a cover allows a read, it obliges
   * nothing: a later read of the key asks for it), so every cover is looked at once by the sweeps, which walk from the
   * oldest. Deciding on the sweep rather than on a read that happens to fall in a window keeps a key read once per
   * cover covered, and leases it again once per 7/8 cover (a read in the second half queued it before: refreshed every
   * ~half cover, and a key whose reads missed the window lost its cover).
   */
  takeRefresh(nowMs: number): readonly string[] {
    if (!this.refreshAhead || this.refreshing) return noKeys;
    if (!this.sweepLeft && nowMs - this.lastSweepAt < this.sweepEveryMs) return noKeys;
    this.lastSweepAt = nowMs;
    this.sweepLeft = false;
    const keys: string[] = [];
    let bytes = 0;
    let looked = 0;
    for (const [k, e] of this.since) {
      if (nowMs - e.start <= this.refreshAfterMs) break; // start order: the rest are younger
      if (++looked > maxCoverVisitsPerCall || keys.length >= maxCoverRefreshKeys) {
        this.sweepLeft = true;
        break;
      }
      if (!e.read || nowMs < e.start || nowMs - e.start > this.coverMs) {
        this.since.delete(k); // deleting the entry just visited is safe for a Map iterator
        this.drop(e);
        continue;
      }
      bytes += k.length * 3; // UTF-16 units: at most 3 UTF-8 bytes each
      if (keys.length > 0 && bytes > maxCoverRefreshBytes) {
        this.sweepLeft = true;
        break;
      }
      // Not read since this refresh: if it fails, the next sweep drops the cover (a read then asks for itself).
      e.read = false;
      keys.push(k);
    }
    if (keys.length === 0) return noKeys;
    this.refreshing = true;
    this.refreshedKeys += keys.length;
    return keys;
  }

  refreshDone(): void {
    this.refreshing = false;
  }

  /** Counts a refresh that failed unexpectedly at `nowMs`; true when it should be logged (rate-limited). */
  unexpectedRefreshFailure(nowMs: number): boolean {
    this.unexpectedRefreshFailures++;
    if (nowMs - this.lastUnexpectedLogAt < unexpectedRefreshLogIntervalMs) return false;
    this.lastUnexpectedLogAt = nowMs;
    return true;
  }

  /** Drops covers that ended (oldest first; at most maxCoverVisitsPerCall). */
  private prune(nowMs: number): void {
    let n = 0;
    for (const [k, e] of this.since) {
      if (nowMs - e.start <= this.coverMs || n >= maxCoverVisitsPerCall) break;
      this.since.delete(k);
      this.drop(e);
      n++;
    }
  }
}
