/**
 * The Raft log as a write-ahead log of preallocated segment files: `Wal implements DurableLogStorage`, a drop-in for the
 * LevelDB `LogStore`.
 *
 * Files in the dir: `<seq as 16 hex digits>.wal` segments (each `walSegmentBytes`, zero-filled when created, so
 * fdatasync never has to flush a size change), a `LOCK` file (one process per dir), and `*.tmp` segments being
 * prepared (deleted on open). Records and batches: see format.ts.
 *
 * Writes. Every save() is ONE batch written with one write and made durable at once — the segment is opened O_DSYNC
 * (or, with walSyncMode 'fdatasync', one fdatasync follows the write) — and the driver calls save once per Ready
 * round: group commit. A save with `sync: false` that carries only a hard/conf state (a
 * commit-index change, which can be recomputed) is not written at once: it rides along with the next batch. So
 * every write is followed by its fdatasync before the next write starts, and after a crash only the LAST batch can
 * be torn — that is what lets open() tell a torn tail from damage in the middle.
 *
 * Reads. The core's synchronous reads are served from memory: the live log (entries after the compaction point)
 * is kept as Entry objects, together with the segment that holds each entry's latest record. Memory grows with
 * the uncompacted log, bounded by the driver's snapshots and compact() (as with LogStore).
 *
 * Open. Segments are replayed in order; a batch is applied only if all its records verify. At the first batch that
 * does not verify: if the rest of its segment is zeros it is the clean end of that segment; if a valid batch
 * follows anywhere (later in the segment or in a later segment) the log is damaged in the middle → CORRUPT_LOG
 * (never skipped); otherwise it is the torn tail of the last write: the torn bytes are zeroed (fsynced) and later
 * empty segments removed. A commit index beyond the surviving log is lowered (see LogStore for why that is the
 * best a node can do).
 *
 * Compaction deletes whole segments: each new segment starts with a STATE record (hard state, snapshot metadata,
 * compaction point, conf state), so every segment older than the one holding the first live entry can go.
 *
 * Recovery. A damaged last batch that is provably torn (format.ts: its trailer is missing) was never completely
 * written, so never acknowledged: cutting it loses nothing anyone was promised. Any other damaged last batch may
 * have been written, synced and acknowledged (entries counted toward a commit, a vote granted) before a byte of it
 * went bad; cutting it silently would let this node vote as if it never had those entries (the full-node
 * simulator's seed 11139 lost 7 acknowledged writes that way). So open() first creates a RECOVERING marker file
 * (durably), then cuts; while the marker exists the hard state says `recovering` and the Raft core does not campaign
 * until a leader has brought this node up to date (core.ts), when save() removes it. The marker keeps the cut batch's
 * LOG_END (the log's end before the cut: a bound on what this node may have acknowledged; format.ts), and the core
 * votes only for candidates at least that up to date (HardState.recoveringBound). Terms and votes are
 * never only in the last batch: a save that changes them writes its hard state twice (a second one-record batch), so
 * cutting a damaged last batch never forgets a vote that was sent.
 *
 * Crash-stop: a failed write or fdatasync poisons the WAL: that call rejects with STORAGE_FAILED and every later
 * call throws it. Nothing is retried (after a failed fsync the page cache may have dropped the data: Linux marks
 * the pages clean, so a retry could "succeed" without the data).
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ErrorCode, MooringError, assert } from '../../errors.js';
import { silentLogger, type LoggerLike } from '../../transport/logger.js';
import type { DurableLogStorage, SaveBatch, SaveOptions } from '../log-store.js';
import type { ConfState, Entry, HardState, LogPosition, Snapshot, SnapshotMetadata } from '../core/types.js';
import { cloneConfState, emptyConfState, reaches } from '../core/util.js';
import { windowEntries, windowTerm } from '../log-window.js';
import {
  beginPayloadBytes,
  batchTrailer,
  batchTrailerBytes,
  beginRecordBytes,
  decodeOp,
  decodeSegmentHeader,
  encodeSegmentHeader,
  logEndPayloadBytes,
  logEndRecordBytes,
  opBytes,
  putBegin,
  putOp,
  readBegin,
  readRecord,
  RecordType,
  segmentHeaderBytes,
  type WalOp,
} from './format.js';
import type { WalDirLock, WalFile, WalFs, WalOpenMode } from './fs.js';
import { nodeWalFs } from './node-fs.js';

/** Size of each preallocated segment file. etcd uses 64 MiB; 16 MiB keeps a node's start (zero-fill) short. */
export const defaultWalSegmentBytes = 16 * 1024 * 1024;
/** Smallest segment allowed (tests use small segments to exercise rolling and compaction). */
export const minWalSegmentBytes = 1024;
const zeroChunkBytes = 1024 * 1024;
const randomSalt = (): number => randomBytes(4).readUInt32LE(0);
const beginLengthWord = Buffer.from([beginPayloadBytes, 0, 0, 0]);
const segmentNamePattern = /^([0-9a-f]{16})\.wal$/;

/** The file operations on the write path, replaceable to inject faults (tests). Below them: `WalOptions.fs`. */
export interface WalIo {
  write(fh: WalFile, buf: Buffer, position: number): Promise<void>;
  datasync(fh: WalFile): Promise<void>;
}

/** Writes all of `buf` at `position` (a write may be short: the rest is written by the next call). */
async function writeFully(fh: WalFile, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesWritten } = await fh.write(buf, done, buf.byteLength - done, position + done);
    if (bytesWritten <= 0) throw new Error(`write of ${buf.byteLength - done} bytes at ${position + done} wrote nothing`);
    done += bytesWritten;
  }
}

const realIo: WalIo = {
  write: writeFully,
  datasync: (fh) => fh.datasync(),
};

