/**
 * 0.1's durable Raft log on LevelDB: `LogStore implements LogStorage`. Since the WAL (`wal/wal.ts`) became the
 * default it is kept to read 0.1 data dirs once (`wal/open.ts` converts them) and as a baseline in
 * bench/log-store.ts.
 *
 * Layout (binary keys and values):
 *   'e' + u64be(index)  → entry:  u32 crc | u8 version | u32 termHi | u32 termLo | u8 type | data
 *   'h'                 → hard state   (u32 crc | JSON)
 *   'm'                 → compaction point {index, term}: the entry just before firstIndex()
 *   's'                 → snapshot metadata (index, term, confState)
 *   'c'                 → conf state recorded by the driver (defaults to the snapshot's)
 * The entry crc (crc32) covers the index (from the key) and every value byte after the crc, so an entry moved
 * to another key, a flipped bit or a truncated value all fail verification.
 *
 * The synchronous `Storage` reads are served from an in-memory mirror of the live log (every entry after the
 * compaction point). Memory therefore grows with the uncompacted log: the driver bounds it by snapshotting and
 * calling `compact()`. The mirror only ever reflects what LevelDB acknowledged: it is updated after each batch
 * succeeds, and writes are serialized so each batch is computed against the state the previous one left.
 *
 * Recovery on open. Every entry is verified before the core can see it. The first entry that fails its checksum,
 * does not decode, or is missing (a gap) starts the tail that is cut: it and every later entry are deleted in one
 * synced batch and a warning reports the counts (`recovery` holds them too). A checksum failure followed by a
 * VALID entry at the next index is not a torn tail but damage in the middle of the log: that, or a corrupt hard
 * state / snapshot / compaction record, fails with CORRUPT_LOG. If the hard state's commit is beyond the
 * surviving log it is lowered to the last valid index. That is safe only if the cut entries were never
 * acknowledged to anyone (a torn, unsynced tail); entries this node acknowledged were fsynced atomically with the
 * hard state, so losing them means the disk broke its promise, and then no local repair is truly safe — the node
 * comes back as a follower with a shorter log and the leader re-sends what it lacks, which is correct only as long
 * as a quorum of the other nodes still holds every committed entry.
 *
 * Crash-stop: if a LevelDB write or fsync fails, the store is poisoned — that call rejects with STORAGE_FAILED and
 * every later call (reads included) throws STORAGE_FAILED; the driver stops the node.
 */
import { crc32 } from 'node:zlib';
import { Level } from 'level';
import { ErrorCode, MooringError, assert } from '../errors.js';
import { levelOpenFailure } from '../util/level-open.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';
import type { ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata } from './core/types.js';
import { cloneConfState as cloneConf } from './core/util.js';
import { windowEntries, windowTerm } from './log-window.js';
import type { LogSaveBatch, LogSaveOptions, LogStorage } from './node/log-storage.js';

const entryPrefix = 0x65; // 'e'
const keyHardState = Uint8Array.of(0x68); // 'h'
const keyCompaction = Uint8Array.of(0x6d); // 'm'
const keySnapshot = Uint8Array.of(0x73); // 's'
const keyConfState = Uint8Array.of(0x63); // 'c'
const entryKeyBytes = 9;
const entryHeaderBytes = 14;
const entryFormatVersion = 1;
const twoPow32 = 0x1_0000_0000;

export interface LogStoreOptions {
  logger?: LoggerLike;
}

/** What `open()` found and repaired. `cutEntries` > 0 means a torn or corrupt tail was removed. */
export interface LogRecoveryReport {
  loadedEntries: number;
  cutEntries: number;
  /** Index of the first entry that failed verification or was missing, when a cut happened. */
  firstBadIndex: number | null;
  reason: 'checksum' | 'undecodable' | 'gap' | null;
  /** The commit index read from disk when it had to be lowered to the last valid index. */
  commitClampedFrom: number | null;
}

