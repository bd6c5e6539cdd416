/**
 * RaftLog: the log as the core sees it — stable storage (read-only here) followed by unstable entries —
 * plus the committed / applying / applied indexes. Mirrors etcd's raftLog.
 */
import { assert, ErrorCode, MooringError } from '../../errors.js';
import type { Entry, Snapshot, Storage } from './types.js';
import { Unstable } from './unstable.js';
import { limitSize, reaches } from './util.js';

export class RaftLog {
  readonly storage: Storage;
  readonly unstable: Unstable;
  /** Highest index known to be committed. */
  committed: number;
  /** Highest index handed to the caller for applying (in a Ready not yet advanced). */
  applying: number;
  /** Highest index the caller applied (onApplied() / advance()). */
  applied: number;
  readonly maxApplyingBytes: number;

  constructor(storage: Storage, maxApplyingBytes: number) {
    this.storage = storage;
    this.maxApplyingBytes = maxApplyingBytes;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applying = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** Last index the caller has persisted (entries above it are still unstable). */
  stableLastIndex(): number {
    if (this.unstable.snapshot !== undefined) return 0;
    return this.unstable.offset - 1;
  }

  /** Term at i, or undefined when i is compacted away or beyond the last index. */
  termOrUndefined(i: number): number | undefined {
    const dummy = this.firstIndex() - 1;
    if (i < dummy || i > this.lastIndex()) return undefined;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    try {
      return this.storage.term(i);
    } catch (e) {
      if (e instanceof MooringError && e.code === ErrorCode.COMPACTED) return undefined;
      throw e;
    }
  }

  /** Term at i; throws COMPACTED when i is before the log (so the caller can send a snapshot). */
  term(i: number): number {
    const t = this.termOrUndefined(i);
    if (t === undefined) {
      if (i < this.firstIndex() - 1) throw new MooringError(ErrorCode.COMPACTED, `index ${i} is compacted`);
      assert(false, `term(${i}) beyond last index ${this.lastIndex()}`);
    }
    return t;
  }

  lastTerm(): number {
    const t = this.termOrUndefined(this.lastIndex());
    assert(t !== undefined, 'last term must be available');
    return t;
  }

  matchTerm(i: number, t: number): boolean {
    return this.termOrUndefined(i) === t;
  }

  isUpToDate(lasti: number, term: number): boolean {
    return reaches(lasti, term, { index: this.lastIndex(), term: this.lastTerm() });
  }

  /**
   * Follower side of AppendEntries: if (index, logTerm) matches, append `ents` (cutting a conflicting suffix)
   * and commit up to min(committed, last new index). Returns the last new index, or undefined on mismatch.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastnewi = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      assert(ci > this.committed, () => `entry ${ci} conflicts with committed entry (committed ${this.committed})`);
      this.append(ents.slice(ci - (index + 1)));
    }
    this.commitTo(Math.min(committed, lastnewi));
    return lastnewi;
  }

  append(ents: Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    assert(after >= this.committed, () => `append after ${after} would overwrite committed ${this.committed}`);
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /** Index of the first entry whose term differs from ours (or the first new one), 0 when all are present. */
  findConflict(ents: Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The largest index ≤ `index` whose term is ≤ `term` (the fast-backtracking hint), with that term.
   * Stops at the first index we cannot look up (compacted), returning it with term 0.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const t = this.termOrUndefined(index);
      if (t === undefined) return { index, term: 0 };
      if (t <= term) return { index, term: t };
    }
    return { index: 0, term: 0 };
  }

  unstableEntries(): Entry[] {
    return this.unstable.entries;
  }

  /** Unstable entries not yet handed to the caller for persisting. */
  nextUnstableEnts(): Entry[] {
    return this.unstable.nextEntries();
  }

  hasNextUnstableEnts(): boolean {
    return this.unstable.hasNextEntries();
  }

  nextUnstableSnapshot(): Snapshot | undefined {
    return this.unstable.nextSnapshot();
  }

  hasNextUnstableSnapshot(): boolean {
    return this.unstable.nextSnapshot() !== undefined;
  }

  /** A Ready took everything unstable: it is in progress (not handed out again) until stableTo/stableSnapTo. */
  acceptUnstable(): void {
    this.unstable.acceptInProgress();
  }

  /**
   * The highest index that may be applied: committed AND durable here. A node never applies an entry its own log
   * could lose in a crash (its state machine would then be ahead of its log on restart).
   */
  maxAppliableIndex(): number {
    return Math.min(this.committed, this.stableLastIndex());
  }

  /** Entries in [lo, hi) bounded by maxBytes (at least one). Throws COMPACTED if lo is compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    const fi = this.firstIndex();
    if (lo < fi) throw new MooringError(ErrorCode.COMPACTED, `index ${lo} is compacted (first ${fi})`);
    const last = this.lastIndex();
    assert(hi <= last + 1, () => `slice [${lo},${hi}) beyond last ${last}`);
    let ents: Entry[] = [];
    const uoff = this.unstable.offset;
    if (lo < uoff) {
      const stored = this.storage.entries(lo, Math.min(hi, uoff), maxBytes);
      // Storage stopped early (size limit): do not add unstable entries after a gap.
      if (stored.length < Math.min(hi, uoff) - lo) return stored;
      ents = stored;
    }
    if (hi > uoff) {
      const u = this.unstable.slice(Math.max(lo, uoff), hi);
      ents = ents.length > 0 ? ents.concat(u) : u;
    }
    return limitSize(ents, maxBytes);
  }

  /** Committed (and locally durable) entries not yet handed out, bounded by maxApplyingBytes. */
  nextCommittedEnts(): Entry[] {
    const lo = Math.max(this.applying + 1, this.firstIndex());
    const hi = this.maxAppliableIndex() + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, this.maxApplyingBytes);
  }

  hasNextCommittedEnts(): boolean {
    return this.maxAppliableIndex() > Math.max(this.applying, this.firstIndex() - 1);
  }

  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  commitTo(tocommit: number): void {
    if (tocommit > this.committed) {
      assert(tocommit <= this.lastIndex(), () => `commit ${tocommit} beyond last index ${this.lastIndex()}`);
      this.committed = tocommit;
    }
  }

  /** Leader: commit maxIndex if it is from `term` (only current-term entries commit by counting). */
  maybeCommit(maxIndex: number, term: number): boolean {
    if (maxIndex > this.committed && this.termOrUndefined(maxIndex) === term) {
      this.commitTo(maxIndex);
      return true;
    }
    return false;
  }

  acceptApplying(i: number): void {
    assert(i <= this.committed, () => `applying ${i} beyond committed ${this.committed}`);
    if (i > this.applying) this.applying = i;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    assert(i <= this.committed && i >= this.applied, () => `applied ${i} out of [${this.applied}, ${this.committed}]`);
    this.applied = i;
    if (this.applying < i) this.applying = i;
  }

  /** Entries up to (i, t) are durable; ignored (false) when the entry at i was replaced meanwhile. */
  stableTo(i: number, t: number): boolean {
    return this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }
}
