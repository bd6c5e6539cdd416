/**
 * validateMessage: the gate for Raft messages arriving from the network. Anything that is not a well-shaped
 * Message (wrong types, negative or non-integer numbers, oversize ids or lists, entries that are not
 * consecutive) is refused with MooringError MALFORMED_FRAME; what passes can be given to RaftCore.step, which
 * never throws on it. The result is a fresh object holding only known fields.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import { MAX_NODE_ID_CHARS } from './confchange.js';
import type { ConfState, Entry, EntryType, Message, MessageType, Snapshot } from './types.js';

/** Most entries accepted in one AppendEntries message. */
export const MAX_ENTRIES_PER_MESSAGE = 65536;
/** Most node ids in one ConfState list. */
export const MAX_CONF_STATE_NODES = 1024;
/** Largest `context` accepted, in bytes (follower reads carry their leased keys in it: read-context.ts). */
export const MAX_CONTEXT_BYTES = 1024 * 1024;

const MESSAGE_TYPES: ReadonlySet<string> = new Set<MessageType>([
  'preVote', 'preVoteResp', 'vote', 'voteResp', 'app', 'appResp', 'heartbeat', 'heartbeatResp', 'snap',
  'timeoutNow', 'readIndex', 'readIndexResp',
]);
const ENTRY_TYPES: ReadonlySet<string> = new Set<EntryType>(['normal', 'confChange']);

class Bad extends MooringError {
  constructor(msg: string) {
    super(ErrorCode.MALFORMED_FRAME, `raft message: ${msg}`);
  }
}

function isObj(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function idx(x: unknown, name: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new Bad(`${name} must be a non-negative safe integer`);
  return x;
}

function optIdx(x: unknown, name: string): number | undefined {
  return x === undefined || x === null ? undefined : idx(x, name);
}

function nodeId(x: unknown, name: string): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > MAX_NODE_ID_CHARS) throw new Bad(`${name} must be a node id`);
  return x;
}

function bytes(x: unknown, name: string, max: number): Uint8Array {
  if (!(x instanceof Uint8Array)) throw new Bad(`${name} must be bytes`);
  if (x.length > max) throw new Bad(`${name} exceeds ${max} bytes`);
  return x;
}

function idList(x: unknown, name: string): string[] {
  if (!Array.isArray(x) || x.length > MAX_CONF_STATE_NODES) throw new Bad(`${name} must be a list of node ids`);
  return x.map((v, i) => nodeId(v, `${name}[${i}]`));
}

function entry(x: unknown, i: number): Entry {
  if (!isObj(x)) throw new Bad(`entries[${i}] must be an object`);
  const type = x['type'];
  if (typeof type !== 'string' || !ENTRY_TYPES.has(type)) throw new Bad(`entries[${i}].type is unknown`);
  return {
    term: idx(x['term'], `entries[${i}].term`),
    index: idx(x['index'], `entries[${i}].index`),
    type: type as EntryType,
    data: bytes(x['data'], `entries[${i}].data`, Number.MAX_SAFE_INTEGER),
  };
}

function confState(x: unknown): ConfState {
  if (!isObj(x)) throw new Bad('snapshot confState must be an object');
  const autoLeave = x['autoLeave'];
  if (typeof autoLeave !== 'boolean') throw new Bad('confState.autoLeave must be a boolean');
  return {
    voters: idList(x['voters'], 'confState.voters'),
    learners: idList(x['learners'], 'confState.learners'),
    votersOutgoing: idList(x['votersOutgoing'], 'confState.votersOutgoing'),
    learnersNext: idList(x['learnersNext'], 'confState.learnersNext'),
    autoLeave,
  };
}

function snapshot(x: unknown): Snapshot {
  if (!isObj(x) || !isObj(x['metadata'])) throw new Bad('snapshot must be an object with metadata');
  const md = x['metadata'] as Record<string, unknown>;
  return {
    metadata: { index: idx(md['index'], 'snapshot index'), term: idx(md['term'], 'snapshot term'), confState: confState(md['confState']) },
    data: bytes(x['data'], 'snapshot data', Number.MAX_SAFE_INTEGER),
  };
}

export function validateMessage(x: unknown): Message {
  if (!isObj(x)) throw new Bad('not an object');
  const type = x['type'];
  if (typeof type !== 'string' || !MESSAGE_TYPES.has(type)) throw new Bad('unknown type');
  const m: Message = {
    type: type as MessageType,
    from: nodeId(x['from'], 'from'),
    to: nodeId(x['to'], 'to'),
    term: idx(x['term'], 'term'),
  };
  const logTerm = optIdx(x['logTerm'], 'logTerm');
  if (logTerm !== undefined) m.logTerm = logTerm;
  const index = optIdx(x['index'], 'index');
  if (index !== undefined) m.index = index;
  const commit = optIdx(x['commit'], 'commit');
  if (commit !== undefined) m.commit = commit;
  const rejectHint = optIdx(x['rejectHint'], 'rejectHint');
  if (rejectHint !== undefined) m.rejectHint = rejectHint;
  const reject = x['reject'];
  if (reject !== undefined && reject !== null) {
    if (typeof reject !== 'boolean') throw new Bad('reject must be a boolean');
    m.reject = reject;
  }
  for (const flag of ['recovering', 'recovered', 'leaseAsk', 'leaseEpoch', 'leaseCommit'] as const) {
    const v = x[flag];
    if (v === undefined || v === null) continue;
    m[flag] = idx(v, flag);
  }
  const context = x['context'];
  if (context !== undefined && context !== null) m.context = bytes(context, 'context', MAX_CONTEXT_BYTES);
  const ents = x['entries'];
  if (ents !== undefined && ents !== null) {
    if (!Array.isArray(ents) || ents.length > MAX_ENTRIES_PER_MESSAGE) throw new Bad('entries must be a bounded list');
    m.entries = ents.map((e, i) => entry(e, i));
  }
  const snap = x['snapshot'];
  if (snap !== undefined && snap !== null) m.snapshot = snapshot(snap);

  // Per-type requirements.
  switch (m.type) {
    case 'vote':
    case 'preVote':
      if (m.index === undefined || m.logTerm === undefined) throw new Bad(`${m.type} needs index and logTerm`);
      break;
    case 'app': {
      if (m.index === undefined || m.logTerm === undefined || m.commit === undefined) throw new Bad('app needs index, logTerm and commit');
      const es = m.entries ?? [];
      for (let i = 0; i < es.length; i++) {
        if (es[i]!.index !== m.index + 1 + i) throw new Bad('app entries must be consecutive after index');
        if (es[i]!.term > m.term) throw new Bad('app entry from a future term');
      }
      break;
    }
    case 'snap':
      if (m.snapshot === undefined) throw new Bad('snap needs a snapshot');
      break;
    case 'readIndexResp':
      if (m.index === undefined) throw new Bad('readIndexResp needs index');
      break;
    default:
      break;
  }
  return m;
}
