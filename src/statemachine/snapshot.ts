/**
 * Snapshot stream format. A snapshot is a byte stream of frames `[u32 big-endian length][msgpack payload]`,
 * handed out in chunks of at most maxSnapshotChunkBytes (a chunk boundary may fall anywhere inside a frame, so
 * records of any size fit). Frames: a header `{format, version}`, then batches `[k1, v1, k2, v2, ...]` of raw
 * store records (v = the LevelDB value bytes), then a trailer `{count, sha256}` over every key and value, which
 * lets restore reject a truncated or damaged stream before it is used.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { packr } from './codec.js';
import { maxSnapshotChunkBytes } from './limits.js';

export const snapshotFormat = 'mooring-master-state';
export const snapshotVersion = 1;
const batchTargetBytes = 256 * 1024;
/** A frame bigger than this cannot come from us: refuse it rather than buffer without bound. */
const maxFrameBytes = 256 * 1024 * 1024;

function corrupt(message: string): never {
  throw new MooringError(ErrorCode.INVALID_ARGUMENT, `snapshot stream: ${message}`);
}

/** Turns store records into snapshot chunks. */
export async function* encodeSnapshot(records: AsyncIterable<[string, Uint8Array]>): AsyncGenerator<Uint8Array> {
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
  let batch: unknown[] = [];
  let batchBytes = 0;
  for await (const [k, v] of records) {
    hash.update(k);
    hash.update('\0');
    hash.update(v);
    count++;
    batch.push(k, v);
    batchBytes += k.length + v.length + 8;
    if (batchBytes >= batchTargetBytes) {
      emitFrame(packr.pack(batch));
      batch = [];
      batchBytes = 0;
    }
    while (chunks.length > 0) yield chunks.shift()!;
  }
  if (batch.length > 0) emitFrame(packr.pack(batch));
  emitFrame(packr.pack({ count, sha256: hash.digest('hex') }));
  while (chunks.length > 0) yield chunks.shift()!;
  if (pendingBytes > 0) yield Buffer.concat(pending);
}

/**
 * Parses snapshot chunks; calls `onBatch` with each batch of records as a flat [k1, v1, k2, v2, ...] array
 * (checked: keys are strings, values bytes); throws INVALID_ARGUMENT on a bad stream.
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
  const handle = async (payload: Buffer): Promise<void> => {
    let v: unknown;
    try {
      v = packr.unpack(payload);
    } catch {
      corrupt('a frame does not decode');
    }
    if (state === 'header') {
      const h = v as { format?: unknown; version?: unknown } | null;
      if (h === null || typeof h !== 'object' || h.format !== snapshotFormat) corrupt('not a master state snapshot');
      if (h.version !== snapshotVersion) corrupt(`unsupported version ${String(h.version)}`);
      state = 'body';
      return;
    }
    if (state === 'done') corrupt('data after the trailer');
    if (Array.isArray(v)) {
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