/**
 * How a batch is made durable. 'o_dsync' (default): the segment is opened with O_DSYNC, so the one write of a batch
 * returns only once its data is durable (POSIX: as if followed by fdatasync) — one thread-pool round trip per save
 * instead of two. 'fdatasync': a plain write, then fdatasync.
 */
export type WalSyncMode = 'o_dsync' | 'fdatasync';
export const defaultWalSyncMode: WalSyncMode = 'o_dsync';

export interface WalOptions {
  logger?: LoggerLike;
  walSegmentBytes?: number;
  walSyncMode?: WalSyncMode;
  io?: Partial<WalIo>;
  /** The file system (default: node:fs). The simulator runs the WAL on a simulated one. */
  fs?: WalFs;
  /** Source of segment salts (default: crypto-random; the simulator passes a seeded one). */
  salt?: () => number;
}

/** What open() found and repaired. */
export interface WalRecoveryReport {
  segments: number;
  batches: number;
  loadedEntries: number;
  /** Where a torn tail was cut (null when the log ended cleanly). */
  cutAt: { segment: number; offset: number } | null;
  /** Bytes zeroed at the torn tail. */
  cutBytes: number;
  /** The commit index read from disk when it had to be lowered to the last valid index. */
  commitClampedFrom: number | null;
  /**
   * The cut tail was a completely written batch that failed its checksum (or could not be told from one), not a torn
   * write: it may have been acknowledged, so the node starts recovering (see "Recovery" above).
   */
  cutSuspect: boolean;
}

/** The marker file whose presence means the node is recovering (see "Recovery" above). */
export const recoveringMarker = 'RECOVERING';

interface State {
  /** Entries after the compaction point: log[i] has index compactIndex + 1 + i. */
  log: Entry[];
  /** segs[i]: the segment holding log[i]'s latest record (non-decreasing). */
  segs: number[];
  compactIndex: number;
  /** NaN while replay has not yet learnt it (entries before a gap are in deleted segments). */
  compactTerm: number;
  hard: HardState;
  snapMeta: SnapshotMetadata;
  conf: ConfState | null;
}

interface OpenSegment {
  seq: number;
  salt: number;
  fh: WalFile;
  /** Preallocated bytes (writes past it extend the file). */
  size: number;
  /** Where the next batch goes. */
  offset: number;
  /** Format-2 segment: its batches end with the trailer. */
  trailer: boolean;
}

const segmentName = (seq: number): string => `${seq.toString(16).padStart(16, '0')}.wal`;
const cloneMeta = (m: SnapshotMetadata): SnapshotMetadata => ({ index: m.index, term: m.term, confState: cloneConfState(m.confState) });

function compactTo(s: State, index: number, term: number): void {
  if (index < s.compactIndex) return;
  if (index === s.compactIndex) {
    if (Number.isNaN(s.compactTerm)) s.compactTerm = term;
    return;
  }
  const drop = Math.min(index - s.compactIndex, s.log.length);
  s.log = s.log.slice(drop);
  s.segs = s.segs.slice(drop);
  s.compactIndex = index;
  s.compactTerm = term;
}

/** Applies one op to the state: the same code for replay and for the live store (after the batch is durable). */
function applyOp(s: State, op: WalOp, seg: number): void {
  switch (op.kind) {
    case 'entry': {
      const e = op.entry;
      if (e.index <= s.compactIndex) return; // already folded into a snapshot
      const last = s.compactIndex + s.log.length;
      if (e.index > last + 1) {
        // Only on replay: the entries before it lived in deleted segments; a later compaction point must cover them.
        s.log = [];
        s.segs = [];
        s.compactIndex = e.index - 1;
        s.compactTerm = Number.NaN;
      } else if (e.index <= last) {
        const keep = e.index - s.compactIndex - 1;
        s.log.length = keep;
        s.segs.length = keep;
      }
      s.log.push(e);
      s.segs.push(seg);
      return;
    }
    case 'hardState':
      s.hard = op.hard;
      return;
    case 'confState':
      s.conf = op.conf;
      return;
    case 'snapshot':
      s.log = [];
      s.segs = [];
      s.compactIndex = op.meta.index;
      s.compactTerm = op.meta.term;
      s.snapMeta = op.meta;
      // The snapshot carries the membership as of its index; a conf state recorded earlier is superseded.
      s.conf = null;
      if (s.hard.commit < op.meta.index) s.hard = { ...s.hard, commit: op.meta.index };
      return;
    case 'compact':
      compactTo(s, op.index, op.term);
      if (op.snapMeta !== null && op.snapMeta.index > s.snapMeta.index) s.snapMeta = op.snapMeta;
      return;
    case 'state':
      s.hard = op.hard;
      s.snapMeta = op.snapMeta;
      s.conf = op.conf;
      compactTo(s, op.compactIndex, op.compactTerm);
      return;
    case 'logEnd':
      return; // a bound for recovery and a check of replay (replayBatch), nothing to apply
  }
}

/** The log's end in `s` (the term is NaN while replay has not learnt the compaction term). */
function stateLogEnd(s: State): LogPosition {
  const n = s.log.length;
  return { index: s.compactIndex + n, term: n > 0 ? s.log[n - 1]!.term : s.compactTerm };
}

/** Where the log ends once `ops` are applied to a log ending at `end` with compaction point `compactIndex` (applyOp's rules). */
function logEndAfter(end: LogPosition, compactIndex: number, ops: readonly WalOp[]): LogPosition {
  let e = end;
  let ci = compactIndex;
  for (const op of ops) {
    if (op.kind === 'entry') {
      if (op.entry.index > ci) e = { index: op.entry.index, term: op.entry.term };
    } else if (op.kind === 'snapshot') {
      e = { index: op.meta.index, term: op.meta.term };
      ci = op.meta.index;
    } else if (op.kind === 'compact' || op.kind === 'state') {
      const [index, term] = op.kind === 'compact' ? [op.index, op.term] : [op.compactIndex, op.compactTerm];
      if (index > e.index) e = { index, term };
      ci = Math.max(ci, index);
    }
  }
  return e;
}

