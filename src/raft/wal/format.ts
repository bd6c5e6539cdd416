/**
 * The WAL's on-disk records (pure encode/decode, no I/O).
 *
 * Every record: u32le payloadLength | u32le crc32c | u8 type | payload. The crc covers the type byte and the
 * payload and is seeded with the segment's random salt, so bytes a client put into an entry can never pass for a
 * record of the log itself (the torn-tail classifier relies on that), and bytes of another segment never verify.
 *
 * A segment starts with a SEGMENT record (unsalted: it carries the salt). Every save() is one BATCH: a BEGIN
 * record (batch sequence number, total batch bytes, record count) followed by its records, the first and the last
 * of them a LOG_END (where the log ends once the batch is applied; older batches have none); a batch is applied
 * on open only if all of it verifies, so a save is all-or-nothing across a crash.
 *
 * Format 2 ends every batch with a 4-byte TRAILER of non-zero bytes (counted in the BEGIN's batch bytes). Segments
 * are zero-filled when created, so a torn write leaves zeros where the trailer should be, while a flipped byte in a
 * completely written batch leaves at least one trailer byte non-zero: the trailer is what lets open() tell "this
 * batch was never completely written" (never acknowledged: safe to cut) from "this batch was written and then
 * damaged" (it may have been acknowledged: wal.ts). Format 1 segments (no trailer) are still read.
 */
import { crc32c } from '@node-rs/crc32';
import { ErrorCode, MooringError } from '../../errors.js';
import type { ConfState, Entry, HardState, LogPosition, SnapshotMetadata } from '../core/types.js';

export const recordHeaderBytes = 9;
export const segmentMagic = 0x4c41574d; // 'MWAL' little-endian
export const walFormatVersion = 2;
/** The oldest segment format open() still reads (format 1: batches without a trailer). */
export const oldestWalFormatVersion = 1;
/** Ends every batch of a format-2 segment ('MWND'): no byte is zero (see the header comment). */
export const batchTrailer = Buffer.from([0x4d, 0x57, 0x4e, 0x44]);
export const batchTrailerBytes = batchTrailer.byteLength;
const twoPow32 = 0x1_0000_0000;

export const RecordType = {
  segment: 1,
  begin: 2,
  entry: 3,
  hardState: 4,
  /** A snapshot installed from a leader: the whole log is replaced by the snapshot point. */
  snapshot: 5,
  /** Local compaction: entries ≤ index dropped, the snapshot metadata that covers them recorded. */
  compact: 6,
  confState: 7,
  /** The full non-entry state, written first in every new segment so older segments can be deleted. */
  state: 8,
  /**
   * The log's end (last index and term) once this batch is applied: the first and the last record of every batch
   * (twice, so one damaged byte never loses it). When a damaged last batch is cut, it bounds what the node may have
   * acknowledged (wal.ts, "Recovery").
   */
  logEnd: 9,
} as const;

export const segmentPayloadBytes = 4 + 2 + 4 + 8;
export const segmentHeaderBytes = recordHeaderBytes + segmentPayloadBytes;
export const beginPayloadBytes = 8 + 4 + 4;
export const beginRecordBytes = recordHeaderBytes + beginPayloadBytes;

/** What replay and the live store apply, in log order. */
export type WalOp =
  | { kind: 'entry'; entry: Entry }
  | { kind: 'hardState'; hard: HardState }
  | { kind: 'snapshot'; meta: SnapshotMetadata }
  | { kind: 'compact'; index: number; term: number; snapMeta: SnapshotMetadata | null }
  | { kind: 'confState'; conf: ConfState }
  | {
      kind: 'state';
      hard: HardState;
      snapMeta: SnapshotMetadata;
      compactIndex: number;
      compactTerm: number;
      conf: ConfState | null;
    }
  | { kind: 'logEnd'; end: LogPosition };

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

function putU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32LE(v >>> 0, off);
  b.writeUInt32LE(Math.floor(v / twoPow32), off + 4);
}

function getU64(b: Buffer, off: number): number {
  return b.readUInt32LE(off + 4) * twoPow32 + b.readUInt32LE(off);
}

