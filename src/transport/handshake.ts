/**
 * Connection handshake. The dialer sends its Hello first; the acceptor checks it and answers with its own Hello,
 * or with a final `{magic, error}` frame (CLUSTER_MISMATCH / PROTOCOL_MISMATCH / UNAUTHORIZED / INVALID_ARGUMENT)
 * and closes. The dialer then checks the acceptor's Hello the same way.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ErrorCode, MooringError, type WireError } from '../errors.js';
import { encodeFrame } from './codec.js';
import type { FramedSocket } from './framed-socket.js';

export const handshakeMagic = 'mooring';
export const protocolVersion = 1;
/** A connection that has not completed its handshake within this time is closed (short: a slot held by a
 * silent stranger is a slot a member or client cannot use). */
export const handshakeTimeoutMs = 3000;
/** Longest id or token accepted in a Hello. */
export const maxHelloFieldChars = 256;

export type ConnectionRole = 'peer' | 'client';

export interface Hello {
  magic: typeof handshakeMagic;
  protocolVersion: number;
  clusterId: string;
  nodeId: string;
  role: ConnectionRole;
  token?: string;
  /**
   * The highest state version (src/statemachine/state-version.ts) the sender's application applies; absent from
   * older nodes (and from clients). A leader raises the cluster's version only once every member announced it.
   */
  stateVersion?: number;
}

/** Largest state version a Hello may announce (anything else is ignored as absent). */
export const maxHelloStateVersion = 1_000_000;

export interface HandshakeExpectation {
  clusterId: string;
  role: ConnectionRole;
  /** When set, the other side must present this token. */
  token?: string | undefined;
  /** Extra check of an otherwise valid Hello (e.g. the TLS certificate names the announced node); throws to refuse. */
  verify?: ((hello: Hello) => void) | undefined;
}

function tokensEqual(a: string, b: string): boolean {
  // Hash first so the comparison is constant-time whatever the lengths.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

const isShortString = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= maxHelloFieldChars;

/** Checks a received Hello. Throws the MooringError that should be reported back. */
export function checkHello(frame: unknown, expect: HandshakeExpectation): Hello {
  if (typeof frame !== 'object' || frame === null || (frame as { magic?: unknown }).magic !== handshakeMagic) {
    throw new MooringError(ErrorCode.MALFORMED_FRAME, 'first frame is not a mooring handshake');
  }
  const f = frame as Record<string, unknown>;
  if ('error' in f) throw MooringError.fromWire(f.error);
  if (f.protocolVersion !== protocolVersion) {
    throw new MooringError(ErrorCode.PROTOCOL_MISMATCH, `protocol version ${String(f.protocolVersion)}, expected ${protocolVersion}`);
  }
  if (!isShortString(f.clusterId) || !isShortString(f.nodeId)) {
    throw new MooringError(ErrorCode.MALFORMED_FRAME, 'handshake lacks a valid clusterId or nodeId');
  }
  if (f.clusterId !== expect.clusterId) {
    throw new MooringError(ErrorCode.CLUSTER_MISMATCH, `cluster '${f.clusterId}', expected '${expect.clusterId}'`);
  }
  if (f.role !== expect.role) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `role '${String(f.role)}' on a ${expect.role} port`);
  }
  if (expect.token !== undefined) {
    if (typeof f.token !== 'string' || f.token.length > maxHelloFieldChars || !tokensEqual(f.token, expect.token)) {
      throw new MooringError(ErrorCode.UNAUTHORIZED, 'missing or wrong token');
    }
  }
  const hello: Hello = { magic: handshakeMagic, protocolVersion, clusterId: f.clusterId, nodeId: f.nodeId, role: f.role as ConnectionRole };
  const sv = f.stateVersion;
  if (typeof sv === 'number' && Number.isSafeInteger(sv) && sv >= 1 && sv <= maxHelloStateVersion) hello.stateVersion = sv;
  expect.verify?.(hello);
  return hello;
}

export function makeHello(clusterId: string, nodeId: string, role: ConnectionRole, token?: string, stateVersion?: number): Hello {
  const h: Hello = { magic: handshakeMagic, protocolVersion, clusterId, nodeId, role };
  if (token !== undefined) h.token = token;
  if (stateVersion !== undefined) h.stateVersion = stateVersion;
  return h;
}

function rejectFrame(err: MooringError): Uint8Array {
  const wire: WireError = err.toWire();
  return encodeFrame({ magic: handshakeMagic, protocolVersion, error: wire });
}

/** Acceptor side: reads and checks the dialer's Hello, answers with ours. On failure the connection is closed. */
export async function acceptHandshake(conn: FramedSocket, mine: Hello, expect: HandshakeExpectation, timeoutMs = handshakeTimeoutMs): Promise<Hello> {
  let theirs: Hello;
  try {
    theirs = checkHello(await conn.readOne(timeoutMs), expect);
  } catch (err) {
    const e = err instanceof MooringError ? err : new MooringError(ErrorCode.MALFORMED_FRAME, (err as Error).message);
    // Tell a well-formed but wrong peer why; a socket that sent garbage just gets closed.
    const tell = e.code !== ErrorCode.MALFORMED_FRAME && e.code !== ErrorCode.FRAME_TOO_LARGE && e.code !== ErrorCode.TIMEOUT;
    conn.endWith(tell ? rejectFrame(e) : null, e);
    throw e;
  }
  const reply: Hello = { ...mine };
  delete reply.token; // never echo secrets
  conn.write(encodeFrame(reply));
  return theirs;
}

/** Dialer side: sends our Hello, reads and checks the acceptor's answer. On failure the connection is closed. */
export async function dialHandshake(conn: FramedSocket, mine: Hello, expect: HandshakeExpectation, timeoutMs = handshakeTimeoutMs): Promise<Hello> {
  conn.write(encodeFrame(mine));
  try {
    return checkHello(await conn.readOne(timeoutMs), { clusterId: expect.clusterId, role: expect.role });
  } catch (err) {
    // A socket error (reset, refused TLS) means the peer is not there for us: UNAVAILABLE, like a dropped call.
    const e = err instanceof MooringError ? err : new MooringError(ErrorCode.UNAVAILABLE, (err as Error).message, { cause: err });
    conn.destroy(e);
    throw e;
  }
}
