/**
 * TcpPeerTransport: the PeerTransport over TCP (or TLS/mTLS).
 *
 * Each node dials one outbound connection per peer and uses it only to send frames to that peer; frames from a
 * peer arrive on the connection that peer dialed. Per peer, a bounded queue holds encoded frames while the
 * connection is down or the socket is pushing back; when it is full, send() returns false and drops the frame
 * (Raft tolerates loss), so memory stays bounded however slow or dead a peer is. Frames queued in the same tick are
 * coalesced into one socket write. Links are kept warm: dialed at start and redialed (with backoff) when lost, idle
 * or not, so an election never waits for a connect and a handshake.
 *
 * Inbound, only known peers are accepted: the handshake must name an id given to setPeer() (the members and
 * learners of the current configuration, and a node being added: RaftNode calls setPeer before proposing it),
 * must carry the shared token when one is set, and under mTLS with verifyPeerIdentity the certificate must name
 * that id. Frames are then delivered as coming from that authenticated id, nothing else. Connection budgets
 * (conn-budget.ts) keep strangers from starving the port: connections still in their handshake may never take
 * the last peerSlotsReservedForMembers slots.
 */
import type net from 'node:net';
import { ErrorCode, MooringError } from '../errors.js';
import { defaultMaxFrameBytes, encodeFrame } from './codec.js';
import { FramedSocket } from './framed-socket.js';
import { acceptHandshake, dialHandshake, handshakeTimeoutMs as defaultHandshakeTimeoutMs, makeHello, type Hello } from './handshake.js';
import { silentLogger, type LoggerLike } from './logger.js';
import { closeServer, createListener, dial, listen, peerCertificateCn, resolveTls, type ResolvedTls, type TlsConfig } from './net-util.js';
import { ConnectionBudget, defaultIdleTimeoutMs, defaultMaxConnectionsPerAddress, defaultMaxInboundConnections, peerSlotsReservedForMembers, type Admission } from './conn-budget.js';
import { RejectLog, reasonOf, type RejectCounter } from './reject-log.js';
import type { PeerAddress, PeerDownReason, PeerId, PeerTransport } from './types.js';

export const defaultMaxQueuedFrames = 4096;
export const defaultMaxQueuedBytes = 64 * 1024 * 1024;
export const defaultReconnectInitialMs = 50;
export const defaultReconnectMaxMs = 2000;
export const defaultConnectTimeoutMs = 3000;
/** Largest single coalesced socket write. */
export const maxWriteBatchBytes = 1024 * 1024;

export interface TcpPeerTransportOptions {
  nodeId: PeerId;
  clusterId: string;
  listen: { host: string; port: number };
  peers: PeerAddress[];
  tls?: TlsConfig;
  /** Shared secret every peer must present in its handshake. */
  token?: string;
  /** Announced in this node's handshakes (Hello.stateVersion): the highest state version its application applies. */
  stateVersion?: number;
  maxFrameBytes?: number;
  maxQueuedFrames?: number;
  maxQueuedBytes?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  maxInboundConnections?: number;
  maxConnectionsPerAddress?: number;
  /** An inbound connection silent this long is closed. */
  idleTimeoutMs?: number;
  /** Accept any node id in the handshake, not only peers given to setPeer (tests of the transport alone). */
  acceptUnknownPeers?: boolean;
  logger?: LoggerLike;
  /** Counts rejected input (the `mooring_rejected_frames_total` metric). */
  onReject?: RejectCounter;
}

export interface PeerLinkStats {
  connected: boolean;
  queuedFrames: number;
  queuedBytes: number;
  /** Frames refused by send() because the queue was full. */
  dropped: number;
  /** Frames handed to the socket. */
  sent: number;
  /** Connections established (handshake completed) so far. */
  connects: number;
}

class PeerLink {
  addr: PeerAddress;
  queue: Buffer[] = [];
  queuedBytes = 0;
  conn: FramedSocket | null = null;
  open = false;
  connecting = false;
  blocked = false;
  flushScheduled = false;
  backoffMs: number;
  timer: NodeJS.Timeout | null = null;
  closed = false;
  /** Bumped whenever the link's connection is replaced, so stale callbacks do nothing. */
  generation = 0;
  stats = { dropped: 0, sent: 0, connects: 0 };