/**
 * The last valid batch's LOG_END must name where the whole replay ended: anything else is a bug or undetected
 * damage. (Not checked per batch: part way through, replay may lack entries of deleted segments that a later
 * compaction record covers.)
 */
function checkLogEnd(s: State, mark: { end: LogPosition; seq: number; off: number } | null): void {
  if (mark === null) return; // written before LOG_END records existed
  const at = stateLogEnd(s);
  if (at.index !== mark.end.index || at.term !== mark.end.term) {
    throw corrupt(`WAL segment ${segmentName(mark.seq)} offset ${mark.off}: the last batch says the log ends at ${mark.end.index} (term ${mark.end.term}), replay reached ${at.index} (term ${at.term})`);
  }
}

/** The bigger of two log ends in Raft's up-to-date order (the later term; within a term, the higher index). */
function laterLogEnd(a: LogPosition, b: LogPosition): LogPosition {
  return reaches(a.index, a.term, b) ? a : b;
}

/**
 * The log end a damaged last batch at [off, written) carried (its LOG_END records: the first one after the BEGIN,
 * the last one before the trailer; one damaged byte leaves one of them intact). Null when neither verifies (more
 * damage than one byte, or a batch written before LOG_END records existed).
 */
function damagedBatchLogEnd(buf: Buffer, off: number, written: number, salt: number, trailer: boolean): LogPosition | null {
  const read = (at: number, end: number): LogPosition | null => {
    if (at < off + beginRecordBytes) return null;
    const r = readRecord(buf, at, end, salt);
    if (r === null || r.type !== RecordType.logEnd || r.payload.byteLength !== logEndPayloadBytes) return null;
    const op = decodeOp(r.type, r.payload);
    return op.kind === 'logEnd' ? op.end : null;
  };
  const first = read(off + beginRecordBytes, written);
  if (first !== null) return first;
  // The BEGIN gives the batch's end; if it is the damaged record, the trailer is intact and ends the written bytes.
  const b = readBegin(buf, off, buf.byteLength, salt);
  const end = b !== null ? off + b.bytes : written;
  if (end > buf.byteLength) return null;
  return read(end - (trailer ? batchTrailerBytes : 0) - logEndRecordBytes, end);
}

function isZero(buf: Buffer, from: number, to: number): boolean {
  const zeros = Buffer.alloc(Math.min(65536, Math.max(0, to - from)));
  for (let off = from; off < to; off += zeros.length) {
    const end = Math.min(to, off + zeros.length);
    if (buf.compare(zeros, 0, end - off, off, end) !== 0) return false;
  }
  return true;
}

function lastNonZero(buf: Buffer, from: number): number {
  for (let i = buf.byteLength - 1; i >= from; i--) if (buf[i] !== 0) return i;
  return from - 1;
}

/** Is there a valid BEGIN record anywhere in [from, end)? Only called on a damaged region. */
function findBegin(buf: Buffer, from: number, salt: number): boolean {
  // Jump between occurrences of the BEGIN length word (native search) instead of testing every offset.
  for (let off = buf.indexOf(beginLengthWord, from); off !== -1 && off + beginRecordBytes <= buf.byteLength; off = buf.indexOf(beginLengthWord, off + 1)) {
    if (readBegin(buf, off, buf.byteLength, salt) !== null) return true;
  }
  return false;
}

/** The unit a disk writes atomically (or not at all) in a torn write: 512-byte sectors (a 4 KiB device tears in 8 of them). */
const tornSectorBytes = 512;

/**
 * Can the damaged last batch at [off, written) only be a torn write (never completely written, so never
 * acknowledged)? A torn write leaves zeros where it did not reach the disk (a prefix of it, or some of its sectors
 * written back and others not); a damaged complete batch differs from what was written in one byte, and one byte
 * cannot make two zero bytes. So a batch is provably torn when:
 * - its BEGIN does not verify and fewer bytes than a BEGIN were written at all, or its first sector piece (≥ 2 bytes:
 *   it holds the BEGIN, never zero) is all zeros;
 * - its BEGIN verifies and the file ends inside it, or its trailer's last two bytes (never zero when written) are
 *   zeros, or a whole sector piece of it at or after its first damaged record is all zeros (a sector that was never
 *   written back). Natural zeros would need a full 512-byte sector of zeros inside an entry after the damage: the
 *   master's commands never hold one (an entry payload of user bytes could; see docs/raft.md).
 * Anything else (a format-1 batch has no trailer and is only judged by its BEGIN) may be a complete batch that was
 * damaged after it was acknowledged: suspect.
 */
function provablyTorn(buf: Buffer, off: number, written: number, salt: number, trailer: boolean): boolean {
  const firstPieceEnd = Math.min(buf.byteLength, (Math.floor(off / tornSectorBytes) + 1) * tornSectorBytes);
  const b = readBegin(buf, off, buf.byteLength, salt);
  if (b === null) return written - off < beginRecordBytes || (firstPieceEnd - off >= 2 && isZero(buf, off, firstPieceEnd));
  const end = off + b.bytes;
  if (end > buf.byteLength) return true; // the file ends inside it (a flipped byte does not shorten a file)
  if (!trailer || b.bytes < beginRecordBytes + batchTrailerBytes) return false;
  if (buf[end - 1] === 0 && buf[end - 2] === 0) return true;
  // The first record that does not verify: sectors before it were written back (their records verify).
  let r = off + beginRecordBytes;
  for (let i = 0; i < b.records; i++) {
    const rec = readRecord(buf, r, end - batchTrailerBytes, salt);
    if (rec === null) break;
    r = rec.next;
  }
  for (let ps = off, pe = firstPieceEnd; ps < end; ps = pe, pe = Math.min(end, pe + tornSectorBytes)) {
    if (pe <= r) continue;
    if (pe - ps >= 2 && isZero(buf, ps, Math.min(pe, end))) return true;
  }
  return false;
}

