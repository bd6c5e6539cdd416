/**
 * The master's client RPC contract, defined once and used by both sides: `MasterRpc` maps every method to its
 * argument and result types (MasterClient's methods are typed from it), and `parseArgs` validates a request at the
 * server edge (MasterNode) — writes through the state machine's own `validateCommand`, so a client can only build
 * the client commands listed in `writeMethods`, never leader-only fields. Method names follow Mooncake's master
 * RPCs in camelCase. Writes map one-to-one onto state-machine commands and go through the Raft log; reads are
 * answered from the leader's state after a linearizable read barrier (or from any node with `stale: true`).
 */
import { ErrorCode, MooringError } from '../errors.js';
import { validateCommand, validateEpoch, type Command, type CommandType, type NodeStatus, type PutOptions, type ReplicaDescriptor, type Result, type SegmentSpec } from '../statemachine/commands.js';
import type { GetReplicaListValue, PutStartValue, StateStats } from '../statemachine/state-core.js';
import type { SegmentInfo, SegmentStatus } from '../statemachine/segments.js';
import type { ConfState } from '../raft/core/types.js';
import type { BinaryReplicaLists, CompactReplicaLists } from './replica-lists-wire.js';

/** Write RPC → state-machine command type. Args are the command's fields minus `type`. */
export const writeMethods = {
  openSession: 'OpenSession',
  mountSegment: 'MountSegment',
  reMountSegment: 'ReMountSegment',
  unmountSegment: 'UnmountSegment',
  putStart: 'PutStart',
  putEnd: 'PutEnd',
  putRevoke: 'PutRevoke',
  batchPutStart: 'BatchPutStart',
  batchPutEnd: 'BatchPutEnd',
  batchPutRevoke: 'BatchPutRevoke',
  upsertStart: 'UpsertStart',
  upsertEnd: 'UpsertEnd',
  upsertRevoke: 'UpsertRevoke',
  remove: 'Remove',
  removeAll: 'RemoveAll',
  removeByPrefix: 'RemoveByPrefix',
  setNodeStatus: 'SetNodeStatus',
  offloadStart: 'OffloadStart',
  offloadEnd: 'OffloadEnd',
  offloadRevoke: 'OffloadRevoke',
  repairStart: 'RepairStart',
  repairEnd: 'RepairEnd',
  repairRevoke: 'RepairRevoke',
} as const satisfies Record<string, CommandType>;

export type WriteMethod = keyof typeof writeMethods;
/** The state-machine command a write method builds. */
export type ClientCommand = Extract<Command, { type: (typeof writeMethods)[WriteMethod] }>;

export const readMethods = [
  'getReplicaList',
  'batchGetReplicaList',
  'existKey',
  'batchExistKey',
  'listSegments',
  'stats',
  'ping',
] as const;

export type ReadMethod = (typeof readMethods)[number];

/** Operations on the cluster itself; they require the admin token when one is configured. */
export const adminMethods = ['members', 'transferLeader', 'addMember', 'removeMember', 'snapshot'] as const;
export type AdminMethod = (typeof adminMethods)[number];

/** Methods any caller may use without the admin token (status is read-only and carries no secrets). */
export const publicInfoMethods = ['status'] as const;

/** Writes whose misuse can take capacity from every client: they need the admin token too. */
export const adminWriteMethods: readonly WriteMethod[] = ['setNodeStatus'];

export function isWriteMethod(m: string): m is WriteMethod {
  return Object.prototype.hasOwnProperty.call(writeMethods, m);
}

const readMethodSet: ReadonlySet<string> = new Set(readMethods);
const adminMethodSet: ReadonlySet<string> = new Set(adminMethods);

export function isReadMethod(m: string): m is ReadMethod {
  return readMethodSet.has(m);
}

export function isAdminMethod(m: string): m is AdminMethod {
  return adminMethodSet.has(m);
}

/** The leader hint on NOT_LEADER replies: `nodeId@host:rpcPort` when the address is known, else `nodeId`. */
export function formatLeaderHint(nodeId: string, rpc?: { host: string; port: number }): string {
  return rpc === undefined ? nodeId : `${nodeId}@${rpc.host}:${rpc.port}`;
}

export function parseLeaderHint(hint: string): { nodeId: string; endpoint: string | null } {
  const at = hint.indexOf('@');
  if (at < 0) return { nodeId: hint, endpoint: null };
  return { nodeId: hint.slice(0, at), endpoint: hint.slice(at + 1) };
}

export interface PingReply {
  status: 'OK' | 'NEED_REMOUNT';
  /** Changes whenever the leader changes, so a client can tell it talked to a new master. */
  viewVersion: number;
  /** Tiering: demotions this client should run (see docs/store.md). */
  tierTasks?: Array<{ kind: 'demote'; key: string } | { kind: 'repair'; key: string; createdIndex: number }>;
}

