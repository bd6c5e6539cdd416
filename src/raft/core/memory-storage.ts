/**
 * In-memory Storage (etcd's MemoryStorage): used by tests, the simulator and benches. The caller writes to it
 * while handling a Ready (append, setHardState, applySnapshot); the core only reads.
 * `ents[0]` is a dummy entry holding the snapshot's index and term.
 */
import { assert, ErrorCode, MooringError } from '../../errors.js';
import type { ConfState, Entry, HardState, Snapshot, Storage } from './types.js';
import { cloneConfState, EMPTY_BYTES, emptyConfState, limitSize } from './util.js';

export class MemoryStorage implements Storage {
  private hardState: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot;
  private ents: Entry[];

  /** `initial` bootstraps a new cluster: the membership every node starts with (at index 0). */
  constructor(initial?: Partial<ConfState>) {
    const cs = { ...emptyConfState(), ...(initial ?? {}) };
    this.snap = { metadata: { index: 0, term: 0, confState: cloneConfState(cs) }, data: EMPTY_BYTES };
    this.ents = [{ term: 0, index: 0, type: 'normal', data: EMPTY_BYTES }];
  }

  /** Convenience: a storage for a fresh cluster whose voters are `voters`. */
  static withVoters(voters: string[], learners: string[] = []): MemoryStorage {
    return new MemoryStorage({ voters, learners });
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    // The membership of the snapshot point, where a restarted core starts (see Storage.initialState).
    return { hardState: { ...this.hardState }, confState: cloneConfState(this.snap.metadata.confState) };
  }

  setHardState(hs: HardState): void {
    this.hardState = { ...hs };
  }

  hardStateNow(): HardState {
    return { ...this.hardState };
  }

  /**
   * The caller applied a conf change. Nothing to keep: a restarted core starts from the snapshot's membership and
   * replays the conf entries after it (initialState), as etcd-raft's MemoryStorage does; kept for the harnesses'
   * storage interface.
   */
  setConfState(_cs: ConfState): void {}

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const off = this.offset();
    if (lo <= off) throw new MooringError(ErrorCode.COMPACTED, `entries from ${lo}: compacted up to ${off}`);
    assert(hi <= this.lastIndex() + 1, () => `entries hi ${hi} beyond last ${this.lastIndex()}`);
    if (this.ents.length === 1) return [];
    return limitSize(this.ents.slice(lo - off, hi - off), maxBytes);
  }

  term(i: number): number {
    const off = this.offset();
    if (i < off) throw new MooringError(ErrorCode.COMPACTED, `term of ${i}: compacted up to ${off}`);
    if (i - off >= this.ents.length) throw new MooringError(ErrorCode.INTERNAL, `term of ${i}: beyond last ${this.lastIndex()}`);
    return this.ents[i - off]!.term;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  /** Replaces the whole log with a snapshot (follower install). Refuses a snapshot older than ours. */
  applySnapshot(snap: Snapshot): void {
    if (snap.metadata.index <= this.snap.metadata.index) {
      throw new MooringError(ErrorCode.COMPACTED, `snapshot ${snap.metadata.index} is not newer than ${this.snap.metadata.index}`);
    }
    this.snap = snap;
    this.ents = [{ term: snap.metadata.term, index: snap.metadata.index, type: 'normal', data: EMPTY_BYTES }];
  }

  /** Makes a snapshot at `index` (≤ last index) holding `data`; compaction is a separate call. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.metadata.index) {
      throw new MooringError(ErrorCode.COMPACTED, `snapshot at ${index} is not newer than ${this.snap.metadata.index}`);
    }
    assert(index <= this.lastIndex(), () => `snapshot ${index} beyond last ${this.lastIndex()}`);
    const off = this.offset();
    this.snap = { metadata: { index, term: this.ents[index - off]!.term, confState: cloneConfState(confState) }, data };
    return this.snap;
  }

  /** Discards entries before `compactIndex` (which becomes the dummy entry). */
  compact(compactIndex: number): void {
    const off = this.offset();
    if (compactIndex <= off) throw new MooringError(ErrorCode.COMPACTED, `compact ${compactIndex}: already compacted to ${off}`);
    assert(compactIndex <= this.lastIndex(), () => `compact ${compactIndex} beyond last ${this.lastIndex()}`);
    const i = compactIndex - off;
    const dummy: Entry = { term: this.ents[i]!.term, index: compactIndex, type: 'normal', data: EMPTY_BYTES };
    this.ents = [dummy, ...this.ents.slice(i + 1)];
  }

  /** Appends entries; an entry whose index already exists replaces it and every later one. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[0]!.index + entries.length - 1;
    if (last < first) return; // all compacted already
    let ents = entries;
    if (first > ents[0]!.index) ents = ents.slice(first - ents[0]!.index);
    const off = ents[0]!.index - this.offset();
    assert(off <= this.ents.length, () => `missing log entry: last ${this.lastIndex()}, append at ${ents[0]!.index}`);
    if (off < this.ents.length) this.ents.length = off;
    for (const e of ents) this.ents.push(e);
  }
}
