/**
 * LEB128 varints of non-negative safe integers (0 .. 2^53-1): 7 bits a byte, low bits first, the top bit set on every
 * byte but the last. Written into and read from a byte buffer a whole reply shares (the binary rows of
 * replica-lists-wire.ts): one msgpack `bin` instead of a msgpack number per value.
 *
 * Bit operations below 2^28 (four bytes: V8's 32-bit integer ops, no float), arithmetic above (addresses reach 2^47
 * and more). The reader refuses, with MALFORMED_FRAME, a buffer that ends inside a varint, a varint of more than
 * varintMaxBytes, and a value above Number.MAX_SAFE_INTEGER.
 */
import { assert, ErrorCode, MooringError } from '../errors.js';

/** Bytes of the longest varint: 2^53-1 has 53 bits, 7 a byte. */
export const varintMaxBytes = 8;
/** Values up to here are written and read with 32-bit bit operations (4 bytes). */
const bitOpsLimit = 0x1000_0000;

/** Writes `v` at `pos` of `buf` (which must have varintMaxBytes free there); returns the position after it. */
export function writeVarint(buf: Uint8Array, pos: number, v: number): number {
  // True exactly for integers in [0, 2^28): a fraction, a negative number or NaN changes under `&`.
  if ((v & (bitOpsLimit - 1)) === v) {
    while (v >= 0x80) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[pos++] = v;
    return pos;
  }
  // The values come from the state machine, which admits only non-negative safe integers: anything else is a bug,
  // and would be written as a different number.
  if (!(Number.isSafeInteger(v) && v >= 0)) assert(false, `varint of ${v}: not a non-negative safe integer`);
  const lo = v % bitOpsLimit;
  let hi = (v - lo) / bitOpsLimit; // < 2^25: bit operations again
  buf[pos++] = (lo & 0x7f) | 0x80;
  buf[pos++] = ((lo >>> 7) & 0x7f) | 0x80;
  buf[pos++] = ((lo >>> 14) & 0x7f) | 0x80;
  buf[pos++] = ((lo >>> 21) & 0x7f) | 0x80;
  while (hi >= 0x80) {
    buf[pos++] = (hi & 0x7f) | 0x80;
    hi >>>= 7;
  }
  buf[pos++] = hi;
  return pos;
}

/** Reads varints one after the other from `bytes`; `what` starts the message of a refusal. */
export class VarintReader {
  pos = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {}

  /** Bytes not read yet. */
  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  next(): number {
    const x = this.bytes[this.pos];
    // Past the end `x` is undefined and the comparison false: the long path says so.
    if (x! < 0x80) {
      this.pos++;
      return x!;
    }
    return this.long();
  }

  private long(): number {
    const b = this.bytes;
    const end = b.length;
    let p = this.pos;
    let v = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (p >= end) throw this.refuse(`ends inside a varint at byte ${this.pos}`);
      const x = b[p++]!;
      v |= (x & 0x7f) << shift;
      if (x < 0x80) {
        this.pos = p;
        return v;
      }
    }
    for (let m = bitOpsLimit, n = 4; n < varintMaxBytes; n++, m *= 0x80) {
      if (p >= end) throw this.refuse(`ends inside a varint at byte ${this.pos}`);
      const x = b[p++]!;
      v += (x & 0x7f) * m;
      if (x < 0x80) {
        if (v > Number.MAX_SAFE_INTEGER) throw this.refuse(`holds a varint above 2^53-1 at byte ${this.pos}`);
        this.pos = p;
        return v;
      }
    }
    throw this.refuse(`holds a varint longer than ${varintMaxBytes} bytes at byte ${this.pos}`);
  }

  private refuse(why: string): MooringError {
    return new MooringError(ErrorCode.MALFORMED_FRAME, `${this.what} ${why}`);
  }
}