/** Encodes one op's payload; returns its type and bytes. */
export function encodeOp(op: WalOp): { type: number; payload: Uint8Array } {
  switch (op.kind) {
    case 'entry': {
      const e = op.entry;
      const p = Buffer.allocUnsafe(17 + e.data.byteLength);
      putU64(p, 0, e.index);
      putU64(p, 8, e.term);
      p[16] = e.type === 'confChange' ? 1 : 0;
      p.set(e.data, 17);
      return { type: RecordType.entry, payload: p };
    }
    case 'hardState': {
      const vote = op.hard.vote === null ? null : utf8.encode(op.hard.vote);
      const p = Buffer.allocUnsafe(17 + (vote?.byteLength ?? 0));
      putU64(p, 0, op.hard.term);
      putU64(p, 8, op.hard.commit);
      p[16] = vote === null ? 0 : 1;
      if (vote !== null) p.set(vote, 17);
      return { type: RecordType.hardState, payload: p };
    }
    case 'snapshot':
      return { type: RecordType.snapshot, payload: utf8.encode(JSON.stringify(op.meta)) };
    case 'compact':
      return { type: RecordType.compact, payload: utf8.encode(JSON.stringify({ index: op.index, term: op.term, snapMeta: op.snapMeta })) };
    case 'confState':
      return { type: RecordType.confState, payload: utf8.encode(JSON.stringify(op.conf)) };
    case 'state': {
      const { kind: _kind, ...rest } = op;
      return { type: RecordType.state, payload: utf8.encode(JSON.stringify(rest)) };
    }
    case 'logEnd': {
      const p = Buffer.allocUnsafe(logEndPayloadBytes);
      putU64(p, 0, op.end.index);
      putU64(p, 8, op.end.term);
      return { type: RecordType.logEnd, payload: p };
    }
  }
}

export const logEndPayloadBytes = 16;
export const logEndRecordBytes = recordHeaderBytes + logEndPayloadBytes;

/** Decodes a verified record's payload. Throws CORRUPT_LOG for a record whose crc matched but whose content does not parse. */
export function decodeOp(type: number, payload: Buffer): WalOp {
  const bad = (why: string): never => {
    throw new MooringError(ErrorCode.CORRUPT_LOG, `a WAL record of type ${type} passed its checksum but ${why}`);
  };
  try {
    switch (type) {
      case RecordType.entry: {
        if (payload.byteLength < 17 || payload[16]! > 1) bad('is not an entry');
        // Copy: the entry must not pin the whole segment buffer it was read from.
        const data = new Uint8Array(payload.byteLength - 17);
        data.set(payload.subarray(17));
        return { kind: 'entry', entry: { index: getU64(payload, 0), term: getU64(payload, 8), type: payload[16] === 1 ? 'confChange' : 'normal', data } };
      }
      case RecordType.hardState: {
        if (payload.byteLength < 17) bad('is not a hard state');
        const vote = payload[16] === 1 ? utf8Strict.decode(payload.subarray(17)) : null;
        return { kind: 'hardState', hard: { term: getU64(payload, 0), vote, commit: getU64(payload, 8) } };
      }
      case RecordType.snapshot:
        return { kind: 'snapshot', meta: JSON.parse(utf8Strict.decode(payload)) as SnapshotMetadata };
      case RecordType.compact: {
        const c = JSON.parse(utf8Strict.decode(payload)) as { index: number; term: number; snapMeta: SnapshotMetadata | null };
        return { kind: 'compact', index: c.index, term: c.term, snapMeta: c.snapMeta };
      }
      case RecordType.confState:
        return { kind: 'confState', conf: JSON.parse(utf8Strict.decode(payload)) as ConfState };
      case RecordType.state: {
        const s = JSON.parse(utf8Strict.decode(payload)) as Omit<Extract<WalOp, { kind: 'state' }>, 'kind'>;
        return { kind: 'state', ...s };
      }
      case RecordType.logEnd:
        if (payload.byteLength !== logEndPayloadBytes) bad('is not a log end');
        return { kind: 'logEnd', end: { index: getU64(payload, 0), term: getU64(payload, 8) } };
      default:
        return bad('has an unknown type');
    }
  } catch (err) {
    if (err instanceof MooringError) throw err;
    return bad(`does not decode (${(err as Error).message})`);
  }
}

/** Writes one record (header + payload) at `off`; returns the offset after it. */
export function putRecord(buf: Buffer, off: number, type: number, payload: Uint8Array, salt: number): number {
  buf.writeUInt32LE(payload.byteLength, off);
  buf[off + 8] = type;
  buf.set(payload, off + recordHeaderBytes);
  const crc = crc32c(buf.subarray(off + 8, off + recordHeaderBytes + payload.byteLength), salt);
  buf.writeUInt32LE(crc, off + 4);
  return off + recordHeaderBytes + payload.byteLength;
}

/** The record at `off` if it is complete and its crc verifies; null otherwise (torn, corrupt or zeros). */
export function readRecord(buf: Buffer, off: number, end: number, salt: number): { type: number; payload: Buffer; next: number } | null {
  if (off + recordHeaderBytes > end) return null;
  const len = buf.readUInt32LE(off);
  const next = off + recordHeaderBytes + len;
  if (next > end) return null;
  const crc = buf.readUInt32LE(off + 4);
  if (crc !== crc32c(buf.subarray(off + 8, next), salt)) return null;
  return { type: buf[off + 8]!, payload: buf.subarray(off + recordHeaderBytes, next), next };
}

