/**
 * The context of a ReadIndex round as RaftNode builds it, and how a leader answers a follower's round.
 *
 *   [8 bytes: round id: u32 incarnation, u32 round number, big-endian] [1 byte: kind] [msgpack list]
 *
 * kind 0x01: the readers' payloads (one entry per read in the round, null when a read has none), sent by the
 * reader; the core echoes the context unchanged, so a leader's own round comes back with it.
 * kind 0x02: the leader's replies to those payloads, same order: the leader's driver rewrites the context of the
 * readIndexResp it sends a follower (the round id stays, so the follower still matches its round).
 * A round without payloads is the 8-byte id alone (what the core sees for plain reads).
 * The incarnation (a number drawn when the node starts) keeps round ids apart across restarts: round numbers start
 * again at 1 with each process, and an answer to the previous process's round (delayed in the network, or queued at
 * the leader) matched the new process's round of the same number, which was then served at that round's read index
 * (a stale read when the answer was made before the new read began) and with its leader's replies (a follower read
 * with no lease of its keys: full-node simulator seed 990668). Ids were a float64 of the round number before; the
 * leader echoes the 8 bytes unread, so versions mix.
 * Used by follower reads: the payload carries the keys a read will lease, and the leader records the leases before
 * its answer leaves (docs/raft.md, follower reads).
 */
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../../errors.js';

const packr = new Packr({ useRecords: false });
const roundIdBytes = 8;
const kindPayloads = 0x01;
const kindReplies = 0x02;
/** Payload bytes one round carries at most; more reads wait for the next round. */
export const maxReadPayloadBytesPerRound = 512 * 1024;

export function encodeReadContext(incarnation: number, round: number, payloads: Array<Uint8Array | null>): Uint8Array {
  const id = new Uint8Array(roundIdBytes);
  const v = new DataView(id.buffer);
  v.setUint32(0, incarnation >>> 0);
  v.setUint32(4, round >>> 0); // wraps after 2^32 rounds of one process: only an answer that old could collide
  if (payloads.every((p) => p === null)) return id;
  return withBody(id, kindPayloads, payloads);
}

/** The key that identifies a round, whatever its body. */
export function readRoundKey(ctx: Uint8Array): string {
  return Buffer.from(ctx.buffer, ctx.byteOffset, Math.min(roundIdBytes, ctx.byteLength)).toString('hex');
}

/** The payloads of a forwarded round (empty when it has none or is malformed: a peer's input is not trusted). */
export function readPayloads(ctx: Uint8Array): Array<Uint8Array | null> {
  return body(ctx, kindPayloads);
}

/** The leader's replies in an answered round, or undefined when the leader did not reply (older leader, own round). */
export function readReplies(ctx: Uint8Array): Array<Uint8Array | null> | undefined {
  if (ctx.byteLength <= roundIdBytes || ctx[roundIdBytes] !== kindReplies) return undefined;
  return body(ctx, kindReplies);
}

/** The context a leader sends back: same round id, its replies instead of the payloads. */
export function answerReadContext(ctx: Uint8Array, replies: Array<Uint8Array | null>): Uint8Array {
  return withBody(ctx.subarray(0, roundIdBytes), kindReplies, replies);
}

function withBody(id: Uint8Array, kind: number, list: Array<Uint8Array | null>): Uint8Array {
  const packed = packr.pack(list) as Uint8Array;
  const out = new Uint8Array(roundIdBytes + 1 + packed.byteLength);
  out.set(id.subarray(0, roundIdBytes), 0);
  out[roundIdBytes] = kind;
  out.set(packed, roundIdBytes + 1);
  return out;
}

function body(ctx: Uint8Array, kind: number): Array<Uint8Array | null> {
  if (ctx.byteLength <= roundIdBytes || ctx[roundIdBytes] !== kind) return [];
  try {
    const v: unknown = packr.unpack(ctx.subarray(roundIdBytes + 1));
    if (!Array.isArray(v) || !v.every((x) => x === null || x instanceof Uint8Array)) throw new Error('not a list of byte strings');
    return v as Array<Uint8Array | null>;
  } catch (err) {
    throw new MooringError(ErrorCode.MALFORMED_FRAME, `read context does not decode: ${(err as Error).message}`);
  }
}
