// Public surface of `mooring`. The simulator and checker are in `mooring/testing`; the native data path is
// `mooring/engine` (imported separately because it needs the compiled addon).

// Errors and utilities
export { ErrorCode, MooringError, describeError, isErrorCode } from './errors.js';
export type { WireError } from './errors.js';
export { SeededRng } from './util/rng.js';
export type { Rng } from './util/rng.js';

// Raft: the pure core, the durable log, the driver
export * from './raft/index.js';
export { LogStore } from './raft/log-store.js';
export type { LogStoreOptions, LogRecoveryReport, SaveBatch, SaveOptions } from './raft/log-store.js';
export { RaftNode } from './raft/node/index.js';
export type { RaftNodeOptions } from './raft/node/index.js';
export type { RaftStateMachine, AppliedCommand } from './raft/state-machine.js';

// Transport
export type { PeerTransport, PeerAddress, PeerId } from './transport/types.js';
export { TcpPeerTransport } from './transport/tcp-transport.js';
export type { TcpPeerTransportOptions } from './transport/tcp-transport.js';
export { MemoryNetwork, MemoryPeerTransport } from './transport/memory-transport.js';
export { RpcServer, RpcClient } from './transport/rpc.js';
export type { RpcServerOptions, RpcClientOptions, RpcHandler, RpcContext } from './transport/rpc.js';
export { encodeFrame, FrameDecoder, defaultMaxFrameBytes } from './transport/codec.js';
export type { TlsConfig } from './transport/net-util.js';

// The replicated master state machine
export { MasterState } from './statemachine/master-state.js';
export type { MasterStateOptions } from './statemachine/master-state.js';
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
export { validateCommand } from './statemachine/commands.js';
export { OffsetAllocator } from './statemachine/allocator.js';
export { LeaseTable } from './statemachine/leases.js';

// The master: node, client, configuration, operations
export { MasterNode } from './master/master-node.js';
export type { MasterNodeOptions } from './master/master-node.js';
export { MasterClient, parseEndpoint } from './master/client.js';
export type { MasterClientOptions, RetryPolicy, CallOptions } from './master/client.js';
export { loadConfig, parseConfig, defaultConfig, redactConfig, ConfigError } from './master/config.js';
export type { MasterConfig, PeerConfig } from './master/config.js';
export { createLogger } from './master/logger.js';
export { createMasterMetrics } from './master/metrics.js';
export { startHttpOps } from './master/http-ops.js';
export type { MemberInfo, PingReply } from './master/rpc-methods.js';

// A small replicated KV store on the same Raft node (tests, benchmarks, examples)
export { KvStateMachine, encodeKvCommand } from './kvstore/kv-state-machine.js';

// The store: put/get/remove = master metadata + engine bytes (the engine is loaded lazily when a StoreClient starts)
export { StoreClient } from './store/index.js';
export type { StoreClientOptions, PutResult, BatchItemResult, StoreStats } from './store/index.js';
export type { PutOptions as StorePutOptions } from './store/index.js';
