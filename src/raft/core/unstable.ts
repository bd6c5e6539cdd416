/**
 * Entries (and possibly a snapshot) the core holds in memory that the caller has not yet persisted.
 * `entries[i]` has index `offset + i`. The pending snapshot, if any, precedes all of them.
 *
 * Asynchronous storage writes (etcd-raft's split): handing entries to the caller in a Ready marks them "in
 * progress" (`offsetInProgress`, `snapshotInProgress`), so the next Ready does not hand them out again; they stay
 * here, readable, until the caller reports them durable (`stableTo`). A truncation meanwhile pulls
 * `offsetInProgress` back, so the replacing entries are handed out again, and the in-flight write of the replaced
 * ones can no longer mark anything stable (its (index, term) no longer matches).
 */
import { assert } from '../../errors.js';
import type { Entry, Snapshot } from './types.js';

export class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  offset: number;
  /** Entries below this index were handed to the caller for persisting (in a Ready) and are not durable yet. */
  offsetInProgress: number;
  /** The pending snapshot was handed to the caller and is not durable yet. */
  snapshotInProgress = false;

  constructor(offset: number) {
    this.offset = offset;
    this.offsetInProgress = offset;
  }

  /** Entries not yet handed to the caller. */
  nextEntries(): Entry[] {
    const inProgress = this.offsetInProgress - this.offset;
    if (inProgress >= this.entries.length) return [];
    return this.entries.slice(inProgress);
  }

  hasNextEntries(): boolean {
    return this.offsetInProgress - this.offset < this.entries.length;
  }

  /** The snapshot, if it was not handed to the caller yet. */
  nextSnapshot(): Snapshot | undefined {
    return this.snapshotInProgress ? undefined : this.snapshot;
  }

  /** Everything held here has been handed to the caller (a Ready was taken). */
  acceptInProgress(): void {
    if (this.entries.length > 0) this.offsetInProgress = this.offset + this.entries.length;
    if (this.snapshot !== undefined) this.snapshotInProgress = true;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot !== undefined ? this.snapshot.metadata.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    if (this.snapshot !== undefined) return this.snapshot.metadata.index;
    return undefined;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === i) return this.snapshot.metadata.term;
      return undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /**
   * The caller persisted entries up to (i, t): drop them unless they were replaced meanwhile (a truncation after
   * the write was handed out: the entry at i is gone or has another term). Returns whether they were dropped.
   */
  stableTo(i: number, t: number): boolean {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return false;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = i + 1;
    this.offsetInProgress = Math.max(this.offsetInProgress, this.offset);
    return true;
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) {
      this.snapshot = undefined;
      this.snapshotInProgress = false;
    }
  }

  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.offsetInProgress = this.offset;
    this.entries = [];
    this.snapshot = s;
    this.snapshotInProgress = false;
  }

  truncateAndAppend(ents: Entry[]): void {
    const fromIndex = ents[0]!.index;
    if (fromIndex === this.offset + this.entries.length) {
      // Directly after the last unstable entry: append.
      for (const e of ents) this.entries.push(e);
    } else if (fromIndex <= this.offset) {
      // Replaces everything unstable (and the stable suffix from fromIndex on).
      this.offset = fromIndex;
      this.offsetInProgress = fromIndex;
      this.entries = ents.slice();
    } else {
      // Keep [offset, fromIndex), replace the rest (to be handed out again from fromIndex).
      this.entries = this.entries.slice(0, fromIndex - this.offset).concat(ents);
      this.offsetInProgress = Math.min(this.offsetInProgress, fromIndex);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    assert(lo <= hi && lo >= this.offset && hi <= this.offset + this.entries.length, () => `unstable slice [${lo},${hi}) out of [${this.offset},${this.offset + this.entries.length}]`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
