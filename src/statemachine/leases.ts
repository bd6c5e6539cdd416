/**
 * LeaseTable: read leases as LEADER SOFT STATE (never in the log: a read must not cost a write).
 *
 * - GetReplicaList grants a lease of `leaseTtlMs` on its object (`grant`).
 * - An object under lease is never removed or evicted: the leader checks `isLeased` before proposing Remove
 *   (answering OBJECT_HAS_LEASE itself), passes `leasedKeys` as `skipKeys` to RemoveAll/RemoveByPrefix/
 *   DrainSegments, and planEviction skips leased objects.
 * - Failover: `resetForNewLeader(nowMs)` treats EVERY object as leased until the new leader has learned the old
 *   leader's leases from a majority of members (`adopt` each, then `endBlanket`; see src/master/lease-sync.ts and
 *   docs/raft.md "Read leases across a leader change"), at most one TTL.
 * - Keys in a planned-but-not-yet-applied Evict are `reserve`d: no lease is granted on them until `release`, so a
 *   reader never gets descriptors to memory an in-flight eviction is about to free.
 * - Keys of an admitted-but-not-yet-applied Remove (and the other writes a lease refuses) are held by the master's
 *   PendingWrites (src/master/pending-writes.ts): reads of them wait; this table knows nothing of them.
 * Time is the caller's `nowMs` (the leader's clock); nothing here reads a clock.
 */
import { defaultLeaseTtlMs } from './limits.js';

/**
 * One key's lease. `noteUntil` / `noteSeq` are its announcer's slot (LeaseSync on the leader: until when the lease was
 * announced, in which frame; noteUntil 0: not announced): kept with the lease so that a read's grant and its
 * announcement find the key with one map lookup (two maps of every leased key, each looked up per key read, were a
 * fifth of a leader's CPU per read), and dropped with it. `recordedUntil` is its recorder's slot (the member's lease
 * file, src/master/lease-file.ts: at least until when, on the file's clock, the file holds the key; 0: not known
 * here), for the same reason. Mutated in place: no allocation per grant.
 */
export interface LeaseEntry {
  until: number;
  noteUntil: number;
  noteSeq: number;
  recordedUntil: number;
}

export class LeaseTable {
  readonly leaseTtlMs: number;
  private readonly expires = new Map<string, LeaseEntry>();
  /** Reservations per key (two evictions of one key may overlap when one timed out: counted, not a set). */
  private readonly reserved = new Map<string, number>();
  /** Bumped by resetForNewLeader: reservations of an earlier leadership release nothing. */
  private generation = 0;
  private allLeasedUntilMs = 0;

  /**
   * How far out of expiry order an entry may stand (see extend): 1/4 of the TTL. Followers' cover refreshes extend a
   * key by ~a second at a time; at 1/16 most of those grants moved it, now a few in a row stay in place. The cost is
   * memory only: an expired lease is pruned at most this much later.
   */
  private readonly reorderSlackMs: number;

  constructor(leaseTtlMs: number = defaultLeaseTtlMs) {
    this.leaseTtlMs = leaseTtlMs;
    this.reorderSlackMs = Math.floor(leaseTtlMs / 4);
  }

  /**
   * Grant (or extend) a lease for `forMs` (one TTL; a follower's read asks for a margin more, to cover the reads it
   * serves next: src/master/follower-lease-cover.ts); returns its expiry, or 0 if the key is reserved for eviction.
   */
  grant(key: string, nowMs: number, forMs = this.leaseTtlMs): number {
    if (this.reserved.has(key)) return 0;
    const until = nowMs + forMs;
    this.extend(key, until);
    return until;
  }

  /**
   * Sets a later expiry. Map order is kept close to expiry order so prune() can stop at the first live lease: a key
   * is moved to the end only when its expiry moves by more than `reorderSlackMs` (moving it on every read of a hot
   * key, a delete and an insert in a Map of every leased key, was most of the leader's cost per read). So an expired
   * lease may wait behind a live one for at most that long before prune() drops it; isLeased reads the exact expiry.
   */
  private extend(key: string, until: number): LeaseEntry {
    const cur = this.expires.get(key);
    if (cur === undefined) {
      const e = { until, noteUntil: 0, noteSeq: 0, recordedUntil: 0 };
      this.expires.set(key, e);
      return e;
    }
    if (cur.until >= until) return cur;
    const moved = until - cur.until > this.reorderSlackMs;
    cur.until = until;
    if (!moved) return cur;
    this.expires.delete(key);
    this.expires.set(key, cur);
    return cur;
  }

