/**
 * Public surface of `mooring`: what an embedder uses to run masters, talk to them and store objects.
 *   mooring          masters (MasterNode), clients (MasterClient, StoreClient), configuration, errors, logging,
 *                    and RaftNode with the interfaces it is built from (state machine, transport, log store)
 *   mooring/raft     Raft internals: the pure core, its log and progress tracking, in-memory storage and network,
 *                    the RPC layer and frame codec (for tests, tools and alternative drivers)
 *   mooring/engine   the native data path (needs the compiled addon)
 *   mooring/testing  the deterministic simulator and linearizability checker (needs fast-check)
 * @packageDocumentation
 * @module mooring
 */

// Errors
export { ErrorCode, MooringError, describeError, isErrorCode } from './errors.js';
export type { WireError } from './errors.js';

// The master: node, client, configuration, logging
export { MasterNode } from './master/master-node.js';
export type { MasterNodeOptions } from './master/master-node.js';
export { MasterClient, parseEndpoint } from './master/client.js';
export type { MasterClientOptions, RetryPolicy, CallOptions } from './master/client.js';
export type { MemberInfo, PingReply } from './master/rpc-methods.js';
export { loadConfig, parseConfig, defaultConfig, redactConfig, ConfigError } from './master/config.js';
export type { MasterConfig, PeerConfig, LoadConfigOptions } from './master/config.js';
export { createLogger } from './master/logger.js';
export type { Logger, CreateLoggerOptions } from './master/logger.js';

// What clients send and get back
export type {
  Command,
  SegmentSpec,
  PutOptions,
  ReplicaDescriptor,
  Result,
  Protocol,
  Tier,
  NodeStatus,
  PlacementStrategy,
} from './statemachine/commands.js';

// The store: put/get/remove = master metadata + engine bytes (the engine is loaded lazily when a StoreClient starts)
export { StoreClient } from './store/index.js';
export type { StoreClientOptions, PutResult, BatchItemResult, StoreStats } from './store/index.js';
export type { PutOptions as StorePutOptions } from './store/index.js';

// RaftNode and what it is built from: a state machine, a peer transport, a durable log
export { RaftNode } from './raft/node/index.js';
export type { RaftNodeOptions, RaftNodeEvents } from './raft/node/index.js';
export type { RaftStateMachine, AppliedCommand } from './raft/state-machine.js';
export { Wal } from './raft/wal/wal.js';
export type { WalOptions, WalRecoveryReport } from './raft/wal/wal.js';
export { openRaftLog } from './raft/wal/open.js';
export type { OpenRaftLogOptions } from './raft/wal/open.js';
export type { LogStorage, LogSaveBatch, LogSaveOptions } from './raft/node/log-storage.js';
export type { DurableLogStorage } from './raft/log-store.js';
export type { NodeId, Role } from './raft/core/types.js';
export type { PeerTransport, PeerAddress, PeerId } from './transport/types.js';
export { TcpPeerTransport } from './transport/tcp-transport.js';
export type { TcpPeerTransportOptions } from './transport/tcp-transport.js';
export type { TlsConfig } from './transport/net-util.js';
