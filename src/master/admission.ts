/**
 * Leader-side admission: rules that depend on read leases (leader soft state) are checked here, before a client
 * write is proposed, never in the log. May refuse (OBJECT_HAS_LEASE) or add leader-only fields (`skipKeys`,
 * `evictable`). The duplicate-reply lookup runs before this (rpc-surface.ts, handleWrite): a retry gets its first reply.
 */
import { ErrorCode, MooringError } from '../errors.js';
import type { LeaseTable } from '../statemachine/leases.js';
import type { MasterState } from '../statemachine/master-state.js';
import { planEvictionForPut } from '../statemachine/eviction.js';
import { maxSealedMessageBytes, sealableRefusalCodes, type BatchPutStart, type Command, type EvictItem, type PutStart, type SealableRefusalCode, type SealRefusal, type UpsertStart } from '../statemachine/commands.js';
import { sealedRefusalStateVersion } from '../statemachine/state-version.js';
import type { ClientCommand } from './rpc-methods.js';
import { coverOf, type Hold, type PendingWrites } from './pending-writes.js';

export function admit(command: ClientCommand, state: MasterState, leases: LeaseTable, now: number): void {
  switch (command.type) {
    case 'Remove':
      if (command.force !== true && leases.isLeased(command.key, now)) {
        throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, `${command.key} is under a read lease; retry after it expires or use force`);
      }
      break;
    case 'RemoveAll':
    case 'RemoveByPrefix':
      if (command.force !== true && leases.allLeased(now)) {
        throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'a new leader is still learning the read leases of the previous one; retry shortly or use force');
      }
      if (command.force !== true) command.skipKeys = leases.leasedKeys(now);
      break;
    case 'UpsertEnd':
    case 'OffloadEnd':
      if (leases.isLeased(command.key, now)) {
        throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, `${command.key} is under a read lease; its old replicas cannot be freed yet`);
      }
      break;
    case 'PutStart':
    case 'UpsertStart':
    case 'BatchPutStart': {
      const evictable = evictableFor(command, state, leases, now);
      if (evictable.length > 0) command.evictable = evictable;
      break;
    }
    default:
      break;
  }
}

/**
 * `admit`, then hold what the admitted write covers (pending-writes.ts) in the same turn: no read can lease a key
 * between the write's lease check and its hold. Release the hold when the write settles (holdUntilSettled), or at
 * once if it is never proposed. The RPC surface and the full-node simulator both admit through this.
 */
export function admitAndHold(command: ClientCommand, state: MasterState, leases: LeaseTable, pending: PendingWrites, now: number): Hold {
  admit(command, state, leases, now);
  return pending.hold(coverOf(command));
}

/**
 * Whether admitting `command` can be refused by a read lease: only such writes wait for a new leader to learn the
 * previous leader's leases (rpc-surface.ts). Puts consult leases only to choose eviction victims; they do not wait
 * (after a restart of a majority the learning can last a TTL: every put would otherwise stall).
 */
export function refusableByLease(command: ClientCommand): boolean {
  switch (command.type) {
    case 'Remove':
    case 'RemoveAll':
    case 'RemoveByPrefix':
      return command.force !== true;
    case 'UpsertEnd':
    case 'OffloadEnd':
      return true;
    default:
      return false;
  }
}

/** Eviction candidates a put needs (planEvictionForPut), [] when it fits now. */
export function evictableFor(command: PutStart | UpsertStart | BatchPutStart, state: MasterState, leases: LeaseTable, now: number): EvictItem[] {
  if (command.type !== 'BatchPutStart') return planEvictionForPut(state, leases, now, command.size, command.replicaNum, command.tier ?? 'DRAM');
  let total = 0;
  let replicas = 1;
  for (const it of command.items) {
    total += it.size * it.replicaNum;
    replicas = Math.max(replicas, it.replicaNum);
  }
  return planEvictionForPut(state, leases, now, Math.ceil(total / replicas), replicas);
}

/**
 * The SealRefusal recording `err`, admission's refusal of `command`, as the answer for the write's seq (the write
 * then cannot apply later: docs/client.md), or null: the client did not ask (`sealRefusal`), the write has no session
 * seq, the refusal is not a sealable one, or the cluster's state version is below 4.
 */
export function sealFor(command: Command, err: unknown, asked: boolean, stateVersion: number): SealRefusal | null {
  if (!asked || stateVersion < sealedRefusalStateVersion) return null;
  if (!(err instanceof MooringError) || !(sealableRefusalCodes as readonly string[]).includes(err.code)) return null;
  const c = command as { clientId?: unknown; seq?: unknown; epoch?: unknown };
  if (typeof c.clientId !== 'string' || typeof c.seq !== 'number') return null;
  return {
    type: 'SealRefusal', clientId: c.clientId, seq: c.seq, ...(typeof c.epoch === 'number' ? { epoch: c.epoch } : {}),
    code: err.code as SealableRefusalCode, message: truncateUtf8(err.message, maxSealedMessageBytes),
  };
}

/** `s` cut to at most `maxBytes` of UTF-8, on a character boundary. */
function truncateUtf8(s: string, maxBytes: number): string {
  // encodeInto writes whole characters only; `read` is how much of `s` fit.
  const { read } = new TextEncoder().encodeInto(s, new Uint8Array(maxBytes));
  return read === s.length ? s : s.slice(0, read);
}