export interface SegmentHeader {
  seq: number;
  salt: number;
  /** The segment's format (1 or 2); format-2 batches end with `batchTrailer`. Written as walFormatVersion. */
  version?: number;
}

export function encodeSegmentHeader(h: SegmentHeader): Buffer {
  const p = Buffer.alloc(segmentPayloadBytes);
  p.writeUInt32LE(segmentMagic, 0);
  p.writeUInt16LE(h.version ?? walFormatVersion, 4);
  p.writeUInt32LE(h.salt, 6);
  putU64(p, 10, h.seq);
  const b = Buffer.alloc(segmentHeaderBytes);
  putRecord(b, 0, RecordType.segment, p, 0);
  return b;
}

export function decodeSegmentHeader(buf: Buffer): SegmentHeader | null {
  const r = readRecord(buf, 0, buf.byteLength, 0);
  if (r === null || r.type !== RecordType.segment || r.payload.byteLength !== segmentPayloadBytes) return null;
  const version = r.payload.readUInt16LE(4);
  if (r.payload.readUInt32LE(0) !== segmentMagic || version < oldestWalFormatVersion || version > walFormatVersion) return null;
  return { salt: r.payload.readUInt32LE(6), seq: getU64(r.payload, 10), version };
}

export interface BatchBegin {
  seq: number;
  /** Bytes of the whole batch, this BEGIN record included. */
  bytes: number;
  records: number;
}

export function putBegin(buf: Buffer, off: number, b: BatchBegin, salt: number): number {
  const p = Buffer.allocUnsafe(beginPayloadBytes);
  putU64(p, 0, b.seq);
  p.writeUInt32LE(b.bytes, 8);
  p.writeUInt32LE(b.records, 12);
  return putRecord(buf, off, RecordType.begin, p, salt);
}

/** The BEGIN record at `off`, if one verifies there. */
export function readBegin(buf: Buffer, off: number, end: number, salt: number): BatchBegin | null {
  if (off + beginRecordBytes > end) return null;
  // Cheap filter first: the classifier calls this at every byte offset of a damaged region.
  if (buf.readUInt32LE(off) !== beginPayloadBytes || buf[off + 8] !== RecordType.begin) return null;
  const r = readRecord(buf, off, end, salt);
  if (r === null) return null;
  return { seq: getU64(r.payload, 0), bytes: r.payload.readUInt32LE(8), records: r.payload.readUInt32LE(12) };
}

/** Bytes one op takes on disk (header + payload). */
export function recordBytes(payload: Uint8Array): number {
  return recordHeaderBytes + payload.byteLength;
}

/** Bytes `op` takes on disk. Entries and hard states (every save) are sized without encoding them. */
export function opBytes(op: WalOp): number {
  switch (op.kind) {
    case 'entry':
      return recordHeaderBytes + 17 + op.entry.data.byteLength;
    case 'hardState':
      return recordHeaderBytes + 17 + (op.hard.vote === null ? 0 : Buffer.byteLength(op.hard.vote, 'utf8'));
    case 'logEnd':
      return logEndRecordBytes;
    default:
      return recordBytes(encodeOp(op).payload);
  }
}

/**
 * Writes `op` as one record at `off` (exactly opBytes(op) bytes); returns the offset after it. Entries and hard
 * states are encoded in place (no intermediate payload buffer: one copy of the entry data, into the batch).
 */
export function putOp(buf: Buffer, off: number, op: WalOp, salt: number): number {
  const p = off + recordHeaderBytes;
  switch (op.kind) {
    case 'entry': {
      const e = op.entry;
      putU64(buf, p, e.index);
      putU64(buf, p + 8, e.term);
      buf[p + 16] = e.type === 'confChange' ? 1 : 0;
      buf.set(e.data, p + 17);
      return finishRecord(buf, off, RecordType.entry, 17 + e.data.byteLength, salt);
    }
    case 'hardState': {
      putU64(buf, p, op.hard.term);
      putU64(buf, p + 8, op.hard.commit);
      buf[p + 16] = op.hard.vote === null ? 0 : 1;
      const voteBytes = op.hard.vote === null ? 0 : buf.write(op.hard.vote, p + 17, 'utf8');
      return finishRecord(buf, off, RecordType.hardState, 17 + voteBytes, salt);
    }
    default: {
      const { type, payload } = encodeOp(op);
      return putRecord(buf, off, type, payload, salt);
    }
  }
}

function finishRecord(buf: Buffer, off: number, type: number, payloadBytes: number, salt: number): number {
  const next = off + recordHeaderBytes + payloadBytes;
  buf.writeUInt32LE(payloadBytes, off);
  buf[off + 8] = type;
  buf.writeUInt32LE(crc32c(buf.subarray(off + 8, next), salt), off + 4);
  return next;
}
