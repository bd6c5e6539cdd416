/**
 * Snapshot stream format. A snapshot is a byte stream of frames `[u32 big-endian length][payload]`, handed out
 * in chunks of at most maxSnapshotChunkBytes (a chunk boundary may fall anywhere inside a frame, so records of
 * any size fit). Frames: a msgpack header `{format, version}`, then record frames, then a msgpack trailer
 * `{count, sha256}` which lets restore reject a truncated or damaged stream before it is used.
 *
 * Version 2 (written now): a record frame is the byte 0x01 then records `[u16 key bytes][utf8 key][u32 value
 * bytes][value]`, copied from the store records (no msgpack), and sha256 covers every record
 * frame's payload, one hash update per ~256 KiB frame. Version 1 (still read): a record frame is a msgpack
 * array `[k1, v1, k2, v2, ...]` and sha256 covers each key, a NUL and each value.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { packr } from './codec.js';
import { maxSnapshotChunkBytes } from './limits.js';

export const snapshotFormat = 'mooring-master-state';
export const snapshotVersion = 2;
const batchTargetBytes = 256 * 1024;
/** A frame bigger than this cannot come from us: refuse it rather than buffer without bound. */
const maxFrameBytes = 256 * 1024 * 1024;
/** First payload byte of a version-2 record frame (never the first byte of a msgpack map or array). */
const rawRecordsTag = 0x01;
const maxRecordKeyBytes = 0xffff;

function corrupt(message: string): never {
  throw new MooringError(ErrorCode.INVALID_ARGUMENT, `snapshot stream: ${message}`);
}

/**
 * Turns batches of store records into snapshot chunks. Keys come as strings (written as utf8 here): reading them
 * from LevelDB as strings is cheaper than as Buffers (each Buffer is a separate backing store to collect).
 */
