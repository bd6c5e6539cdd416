/**
 * The master's client RPC surface, shared by MasterNode (server) and MasterClient. Method names follow Mooncake's
 * master RPCs in camelCase. Writes map one-to-one onto state-machine commands and go through the Raft log; reads
 * are answered from the leader's state after a linearizable read barrier (or from any node with `stale: true`).
 */
import type { CommandType } from '../statemachine/commands.js';

/** Write RPC → state-machine command type. Args are the command's fields minus `type`. */
export const writeMethods = {
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

export function isReadMethod(m: string): m is ReadMethod {
  return (readMethods as readonly string[]).includes(m);
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
}

export interface MemberInfo {
  id: string;
  role: 'voter' | 'learner' | 'voter (outgoing)';
  raft: string | null;
  rpc: string | null;
  http: string | null;
  isLeader: boolean;
}
