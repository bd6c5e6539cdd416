/**
 * A simulated disk for the Raft log, with the faults real disks have: writes complete after a (possibly slow)
 * delay; writes not yet synced are lost at a crash (a random prefix of them survives, in order); the last
 * surviving write may be torn (its last entry fails its checksum and recovery cuts it, as LogStore does); an fsync
 * may fail (the write rejects and the node must crash-stop); a read may return corrupted bytes (the checksum
 * catches it when the log is opened: the node refuses to start, it never serves them).
 *
 * `SimLogStorage` implements the driver's LogStorage with LogStore's semantics (src/raft/log-store.ts): the
 * synchronous reads see a write only once it completed; an entry whose index exists replaces it and every later
 * one; a snapshot point replaces the whole log; compaction keeps the term of its index.
 */
import { crc32 } from 'node:zlib';
import { ErrorCode, MooringError, assert } from '../../errors.js';
import type { ConfState, Entry, HardState, Snapshot, SnapshotMetadata } from '../../raft/core/types.js';
import { cloneConfState } from '../../raft/core/util.js';
import type { LogSaveBatch, LogSaveOptions, LogStorage } from '../../raft/node/log-storage.js';
import type { SeededRng } from '../../util/rng.js';
import { chance, randInt } from './rand.js';
import type { NodeClock, SimScheduler } from './scheduler.js';

export interface DiskFaults {
  /** Each write takes 0..this many ms (virtual). */
  maxWriteMs: number;
  /** Probability that a write is slow (takes up to slowWriteMs). */
  slowWriteProbability: number;
  slowWriteMs: number;
  /** Probability that a synced write fails (fsync error): the write rejects, the node must crash-stop. */
  fsyncFailProbability: number;
  /** At a crash, probability that the last surviving unsynced write is torn. */
  tornWriteProbability: number;
  /** Negative control: sync writes are acknowledged but not made durable (a lying disk). */
  unsafeLyingFsync: boolean;
}

export const noDiskFaults: DiskFaults = {
  maxWriteMs: 1, slowWriteProbability: 0, slowWriteMs: 0, fsyncFailProbability: 0, tornWriteProbability: 0, unsafeLyingFsync: false,
};

interface StoredEntry {
  e: Entry;
  sum: number;
}

/** The log as stored: what recovery reads back. */
class LogImage {
  hard: HardState = { term: 0, vote: '', commit: 0 };
  conf: ConfState | null = null;
  snapMeta: SnapshotMetadata = { index: 0, term: 0, confState: { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } };
  compactIndex = 0;
  compactTerm = 0;
  log: StoredEntry[] = [];

  clone(): LogImage {
    const c = new LogImage();
    c.hard = { ...this.hard };
    c.conf = this.conf === null ? null : cloneConfState(this.conf);
    c.snapMeta = cloneMeta(this.snapMeta);
    c.compactIndex = this.compactIndex;
    c.compactTerm = this.compactTerm;
    c.log = this.log.slice();
    return c;
  }

  apply(w: Write): void {
    if (w.kind === 'compact') return this.compact(w.index, w.meta);
    const b = w.batch;
    if (b.snapshotMeta !== undefined) {
      this.log = [];
      this.compactIndex = b.snapshotMeta.index;
      this.compactTerm = b.snapshotMeta.term;
      this.snapMeta = cloneMeta(b.snapshotMeta);
      this.conf = null;
      if (this.hard.commit < b.snapshotMeta.index) this.hard = { ...this.hard, commit: b.snapshotMeta.index };
    }
    const fresh = (b.entries ?? []).filter((e) => e.index > this.compactIndex);
    if (fresh.length > 0) {
      const first = fresh[0]!.index;
      assert(first <= this.compactIndex + this.log.length + 1, `sim disk: entry ${first} would leave a gap`);
      this.log.length = first - this.compactIndex - 1;
      for (const e of fresh) this.log.push({ e, sum: entrySum(e) });
    }
    if (b.hardState !== undefined) this.hard = { ...b.hardState };
    if (b.confState !== undefined) this.conf = cloneConfState(b.confState);
  }

  private compact(index: number, meta: SnapshotMetadata | undefined): void {
    if (meta !== undefined && meta.index > this.snapMeta.index) this.snapMeta = cloneMeta(meta);
    if (index > this.compactIndex) {
      const drop = index - this.compactIndex;
      this.compactTerm = this.log[drop - 1]!.e.term;
      this.log = this.log.slice(drop);
      this.compactIndex = index;
    }
  }
}

