/**
 * The command envelope: normal entries carry a one-byte kind so the driver's own metadata (peer addresses)
 * shares the log with commands, and several commands proposed together share one entry (one checksum, one write).
 */
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../../errors.js';
import type { Entry } from '../core/types.js';

export const entryKindCommand = 0x01;
export const entryKindPeerAddress = 0x02;
export const entryKindCommandBatch = 0x03;

/** Most commands one log entry carries (proposals that arrive together share an entry). */
export const maxCommandsPerEntry = 1_024;
/** A batch entry stops growing at this many command bytes (a single larger command still gets its own entry). */
export const maxBatchEntryBytes = 1024 * 1024;

export const packr = new Packr({ useRecords: false });

export function withKind(kind: number, body: Uint8Array): Uint8Array {
  const data = new Uint8Array(body.byteLength + 1);
  data[0] = kind;
  data.set(body, 1);
  return data;
}

/** One entry's payload for a group of commands proposed together. */
export function encodeCommands(group: Uint8Array[]): Uint8Array {
  return group.length === 1 ? withKind(entryKindCommand, group[0]!) : withKind(entryKindCommandBatch, packr.pack(group) as Uint8Array);
}

export function decodeCommandBatch(e: Entry): Uint8Array[] {
  let parts: unknown;
  try {
    parts = packr.unpack(e.data.subarray(1));
  } catch (err) {
    throw new MooringError(ErrorCode.CORRUPT_LOG, `committed command batch at ${e.index} does not decode`, { cause: err });
  }
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > maxCommandsPerEntry || !parts.every((p) => p instanceof Uint8Array)) {
    throw new MooringError(ErrorCode.CORRUPT_LOG, `committed command batch at ${e.index} is malformed`);
  }
  return parts as Uint8Array[];
}
