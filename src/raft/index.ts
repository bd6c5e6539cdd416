// The Raft layer: the pure core and its building blocks (the LevelDB log and the driver live beside it).
export * from './core/types.js';
export { RaftCore, TRANSFER_CONTEXT, MAX_PENDING_READS, type BatchProposal } from './core/core.js';
export {
  DEFAULT_ELECTION_TIMEOUT_TICKS,
  DEFAULT_HEARTBEAT_INTERVAL_TICKS,
  DEFAULT_MAX_BYTES_PER_APPEND,
  DEFAULT_MAX_COMMITTED_BYTES_PER_READY,
  DEFAULT_MAX_ENTRIES_PER_APPEND,
  DEFAULT_MAX_INFLIGHT_APPENDS,
  DEFAULT_MAX_UNCOMMITTED_BYTES,
} from './core/core.js';
export { MemoryStorage } from './core/memory-storage.js';
export { validateMessage, MAX_ENTRIES_PER_MESSAGE, MAX_CONF_STATE_NODES, MAX_CONTEXT_BYTES } from './core/validate.js';
export { encodeConfChange, decodeConfChange, MAX_NODE_ID_CHARS, MAX_CONF_CHANGES_PER_ENTRY } from './core/confchange.js';
export { RaftLog } from './core/log.js';
export { Progress, Inflights } from './core/progress.js';
export { emptyConfState } from './core/util.js';