export async function* encodeSnapshot(batches: AsyncIterable<ReadonlyArray<readonly [string, Uint8Array]>>): AsyncGenerator<Uint8Array> {
  const hash = createHash('sha256');
  let count = 0;
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const chunks: Buffer[] = [];
  const emitFrame = (payload: Buffer): void => {
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(payload.length, 0);
    pending.push(len, payload);
    pendingBytes += 4 + payload.length;
    // Cut the byte stream into chunks of at most maxSnapshotChunkBytes.
    while (pendingBytes >= maxSnapshotChunkBytes) {
      const all = Buffer.concat(pending);
      chunks.push(all.subarray(0, maxSnapshotChunkBytes));
      const rest = all.subarray(maxSnapshotChunkBytes);
      pending = rest.length > 0 ? [rest] : [];
      pendingBytes = rest.length;
    }
  };
  emitFrame(packr.pack({ format: snapshotFormat, version: snapshotVersion }));
  let frame = Buffer.allocUnsafe(batchTargetBytes + 64);
  let pos = 1;
  frame[0] = rawRecordsTag;
  const flush = (): void => {
    if (pos === 1) return;
    const payload = frame.subarray(0, pos);
    hash.update(payload);
    emitFrame(payload);
    frame = Buffer.allocUnsafe(batchTargetBytes + 64);
    frame[0] = rawRecordsTag;
    pos = 1;
  };
  for await (const batch of batches) {
    for (const [k, v] of batch) {
      // A JS string of n UTF-16 units takes at most 3n utf8 bytes.
      const need = 6 + 3 * k.length + v.length;
      if (pos + need > frame.length) {
        flush();
        if (1 + need > frame.length) {
          frame = Buffer.allocUnsafe(1 + need);
          frame[0] = rawRecordsTag;
        }
      }
      const kl = (frame as unknown as { utf8Write(s: string, offset: number): number }).utf8Write(k, pos + 2);
      if (kl > maxRecordKeyBytes) throw new MooringError(ErrorCode.STORAGE_FAILED, `store key of ${kl} bytes`);
      frame.writeUInt16BE(kl, pos);
      pos += 2 + kl;
      frame.writeUInt32BE(v.length, pos);
      frame.set(v, pos + 4);
      pos += 4 + v.length;
      count++;
      if (pos >= batchTargetBytes) flush();
    }
    while (chunks.length > 0) yield chunks.shift()!;
  }
  flush();
  emitFrame(packr.pack({ count, sha256: hash.digest('hex') }));
  while (chunks.length > 0) yield chunks.shift()!;
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

/**
 * Parses snapshot chunks; calls `onBatch` with each batch of records as a flat [k1, v1, k2, v2, ...] array
 * (keys are strings in version 1, raw utf8 bytes in version 2; values bytes); throws INVALID_ARGUMENT on a bad
 * stream.
 */
export async function decodeSnapshot(
  chunks: AsyncIterable<Uint8Array>,
  onBatch: (flatRecords: ReadonlyArray<string | Uint8Array>) => Promise<void> | void,
): Promise<{ count: number }> {
  let buf: Buffer = Buffer.alloc(0);
  let state: 'header' | 'body' | 'done' = 'header';
  const hash: Hash = createHash('sha256');
  let count = 0;
  let result: { count: number } | null = null;
  let version = 0;
  const handle = async (payload: Buffer): Promise<void> => {
    if (state === 'header') {
      let decoded: unknown;
      try {
        decoded = packr.unpack(payload);
      } catch {
        corrupt('the header does not decode');
      }
      const h = decoded as { format?: unknown; version?: unknown } | null;
      if (h === null || typeof h !== 'object' || h.format !== snapshotFormat) corrupt('not a master state snapshot');
      if (h.version !== 1 && h.version !== 2) corrupt(`unsupported version ${String(h.version)}`);
      version = h.version as number;
      state = 'body';
      return;
    }
    if (state === 'done') corrupt('data after the trailer');
    if (version === 2 && payload[0] === rawRecordsTag) {
      hash.update(payload);
      const flat: Array<string | Uint8Array> = [];
      let pos = 1;
      while (pos < payload.length) {
        if (pos + 2 > payload.length) corrupt('truncated record');
        const kl = payload.readUInt16BE(pos);
        pos += 2;
        if (pos + kl + 4 > payload.length) corrupt('truncated record');
        const k = payload.subarray(pos, pos + kl); // raw key bytes: see StateLoader.addRaw
        pos += kl;
        const vl = payload.readUInt32BE(pos);
        pos += 4;
        if (pos + vl > payload.length) corrupt('truncated record');
        flat.push(k, payload.subarray(pos, pos + vl));
        pos += vl;
      }
      count += flat.length / 2;
      await onBatch(flat);
      return;
    }
    let v: unknown;
    try {
      v = packr.unpack(payload);
    } catch {
      corrupt('a frame does not decode');
    }
    if (version === 1 && Array.isArray(v)) {
      if (v.length % 2 !== 0) corrupt('odd record batch');
      for (let i = 0; i < v.length; i += 2) {
        const k = v[i];
        const val = v[i + 1];
        if (typeof k !== 'string' || !(val instanceof Uint8Array)) corrupt('bad record');
        hash.update(k);
        hash.update('\0');
        hash.update(val);
      }
      count += v.length / 2;
      await onBatch(v as Array<string | Uint8Array>);
      return;
    }
    const t = v as { count?: unknown; sha256?: unknown } | null;
    if (t === null || typeof t !== 'object') corrupt('bad trailer');
    if (t.count !== count) corrupt(`trailer says ${String(t.count)} records, stream had ${count}`);
    if (t.sha256 !== hash.digest('hex')) corrupt('checksum mismatch');
    state = 'done';
    result = { count };
  };
  for await (const chunk of chunks) {
    buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk]);
    let pos = 0;
    while (buf.length - pos >= 4) {
      const len = buf.readUInt32BE(pos);
      if (len > maxFrameBytes) corrupt(`frame of ${len} bytes`);
      if (buf.length - pos - 4 < len) break;
      await handle(buf.subarray(pos + 4, pos + 4 + len));
      pos += 4 + len;
    }
    buf = buf.subarray(pos);
  }
  if (buf.length > 0) corrupt('truncated frame');
  if (result === null) corrupt('missing trailer (truncated stream)');
  return result;
}