export interface MemberInfo {
  id: string;
  role: 'voter' | 'learner' | 'voter (outgoing)';
  raft: string | null;
  rpc: string | null;
  http: string | null;
  isLeader: boolean;
}

/** Session fields every write carries (MasterClient adds them); a retry re-sends the same seq. */
export interface Session {
  clientId: string;
  seq: number;
  /** The open session (openSession's reply) when the cluster has sessions (state version ≥ 3). */
  epoch: number;
}

export interface SegmentReply {
  segmentId: string;
  status: SegmentStatus | 'UNMOUNTED' | 'DRAINED';
}

/** Every client RPC: its arguments (without session and admin token) and its result. */
export interface MasterRpc {
  /** Opens this client's session (state version ≥ 3): later writes carry its epoch; a retry with the same nonce gets the same one. */
  openSession: { args: { nonce: string }; result: { epoch: number } };
  mountSegment: { args: { segment: SegmentSpec }; result: SegmentReply };
  reMountSegment: { args: { segments: SegmentSpec[] }; result: Array<Result<SegmentReply>> };
  unmountSegment: { args: { segmentId: string; graceful?: boolean }; result: SegmentReply };
  putStart: { args: PutOptions; result: PutStartValue };
  putEnd: { args: { key: string }; result: null };
  putRevoke: { args: { key: string }; result: null };
  batchPutStart: { args: { items: PutOptions[] }; result: Array<Result<PutStartValue>> };
  batchPutEnd: { args: { keys: string[] }; result: Array<Result<null>> };
  batchPutRevoke: { args: { keys: string[] }; result: Array<Result<null>> };
  upsertStart: { args: PutOptions; result: PutStartValue };
  upsertEnd: { args: { key: string }; result: null };
  upsertRevoke: { args: { key: string }; result: null };
  remove: { args: { key: string; force?: boolean }; result: null };
  removeAll: { args: { force?: boolean }; result: { removed: number } };
  removeByPrefix: { args: { prefix: string; force?: boolean }; result: { removed: number } };
  setNodeStatus: { args: { nodeId: string; status: NodeStatus }; result: { nodeId: string; status: NodeStatus } };
  offloadStart: { args: { key: string }; result: { source: ReplicaDescriptor[]; target: ReplicaDescriptor } };
  offloadEnd: { args: { key: string }; result: null };
  offloadRevoke: { args: { key: string }; result: null };
  repairStart: { args: { key: string; createdIndex: number }; result: { repairId: number; source: ReplicaDescriptor[]; target: ReplicaDescriptor } };
  repairEnd: { args: { key: string; repairId: number }; result: null };
  repairRevoke: { args: { key: string; repairId: number }; result: null };
  getReplicaList: { args: { key: string; stale?: boolean }; result: GetReplicaListValue };
  /**
   * `compact: true`: the reply comes in a compact form (replica-lists-wire.ts), version 2 (binary rows) with `rows:
   * 'binary'` too; MasterClient asks for both and expands the reply.
   */
  batchGetReplicaList: { args: { keys: string[]; stale?: boolean; compact?: boolean; rows?: 'binary' }; result: Array<Result<GetReplicaListValue>> | CompactReplicaLists | BinaryReplicaLists };
  existKey: { args: { key: string; stale?: boolean }; result: boolean };
  batchExistKey: { args: { keys: string[]; stale?: boolean }; result: boolean[] };
  listSegments: { args: { stale?: boolean }; result: SegmentInfo[] };
  stats: { args: { stale?: boolean }; result: StateStats };
  ping: { args: { clientId: string }; result: PingReply };
  members: { args: NoArgs; result: MemberInfo[] };
  transferLeader: { args: { to: string }; result: { leader: string } };
  addMember: { args: NewMember; result: ConfState };
  removeMember: { args: { id: string }; result: ConfState };
  snapshot: { args: NoArgs; result: { index: number } };
  /** `stateHash: true` adds the whole-state hash (O(state) on the event loop: ask only on small or idle masters). */
  status: { args: { stateHash?: boolean }; result: Record<string, unknown> };
}

/** A method without arguments of its own. */
export type NoArgs = Record<never, never>;

export type MasterMethod = keyof MasterRpc;
export type ArgsOf<M extends MasterMethod> = MasterRpc[M]['args'];
export type ResultOf<M extends MasterMethod> = MasterRpc[M]['result'];
/** What travels: the arguments, plus the session on writes and the admin token on admin methods. */
/** `readFrom: 'leader'`: a follower answers NOT_LEADER instead of serving the read itself (MasterClient readFrom). */
/** `sealRefusal` (writes): a lease refusal is to be recorded as the write's answer for its seq (SealRefusal). */
export type WireArgsOf<M extends MasterMethod> = ArgsOf<M> & Partial<Session> & { adminToken?: string; avoidLeader?: string; readFrom?: 'leader'; sealRefusal?: boolean };