function corrupt(msg: string): MooringError {
  return new MooringError(ErrorCode.CORRUPT_LOG, msg);
}

export class Wal implements DurableLogStorage {
  private readonly logger: LoggerLike;
  private readonly segmentBytes: number;
  private readonly io: WalIo;
  private readonly syncMode: WalSyncMode;
  private readonly fs: WalFs;
  private readonly salt: () => number;
  private s: State = { log: [], segs: [], compactIndex: 0, compactTerm: 0, hard: { term: 0, vote: null, commit: 0 }, snapMeta: { index: 0, term: 0, confState: emptyConfState() }, conf: null };
  /** Seqs of the segment files on disk, ascending; the last one is `cur`. */
  private segments: number[] = [];
  private cur: OpenSegment | null = null;
  private nextBatchSeq = 1;
  private preparing: Promise<{ seq: number; salt: number; tmp: string }> | null = null;
  /** A sync:false hard/conf state, held in memory until the next batch carries it. */
  private pending: WalOp[] = [];
  private poisoned: unknown = null;
  private closed = false;
  private writeChain: Promise<void> = Promise.resolve();
  recovery: WalRecoveryReport = { segments: 0, batches: 0, loadedEntries: 0, cutAt: null, cutBytes: 0, commitClampedFrom: null, cutSuspect: false };
  /** The RECOVERING marker exists (the hard state's `recovering`). */
  private recovering = false;
  /** The log end the marker keeps (HardState.recoveringBound); null when unknown. */
  private recoveringBound: LogPosition | null = null;

  private constructor(readonly dir: string, private readonly lock: WalDirLock, opts: WalOptions) {
    this.fs = opts.fs ?? nodeWalFs;
    this.salt = opts.salt ?? randomSalt;
    this.logger = opts.logger ?? silentLogger;
    this.segmentBytes = opts.walSegmentBytes ?? defaultWalSegmentBytes;
    this.io = { ...realIo, ...opts.io };
    this.syncMode = opts.walSyncMode ?? defaultWalSyncMode;
    if (!Number.isInteger(this.segmentBytes) || this.segmentBytes < minWalSegmentBytes) {
      throw new MooringError(ErrorCode.INVALID_CONFIG, `walSegmentBytes must be an integer ≥ ${minWalSegmentBytes}, got ${this.segmentBytes}`);
    }
  }