/** The batch and options of `save`, as the driver's `LogStorage` declares them. */
export type SaveBatch = LogSaveBatch;
export type SaveOptions = LogSaveOptions;

/**
 * A log storage a process owns: what the Raft driver needs (`LogStorage`: the core's synchronous reads plus durable
 * writes) and the owner's hard-state read and close. Implemented by the WAL (`wal/wal.ts`, the default) and by
 * this LevelDB `LogStore` (0.1's format, kept to read and convert old data dirs and as a comparison in
 * bench/log-store.ts).
 */
export interface DurableLogStorage extends LogStorage {
  hardState(): HardState;
  close(): Promise<void>;
}

type BatchOp = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array };

const emptyConfState = (): ConfState => ({ voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false });

function entryKey(index: number): Uint8Array {
  const key = new Uint8Array(entryKeyBytes);
  key[0] = entryPrefix;
  const view = new DataView(key.buffer);
  view.setUint32(1, Math.floor(index / twoPow32));
  view.setUint32(5, index >>> 0);
  return key;
}

function keyIndex(key: Uint8Array): number {
  const view = new DataView(key.buffer, key.byteOffset, key.byteLength);
  return view.getUint32(1) * twoPow32 + view.getUint32(5);
}

function entryCrc(key: Uint8Array, value: Uint8Array): number {
  return crc32(value.subarray(4), crc32(key.subarray(1)));
}

export function encodeEntry(e: Entry): { key: Uint8Array; value: Uint8Array } {
  const key = entryKey(e.index);
  const value = new Uint8Array(entryHeaderBytes + e.data.byteLength);
  const view = new DataView(value.buffer);
  view.setUint8(4, entryFormatVersion);
  view.setUint32(5, Math.floor(e.term / twoPow32));
  view.setUint32(9, e.term >>> 0);
  view.setUint8(13, e.type === 'confChange' ? 1 : 0);
  value.set(e.data, entryHeaderBytes);
  view.setUint32(0, entryCrc(key, value));
  return { key, value };
}

/** Decodes and verifies one stored entry; returns the failure kind instead of throwing. */
function decodeEntry(key: Uint8Array, value: Uint8Array): Entry | 'checksum' | 'undecodable' {
  if (key.byteLength !== entryKeyBytes || value.byteLength < entryHeaderBytes) return 'undecodable';
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (view.getUint32(0) !== entryCrc(key, value)) return 'checksum';
  const typeByte = view.getUint8(13);
  if (view.getUint8(4) !== entryFormatVersion || typeByte > 1) return 'undecodable';
  const term = view.getUint32(5) * twoPow32 + view.getUint32(9);
  const type: EntryType = typeByte === 1 ? 'confChange' : 'normal';
  return { index: keyIndex(key), term, type, data: value.subarray(entryHeaderBytes) };
}

function encodeMeta(obj: unknown): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(obj));
  const value = new Uint8Array(4 + json.byteLength);
  value.set(json, 4);
  new DataView(value.buffer).setUint32(0, crc32(json));
  return value;
}

function decodeMeta(name: string, value: Uint8Array): unknown {
  const fail = (): never => {
    throw new MooringError(ErrorCode.CORRUPT_LOG, `the stored ${name} record failed verification; the log cannot be trusted`);
  };
  if (value.byteLength < 4) fail();
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const json = value.subarray(4);
  if (view.getUint32(0) !== crc32(json)) fail();
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    return fail();
  }
}


function cloneSnapMeta(m: SnapshotMetadata): SnapshotMetadata {
  return { index: m.index, term: m.term, confState: cloneConf(m.confState) };
}