export interface NewMember {
  id: string;
  host: string;
  raftPort: number;
  rpcPort: number;
  httpPort?: number;
}

export const maxBatchKeysPerRead = 4_096;

/** Fields only the leader sets (eviction candidates, lease skips) and transport hints: never part of a command. */
const notCommandFields = new Set(['adminToken', 'evictable', 'skipKeys', 'avoidLeader', 'sealRefusal', 'type']);

/**
 * The command a write request builds, validated by the state machine's own rules (INVALID_ARGUMENT before anything
 * reaches the log). Leader-only fields a client sends are dropped, not trusted.
 */
export function commandFor<M extends WriteMethod>(method: M, raw: unknown): ClientCommand {
  const fields: Record<string, unknown> = { type: writeMethods[method] };
  for (const [k, v] of Object.entries(argsObject(raw))) if (!notCommandFields.has(k)) fields[k] = v;
  const command: unknown = fields;
  validateCommand(command);
  validateEpoch(fields['epoch']);
  if (!isClientCommand(command)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${method} does not build a client command`);
  return command;
}

const clientCommandTypes = new Set<string>(Object.values(writeMethods));

function isClientCommand(c: Command): c is ClientCommand {
  return clientCommandTypes.has(c.type);
}

type ReadOrAdmin = Exclude<MasterMethod, WriteMethod>;

/**
 * Validates a read, admin or status request's arguments at the server edge. Built field by field into one object:
 * no per-request table of parser closures, and no `{ ...x, k }` spreads (on Node 20 each such object got a hidden
 * class of its own: see src/util/with-fields.ts).
 */
export function parseArgs<M extends ReadOrAdmin>(method: M, raw: unknown): WireArgsOf<M> {
  const a = argsObject(raw);
  const stale = optionalBool(a.stale, 'stale');
  const out: Record<string, unknown> = {};
  if (a.adminToken !== undefined) out.adminToken = requireString(a.adminToken, 'adminToken');
  if (typeof a.avoidLeader === 'string') out.avoidLeader = a.avoidLeader;
  const m: ReadOrAdmin = method;
  switch (m) {
    case 'getReplicaList':
    case 'existKey':
    case 'batchGetReplicaList':
    case 'batchExistKey':
    case 'listSegments':
    case 'stats':
      if (stale !== undefined) out.stale = stale;
      if (a.readFrom === 'leader') out.readFrom = 'leader';
      if (m === 'getReplicaList' || m === 'existKey') out.key = requireString(a.key, 'key');
      else if (m === 'batchGetReplicaList' || m === 'batchExistKey') out.keys = requireKeys(a.keys);
      if (m === 'batchGetReplicaList') {
        const compact = optionalBool(a.compact, 'compact') === true;
        if (compact) out.compact = true;
        // Fields this version does not know are dropped (`out` is built field by field), so a master older than
        // `rows` answers version 1 to a client that asks for binary rows, and that client takes it.
        if (a.rows !== undefined) {
          if (a.rows !== 'binary') throw new MooringError(ErrorCode.INVALID_ARGUMENT, "rows must be 'binary'");
          if (!compact) throw new MooringError(ErrorCode.INVALID_ARGUMENT, "rows: 'binary' needs compact: true");
          out.rows = 'binary';
        }
      }
      break;
    case 'ping':
      out.clientId = requireString(a.clientId, 'clientId');
      break;
    case 'transferLeader':
      out.to = requireString(a.to, 'to');
      break;
    case 'addMember':
      out.id = requireString(a.id, 'id');
      out.host = requireString(a.host, 'host');
      out.raftPort = requirePort(a.raftPort, 'raftPort');
      out.rpcPort = requirePort(a.rpcPort, 'rpcPort');
      if (a.httpPort !== undefined) out.httpPort = requirePort(a.httpPort, 'httpPort');
      break;
    case 'removeMember':
      out.id = requireString(a.id, 'id');
      break;
    case 'status': {
      const stateHash = optionalBool(a.stateHash, 'stateHash');
      if (stateHash !== undefined) out.stateHash = stateHash;
      break;
    }
    case 'members':
    case 'snapshot':
      break;
    default: {
      const unknownMethod: never = m;
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, `unknown method ${String(unknownMethod)}`);
    }
  }
  return out as WireArgsOf<M>;
}

function argsObject(v: unknown): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'arguments must be an object');
  return v as Record<string, unknown>;
}

function requireString(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be a non-empty string`);
  return v;
}

function optionalBool(v: unknown, name: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be true or false`);
  return v;
}

function requirePort(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be a port number (1..65535)`);
  return v;
}

function requireKeys(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > maxBatchKeysPerRead) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `keys must be a list of 1..${maxBatchKeysPerRead} keys`);
  }
  return v.map((k, i) => requireString(k, `keys[${i}]`));
}
