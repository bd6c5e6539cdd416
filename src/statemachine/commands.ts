/**
 * Commands (log entries) and queries (answered from memory) of the master state machine. Every command is a
 * plain object with a `type` discriminator that msgpackr encodes as is. `validateCommand` checks one that came
 * from the network (any shape) and throws MooringError(INVALID_ARGUMENT); the master calls it BEFORE proposing,
 * and apply calls it again, so a bad entry can only ever produce an error result, never a crash or a divergence.
 *
 * Client writes carry `clientId` and an optional `seq` (≥ 1): with `seq`, a retried command returns the first
 * reply and changes nothing (exactly-once; see MasterState). Commands marked "leader-proposed" are planned by
 * pure functions (planClientExpiry, planReclaim, planEviction, planDrain) and re-checked at apply time.
 */
import { ErrorCode, MooringError } from '../errors.js';
import type { MooringErrorOptions, WireError } from '../errors.js';
import * as L from './limits.js';

export type Protocol = 'shm' | 'tcp' | 'rdma';
export type Tier = 'DRAM' | 'VRAM' | 'DISK';
export type NodeStatus = 'ACTIVE' | 'MAINTENANCE' | 'DRAINING';
export type PlacementStrategy = 'random' | 'free-ratio-first' | 'zone-spread';
export const protocols: readonly Protocol[] = ['shm', 'tcp', 'rdma'];
export const tiers: readonly Tier[] = ['DRAM', 'VRAM', 'DISK'];
export const nodeStatuses: readonly NodeStatus[] = ['ACTIVE', 'MAINTENANCE', 'DRAINING'];
export const placementStrategies: readonly PlacementStrategy[] = ['random', 'free-ratio-first', 'zone-spread'];

/** A segment as a client mounts it. `base`/`size` are the address range it registered (bytes). */
export interface SegmentSpec {
  id: string;
  name: string;
  base: number;
  size: number;
  protocol: Protocol;
  endpoint: string;
  zone?: string;
  tier?: Tier;
}

export interface ClientWrite {
  clientId: string;
  /** Exactly-once sequence number (≥ 1), increasing per client. Absent: no deduplication. */
  seq?: number;
  /**
   * The session this write belongs to (OpenSession's reply; state version ≥ 3). A write whose epoch is not its
   * client's open session (expired, or replaced by a newer OpenSession) is refused with SESSION_EXPIRED and changes
   * nothing. Absent: a write without a session epoch (older clients).
   */
  epoch?: number;
}

export interface PutOptions {
  key: string;
  size: number;
  replicaNum: number;
  preferredSegments?: string[];
  softPin?: boolean;
  hardPin?: boolean;
  /** Tier to allocate on (default DRAM). */
  tier?: Tier;
}

/** An eviction candidate: `createdIndex` makes sure a key that was re-created since planning is left alone. */
export interface EvictItem {
  key: string;
  createdIndex: number;
}

export type MountSegment = ClientWrite & { type: 'MountSegment'; segment: SegmentSpec };
/** Mount again after NEED_REMOUNT: segments already mounted with the same spec are kept (idempotent). */
export type ReMountSegment = ClientWrite & { type: 'ReMountSegment'; segments: SegmentSpec[] };
/** Forced (default): the segment and every replica on it go now. Graceful: DRAINING, then DRAINED and gone. */
export type UnmountSegment = ClientWrite & { type: 'UnmountSegment'; segmentId: string; graceful?: boolean };
/**
 * `evictable`: attached by the leader when its view says the put will not fit (planEvictionForPut): apply evicts
 * from this list (re-checking pins and completeness) only if allocation fails, then retries once. The master must
 * overwrite whatever `evictable` (and `skipKeys` below) a client sent: they come from the leader's soft state.
 */
