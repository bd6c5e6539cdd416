/**
 * Frames: a u32 big-endian payload length, then a msgpackr payload. The decoder checks the length against
 * maxFrameBytes from the 4-byte header alone, before it buffers or allocates the body, so a hostile length cannot
 * make a process allocate gigabytes.
 */
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../errors.js';

export const frameHeaderBytes = 4;
/** Largest payload accepted by default (snapshot chunks and append batches stay well below). */
export const defaultMaxFrameBytes = 16 * 1024 * 1024;
/** Hard ceiling for any configured maxFrameBytes (the header is a u32, and one frame should never be this big). */
export const maxConfigurableFrameBytes = 1024 * 1024 * 1024;

// A key named `__proto__` arrives as `__proto_` (msgpackr's guard against prototype pollution).
// Plain maps and arrays only: no records/structures shared across frames, so each frame decodes on its own.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true });

export function encodePayload(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Deepest nesting accepted in a decoded frame (protocol messages nest a handful of levels). */
export const maxFrameNestingDepth = 64;

/**
 * Checks that a decoded value stays inside the plain data model frames may carry — null, undefined, booleans,
 * numbers, bigints, strings, Uint8Array, arrays and plain objects — and turns msgpackr's Buffers into plain
 * Uint8Array views (zero-copy), so receivers see exactly the types they were sent. msgpack extensions (Date, Map,
 * Set, RegExp, records, the reserved 0xC1 byte…) decode to other things; frames carrying them are refused rather
 * than handed to code that never expects them. Returns the normalized value, or `invalid`.
 */
const invalid = Symbol('invalid');

function normalize(v: unknown, depth: number): unknown {
  if (typeof v !== 'object') return typeof v === 'function' || typeof v === 'symbol' ? invalid : v;
  if (v === null) return v;
  if (v instanceof Uint8Array) return Buffer.isBuffer(v) ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : v;
  if (depth >= maxFrameNestingDepth) return invalid;
  // Numbers and strings (most of a frame: a compact reply is rows of numbers) are checked inline, not by a call.
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const e: unknown = v[i];
      if (typeof e === 'number' || typeof e === 'string') continue;
      const x = normalize(e, depth + 1);
      if (x === invalid) return invalid;
      if (x !== e) v[i] = x;
    }
    return v;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return invalid;
  const o = v as Record<string, unknown>;
  for (const k in o) {
    const e = o[k];
    if (typeof e === 'number' || typeof e === 'string') continue;
    const x = normalize(e, depth + 1);
    if (x === invalid) return invalid;
    if (x !== e) o[k] = x;
  }
  return v;
}

export function decodePayload(payload: Uint8Array): unknown {
  let value: unknown;
  try {
    value = packr.unpack(payload);
  } catch (err) {
    throw new MooringError(ErrorCode.MALFORMED_FRAME, `frame does not decode: ${(err as Error).message}`);
  }
  const plain = normalize(value, 0);
  if (plain === invalid) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'frame carries a value outside the plain data model');
  return plain;
}

/** Encodes one value as a complete frame (header + payload). Throws FRAME_TOO_LARGE above maxFrameBytes. */
export function encodeFrame(value: unknown, maxFrameBytes: number = defaultMaxFrameBytes): Buffer {
  const payload = packr.pack(value);
  if (payload.byteLength > maxFrameBytes) {
    throw new MooringError(ErrorCode.FRAME_TOO_LARGE, `frame of ${payload.byteLength} bytes exceeds maxFrameBytes ${maxFrameBytes}`);
  }
  const frame = Buffer.allocUnsafe(frameHeaderBytes + payload.byteLength);
  frame.writeUInt32BE(payload.byteLength, 0);
  frame.set(payload, frameHeaderBytes);
  return frame;
}

/**
 * Incremental decoder: push() socket chunks, get back the values of every frame completed so far.
 * After it throws (FRAME_TOO_LARGE or MALFORMED_FRAME) the stream is out of sync: close the connection.
 */
export class FrameDecoder {
  private readonly maxFrameBytes: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Body length of the frame being assembled, once its header is known. */
  private need = -1;
  private failed = false;

  constructor(maxFrameBytes: number = defaultMaxFrameBytes) {
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 1 || maxFrameBytes > maxConfigurableFrameBytes) {
      throw new MooringError(ErrorCode.INVALID_CONFIG, `maxFrameBytes must be an integer in [1, ${maxConfigurableFrameBytes}]`);
    }
    this.maxFrameBytes = maxFrameBytes;
  }

  /** Bytes held waiting for the rest of a frame (never more than one frame + header + one chunk). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): unknown[] {
    if (this.failed) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'decoder already failed');
    if (chunk.byteLength === 0) return [];
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.buffered += chunk.byteLength;
    const out: unknown[] = [];
    try {
      for (;;) {
        if (this.need < 0) {
          if (this.buffered < frameHeaderBytes) break;
          const len = this.take(frameHeaderBytes).readUInt32BE(0);
          if (len > this.maxFrameBytes) {
            throw new MooringError(ErrorCode.FRAME_TOO_LARGE, `frame header announces ${len} bytes, over maxFrameBytes ${this.maxFrameBytes}`);
          }
          if (len === 0) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'empty frame');
          this.need = len;
        }
        if (this.buffered < this.need) break;
        const body = this.take(this.need);
        this.need = -1;
        out.push(decodePayload(body));
      }
    } catch (err) {
      this.failed = true;
      this.chunks = [];
      this.buffered = 0;
      throw err;
    }
    return out;
  }

  /** Removes exactly n bytes from the front; the result never aliases a larger chunk that outlives it. */
  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.byteLength === n) {
      out = first;
      this.chunks.shift();
    } else if (first.byteLength > n) {
      // Copy: decoded binary fields alias the body, and must not pin the whole socket chunk in memory.
      out = Buffer.from(first.subarray(0, n));
      this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.byteLength, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.byteLength) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return out;
  }
}
