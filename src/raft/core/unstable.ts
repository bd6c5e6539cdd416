/**
 * Entries (and possibly a snapshot) the core holds in memory that the caller has not yet persisted.
 * `entries[i]` has index `offset + i`. The pending snapshot, if any, precedes all of them.
 */
import { assert } from '../../errors.js';
import type { Entry, Snapshot } from './types.js';

export class Unstable {
  snapshot: Snapshot | undefined = undefined;
  entries: Entry[] = [];
  offset: number;

  constructor(offset: number) {
    this.offset = offset;
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

  /** The caller persisted entries up to (i, t): drop them unless they were replaced meanwhile. */
  stableTo(i: number, t: number): void {
    const gt = this.maybeTerm(i);
    if (gt === undefined || gt !== t || i < this.offset) return;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = i + 1;
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: Entry[]): void {
    const fromIndex = ents[0]!.index;
    if (fromIndex === this.offset + this.entries.length) {
      // Directly after the last unstable entry: append.
      for (const e of ents) this.entries.push(e);
    } else if (fromIndex <= this.offset) {
      // Replaces everything unstable (and the stable suffix from fromIndex on).
      this.offset = fromIndex;
      this.entries = ents.slice();
    } else {
      // Keep [offset, fromIndex), replace the rest.
      this.entries = this.entries.slice(0, fromIndex - this.offset).concat(ents);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    assert(lo <= hi && lo >= this.offset && hi <= this.offset + this.entries.length, `unstable slice [${lo},${hi}) out of [${this.offset},${this.offset + this.entries.length}]`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
