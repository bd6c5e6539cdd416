// The Raft driver (RaftNode) and the effect interfaces it is given; one concept per file in this folder.
export { RaftNode } from './raft-node.js';
export { raftDefaults, resolveRaftTunables, toCoreOptions } from './options.js';
export type { RaftTunables, ReadMode, CoreOptions } from './options.js';
export type { RaftNodeOptions, RaftNodeEvents } from './raft-node.js';
export type { Clock, Timer } from './clock.js';
export type { LogStorage, LogSaveBatch, LogSaveOptions } from './log-storage.js';
export type { SnapshotStore, StagedSnapshot } from './snapshot-store.js';
export type { PeerBookStore } from './peer-book-store.js';
export { learnerCatchUpEntries, learnerCatchUpTimeoutMs } from './membership.js';
export { maxCommandsPerApply, maxApplyLagCommands } from './apply.js';
export { maxCommandsPerEntry, maxBatchEntryBytes } from './envelope.js';
export { snapshotChunksInFlight, snapshotChunkAckTimeoutMs } from './snapshot-send.js';
export { snapshotReceiveIdleMs } from './snapshot-receive.js';
export type { ReadOptions, ForwardedReadHandler } from './reads.js';
