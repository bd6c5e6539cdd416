/**
 * `mooring/raft`: the Raft internals behind RaftNode, for tests, tools and alternative drivers. Embedders running
 * masters need only the root `mooring` entry point.
 * @packageDocumentation
 * @module mooring/raft
 */
export * from './index.js';
export { RaftNode } from './node/index.js';
export type { RaftNodeOptions, RaftNodeEvents } from './node/index.js';
export type { RaftStateMachine, AppliedCommand } from './state-machine.js';
export { LogStore } from './log-store.js';
export type { LogStoreOptions, LogRecoveryReport, SaveBatch, SaveOptions, DurableLogStorage } from './log-store.js';
export { Wal, defaultWalSegmentBytes } from './wal/wal.js';
export type { WalOptions, WalRecoveryReport, WalIo } from './wal/wal.js';
export type { WalFs, WalFile, WalOpenMode, WalDirLock } from './wal/fs.js';
export { nodeWalFs } from './wal/node-fs.js';
export { openRaftLog } from './wal/open.js';

// The transport layer under RaftNode and the master RPCs
export type { PeerTransport, PeerAddress, PeerId } from '../transport/types.js';
export { TcpPeerTransport } from '../transport/tcp-transport.js';
export type { TcpPeerTransportOptions } from '../transport/tcp-transport.js';
export { MemoryNetwork, MemoryPeerTransport } from '../transport/memory-transport.js';
export { RpcServer, RpcClient } from '../transport/rpc.js';
export type { RpcServerOptions, RpcClientOptions, RpcHandler, RpcContext } from '../transport/rpc.js';
export { encodeFrame, FrameDecoder, defaultMaxFrameBytes } from '../transport/codec.js';
