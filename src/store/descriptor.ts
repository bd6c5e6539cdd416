/**
 * What a storage client tells the masters about a segment, so that any other client can address it.
 *
 * The master's SegmentSpec has no room for the engine's SegmentDescriptor (token, shm fd, host id), so we carry
 * it opaquely as compact JSON in `name` (≤ maxNameBytes). The master never interprets it; readers resolve a
 * replica's segmentId to a descriptor through `listSegments` (cached, refreshed on a miss).
 */
import type { SegmentDescriptor } from '../engine/index.js';
import { ErrorCode, MooringError } from '../errors.js';
import type { SegmentSpec, Tier } from '../statemachine/commands.js';
import { maxNameBytes } from '../statemachine/limits.js';

export interface MemoryAddress {
  kind: 'memory';
  descriptor: SegmentDescriptor;
}
/** A DISK segment is readable only by its owner's engine: others go through its tier RPC endpoint. */
export interface DiskAddress {
  kind: 'disk';
  /** The owner's engine id of the disk segment, and a token guarding against a restarted owner. */
  diskId: number;
  token: string;
  tierEndpoint: string;
  hostId: string;
}
export type SegmentAddress = MemoryAddress | DiskAddress;

interface WireMemory { v: 1; k: 'm'; sid: number; tok: string; host: string; proto: 'shm' | 'tcp' | 'rdma'; pid?: number; fd?: number; rk?: number; ra?: string }
interface WireDisk { v: 1; k: 'd'; sid: number; tok: string; host: string; tier: string }

export function encodeMemoryName(d: SegmentDescriptor): string {
  const w: WireMemory = { v: 1, k: 'm', sid: d.segmentId, tok: d.token, host: d.hostId, proto: d.protocol };
  if (d.shm !== undefined) {
    w.pid = d.shm.pid;
    w.fd = d.shm.fd;
  }
  if (d.rdma !== undefined) {
    w.rk = d.rdma.rkey;
    w.ra = d.rdma.addr;
  }
  return checked(JSON.stringify(w));
}

export function encodeDiskName(diskId: number, token: string, hostId: string, tierEndpoint: string): string {
  const w: WireDisk = { v: 1, k: 'd', sid: diskId, tok: token, host: hostId, tier: tierEndpoint };
  return checked(JSON.stringify(w));
}

function checked(s: string): string {
  if (Buffer.byteLength(s) > maxNameBytes) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `segment descriptor is ${Buffer.byteLength(s)} bytes, more than ${maxNameBytes}`);
  }
  return s;
}

/** Decodes what another client mounted; null when it is not ours (a foreign or malformed name). */
export function decodeAddress(seg: { name: string; size: number; endpoint: string; tier?: Tier }): SegmentAddress | null {
  let w: unknown;
  try {
    w = JSON.parse(seg.name);
  } catch {
    return null;
  }
  if (typeof w !== 'object' || w === null) return null;
  const o = w as Record<string, unknown>;
  if (o.v !== 1 || typeof o.sid !== 'number' || typeof o.tok !== 'string' || typeof o.host !== 'string') return null;
  if (o.k === 'd' && typeof o.tier === 'string') {
    return { kind: 'disk', diskId: o.sid, token: o.tok, tierEndpoint: o.tier, hostId: o.host };
  }
  if (o.k !== 'm') return null;
  const proto = o.proto === 'rdma' || o.proto === 'shm' ? o.proto : 'tcp';
  const d: SegmentDescriptor = {
    segmentId: o.sid,
    token: o.tok,
    name: '',
    size: seg.size,
    tier: 'DRAM',
    protocol: proto,
    endpoint: seg.endpoint,
    hostId: o.host,
  };
  if (typeof o.pid === 'number' && typeof o.fd === 'number') d.shm = { pid: o.pid, fd: o.fd, path: `/proc/${o.pid}/fd/${o.fd}` };
  if (typeof o.rk === 'number' && typeof o.ra === 'string') d.rdma = { rkey: o.rk, addr: o.ra };
  return { kind: 'memory', descriptor: d };
}

export type { SegmentSpec };