type Write = { kind: 'save'; batch: LogSaveBatch } | { kind: 'compact'; index: number; meta: SnapshotMetadata | undefined };

function cloneMeta(m: SnapshotMetadata): SnapshotMetadata {
  return { index: m.index, term: m.term, confState: cloneConfState(m.confState) };
}

function entrySum(e: Entry): number {
  const head = Buffer.from(`${e.index}:${e.term}:${e.type}:`);
  return crc32(e.data, crc32(head));
}

/** Counters of the faults a disk went through (reported by the simulator). */
export interface DiskStats {
  lostUnsyncedWrites: number;
  tornWrites: number;
  failedFsyncs: number;
  corruptionsCaught: number;
  /**
   * Synced log saves (entries or a term/vote) issued while an earlier synced save of the same process was still in
   * flight: the pipelined Ready loop at work (a serial loop never does this; commit-only and compaction writes are
   * not counted).
   */
  overlappedWrites: number;
}

/** One node's disk: survives the node's crashes; a crash loses what was not synced. */
export class SimDisk {
  readonly stats: DiskStats = { lostUnsyncedWrites: 0, tornWrites: 0, failedFsyncs: 0, corruptionsCaught: 0, overlappedWrites: 0 };
  private durable = new LogImage();
  /** Writes the disk holds that no sync has covered yet, in order. */
  private unsynced: Write[] = [];
  /** Set by a read fault: the next open finds this entry's bytes corrupted. */
  private corruptNextOpen = false;
  faults: DiskFaults;

  constructor(private readonly sched: SimScheduler, private readonly rng: SeededRng, faults: DiskFaults) {
    this.faults = faults;
  }

  /** The process died: unsynced writes survive only as a random prefix; the last survivor may be torn. */
  crash(inFlight: Write[]): void {
    const pending = [...this.unsynced, ...inFlight];
    this.unsynced = [];
    const keep = pending.length === 0 ? 0 : randInt(this.rng, pending.length + 1);
    this.stats.lostUnsyncedWrites += pending.length - keep;
    for (let i = 0; i < keep; i++) {
      const w = pending[i]!;
      const torn = i === keep - 1 && w.kind === 'save' && (w.batch.entries?.length ?? 0) > 0 && chance(this.rng, this.faults.tornWriteProbability);
      this.durable.apply(w);
      if (torn) {
        // The tail of the write never reached the platter: its last entry fails its checksum.
        const last = this.durable.log[this.durable.log.length - 1];
        if (last !== undefined) {
          last.sum ^= 0x5a5a;
          this.stats.tornWrites++;
        }
      }
    }
  }

  /** A later read of the log returns corrupted bytes (a bad sector, a bit flip). */
  corruptOnNextOpen(): void {
    this.corruptNextOpen = true;
  }

  /** Opens the log as recovery does: verifies checksums, cuts a torn tail, refuses mid-log corruption. */
  open(clock: NodeClock): SimLogStorage {
    const img = this.durable.clone();
    if (this.corruptNextOpen && img.log.length > 0) {
      this.corruptNextOpen = false;
      const victim = img.log[randInt(this.rng, img.log.length)]!;
      img.log[img.log.indexOf(victim)] = { e: victim.e, sum: victim.sum ^ 0x1 };
    }
    for (let i = 0; i < img.log.length; i++) {
      const s = img.log[i]!;
      if (s.sum === entrySum(s.e)) continue;
      if (i === img.log.length - 1) {
        // A torn last write: cut it (it was never acknowledged: it was not synced).
        img.log.length = i;
        if (img.hard.commit > img.compactIndex + i) img.hard = { ...img.hard, commit: img.compactIndex + i };
        this.durable = img.clone();
        break;
      }
      this.stats.corruptionsCaught++;
      throw new MooringError(ErrorCode.CORRUPT_LOG, `entry ${s.e.index} fails its checksum (mid-log): refusing to start`);
    }
    return new SimLogStorage(this, img, clock);
  }

  /** @internal the storage hands its completed writes to the disk. */
  written(w: Write, sync: boolean): void {
    if (sync && !this.faults.unsafeLyingFsync) {
      for (const u of this.unsynced) this.durable.apply(u);
      this.unsynced = [];
      this.durable.apply(w);
    } else {
      this.unsynced.push(w);
    }
  }

  /** @internal */
  writeDelay(): number {
    const f = this.faults;
    if (f.slowWriteProbability > 0 && chance(this.rng, f.slowWriteProbability)) return randInt(this.rng, f.slowWriteMs + 1);
    return f.maxWriteMs > 0 ? randInt(this.rng, f.maxWriteMs + 1) : 0;
  }