export type PutStart = ClientWrite & PutOptions & { type: 'PutStart'; evictable?: EvictItem[] };
export type PutEnd = ClientWrite & { type: 'PutEnd'; key: string };
export type PutRevoke = ClientWrite & { type: 'PutRevoke'; key: string };
export type BatchPutStart = ClientWrite & { type: 'BatchPutStart'; items: PutOptions[]; evictable?: EvictItem[] };
export type BatchPutEnd = ClientWrite & { type: 'BatchPutEnd'; keys: string[] };
export type BatchPutRevoke = ClientWrite & { type: 'BatchPutRevoke'; keys: string[] };
/** Like PutStart, but an existing complete object keeps serving until UpsertEnd swaps in the new replicas. */
export type UpsertStart = ClientWrite & PutOptions & { type: 'UpsertStart'; evictable?: EvictItem[] };
export type UpsertEnd = ClientWrite & { type: 'UpsertEnd'; key: string };
export type UpsertRevoke = ClientWrite & { type: 'UpsertRevoke'; key: string };
/**
 * Leases are leader soft state: the leader checks its LeaseTable BEFORE proposing Remove and answers
 * OBJECT_HAS_LEASE itself; apply cannot see leases. `force` also overrides pins and incomplete replicas.
 */
export type Remove = ClientWrite & { type: 'Remove'; key: string; force?: boolean };
/** `skipKeys`: the keys the leader's LeaseTable holds leases on at admission (left alone unless force). */
export type RemoveAll = ClientWrite & { type: 'RemoveAll'; force?: boolean; skipKeys?: string[] };
export type RemoveByPrefix = ClientWrite & { type: 'RemoveByPrefix'; prefix: string; force?: boolean; skipKeys?: string[] };
/** Operator command on a node (all segments owned by client `nodeId`). */
export type SetNodeStatus = ClientWrite & { type: 'SetNodeStatus'; nodeId: string; status: NodeStatus };
/** Demotion: allocate a DISK replica (PROCESSING) of a complete object; the caller copies the bytes. */
export type OffloadStart = ClientWrite & { type: 'OffloadStart'; key: string };
/** The DISK replica becomes COMPLETE and the DRAM/VRAM replicas are freed. */
export type OffloadEnd = ClientWrite & { type: 'OffloadEnd'; key: string };
export type OffloadRevoke = ClientWrite & { type: 'OffloadRevoke'; key: string };
/**
 * Re-replication (a task the leader hands to a storage node): allocate one more replica of an under-replicated
 * object (live replicas < replicaNum) on a segment in a zone it does not use yet when there is one. `createdIndex`
 * makes sure the object is still the one the leader planned for. The caller copies a verified replica there.
 */
export type RepairStart = ClientWrite & { type: 'RepairStart'; key: string; createdIndex: number };
/**
 * The repair replica of attempt `repairId` (RepairStart's reply) becomes COMPLETE. Naming the attempt keeps a late
 * RepairEnd of a reclaimed attempt from completing another attempt's unwritten replica. Idempotent.
 */
export type RepairEnd = ClientWrite & { type: 'RepairEnd'; key: string; repairId: number };
export type RepairRevoke = ClientWrite & { type: 'RepairRevoke'; key: string; repairId: number };
/** Leader-proposed: clients silent for `clientTtlMs` (re-checked against the entry time) go with their segments. */
export type ExpireClients = { type: 'ExpireClients'; clientIds: string[]; clientTtlMs: number };
/** Leader-proposed: PutStarts/UpsertStarts/OffloadStarts older than `putTimeoutMs` are revoked. */
export type ReclaimPuts = { type: 'ReclaimPuts'; keys: string[]; putTimeoutMs: number };
/** Leader-proposed: drop these objects (not leased at planning; hard pins and incomplete re-checked here). */
export type Evict = { type: 'Evict'; items: EvictItem[] };
/**
 * Leader-proposed: on DRAINING segments, drop replicas of complete objects except `skipKeys` (leased at
 * planning); a segment with no replica left becomes DRAINED and is removed.
 */
export type DrainSegments = {
  type: 'DrainSegments';
  segmentIds: string[];
  skipKeys: string[];
  /**
   * State version ≥ 2 only (state-version.ts): drop only these objects' replicas on the segments (at most
   * maxDrainObjectsPerCommand), not every object's; each is still re-checked (settled, not skipped).
   */
  keys?: string[];
};
/**
 * Leader-proposed once every member supports `version` (state-version.ts): from this entry on, command forms of
 * that version may be proposed. A replica that does not support it stops (crash-stop) instead of misreading them.
 */
export type SetStateVersion = { type: 'SetStateVersion'; version: number };
/**
 * Opens (or reopens) the client's session: its epoch becomes this entry's index and its reply window starts empty;
 * writes of an earlier epoch are refused from then on. A retry with the same `nonce` returns the open epoch. State
 * version ≥ 3.
 */