export class LogStore implements DurableLogStorage {
  private readonly db: Level<Uint8Array, Uint8Array>;
  private readonly logger: LoggerLike;
  /** Entries after the compaction point, in index order: log[i] has index compactIndex + 1 + i. */
  private log: Entry[] = [];
  private compactIndex = 0;
  private compactTerm = 0;
  private hard: HardState = { term: 0, vote: null, commit: 0 };
  private snapMeta: SnapshotMetadata = { index: 0, term: 0, confState: emptyConfState() };
  private conf: ConfState | null = null;
  private poisoned: unknown = null;
  private closed = false;
  /** Serializes writes: each batch is computed against the state the previous one left. */
  private writeChain: Promise<void> = Promise.resolve();
  /** Set by open(): what was found and repaired. */
  recovery: LogRecoveryReport = { loadedEntries: 0, cutEntries: 0, firstBadIndex: null, reason: null, commitClampedFrom: null };

  private constructor(db: Level<Uint8Array, Uint8Array>, logger: LoggerLike) {
    this.db = db;
    this.logger = logger;
  }

  /** Opens (creating if needed) the log in `dir`, loads it and verifies every entry; repairs a torn tail. */
  static async open(dir: string, opts: LogStoreOptions = {}): Promise<LogStore> {
    const db = new Level<Uint8Array, Uint8Array>(dir, { keyEncoding: 'view', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (err) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, levelOpenFailure('the log', dir, err), { cause: err });
    }
    const store = new LogStore(db, opts.logger ?? silentLogger);
    try {
      await store.load();
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
    return store;
  }

  private async load(): Promise<void> {
    const hardRaw = await this.db.get(keyHardState);
    if (hardRaw !== undefined) {
      const h = decodeMeta('hard state', hardRaw) as HardState;
      this.hard = { term: h.term, vote: h.vote ?? null, commit: h.commit };
    }
    const snapRaw = await this.db.get(keySnapshot);
    if (snapRaw !== undefined) this.snapMeta = decodeMeta('snapshot metadata', snapRaw) as SnapshotMetadata;
    const compRaw = await this.db.get(keyCompaction);
    if (compRaw !== undefined) {
      const c = decodeMeta('compaction point', compRaw) as { index: number; term: number };
      this.compactIndex = c.index;
      this.compactTerm = c.term;
    } else {
      this.compactIndex = this.snapMeta.index;
      this.compactTerm = this.snapMeta.term;
    }
    const confRaw = await this.db.get(keyConfState);
    if (confRaw !== undefined) this.conf = decodeMeta('conf state', confRaw) as ConfState;

    // Scan every stored entry key. Keys ≤ the compaction point are leftovers and are deleted.
    const repairs: BatchOp[] = [];
    let expected = this.compactIndex + 1;
    let bad: { index: number; reason: 'checksum' | 'undecodable' | 'gap' } | null = null;
    /** Contiguous keys right after a checksum/undecodable failure: a valid one there means mid-log corruption. */
    let probeNext = -1;
    let cut = 0;
    const it = this.db.iterator({ gte: Uint8Array.of(entryPrefix), lt: Uint8Array.of(entryPrefix + 1) });
    try {
      for await (const [key, value] of it) {
        const index = key.byteLength === entryKeyBytes ? keyIndex(key) : -1;
        if (index !== -1 && index <= this.compactIndex) {
          repairs.push({ type: 'del', key });
          continue;
        }
        if (bad !== null) {
          if (bad.reason !== 'gap' && index === probeNext) {
            if (typeof decodeEntry(key, value) === 'object') {
              throw new MooringError(
                ErrorCode.CORRUPT_LOG,
                `entry ${bad.index} failed its ${bad.reason} check but entry ${index} after it is valid: ` +
                  'corruption in the middle of the log, not a torn tail; refusing to cut acknowledged entries',
              );
            }
            probeNext++;
          }
          repairs.push({ type: 'del', key });
          cut++;
          continue;
        }
        if (index !== expected) {
          bad = { index: expected, reason: index === -1 ? 'undecodable' : 'gap' };
          repairs.push({ type: 'del', key });
          cut++;
          continue;
        }
        const decoded = decodeEntry(key, value);
        if (typeof decoded !== 'object') {
          bad = { index, reason: decoded };
          probeNext = index + 1;
          repairs.push({ type: 'del', key });
          cut++;
          continue;
        }
        // Copy the data out of LevelDB's value buffer so the mirror holds exactly the entry bytes.
        this.log.push({ ...decoded, data: new Uint8Array(decoded.data) });
        expected++;
      }
    } finally {
      await it.close().catch(() => {});
    }

    const lastValid = this.lastIndexUnchecked();
    this.recovery = { loadedEntries: this.log.length, cutEntries: cut, firstBadIndex: bad?.index ?? null, reason: bad?.reason ?? null, commitClampedFrom: null };
    // A snapshot is committed by definition: commit never needs to be below it.
    if (this.hard.commit < this.compactIndex) this.hard.commit = this.compactIndex;
    if (this.hard.commit > lastValid) {
      // Safe ONLY if the cut entries were never acknowledged to anyone: a torn, unsynced tail of the last batch.
      // Every acknowledged write went through a synced batch (entries + hard state atomically), so LevelDB
      // cannot lose part of it; a commit beyond the surviving log therefore means damage LevelDB did not
      // detect, and lowering commit is the best this node can do (the leader re-sends the entries).
      this.recovery.commitClampedFrom = this.hard.commit;
      this.hard = { ...this.hard, commit: lastValid };
      repairs.push({ type: 'put', key: keyHardState, value: encodeMeta(this.hard) });
    }
    if (cut > 0 || this.recovery.commitClampedFrom !== null) {
      this.logger.warn(
        { ...this.recovery, lastValidIndex: lastValid },
        `log tail cut back: ${cut} entr${cut === 1 ? 'y' : 'ies'} removed from index ${bad?.index ?? '-'} (${bad?.reason ?? 'commit beyond log'})`,
      );
    }
    if (repairs.length > 0) await this.db.batch(repairs, { sync: true });
  }

  // ---- Storage (synchronous, from the mirror) ----

  initialState(): { hardState: HardState; confState: ConfState } {
    this.checkUsable();
    // The membership of the snapshot point, where a restarted core starts (see Storage.initialState).
    return { hardState: { ...this.hard }, confState: cloneConf(this.snapMeta.confState) };
  }

  /** The latest membership the driver recorded (save({confState})), or null: for inspection and conversion. */
  recordedConfState(): ConfState | null {
    this.checkUsable();
    return this.conf === null ? null : cloneConf(this.conf);
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    this.checkUsable();
    return windowEntries({ log: this.log, compactIndex: this.compactIndex, compactTerm: this.compactTerm }, lo, hi, maxBytes);
  }

  term(i: number): number {
    this.checkUsable();
    return windowTerm({ log: this.log, compactIndex: this.compactIndex, compactTerm: this.compactTerm }, i);
  }

  firstIndex(): number {
    this.checkUsable();
    return this.compactIndex + 1;
  }

  lastIndex(): number {
    this.checkUsable();
    return this.lastIndexUnchecked();
  }

  /** The latest snapshot point. The image itself lives with the state machine, so `data` is empty here. */
  snapshot(): Snapshot {
    this.checkUsable();
    return { metadata: cloneSnapMeta(this.snapMeta), data: new Uint8Array(0) };
  }

  // ---- extras ----

  hardState(): HardState {
    this.checkUsable();
    return { ...this.hard };
  }

  /** Entries held in memory (the live log). */
  get entryCount(): number {
    return this.log.length;
  }

  // ---- writes ----

  /**
   * Persists one Ready in ONE LevelDB batch (group commit): snapshot point, then entries (an entry whose index
   * exists replaces it and deletes every later one), then hard state / conf state. The mirror changes only
   * after LevelDB acknowledged the batch. A failed write poisons the store (crash-stop).
   */
  save(batch: SaveBatch, opts: SaveOptions): Promise<void> {
    return this.enqueue(() => {
      const ops: BatchOp[] = [];
      const next = this.planState();
      if (batch.snapshotMeta !== undefined) this.planSnapshot(next, batch.snapshotMeta, ops);
      if (batch.entries !== undefined && batch.entries.length > 0) this.planEntries(next, batch.entries, ops);
      if (batch.hardState !== undefined) {
        next.hard = { term: batch.hardState.term, vote: batch.hardState.vote, commit: batch.hardState.commit };
        ops.push({ type: 'put', key: keyHardState, value: encodeMeta(next.hard) });
      }
      if (batch.confState !== undefined) {
        next.conf = cloneConf(batch.confState);
        ops.push({ type: 'put', key: keyConfState, value: encodeMeta(next.conf) });
      }
      return { ops, next, sync: opts.sync };
    });
  }

  /** Replaces the log by the snapshot point (durably): every entry is dropped, firstIndex = meta.index + 1. */
  applySnapshot(meta: SnapshotMetadata): Promise<void> {
    return this.save({ snapshotMeta: meta }, { sync: true });
  }

  /**
   * Drops entries ≤ index (durably), keeping the term of `index` so term(index) still answers. Call it after the
   * state machine persisted a snapshot at ≥ index; pass that snapshot's metadata (unless an equal or newer one
   * was already recorded) so snapshot() can serve followers that fall behind firstIndex(). No-op when index is
   * already compacted.
   */
  compact(index: number, snapshotMeta?: SnapshotMetadata): Promise<void> {
    return this.enqueue(() => {
      const ops: BatchOp[] = [];
      const next = this.planState();
      if (snapshotMeta !== undefined && snapshotMeta.index > next.snapMeta.index) {
        next.snapMeta = cloneSnapMeta(snapshotMeta);
        ops.push({ type: 'put', key: keySnapshot, value: encodeMeta(next.snapMeta) });
      }
      if (index > next.compactIndex) {
        const last = next.compactIndex + next.log.length;
        if (index > last) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `compact(${index}) beyond last index ${last}`);
        if (next.snapMeta.index < index) {
          throw new MooringError(ErrorCode.INVALID_ARGUMENT, `compact(${index}) without a snapshot covering it (latest snapshot at ${next.snapMeta.index})`);
        }
        const drop = index - next.compactIndex;
        next.compactTerm = next.log[drop - 1]!.term;
        for (let i = next.compactIndex + 1; i <= index; i++) ops.push({ type: 'del', key: entryKey(i) });
        next.log = next.log.slice(drop);
        next.compactIndex = index;
        ops.push({ type: 'put', key: keyCompaction, value: encodeMeta({ index: next.compactIndex, term: next.compactTerm }) });
      }
      return { ops, next, sync: true };
    });
  }