  /** @internal */
  fsyncFails(): boolean {
    if (this.faults.fsyncFailProbability > 0 && chance(this.rng, this.faults.fsyncFailProbability)) {
      this.stats.failedFsyncs++;
      return true;
    }
    return false;
  }

  /** @internal */
  get scheduler(): SimScheduler {
    return this.sched;
  }
}

export class SimLogStorage implements LogStorage {
  private dead = false;
  private broken: Error | null = null;
  private readonly inFlight: Write[] = [];
  /** The synced saves among inFlight (overlap statistics). */
  private readonly syncedSaves = new Set<Write>();
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly disk: SimDisk, private readonly img: LogImage, private readonly clock: NodeClock) {}

  /** The process died: writes in flight are handed to the disk's crash model; nothing resolves any more. */
  kill(): Write[] {
    this.dead = true;
    return this.inFlight.splice(0);
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.img.hard }, confState: cloneConfState(this.img.conf ?? this.img.snapMeta.confState) };
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.img.compactIndex) throw new MooringError(ErrorCode.COMPACTED, `entries from ${lo} were compacted`);
    assert(hi <= this.lastIndex() + 1, `entries(${lo}, ${hi}) beyond last index ${this.lastIndex()}`);
    const out: Entry[] = [];
    let size = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.img.log[i - this.img.compactIndex - 1]!.e;
      size += e.data.byteLength;
      if (out.length > 0 && size > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  term(i: number): number {
    if (i === this.img.compactIndex) return this.img.compactTerm;
    if (i < this.img.compactIndex) throw new MooringError(ErrorCode.COMPACTED, `term of ${i}: compacted`);
    const s = this.img.log[i - this.img.compactIndex - 1];
    if (s === undefined) throw new MooringError(ErrorCode.INTERNAL, `term of ${i}: beyond last index ${this.lastIndex()}`);
    return s.e.term;
  }

  firstIndex(): number {
    return this.img.compactIndex + 1;
  }

  lastIndex(): number {
    return this.img.compactIndex + this.img.log.length;
  }

  snapshot(): Snapshot {
    return { metadata: cloneMeta(this.img.snapMeta), data: new Uint8Array(0) };
  }

  save(batch: LogSaveBatch, opts: LogSaveOptions): Promise<void> {
    const copy: LogSaveBatch = { ...batch, ...(batch.entries ? { entries: batch.entries.slice() } : {}) };
    return this.write({ kind: 'save', batch: copy }, opts.sync);
  }

  applySnapshot(meta: SnapshotMetadata): Promise<void> {
    return this.write({ kind: 'save', batch: { snapshotMeta: meta } }, true);
  }

  compact(index: number, snapshotMeta?: SnapshotMetadata): Promise<void> {
    return this.write({ kind: 'compact', index, meta: snapshotMeta }, true);
  }

  /** Writes complete in order, each after its own delay; the reads see a write once it completed. */
  private write(w: Write, sync: boolean): Promise<void> {
    if (this.broken !== null) return Promise.reject(this.broken);
    if (sync && w.kind === 'save') {
      if (this.inFlight.some((x) => this.syncedSaves.has(x))) this.disk.stats.overlappedWrites++;
      this.syncedSaves.add(w);
    }
    this.inFlight.push(w);
    const run = this.chain.then(() => new Promise<void>((resolve, reject) => {
      // The disk works on while the process is paused; the process hears of it when it runs again.
      const tell = this.clock.guard(() => (this.broken !== null ? reject(this.broken) : resolve()));
      if (this.broken !== null) {
        // Queued behind a write whose fsync failed: like the WAL once poisoned, it never reaches the disk.
        this.dropInFlight(w);
        tell();
        return;
      }
      this.disk.scheduler.after(this.disk.writeDelay(), () => {
        if (this.dead) return; // the process is gone: the crash model decides what of it survives
        this.dropInFlight(w);
        if (sync && this.disk.fsyncFails()) {
          this.broken = new MooringError(ErrorCode.STORAGE_FAILED, 'fsync failed (simulated)');
          // Writes queued behind it (pipelined saves) are refused, never written: not even a crash may keep them.
          this.inFlight.length = 0;
          this.syncedSaves.clear();
        } else {
          this.disk.written(w, sync);
          this.img.apply(w);
        }
        tell();
      });
    }));
    this.chain = run.catch(() => {});
    return run;
  }

  private dropInFlight(w: Write): void {
    const i = this.inFlight.indexOf(w);
    if (i >= 0) this.inFlight.splice(i, 1);
    this.syncedSaves.delete(w);
  }
}