export type OpenSession = ClientWrite & { type: 'OpenSession'; nonce: string };
/**
 * Leader-proposed for a client's write that its lease refused (admission, OBJECT_HAS_LEASE) when the client asked
 * for it (`sealRefusal`: an earlier attempt of the write has an unknown fate). Applied under the write's own
 * clientId and seq, it records the refusal as that seq's answer, so no attempt of the write can apply after it; if
 * one applied first, its reply is the answer instead (the reply window). State version ≥ 4.
 */
export type SealRefusal = ClientWrite & { type: 'SealRefusal'; seq: number; code: SealableRefusalCode; message: string };
/** Refusals that can be sealed: the leader's admission ones, which otherwise leave the write's seq open. */
export const sealableRefusalCodes = ['OBJECT_HAS_LEASE'] as const;
export type SealableRefusalCode = (typeof sealableRefusalCodes)[number];
/** Longest refusal message a SealRefusal carries. */
export const maxSealedMessageBytes = 1024;

export type Command =
  | OpenSession
  | SealRefusal
  | MountSegment
  | ReMountSegment
  | UnmountSegment
  | PutStart
  | PutEnd
  | PutRevoke
  | BatchPutStart
  | BatchPutEnd
  | BatchPutRevoke
  | UpsertStart
  | UpsertEnd
  | UpsertRevoke
  | Remove
  | RemoveAll
  | RemoveByPrefix
  | SetNodeStatus
  | OffloadStart
  | OffloadEnd
  | OffloadRevoke
  | RepairStart
  | RepairEnd
  | RepairRevoke
  | ExpireClients
  | ReclaimPuts
  | Evict
  | DrainSegments
  | SetStateVersion;

export type CommandType = Command['type'];

/** Where to read or write one replica. `offset` is relative to the segment start; `address` = base + offset. */
export interface ReplicaDescriptor {
  segmentId: string;
  offset: number;
  length: number;
  address: number;
  endpoint: string;
  protocol: Protocol;
  tier: Tier;
}

export type Result<T = unknown> = { ok: true; value: T } | { ok: false; error: WireError };

export function okResult<T>(value: T): Result<T> {
  return { ok: true, value };
}

/** A refusal as a result: it only travels as a reply, so it is built without a stack (MooringError.replyOnly). */
export function errResult(code: ErrorCode, message?: string, options?: MooringErrorOptions): Result<never> {
  return { ok: false, error: MooringError.replyOnly(code, message, options).toWire() };
}

// ---------------------------------------------------------------- validation

function bad(message: string): never {
  throw new MooringError(ErrorCode.INVALID_ARGUMENT, message);
}

/** UTF-8 length; skips the count when the string cannot exceed `max` (UTF-8 bytes ≤ 3 × UTF-16 units). */
function exceedsBytes(s: string, max: number): boolean {
  if (s.length > max) return true; // UTF-8 bytes ≥ UTF-16 units
  if (s.length * 3 <= max) return false;
  return Buffer.byteLength(s, 'utf8') > max;
}

function str(v: unknown, what: string, maxBytes: number, allowEmpty = false): string {
  if (typeof v !== 'string') bad(`${what} must be a string`);
  if (!allowEmpty && v.length === 0) bad(`${what} must not be empty`);
  if (exceedsBytes(v, maxBytes)) bad(`${what} exceeds ${maxBytes} bytes`);
  return v;
}

export function validateKey(v: unknown, what = 'key'): string {
  return str(v, what, L.maxKeyBytes);
}

function int(v: unknown, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(`${what} must be an integer`);
  if (v < min || v > max) bad(`${what} must be in [${min}, ${max}], got ${v}`);
  return v;
}

function optBool(v: unknown, what: string): void {
  if (v !== undefined && typeof v !== 'boolean') bad(`${what} must be a boolean`);
}

function oneOf<T extends string>(v: unknown, what: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) bad(`${what} must be one of ${allowed.join(', ')}`);
  return v as T;
}