  constructor(addr: PeerAddress, backoffMs: number) {
    this.addr = addr;
    this.backoffMs = backoffMs;
  }
}

export class TcpPeerTransport implements PeerTransport {
  private readonly opts: Required<Omit<TcpPeerTransportOptions, 'tls' | 'token' | 'logger' | 'peers' | 'listen' | 'onReject' | 'stateVersion'>> & { listen: { host: string; port: number } };
  private readonly tls: ResolvedTls | undefined;
  private readonly token: string | undefined;
  private readonly logger: LoggerLike;
  private readonly links = new Map<PeerId, PeerLink>();
  /** Per peer, the state version of its latest handshake (peerStateVersion). */
  private readonly stateVersions = new Map<PeerId, number>();
  private readonly inbound = new Set<FramedSocket>();
  /** Authenticated inbound connections by peer id (closed when the peer is removed). */
  private readonly inboundById = new Map<PeerId, Set<FramedSocket>>();
  private readonly rejects: RejectLog;
  private server: net.Server | null = null;
  private handler: ((from: PeerId, frame: unknown) => void) | null = null;
  private peerDownHandler: ((peer: PeerId, reason: PeerDownReason) => void) | null = null;
  private boundPort = 0;
  private closed = false;
  private readonly stateVersion: number | undefined;

  constructor(options: TcpPeerTransportOptions) {
    this.stateVersion = options.stateVersion;
    this.opts = {
      nodeId: options.nodeId,
      clusterId: options.clusterId,
      listen: options.listen,
      maxFrameBytes: options.maxFrameBytes ?? defaultMaxFrameBytes,
      maxQueuedFrames: options.maxQueuedFrames ?? defaultMaxQueuedFrames,
      maxQueuedBytes: options.maxQueuedBytes ?? defaultMaxQueuedBytes,
      reconnectInitialMs: options.reconnectInitialMs ?? defaultReconnectInitialMs,
      reconnectMaxMs: options.reconnectMaxMs ?? defaultReconnectMaxMs,
      connectTimeoutMs: options.connectTimeoutMs ?? defaultConnectTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? defaultHandshakeTimeoutMs,
      maxInboundConnections: options.maxInboundConnections ?? defaultMaxInboundConnections,
      maxConnectionsPerAddress: options.maxConnectionsPerAddress ?? defaultMaxConnectionsPerAddress,
      idleTimeoutMs: options.idleTimeoutMs ?? defaultIdleTimeoutMs,
      acceptUnknownPeers: options.acceptUnknownPeers ?? false,
    };
    this.tls = resolveTls(options.tls);
    this.token = options.token;
    this.logger = options.logger ?? silentLogger;
    this.rejects = new RejectLog(this.logger, 'peer', options.onReject);
    for (const p of options.peers) if (p.id !== options.nodeId) this.setPeer(p);
  }

  /** The port actually bound (useful with listen.port = 0). */
  get port(): number {
    return this.boundPort;
  }

  get nodeId(): PeerId {
    return this.opts.nodeId;
  }

