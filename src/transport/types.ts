/**
 * The peer transport contract shared by the TCP/TLS transport and the in-memory transport.
 * It moves opaque, msgpackr-encodable frames between authenticated nodes of one cluster; what a frame means
 * (a batch of Raft messages, a snapshot chunk) is the caller's business, and the caller validates its shape.
 */
export type PeerId = string;

export interface PeerAddress {
  id: PeerId;
  host: string;
  /** The peer (Raft) port. */
  port: number;
  /** Client RPC and HTTP ports of that member, carried in the replicated address book (transports ignore them). */
  rpcPort?: number;
  httpPort?: number;
}

/** Why a peer is believed down: its connection closed or reset, or a connection attempt failed. */
export type PeerDownReason = 'closed' | 'connect-failed';

export interface PeerTransport {
  /** Starts listening (TCP) or registers on the in-memory network. Resolves once frames can be received. */
  start(): Promise<void>;
  /**
   * Queues a frame for `to`. Never blocks and never throws on a slow or missing peer: returns false when the frame
   * was dropped (unknown peer, closed transport, or the peer's bounded send queue is full). Raft tolerates loss.
   */
  send(to: PeerId, frame: unknown): boolean;
  /** Registers the single handler for frames that arrived from an authenticated peer of this cluster. */
  onFrame(handler: (from: PeerId, frame: unknown) => void): void;
  /** Adds or updates a peer's address (membership changes). */
  setPeer(peer: PeerAddress): void;
  removePeer(id: PeerId): void;
  /**
   * Optional: registers the single handler told when a connection to or from `peer` was closed or reset, or a
   * connection attempt refused — what every peer sees at once when a process dies (fast failover). Never called
   * for silence: a black-holed peer shows no error.
   */
  onPeerDown?(handler: (peer: PeerId, reason: PeerDownReason) => void): void;
  /** Closes the listener and every connection; queued frames are dropped. Idempotent. */
  close(): Promise<void>;
}