  /** Opens (creating if needed) the WAL in `dir`: takes the dir lock, replays and verifies it, repairs a torn tail. */
  static async open(dir: string, opts: WalOptions = {}): Promise<Wal> {
    const fs = opts.fs ?? nodeWalFs;
    try {
      fs.mkdirp(dir);
    } catch (err) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, `cannot create the WAL dir ${dir}: ${(err as Error).message}`, { cause: err });
    }
    const lock = fs.lock(dir);
    let wal: Wal | null = null;
    try {
      wal = new Wal(dir, lock, opts);
      await wal.load();
      return wal;
    } catch (err) {
      await wal?.cur?.fh.close().catch(() => {});
      lock.release();
      if (err instanceof MooringError) throw err;
      throw new MooringError(ErrorCode.STORAGE_FAILED, `cannot open the WAL at ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** True if `dir` holds WAL segments. */
  static exists(dir: string, fs: WalFs = nodeWalFs): boolean {
    try {
      return fs.readdir(dir).some((n) => segmentNamePattern.test(n));
    } catch {
      return false;
    }
  }

  // ---------------------------------------------------------------- open / replay

  private async load(): Promise<void> {
    const fs = this.fs;
    const names = fs.readdir(this.dir);
    for (const n of names) if (n.endsWith('.tmp')) fs.removeSync(path.join(this.dir, n));
    const seqs = names.flatMap((n) => {
      const m = segmentNamePattern.exec(n);
      return m === null ? [] : [Number.parseInt(m[1]!, 16)];
    }).sort((a, b) => a - b);
    for (let k = 1; k < seqs.length; k++) {
      if (seqs[k] !== seqs[k - 1]! + 1) throw corrupt(`WAL segment ${segmentName(seqs[k - 1]! + 1)} is missing in ${this.dir}`);
    }
    if (seqs.length === 0) {
      await this.installSegment(await this.prepareSegment(1));
      return;
    }

    const s = this.s;
    let expected: number | null = null;
    let batches = 0;
    let torn: { k: number; offset: number; buf: Buffer; trailer: boolean; salt: number } | null = null;
    let endOffset = segmentHeaderBytes;
    let endSalt = 0;
    let endTrailer = true;
    /** The bytes of the segment read last: the last one kept (a cut stops at the damaged segment). */
    let lastBuf: Buffer | null = null;
    /** The LOG_END of the last valid batch (null if it had none): replay must end where it says. */
    let lastMark: { end: LogPosition; seq: number; off: number } | null = null;
    for (let k = 0; k < seqs.length && torn === null; k++) {
      const seq = seqs[k]!;
      const buf = fs.readFile(path.join(this.dir, segmentName(seq)));
      lastBuf = buf;
      const header = decodeSegmentHeader(buf);
      if (header === null || header.seq !== seq) throw corrupt(`WAL segment ${segmentName(seq)} has no valid header`);
      let off = segmentHeaderBytes;
      for (;;) {
        const b = readBegin(buf, off, buf.byteLength, header.salt);
        if (b === null) break;
        if (expected !== null && b.seq !== expected) {
          throw corrupt(`WAL segment ${segmentName(seq)} offset ${off}: batch ${b.seq} where ${expected} was expected (a batch is missing)`);
        }
        const end = off + b.bytes;
        if (end > buf.byteLength) break;
        const ops: WalOp[] = [];
        let r = off + beginRecordBytes;
        for (let i = 0; i < b.records; i++) {
          const rec = readRecord(buf, r, end, header.salt);
          if (rec === null) break;
          ops.push(decodeOp(rec.type, rec.payload));
          r = rec.next;
        }
        const trailerOk = header.version === 1 || (r + batchTrailerBytes === end && buf.compare(batchTrailer, 0, batchTrailerBytes, r, end) === 0);
        if (ops.length !== b.records || r !== (header.version === 1 ? end : end - batchTrailerBytes) || !trailerOk) break;
        for (const op of ops) applyOp(s, op, seq);
        const mark = ops[ops.length - 1];
        lastMark = mark?.kind === 'logEnd' ? { end: mark.end, seq, off } : null;
        expected = b.seq + 1;
        batches++;
        off = end;
      }
      endOffset = off;
      endSalt = header.salt;
      endTrailer = header.version !== 1;
      if (isZero(buf, off, buf.byteLength)) continue; // the clean end of this segment
      if (findBegin(buf, off + 1, header.salt)) {
        throw corrupt(`WAL segment ${segmentName(seq)} offset ${off}: a damaged batch followed by valid ones (corruption in the middle of the log, not a torn tail)`);
      }
      torn = { k, offset: off, buf, trailer: header.version !== 1, salt: header.salt };
    }

    if (torn !== null) {
      // Only the last write can be torn: a valid batch in any later segment means this one had been made durable.
      for (let j = torn.k + 1; j < seqs.length; j++) {
        const buf = fs.readFile(path.join(this.dir, segmentName(seqs[j]!)));
        const header = decodeSegmentHeader(buf);
        if (header !== null && findBegin(buf, segmentHeaderBytes, header.salt)) {
          throw corrupt(`WAL segment ${segmentName(seqs[torn.k]!)} offset ${torn.offset}: a damaged batch followed by valid ones in ${segmentName(seqs[j]!)}`);
        }
      }
      const cutTo = lastNonZero(torn.buf, torn.offset) + 1;
      const suspect = !provablyTorn(torn.buf, torn.offset, cutTo, torn.salt, torn.trailer);
      // The marker first: once the damaged bytes are zeroed nothing else would show that this node lost a tail. It
      // keeps the log's end before the cut (the bound on what this node may have acknowledged); cut again while
      // recovering, the later of the two ends (unknown if either is).
      if (suspect) {
        const lost = damagedBatchLogEnd(torn.buf, torn.offset, cutTo, torn.salt, torn.trailer);
        const marked = fs.readdir(this.dir).includes(recoveringMarker);
        const before = marked ? this.readMarkerBound() : lost;
        const bound = before === null || lost === null ? null : laterLogEnd(before, lost);
        if (!marked || before?.index !== bound?.index || before?.term !== bound?.term) {
          await this.writeMarker({ cutAt: { segment: seqs[torn.k]!, offset: torn.offset }, cutBytes: cutTo - torn.offset, lostTailEnd: bound });
        }
      }
      this.recovery.cutSuspect = suspect;
      fs.zeroRangeSync(path.join(this.dir, segmentName(seqs[torn.k]!)), torn.offset, cutTo);
      for (const seq of seqs.splice(torn.k + 1)) fs.removeSync(path.join(this.dir, segmentName(seq)));
      fs.fsyncDirSync(this.dir);
      this.recovery.cutAt = { segment: seqs[torn.k]!, offset: torn.offset };
      this.recovery.cutBytes = cutTo - torn.offset;
    }

    if (Number.isNaN(s.compactTerm)) {
      throw corrupt(`WAL in ${this.dir}: entries up to ${s.compactIndex} are missing (an old segment was lost) and no snapshot covers them`);
    }
    checkLogEnd(s, lastMark);
    this.segments = seqs;
    const lastSeq = seqs[seqs.length - 1]!;
    const fh = await fs.open(path.join(this.dir, segmentName(lastSeq)), this.appendMode());
    this.cur = { seq: lastSeq, salt: endSalt, fh, size: Math.max(fs.size(path.join(this.dir, segmentName(lastSeq))), segmentHeaderBytes), offset: endOffset, trailer: endTrailer };
    await this.makeReadTailDurable(lastBuf!);
    this.recovering = fs.readdir(this.dir).includes(recoveringMarker);
    this.recoveringBound = this.recovering ? this.readMarkerBound() : null;
    this.nextBatchSeq = expected ?? 1;

    const lastValid = this.lastIndexUnchecked();
    this.recovery = { ...this.recovery, segments: seqs.length, batches, loadedEntries: s.log.length };
    // A snapshot is committed by definition.
    if (s.hard.commit < s.compactIndex) s.hard = { ...s.hard, commit: s.compactIndex };
    if (s.hard.commit > lastValid) {
      this.recovery.commitClampedFrom = s.hard.commit;
      await this.writeBatch([{ kind: 'hardState', hard: { ...s.hard, commit: lastValid } }]);
    }
    if (this.recovery.cutAt !== null || this.recovery.commitClampedFrom !== null) {
      this.logger.warn({ ...this.recovery, lastValidIndex: lastValid }, `WAL tail cut back: ${this.recovery.cutBytes} ${this.recovery.cutSuspect ? 'damaged' : 'torn'} bytes zeroed; log ends at ${lastValid}`);
    }
    if (this.recovering) {
      this.logger.warn({ dir: this.dir, lostTailEnd: this.recoveringBound }, 'this node lost the end of its WAL (a damaged last batch that may have been acknowledged): it will not campaign, and votes only for a candidate holding the log it lost, until a leader has brought it up to date (docs/raft.md, "Recovering a damaged tail")');
    }
  }

  // ---------------------------------------------------------------- Storage (synchronous, from memory)

  initialState(): { hardState: HardState; confState: ConfState } {
    this.checkUsable();
    const hardState: HardState = { ...this.s.hard };
    if (this.recovering) {
      hardState.recovering = true;
      if (this.recoveringBound !== null) hardState.recoveringBound = { ...this.recoveringBound };
    }
    // The membership of the snapshot point, where a restarted core starts (see Storage.initialState).
    return { hardState, confState: cloneConfState(this.s.snapMeta.confState) };
  }

  /** The latest membership the driver recorded (save({confState})), or null: for inspection and conversion. */
  recordedConfState(): ConfState | null {
    this.checkUsable();
    return this.s.conf === null ? null : cloneConfState(this.s.conf);
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    this.checkUsable();
    return windowEntries(this.s, lo, hi, maxBytes);
  }

  term(i: number): number {
    this.checkUsable();
    return windowTerm(this.s, i);
  }

  firstIndex(): number {
    this.checkUsable();
    return this.s.compactIndex + 1;
  }

  lastIndex(): number {
    this.checkUsable();
    return this.lastIndexUnchecked();
  }

  /** The latest snapshot point. The image itself lives with the state machine, so `data` is empty here. */
  snapshot(): Snapshot {
    this.checkUsable();
    return { metadata: cloneMeta(this.s.snapMeta), data: new Uint8Array(0) };
  }

  hardState(): HardState {
    this.checkUsable();
    return { ...this.s.hard };
  }

  get entryCount(): number {
    return this.s.log.length;
  }

  /** Segment files on disk (compaction deletes whole ones). */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Where the next batch will be written (tests use it to tear the last batch). */
  get position(): { segment: number; offset: number; file: string } {
    const cur = this.cur!;
    return { segment: cur.seq, offset: cur.offset, file: path.join(this.dir, segmentName(cur.seq)) };
  }

  // ---------------------------------------------------------------- writes

  /**
   * Persists one Ready as ONE batch with one fdatasync: snapshot point, then entries (an entry whose index exists
   * replaces it and every later one), then hard state / conf state. Memory changes only after the batch is durable.
   */
  save(batch: SaveBatch, opts: SaveOptions): Promise<void> {
    return this.enqueue(async () => {
      const s = this.s;
      const ops: WalOp[] = [];
      let compactIndex = s.compactIndex;
      let last = this.lastIndexUnchecked();
      if (batch.snapshotMeta !== undefined) {
        if (batch.snapshotMeta.index < s.snapMeta.index) {
          throw new MooringError(ErrorCode.INVALID_ARGUMENT, `snapshot at ${batch.snapshotMeta.index} is older than the stored one at ${s.snapMeta.index}`);
        }
        ops.push({ kind: 'snapshot', meta: cloneMeta(batch.snapshotMeta) });
        compactIndex = last = batch.snapshotMeta.index;
      }
      const entries = batch.entries ?? [];
      for (let k = 1; k < entries.length; k++) {
        if (entries[k]!.index !== entries[k - 1]!.index + 1) assert(false, `save: entries not contiguous at ${entries[k]!.index}`);
      }
      // Entries at or below the compaction point are committed and already folded into the snapshot.
      const fresh = entries.filter((e) => e.index > compactIndex);
      if (fresh.length > 0) {
        assert(fresh[0]!.index <= last + 1, () => `save: entry ${fresh[0]!.index} would leave a gap after last index ${last}`);
        for (const e of fresh) ops.push({ kind: 'entry', entry: { index: e.index, term: e.term, type: e.type, data: e.data } });
      }
      const meta: WalOp[] = [];
      const hs = batch.hardState;
      if (hs !== undefined) meta.push({ kind: 'hardState', hard: { term: hs.term, vote: hs.vote, commit: hs.commit } });
      // A term or vote written only in the last batch would be lost if that batch were damaged and cut: written
      // twice, the first copy is never the last batch once save() resolved (see "Recovery" above).
      const voteChanged = hs !== undefined && (hs.term !== s.hard.term || hs.vote !== s.hard.vote);
      // Recovery ends once what the batch carries is durable (the core clears `recovering` with the entries that
      // brought this node up to date).
      const recoveryEnds = hs !== undefined && this.recovering && hs.recovering !== true;
      if (batch.confState !== undefined) meta.push({ kind: 'confState', conf: cloneConfState(batch.confState) });
      if (ops.length === 0 && !opts.sync) {
        // Nothing that promises anything (a commit-index change): keep it in memory until the next batch.
        for (const op of meta) {
          applyOp(s, op, this.cur!.seq);
          this.pending = this.pending.filter((p) => p.kind !== op.kind);
          this.pending.push(op);
        }
        if (recoveryEnds) await this.removeMarker();
        return;
      }
      ops.push(...meta);
      if (ops.length > 0) await this.writeBatch(ops);
      if (voteChanged) await this.writeBatch([{ kind: 'hardState', hard: { ...s.hard } }]);
      if (recoveryEnds) await this.removeMarker();
    });
  }

  /** Replaces the log by the snapshot point (durably): every entry is dropped, firstIndex = meta.index + 1. */
  applySnapshot(meta: SnapshotMetadata): Promise<void> {
    return this.save({ snapshotMeta: meta }, { sync: true }).then(() => this.enqueue(() => this.deleteSegmentsBehind()));
  }

  /**
   * Drops entries ≤ index (durably), keeping the term of `index`; records `snapshotMeta` (if newer) so snapshot()
   * can serve followers behind firstIndex(); then deletes every segment that holds no live entry.
   */
  compact(index: number, snapshotMeta?: SnapshotMetadata): Promise<void> {
    return this.enqueue(async () => {
      const s = this.s;
      const newerMeta = snapshotMeta !== undefined && snapshotMeta.index > s.snapMeta.index ? cloneMeta(snapshotMeta) : null;
      const snapIndex = newerMeta?.index ?? s.snapMeta.index;
      if (index > s.compactIndex) {
        const last = this.lastIndexUnchecked();
        if (index > last) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `compact(${index}) beyond last index ${last}`);
        if (snapIndex < index) {
          throw new MooringError(ErrorCode.INVALID_ARGUMENT, `compact(${index}) without a snapshot covering it (latest snapshot at ${snapIndex})`);
        }
        await this.writeBatch([{ kind: 'compact', index, term: this.term(index), snapMeta: newerMeta }]);
      } else if (newerMeta !== null) {
        await this.writeBatch([{ kind: 'compact', index: s.compactIndex, term: s.compactTerm, snapMeta: newerMeta }]);
      } else {
        return;
      }
      await this.deleteSegmentsBehind();
    });
  }

  /** Waits for queued writes, writes a held commit-index change, closes the files and releases the lock. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    const flush = this.enqueue(async () => {
      if (this.pending.length > 0) await this.writeBatch([]);
    });
    this.closed = true;
    await flush.catch(() => {});
    await this.writeChain.catch(() => {});
    const prep = this.preparing;
    this.preparing = null;
    await prep?.catch(() => {});
    await this.cur?.fh.close().catch(() => {});
    this.lock.release();
  }

  /**
   * For crash tests: drops the WAL as a killed process would (held sync:false state is lost, nothing is flushed),
   * closing the file and releasing the lock so the same process can reopen the dir.
   */
  async abandonForTest(): Promise<void> {
    this.closed = true;
    await this.writeChain.catch(() => {});
    await this.preparing?.catch(() => {});
    await this.cur?.fh.close().catch(() => {});
    this.lock.release();
  }

  // ---------------------------------------------------------------- internals

  private checkUsable(): void {
    if (this.poisoned !== null) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'the WAL failed an earlier write or fsync and is stopped', { cause: this.poisoned });
    }
  }

  private lastIndexUnchecked(): number {
    return this.s.compactIndex + this.s.log.length;
  }

  private stateOp(): WalOp {
    const s = this.s;
    return { kind: 'state', hard: { ...s.hard }, snapMeta: cloneMeta(s.snapMeta), compactIndex: s.compactIndex, compactTerm: s.compactTerm, conf: s.conf === null ? null : cloneConfState(s.conf) };
  }

  /** Writes `ops` (after any held sync:false state) as one batch, fdatasyncs, then applies them to memory. */
  private async writeBatch(batchOps: WalOp[]): Promise<void> {
    let ops = this.pending.length > 0 ? [...this.pending, ...batchOps] : batchOps;
    let bytes = beginRecordBytes + batchTrailerBytes + 2 * logEndRecordBytes;
    for (const op of ops) bytes += opBytes(op);
    let cur = this.cur!;
    if (cur.offset + bytes > cur.size && cur.offset > segmentHeaderBytes) {
      cur = await this.roll();
      // The new segment starts with the full state, so the older ones can be deleted once no live entry is in them.
      const state = this.stateOp();
      ops = [state, ...ops];
      bytes += opBytes(state);
    }
    // The batch opens and closes with the log's end after it (see RecordType.logEnd).
    const mark: WalOp = { kind: 'logEnd', end: logEndAfter(stateLogEnd(this.s), this.s.compactIndex, ops) };
    ops = [mark, ...ops, mark];
    if (!cur.trailer) bytes -= batchTrailerBytes; // a format-1 segment opened from an older version
    assert(bytes < 0x1_0000_0000, () => `a WAL batch of ${bytes} bytes is too large`);
    const buf = Buffer.allocUnsafe(bytes);
    let off = putBegin(buf, 0, { seq: this.nextBatchSeq, bytes, records: ops.length }, cur.salt);
    for (const op of ops) off = putOp(buf, off, op, cur.salt);
    if (cur.trailer) off += batchTrailer.copy(buf, off);
    assert(off === bytes, () => `WAL batch encoded to ${off} bytes, sized ${bytes}`);
    try {
      await this.io.write(cur.fh, buf, cur.offset);
      if (this.syncMode === 'fdatasync') await this.io.datasync(cur.fh);
    } catch (err) {
      throw this.poison(err, 'write');
    }
    cur.offset += bytes;
    this.nextBatchSeq++;
    this.pending = [];
    for (const op of ops) applyOp(this.s, op, cur.seq);
    // Prepare the next segment in the background once this one is half full, so a roll rarely waits for zero-fill.
    if (this.preparing === null && cur.offset > cur.size / 2) {
      this.preparing = this.prepareSegment(cur.seq + 1);
      this.preparing.catch(() => {}); // surfaced at the roll that needs it
    }
  }

  private appendMode(): WalOpenMode {
    return this.syncMode === 'o_dsync' ? 'append-dsync' : 'append';
  }

  private async roll(): Promise<OpenSegment> {
    const old = this.cur!;
    try {
      const prepared = await (this.preparing ?? this.prepareSegment(old.seq + 1));
      this.preparing = null;
      await this.installSegment(prepared);
    } catch (err) {
      throw this.poison(err, 'segment roll');
    }
    await old.fh.close().catch(() => {});
    return this.cur!;
  }

  /** Creates `<seq>.wal.tmp`: zero-filled to walSegmentBytes, header written, fsynced. */
  private async prepareSegment(seq: number): Promise<{ seq: number; salt: number; tmp: string }> {
    const tmp = path.join(this.dir, `${segmentName(seq)}.tmp`);
    const salt = this.salt() >>> 0;
    const fh = await this.fs.open(tmp, 'create');
    try {
      const zeros = Buffer.alloc(Math.min(zeroChunkBytes, this.segmentBytes));
      // Every byte of a segment is written: a short write must be completed (the full-node simulator's short
      // writes left a segment with half a header, refused at the next open as CORRUPT_LOG).
      for (let off = 0; off < this.segmentBytes; off += zeros.length) await writeFully(fh, zeros.subarray(0, Math.min(zeros.length, this.segmentBytes - off)), off);
      await writeFully(fh, encodeSegmentHeader({ seq, salt }).subarray(0, segmentHeaderBytes), 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
    return { seq, salt, tmp };
  }

  private async installSegment(p: { seq: number; salt: number; tmp: string }): Promise<void> {
    const file = path.join(this.dir, segmentName(p.seq));
    await this.fs.rename(p.tmp, file);
    await this.fs.fsyncDir(this.dir);
    const fh = await this.fs.open(file, this.appendMode());
    this.cur = { seq: p.seq, salt: p.salt, fh, size: this.segmentBytes, offset: segmentHeaderBytes, trailer: true };
    this.segments.push(p.seq);
  }

  /** Deletes every segment older than the one holding the first live entry (oldest first, so a crash leaves a suffix). */
  private async deleteSegmentsBehind(): Promise<void> {
    const keepFrom = this.s.segs.length > 0 ? this.s.segs[0]! : this.cur!.seq;
    let deleted = 0;
    try {
      while (this.segments.length > 1 && this.segments[0]! < keepFrom) {
        await this.fs.remove(path.join(this.dir, segmentName(this.segments[0]!)));
        this.segments.shift();
        deleted++;
      }
      if (deleted > 0) await this.fs.fsyncDir(this.dir);
    } catch (err) {
      throw this.poison(err, 'segment deletion');
    }
  }

  /**
   * What open() just read must be durable before anything builds on it. A process restarted after a failed sync
   * (crash-stop) reads its last batch from the page cache, but Linux marked those pages clean when the sync failed:
   * no later fsync writes them, and a power loss long after can take that batch while later ones stay (a log with a
   * hole, or acknowledged entries gone: the full-node simulator's seed 2660, process crashes keeping the page cache).
   * Only the last segment's written bytes can be in that state (every earlier batch was synced before the next one
   * was written, and a segment is rolled only after its batches were), so they are written again, the same bytes,
   * and synced, and so is the directory (a segment's entry whose dir fsync failed). Cost at open: one write of at
   * most walSegmentBytes. A torn rewrite leaves the same bytes wherever it lands.
   */
  private async makeReadTailDurable(read: Buffer): Promise<void> {
    const cur = this.cur!;
    if (cur.offset <= segmentHeaderBytes) {
      await this.fs.fsyncDir(this.dir);
      return;
    }
    const bytes = read.subarray(0, cur.offset); // as open() read it (the cut zeroed only bytes past cur.offset)
    try {
      await writeFully(cur.fh, bytes, 0);
      if (this.syncMode === 'fdatasync') await cur.fh.datasync();
      await this.fs.fsyncDir(this.dir);
    } catch (err) {
      throw this.poison(err, 'rewrite of the log tail at open');
    }
  }

  /** Creates (or replaces) the RECOVERING marker durably: a temporary file synced, renamed over it, the dir synced. */
  private async writeMarker(why: { cutAt: { segment: number; offset: number }; cutBytes: number; lostTailEnd: LogPosition | null }): Promise<void> {
    const file = path.join(this.dir, recoveringMarker);
    const tmp = `${file}.tmp`;
    const fh = await this.fs.open(tmp, 'create');
    try {
      await writeFully(fh, Buffer.from(`${JSON.stringify(why)}\n`), 0);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await this.fs.rename(tmp, file);
    await this.fs.fsyncDir(this.dir);
    this.recovering = true;
  }

  /** The log end the RECOVERING marker keeps; null when it keeps none (older markers) or does not parse. */
  private readMarkerBound(): LogPosition | null {
    let text = '';
    try {
      text = this.fs.readFile(path.join(this.dir, recoveringMarker)).toString('utf8');
      const m = JSON.parse(text) as { lostTailEnd?: unknown };
      const e = m.lostTailEnd as { index?: unknown; term?: unknown } | null | undefined;
      if (e !== null && typeof e === 'object' && Number.isSafeInteger(e.index) && Number.isSafeInteger(e.term) && (e.index as number) >= 0 && (e.term as number) >= 0) {
        return { index: e.index as number, term: e.term as number };
      }
      return null;
    } catch (err) {
      this.logger.warn({ dir: this.dir, text, err: (err as Error).message }, 'the RECOVERING marker does not parse: this node will not vote until it has recovered');
      return null;
    }
  }

  /** Removes the RECOVERING marker durably: from here on the node votes again. */
  private async removeMarker(): Promise<void> {
    try {
      await this.fs.remove(path.join(this.dir, recoveringMarker));
      await this.fs.fsyncDir(this.dir);
    } catch (err) {
      throw this.poison(err, 'recovery marker removal');
    }
    this.recovering = false;
    this.recoveringBound = null;
    this.logger.info({ dir: this.dir }, 'recovered: a leader brought this node up to date; it votes again');
  }

  private poison(err: unknown, what: string): MooringError {
    // Crash-stop: after a failed write or fsync the disk state is unknown; never continue on it, never retry.
    this.poisoned = err;
    this.logger.error({ err: (err as Error).message }, `WAL ${what} failed; the WAL is stopped`);
    return new MooringError(ErrorCode.STORAGE_FAILED, `WAL ${what} failed: ${(err as Error).message}`, { cause: err });
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    if (this.closed) return Promise.reject(new MooringError(ErrorCode.SHUTTING_DOWN, 'the WAL is closed'));
    const p = this.writeChain.then(() => {
      this.checkUsable();
      return fn();
    });
    this.writeChain = p.catch(() => {});
    return p;
  }
}