  /** Waits for queued writes, then closes LevelDB. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeChain.catch(() => {});
    await this.db.close();
  }

  // ---- internals ----

  private checkUsable(): void {
    if (this.poisoned !== null) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'the log store failed an earlier write and is stopped', { cause: this.poisoned });
    }
  }

  private lastIndexUnchecked(): number {
    return this.compactIndex + this.log.length;
  }

  private planState(): PlanState {
    return {
      log: this.log,
      compactIndex: this.compactIndex,
      compactTerm: this.compactTerm,
      hard: this.hard,
      snapMeta: this.snapMeta,
      conf: this.conf,
    };
  }

  private planSnapshot(next: PlanState, meta: SnapshotMetadata, ops: BatchOp[]): void {
    if (meta.index < next.snapMeta.index) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, `snapshot at ${meta.index} is older than the stored one at ${next.snapMeta.index}`);
    }
    for (let i = next.compactIndex + 1; i <= next.compactIndex + next.log.length; i++) ops.push({ type: 'del', key: entryKey(i) });
    next.log = [];
    next.compactIndex = meta.index;
    next.compactTerm = meta.term;
    next.snapMeta = cloneSnapMeta(meta);
    // The snapshot carries the membership as of its index; a conf state recorded earlier is superseded.
    next.conf = null;
    ops.push({ type: 'del', key: keyConfState });
    ops.push({ type: 'put', key: keySnapshot, value: encodeMeta(next.snapMeta) });
    ops.push({ type: 'put', key: keyCompaction, value: encodeMeta({ index: meta.index, term: meta.term }) });
    if (next.hard.commit < meta.index) {
      next.hard = { ...next.hard, commit: meta.index };
      ops.push({ type: 'put', key: keyHardState, value: encodeMeta(next.hard) });
    }
  }

  private planEntries(next: PlanState, entries: Entry[], ops: BatchOp[]): void {
    for (let k = 1; k < entries.length; k++) {
      if (entries[k]!.index !== entries[k - 1]!.index + 1) assert(false, `save: entries not contiguous at ${entries[k]!.index}`);
    }
    // Entries at or below the compaction point are committed and already folded into the snapshot.
    const fresh = entries.filter((e) => e.index > next.compactIndex);
    if (fresh.length === 0) return;
    const first = fresh[0]!.index;
    const last = next.compactIndex + next.log.length;
    assert(first <= last + 1, () => `save: entry ${first} would leave a gap after last index ${last}`);
    const newLast = fresh[fresh.length - 1]!.index;
    // Truncation on conflict: existing entries from `first` on are replaced; those beyond the new tail deleted.
    for (let i = newLast + 1; i <= last; i++) ops.push({ type: 'del', key: entryKey(i) });
    for (const e of fresh) {
      const { key, value } = encodeEntry(e);
      ops.push({ type: 'put', key, value });
    }
    const keepLen = first - next.compactIndex - 1;
    const appended = fresh.map((e) => ({ index: e.index, term: e.term, type: e.type, data: e.data }));
    if (next.log === this.log) {
      // The common case (append to the live log): edit the mirror in place after the batch succeeds, so a
      // Ready costs O(its entries), not O(live log).
      next.logEdit = { keepLen, appended };
    } else {
      next.log.length = keepLen;
      next.log.push(...appended);
    }
  }

  private enqueue(plan: () => { ops: BatchOp[]; next: PlanState; sync: boolean }): Promise<void> {
    const run = async (): Promise<void> => {
      this.checkUsable();
      const { ops, next, sync } = plan();
      if (ops.length > 0) {
        try {
          await this.db.batch(ops, { sync });
        } catch (err) {
          // Crash-stop: after a failed write or fsync the disk state is unknown; never continue on it.
          this.poisoned = err;
          this.logger.error({ err: (err as Error).message }, 'log store write failed; the store is poisoned');
          throw new MooringError(ErrorCode.STORAGE_FAILED, `log write failed: ${(err as Error).message}`, { cause: err });
        }
      }
      this.log = next.log;
      if (next.logEdit !== undefined) {
        this.log.length = next.logEdit.keepLen;
        for (const e of next.logEdit.appended) this.log.push(e);
      }
      this.compactIndex = next.compactIndex;
      this.compactTerm = next.compactTerm;
      this.hard = next.hard;
      this.snapMeta = next.snapMeta;
      this.conf = next.conf;
    };
    // Writes queued before close() still run; writes after it are refused.
    if (this.closed) return Promise.reject(new MooringError(ErrorCode.SHUTTING_DOWN, 'the log store is closed'));
    const p = this.writeChain.then(run);
    this.writeChain = p.catch(() => {});
    return p;
  }
}

interface PlanState {
  log: Entry[];
  /** Pending in-place edit of `log` (truncate to keepLen, then append), applied once the batch is durable. */
  logEdit?: { keepLen: number; appended: Entry[] };
  compactIndex: number;
  compactTerm: number;
  hard: HardState;
  snapMeta: SnapshotMetadata;
  conf: ConfState | null;
}