  /** The key's lease expiry (0 if none is known). */
  expiry(key: string): number {
    return this.expires.get(key)?.until ?? 0;
  }

  /** The key's lease entry (its announcer's slot included), or undefined if none is known. */
  entry(key: string): LeaseEntry | undefined {
    return this.expires.get(key);
  }

  /** Forgets every announcement noted on the entries (an announcer's frames of an earlier leadership). */
  clearNotes(): void {
    for (const e of this.expires.values()) {
      e.noteUntil = 0;
      e.noteSeq = 0;
    }
  }

  /**
   * A lease learned from another member (after a leader change), or one a follower serves: kept until `untilMs` unless
   * already longer. Returns its entry (for its recorder's slot).
   */
  adopt(key: string, untilMs: number): LeaseEntry {
    return this.extend(key, untilMs);
  }

  /** Live leases as [key, expiry] (for a new leader that asks what this member knows). */
  *live(nowMs: number): IterableIterator<[string, number]> {
    for (const [k, e] of this.expires) if (e.until > nowMs) yield [k, e.until];
  }

  /** The new leader knows every lease that may still be live: stop treating every object as leased. */
  endBlanket(): void {
    this.allLeasedUntilMs = 0;
  }

  isLeased(key: string, nowMs: number): boolean {
    if (nowMs < this.allLeasedUntilMs) return true;
    const e = this.expires.get(key);
    return e !== undefined && e.until > nowMs;
  }

  /** True while a new leader still treats every object as leased. */
  allLeased(nowMs: number): boolean {
    return nowMs < this.allLeasedUntilMs;
  }

  /** Last time the key was read (lease grant), for approximate LRU; undefined if unknown. */
  lastAccessMs(key: string): number | undefined {
    const e = this.expires.get(key);
    return e === undefined ? undefined : e.until - this.leaseTtlMs;
  }

  /** Keys with a live lease (for skipKeys). While allLeased(nowMs), callers must treat every key as leased. */
  leasedKeys(nowMs: number): string[] {
    const out: string[] = [];
    for (const [k, e] of this.expires) if (e.until > nowMs) out.push(k);
    return out;
  }

  resetForNewLeader(nowMs: number): void {
    this.expires.clear();
    this.reserved.clear();
    this.generation++;
    this.allLeasedUntilMs = nowMs + this.leaseTtlMs;
  }

  /** Reserves `keys` (no lease granted on them) until the returned release is called (once; later calls do nothing). */
  reserve(keys: Iterable<string>): { release(): void } {
    const held = [...keys];
    for (const k of held) this.reserved.set(k, (this.reserved.get(k) ?? 0) + 1);
    const gen = this.generation;
    let done = false;
    return {
      release: () => {
        if (done) return;
        done = true;
        if (gen !== this.generation) return;
        for (const k of held) {
          const n = (this.reserved.get(k) ?? 1) - 1;
          if (n <= 0) this.reserved.delete(k);
          else this.reserved.set(k, n);
        }
      },
    };
  }

  /**
   * Forget leases that ran out (call now and then), at most `maxDeletes` of them (a caller slices a large backlog
   * across event-loop turns: 100k expired leases took ~24 ms in one go, a million ~550 ms); returns how many went.
   */
  prune(nowMs: number, maxDeletes = Infinity): number {
    let n = 0;
    for (const [k, { until }] of this.expires) {
      // Insertion order is expiry order for granted leases within reorderSlackMs (extend); adopted ones may be out of
      // order too and then wait for a later round, which only keeps them a little longer.
      if (until > nowMs || n >= maxDeletes) break;
      this.expires.delete(k);
      n++;
    }
    return n;
  }

  get size(): number {
    return this.expires.size;
  }
}