function arr(v: unknown, what: string, max: number, allowEmpty = false): unknown[] {
  if (!Array.isArray(v)) bad(`${what} must be an array`);
  if (!allowEmpty && v.length === 0) bad(`${what} must not be empty`);
  if (v.length > max) bad(`${what} has more than ${max} items`);
  return v;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function keyList(v: unknown, what: string, max: number, allowEmpty = true): void {
  for (const k of arr(v, what, max, allowEmpty)) validateKey(k, `${what} item`);
}

function validateClientWrite(c: Record<string, unknown>): void {
  str(c['clientId'], 'clientId', L.maxClientIdBytes);
  if (c['seq'] !== undefined) int(c['seq'], 'seq', 1, Number.MAX_SAFE_INTEGER);
  // `epoch` is checked where it is used (apply, state version ≥ 3) and by the leader before proposing: a log written
  // before version 3 may hold any value there (clients' extra fields were copied), and must replay as it applied.
}

export function validateSegmentSpec(v: unknown): SegmentSpec {
  const s = obj(v, 'segment');
  str(s['id'], 'segment.id', L.maxSegmentIdBytes);
  str(s['name'], 'segment.name', L.maxNameBytes, true);
  int(s['base'], 'segment.base', 0, L.maxAddressBytes);
  const size = int(s['size'], 'segment.size', 1, L.maxSegmentBytes);
  if ((s['base'] as number) + size > L.maxAddressBytes) bad('segment.base + segment.size is beyond the address limit');
  oneOf(s['protocol'], 'segment.protocol', protocols);
  str(s['endpoint'], 'segment.endpoint', L.maxEndpointBytes);
  if (s['zone'] !== undefined) str(s['zone'], 'segment.zone', L.maxZoneBytes, true);
  if (s['tier'] !== undefined) oneOf(s['tier'], 'segment.tier', tiers);
  return s as unknown as SegmentSpec;
}

function validatePutOptions(p: Record<string, unknown>): void {
  validateKey(p['key']);
  int(p['size'], 'size', 1, L.maxObjectBytes);
  int(p['replicaNum'], 'replicaNum', 1, L.maxReplicasPerObject);
  if (p['preferredSegments'] !== undefined) {
    for (const s of arr(p['preferredSegments'], 'preferredSegments', L.maxReplicasPerObject, true)) {
      str(s, 'preferredSegments item', L.maxSegmentIdBytes);
    }
  }
  optBool(p['softPin'], 'softPin');
  optBool(p['hardPin'], 'hardPin');
  if (p['tier'] !== undefined) oneOf(p['tier'], 'tier', tiers);
}

function validateEvictable(v: unknown): void {
  if (v === undefined) return;
  for (const it of arr(v, 'evictable', L.maxKeysPerCommand, true)) {
    const o = obj(it, 'evictable item');
    validateKey(o['key']);
    int(o['createdIndex'], 'createdIndex', 0, Number.MAX_SAFE_INTEGER);
  }
}

/** The longest OpenSession nonce (a UUID is 36). */
export const maxSessionNonceBytes = 128;

/** Throws MooringError(INVALID_ARGUMENT) unless `v` is a well-formed Command. Never throws anything else. */
export function validateCommand(v: unknown): asserts v is Command {
  const c = obj(v, 'command');
  const type = c['type'];
  switch (type) {
    case 'MountSegment':
      validateClientWrite(c);
      validateSegmentSpec(c['segment']);
      return;
    case 'ReMountSegment': {
      validateClientWrite(c);
      const ids = new Set<string>();
      for (const s of arr(c['segments'], 'segments', L.maxSegmentsPerClient, true)) {
        const spec = validateSegmentSpec(s);
        if (ids.has(spec.id)) bad(`segment ${spec.id} listed twice`);
        ids.add(spec.id);
      }
      return;
    }
    case 'UnmountSegment':
      validateClientWrite(c);
      str(c['segmentId'], 'segmentId', L.maxSegmentIdBytes);
      optBool(c['graceful'], 'graceful');
      return;
    case 'PutStart':
    case 'UpsertStart':
      validateClientWrite(c);
      validatePutOptions(c);
      validateEvictable(c['evictable']);
      return;
    case 'PutEnd':
    case 'PutRevoke':
    case 'UpsertEnd':
    case 'UpsertRevoke':
    case 'OffloadStart':
    case 'OffloadEnd':
    case 'OffloadRevoke':
      validateClientWrite(c);
      validateKey(c['key']);
      return;
    case 'RepairEnd':
    case 'RepairRevoke': {
      validateClientWrite(c);
      validateKey(c['key']);
      int(c['repairId'], 'repairId', 0, Number.MAX_SAFE_INTEGER);
      return;
    }
    case 'RepairStart':
      validateClientWrite(c);
      validateKey(c['key']);
      int(c['createdIndex'], 'createdIndex', 0, Number.MAX_SAFE_INTEGER);
      return;
    case 'BatchPutStart': {
      validateClientWrite(c);
      const seen = new Set<string>();
      for (const it of arr(c['items'], 'items', L.maxBatchSize)) {
        const p = obj(it, 'item');
        validatePutOptions(p);
        if (seen.has(p['key'] as string)) bad(`key ${p['key'] as string} listed twice`);
        seen.add(p['key'] as string);
      }
      validateEvictable(c['evictable']);
      return;
    }
    case 'BatchPutEnd':
    case 'BatchPutRevoke':
      validateClientWrite(c);
      keyList(c['keys'], 'keys', L.maxBatchSize, false);
      return;
    case 'Remove':
      validateClientWrite(c);
      validateKey(c['key']);
      optBool(c['force'], 'force');
      return;
    case 'RemoveAll':
    case 'RemoveByPrefix':
      validateClientWrite(c);
      if (type === 'RemoveByPrefix') str(c['prefix'], 'prefix', L.maxKeyBytes);
      optBool(c['force'], 'force');
      if (c['skipKeys'] !== undefined) keyList(c['skipKeys'], 'skipKeys', L.maxKeysPerCommand);
      return;
    case 'SetNodeStatus':
      validateClientWrite(c);
      str(c['nodeId'], 'nodeId', L.maxClientIdBytes);
      oneOf(c['status'], 'status', nodeStatuses);
      return;
    case 'ExpireClients':
      for (const id of arr(c['clientIds'], 'clientIds', L.maxClientsPerCommand)) str(id, 'clientId', L.maxClientIdBytes);
      int(c['clientTtlMs'], 'clientTtlMs', 1, Number.MAX_SAFE_INTEGER);
      return;
    case 'ReclaimPuts':
      keyList(c['keys'], 'keys', L.maxKeysPerCommand, false);
      int(c['putTimeoutMs'], 'putTimeoutMs', 1, Number.MAX_SAFE_INTEGER);
      return;
    case 'Evict':
      arr(c['items'], 'items', L.maxKeysPerCommand);
      validateEvictable(c['items']);
      return;
    case 'DrainSegments':
      for (const id of arr(c['segmentIds'], 'segmentIds', L.maxKeysPerCommand)) str(id, 'segmentId', L.maxSegmentIdBytes);
      keyList(c['skipKeys'], 'skipKeys', L.maxKeysPerCommand);
      if (c['keys'] !== undefined) keyList(c['keys'], 'keys', L.maxDrainObjectsPerCommand);
      return;
    case 'SetStateVersion':
      int(c['version'], 'version', 1, 1_000_000);
      return;
    case 'OpenSession':
      validateClientWrite(c);
      str(c['nonce'], 'nonce', maxSessionNonceBytes);
      return;
    case 'SealRefusal':
      validateClientWrite(c);
      int(c['seq'], 'seq', 1, Number.MAX_SAFE_INTEGER);
      oneOf(c['code'], 'code', sealableRefusalCodes);
      str(c['message'], 'message', maxSealedMessageBytes, true);
      return;
    default:
      bad(`unknown command type ${typeof type === 'string' ? type.slice(0, 64) : typeof type}`);
  }
}

/** The leader's check of a client's `epoch` before proposing (apply compares it with the open session). */
export function validateEpoch(v: unknown): void {
  if (v !== undefined) int(v, 'epoch', 1, Number.MAX_SAFE_INTEGER);
}

/** True for commands a client sends (they carry clientId/seq); false for leader-proposed ones. */
export function isClientCommand(c: Command): c is Extract<Command, ClientWrite> {
  return c.type !== 'ExpireClients' && c.type !== 'ReclaimPuts' && c.type !== 'Evict' && c.type !== 'DrainSegments' && c.type !== 'SetStateVersion';
}
