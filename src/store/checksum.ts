/**
 * End-to-end checksum of a stored object. Every replica holds `payload ‖ trailer`; the trailer is hidden from
 * callers. The crc covers the key as well as the payload, so bytes of another object that happen to sit at the
 * same place (a reused extent, a stale descriptor) never verify as this object.
 *
 *   trailer (12 bytes, little endian): magic u32 | payload length u32 | crc32(key ‖ payload ‖ length) u32
 */
import { crc32 } from 'node:zlib';
import { ErrorCode, MooringError } from '../errors.js';

export const trailerBytes = 12;
const trailerMagic = 0x3147524d; // "MRG1"
/** Payload lengths are u32 in the trailer. */
export const maxPayloadBytes = 0xffff_ffff - trailerBytes;

function checksum(key: string, payload: Uint8Array, length: number): number {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(length, 0);
  return crc32(len, crc32(payload, crc32(Buffer.from(key, 'utf8'))));
}

/** Writes `payload ‖ trailer` into `dst` (which must hold payload.length + trailerBytes). */
export function sealInto(dst: Buffer, key: string, payload: Uint8Array): number {
  const n = payload.length;
  dst.set(payload, 0);
  dst.writeUInt32LE(trailerMagic, n);
  dst.writeUInt32LE(n, n + 4);
  dst.writeUInt32LE(checksum(key, payload, n), n + 8);
  return n + trailerBytes;
}

/** The payload (a view of `stored`) if the trailer verifies; throws CHECKSUM_MISMATCH otherwise. */
export function unseal(stored: Buffer, key: string): Buffer {
  const where = `object ${key}`;
  if (stored.length < trailerBytes) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `${where}: replica shorter than its trailer`);
  const n = stored.length - trailerBytes;
  if (stored.readUInt32LE(n) !== trailerMagic) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `${where}: no trailer (bytes never written or overwritten)`);
  if (stored.readUInt32LE(n + 4) !== n) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `${where}: length in trailer does not match the replica`);
  const payload = stored.subarray(0, n);
  if (stored.readUInt32LE(n + 8) !== checksum(key, payload, n)) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `${where}: crc32 mismatch`);
  return payload;
}
