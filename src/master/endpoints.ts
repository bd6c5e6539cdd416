/**
 * A master's network endpoints from its configuration: the members' addresses, the peer (Raft) transport's options
 * and the client RPC server's options. Both listeners share the connection limits and TLS material; only the peer
 * side adds the peer token and, under mTLS, a check that a peer's certificate names the node id it announces.
 */
import type { RejectCounter } from '../transport/reject-log.js';
import type { RpcServerOptions } from '../transport/rpc.js';
import type { TcpPeerTransportOptions } from '../transport/tcp-transport.js';
import type { TlsConfig as TransportTls } from '../transport/net-util.js';
import type { PeerAddress } from '../transport/types.js';
import type { MasterConfig } from './config.js';
import type { Logger } from './logger.js';
import { peerClusterId } from './backup-format.js';
import { supportedStateVersion } from '../statemachine/state-version.js';

/** What both listeners report to: the node's logger and its rejected-frames counter. */
export interface EndpointSinks {
  logger: Logger;
  onReject: RejectCounter;
}

/** Every configured member (this node included), as the Raft node and the transport address them. */
export function peerAddresses(cfg: MasterConfig): PeerAddress[] {
  return cfg.peers.map((p) => ({ id: p.id, host: p.host, port: p.raftPort, rpcPort: p.rpcPort, ...(p.httpPort !== null ? { httpPort: p.httpPort } : {}) }));
}

export function peerTransportOptions(cfg: MasterConfig, sinks: EndpointSinks): TcpPeerTransportOptions {
  const tls = transportTls(cfg);
  const limits = cfg.limits;
  return {
    nodeId: cfg.nodeId,
    // A restored data dir carries a new cluster identity: old members are refused at the handshake.
    clusterId: peerClusterId(cfg.dataDir, cfg.clusterId),
    listen: { host: cfg.listen.host, port: cfg.listen.raftPort },
    peers: peerAddresses(cfg).filter((p) => p.id !== cfg.nodeId),
    // Under mTLS a peer's certificate must name the node id it announces.
    ...(tls !== undefined ? { tls: { ...tls, verifyPeerIdentity: tls.requireClientCert === true } } : {}),
    ...(cfg.peerToken !== null ? { token: cfg.peerToken } : {}),
    stateVersion: supportedStateVersion,
    maxFrameBytes: cfg.raft.maxFrameBytes,
    maxInboundConnections: limits.maxInboundConnections,
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    logger: sinks.logger,
    onReject: sinks.onReject,
  };
}

export function rpcServerOptions(cfg: MasterConfig, sinks: EndpointSinks): RpcServerOptions {
  const tls = transportTls(cfg);
  const limits = cfg.limits;
  return {
    clusterId: cfg.clusterId,
    nodeId: cfg.nodeId,
    listen: { host: cfg.listen.host, port: cfg.listen.rpcPort },
    ...(tls !== undefined ? { tls } : {}),
    maxFrameBytes: cfg.raft.maxFrameBytes,
    maxConnections: limits.maxInboundConnections,
    maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
    handshakeTimeoutMs: limits.handshakeTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
    logger: sinks.logger,
    onReject: sinks.onReject,
  };
}

function transportTls(cfg: MasterConfig): TransportTls | undefined {
  if (cfg.tls === null) return undefined;
  return { cert: cfg.tls.cert, key: cfg.tls.key, ca: cfg.tls.ca ?? cfg.tls.cert, requireClientCert: cfg.tls.requireClientCert };
}