  async start(): Promise<void> {
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'transport closed');
    if (this.server !== null) return;
    const budget = new ConnectionBudget(
      { maxConnectionsPerAddress: this.opts.maxConnectionsPerAddress, maxInboundConnections: this.opts.maxInboundConnections, idleTimeoutMs: this.opts.idleTimeoutMs },
      Math.min(peerSlotsReservedForMembers, Math.floor(this.opts.maxInboundConnections / 2)),
    );
    this.server = createListener(this.tls, this.logger, budget, this.rejects, this.opts.handshakeTimeoutMs, (socket, a) => this.onInbound(socket, a));
    this.boundPort = await listen(this.server, this.opts.listen.host, this.opts.listen.port);
    this.logger.info({ node: this.opts.nodeId, port: this.boundPort, tls: this.tls !== undefined }, 'peer transport listening');
    // Dial every known peer once now rather than at the first frame: a peer whose link to us backed off while we were
    // down redials when we connect (redialNow), so a restarted node hears its leader within milliseconds instead of
    // pre-voting first (a follower without a leader sends nothing that would dial).
    for (const link of this.links.values()) if (!link.open && !link.connecting && link.timer === null) void this.connect(link);
  }

  /**
   * The state version a peer announced in its latest handshake (Hello.stateVersion); 1 for one that announced none
   * (an older node), undefined for one never connected since this process started.
   */
  peerStateVersion(peer: PeerId): number | undefined {
    return this.stateVersions.get(peer);
  }

  private noteStateVersion(hello: Hello): void {
    this.stateVersions.set(hello.nodeId, hello.stateVersion ?? 1);
  }

  onFrame(handler: (from: PeerId, frame: unknown) => void): void {
    this.handler = handler;
  }

  send(to: PeerId, frame: unknown): boolean {
    const link = this.links.get(to);
    if (link === undefined || this.closed) return false;
    let bytes: Buffer;
    try {
      bytes = encodeFrame(frame, this.opts.maxFrameBytes);
    } catch (err) {
      this.logger.error({ to, err: (err as Error).message }, 'frame not sent: cannot encode');
      return false;
    }
    if (link.queue.length >= this.opts.maxQueuedFrames || link.queuedBytes + bytes.byteLength > this.opts.maxQueuedBytes) {
      link.stats.dropped++;
      return false;
    }
    link.queue.push(bytes);
    link.queuedBytes += bytes.byteLength;
    if (link.open) this.scheduleFlush(link);
    else if (!link.connecting && link.timer === null) void this.connect(link);
    return true;
  }

  onPeerDown(handler: (peer: PeerId, reason: PeerDownReason) => void): void {
    this.peerDownHandler = handler;
  }

  setPeer(peer: PeerAddress): void {
    if (peer.id === this.opts.nodeId) return;
    const existing = this.links.get(peer.id);
    if (existing === undefined) {
      this.links.set(peer.id, new PeerLink({ ...peer }, this.opts.reconnectInitialMs));
      return;
    }
    if (existing.addr.host === peer.host && existing.addr.port === peer.port) return;
    // The address changed: drop the old connection; queued frames go out on the new one.
    existing.addr = { ...peer };
    this.resetConnection(existing);
    existing.backoffMs = this.opts.reconnectInitialMs;
    if (existing.queue.length > 0 && !this.closed) void this.connect(existing);
  }

  removePeer(id: PeerId): void {
    const link = this.links.get(id);
    if (link === undefined) return;
    this.links.delete(id);
    link.closed = true;
    this.resetConnection(link);
    link.queue = [];
    link.queuedBytes = 0;
    // A removed member's open connections go too: it is no longer allowed to speak.
    for (const c of this.inboundById.get(id) ?? []) c.destroy();
  }

  /** Frames a stranger sent are counted and (boundedly) logged; node-level code reports its own through here. */
  reject(reason: string, fields: object, msg: string): void {
    this.rejects.reject(reason, fields, msg);
  }

  stats(): Record<PeerId, PeerLinkStats> {
    const out: Record<PeerId, PeerLinkStats> = {};
    for (const [id, l] of this.links) {
      out[id] = { connected: l.open, queuedFrames: l.queue.length, queuedBytes: l.queuedBytes, ...l.stats };
    }
    return out;
  }

  get inboundConnections(): number {
    return this.inbound.size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.links.keys()]) this.removePeer(id);
    for (const c of this.inbound) c.destroy();
    this.inbound.clear();
    this.rejects.close();
    if (this.server !== null) await closeServer(this.server);
  }

  // ---- inbound ----

  private onInbound(socket: net.Socket, admission: Admission): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const conn = new FramedSocket(socket, this.opts.maxFrameBytes);
    this.inbound.add(conn);
    const remote = `${socket.remoteAddress}:${socket.remotePort}`;
    let from: PeerId | null = null;
    conn.onClose((err) => {
      this.inbound.delete(conn);
      if (from !== null) this.inboundById.get(from)?.delete(conn);
      if (err !== null && !this.closed) this.rejects.reject(reasonOf(err), { remote, peer: from, code: (err as MooringError).code, err: err.message }, 'peer connection closed');
      if (from !== null && !this.closed && this.links.has(from)) this.peerDown(from, 'closed');
    });
    const mine = makeHello(this.opts.clusterId, this.opts.nodeId, 'peer', undefined, this.stateVersion);
    const checkCn = this.tls?.verifyPeerIdentity === true && this.tls.requireClientCert;
    const verify = (hello: Hello): void => {
      if (!this.opts.acceptUnknownPeers && !this.links.has(hello.nodeId)) {
        throw new MooringError(ErrorCode.UNAUTHORIZED, `node '${hello.nodeId}' is not a member of this cluster`);
      }
      if (checkCn) {
        const cn = peerCertificateCn(socket);
        if (cn !== hello.nodeId) {
          throw new MooringError(ErrorCode.UNAUTHORIZED, `certificate CN '${cn ?? '-'}' does not match node id '${hello.nodeId}'`);
        }
      }
    };
    acceptHandshake(conn, mine, { clusterId: this.opts.clusterId, role: 'peer', token: this.token, verify }, this.opts.handshakeTimeoutMs).then(
      (theirs: Hello) => {
        if (conn.closed) return;
        from = theirs.nodeId;
        this.noteStateVersion(theirs);
        admission.authenticated();
        let set = this.inboundById.get(from);
        if (set === undefined) this.inboundById.set(from, (set = new Set()));
        set.add(conn);
        this.logger.debug({ remote, peer: from }, 'peer connected');
        conn.setHandler((frame) => this.deliver(theirs.nodeId, frame));
        this.redialNow(from);
      },
      (err: MooringError) => {
        this.rejects.reject(reasonOf(err), { remote, code: err.code, err: err.message }, 'peer handshake refused');
      },
    );
  }

  private peerDown(peer: PeerId, reason: PeerDownReason): void {
    try {
      this.peerDownHandler?.(peer, reason);
    } catch (err) {
      this.logger.error({ peer, err: (err as Error).message }, 'onPeerDown handler threw');
    }
  }

  private deliver(from: PeerId, frame: unknown): void {
    if (this.handler === null || this.closed) return;
    // Removed between the handshake and this frame: its connections are being closed.
    if (!this.opts.acceptUnknownPeers && !this.links.has(from)) return;
    try {
      this.handler(from, frame);
    } catch (err) {
      // The handler validates frames; a bug or bad frame there must not take the transport down.
      this.logger.error({ from, err: (err as Error).message }, 'onFrame handler threw');
    }
  }

  // ---- outbound ----

  private async connect(link: PeerLink): Promise<void> {
    if (link.closed || this.closed || link.connecting || link.open) return;
    link.connecting = true;
    const gen = ++link.generation;
    const { host, port, id } = link.addr;
    try {
      const socket = await dial(host, port, this.tls, this.opts.connectTimeoutMs);
      const conn = new FramedSocket(socket, this.opts.maxFrameBytes);
      if (gen !== link.generation || link.closed || this.closed) {
        conn.destroy();
        return;
      }
      link.conn = conn;
      const hello = makeHello(this.opts.clusterId, this.opts.nodeId, 'peer', this.token, this.stateVersion);
      const theirs = await dialHandshake(conn, hello, { clusterId: this.opts.clusterId, role: 'peer' }, this.opts.handshakeTimeoutMs);
      if (theirs.nodeId !== id) {
        conn.destroy();
        throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${host}:${port} is node '${theirs.nodeId}', not '${id}'`);
      }
      this.noteStateVersion(theirs);
      if (gen !== link.generation || link.closed || this.closed) {
        conn.destroy();
        return;
      }
      conn.setHandler(() => {}); // nothing flows back on an outbound connection after the handshake
      conn.socket.on('drain', () => {
        if (gen !== link.generation) return;
        link.blocked = false;
        this.scheduleFlush(link);
      });
      conn.onClose((err) => {
        if (gen !== link.generation) return;
        link.open = false;
        link.conn = null;
        link.blocked = false;
        if (!link.closed && !this.closed) {
          this.logger.info({ peer: id, err: err?.message }, 'peer connection lost');
          this.peerDown(id, 'closed');
          this.scheduleReconnect(link);
        }
      });
      link.open = true;
      link.connecting = false;
      link.backoffMs = this.opts.reconnectInitialMs;
      link.stats.connects++;
      this.logger.debug({ peer: id }, 'connected to peer');
      this.scheduleFlush(link);
    } catch (err) {
      if (gen !== link.generation) return;
      link.connecting = false;
      link.conn = null;
      const e = err as MooringError;
      this.logger.debug({ peer: id, code: e.code, err: e.message }, 'connect to peer failed');
      if (e.code === ErrorCode.CLUSTER_MISMATCH || e.code === ErrorCode.PROTOCOL_MISMATCH || e.code === ErrorCode.UNAUTHORIZED) {
        this.logger.warn({ peer: id, code: e.code, err: e.message }, 'peer refused our handshake');
      }
      if (!link.closed && !this.closed) this.peerDown(id, 'connect-failed');
      this.scheduleReconnect(link);
    } finally {
      if (gen === link.generation && !link.open) link.connecting = false;
    }
  }

  /**
   * `peer` just dialed us and authenticated, so it is up: our link to it, if waiting out its reconnect backoff,
   * dials now with the backoff reset. Otherwise a restarted member heard nothing from us for up to reconnectMaxMs
   * (the backoff grew while it was down) and pre-voted meanwhile; as a leader's follower it missed that long of
   * heartbeats (client-failover traces: a restarted master deaf for a second).
   */
  private redialNow(peer: PeerId): void {
    const link = this.links.get(peer);
    if (link === undefined || link.closed || this.closed || link.open || link.connecting || link.timer === null) return;
    clearTimeout(link.timer);
    link.timer = null;
    link.backoffMs = this.opts.reconnectInitialMs;
    void this.connect(link);
  }

  private scheduleReconnect(link: PeerLink): void {
    if (link.closed || this.closed || link.timer !== null) return;
    // Jitter spreads reconnect storms after a partition heals.
    const delay = Math.round(link.backoffMs * (0.5 + Math.random() * 0.5));
    link.backoffMs = Math.min(this.opts.reconnectMaxMs, link.backoffMs * 2);
    link.timer = setTimeout(() => {
      link.timer = null;
      // Idle links reconnect too (they were lazy, on the next send()): two followers send each other nothing until
      // their leader dies, and then the pre-vote and vote waited for a connect and a handshake (a TLS one with
      // certificates) on the failover's critical path (bench:failover traces: one dial per election).
      void this.connect(link);
    }, delay);
    link.timer.unref();
  }

  private resetConnection(link: PeerLink): void {
    link.generation++;
    if (link.timer !== null) {
      clearTimeout(link.timer);
      link.timer = null;
    }
    link.conn?.destroy();
    link.conn = null;
    link.open = false;
    link.connecting = false;
    link.blocked = false;
  }

  private scheduleFlush(link: PeerLink): void {
    if (link.flushScheduled) return;
    link.flushScheduled = true;
    // setImmediate lets every send() of this tick land in the queue first: one write per batch.
    setImmediate(() => {
      link.flushScheduled = false;
      this.flush(link);
    });
  }

  private flush(link: PeerLink): void {
    while (link.open && !link.blocked && link.queue.length > 0 && link.conn !== null) {
      let n = 0;
      let bytes = 0;
      while (n < link.queue.length && (n === 0 || bytes + link.queue[n]!.byteLength <= maxWriteBatchBytes)) {
        bytes += link.queue[n]!.byteLength;
        n++;
      }
      const batch = link.queue.splice(0, n);
      link.queuedBytes -= bytes;
      link.stats.sent += n;
      const ok = link.conn.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch, bytes));
      if (!ok) link.blocked = true;
    }
  }
}
