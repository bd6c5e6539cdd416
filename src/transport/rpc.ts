/**
 * Client RPC over the same frames and handshake (role 'client', optional token).
 * Request `{id, method, args}` → `{id, result}` or `{id, error: WireError}`. Many calls are pipelined on one
 * connection; replies may come back in any order.
 */
import type net from 'node:net';
import { ErrorCode, MooringError, type WireError } from '../errors.js';
import { defaultMaxFrameBytes, encodeFrame } from './codec.js';
import { FramedSocket } from './framed-socket.js';
import { acceptHandshake, dialHandshake, handshakeTimeoutMs as defaultHandshakeTimeoutMs, makeHello } from './handshake.js';
import { silentLogger, type LoggerLike } from './logger.js';
import { closeServer, createListener, dial, listen, resolveTls, type ResolvedTls, type TlsConfig } from './net-util.js';
import { ConnectionBudget, defaultIdleTimeoutMs, defaultMaxConnectionsPerAddress, defaultMaxInboundConnections, type Admission } from './conn-budget.js';
import { RejectLog, reasonOf, type RejectCounter } from './reject-log.js';

/** Requests a single connection may have running at once; more get a QUEUE_FULL reply. */
export const defaultMaxInflightRequestsPerConnection = 1024;
/** Calls a client may have waiting for replies; more are refused with QUEUE_FULL. */
export const defaultMaxPendingCalls = 65_536;
export const defaultRpcTimeoutMs = 5000;
export const defaultRpcConnectTimeoutMs = 3000;
/** Longest method name accepted. */
export const maxMethodNameChars = 128;

export interface RpcContext {
  /** The nodeId the client announced in its handshake. */
  clientNodeId: string;
  remoteAddress: string;
  connectionId: number;
}

export type RpcHandler = (args: unknown, ctx: RpcContext) => unknown | Promise<unknown>;

export interface RpcServerOptions {
  clusterId: string;
  nodeId: string;
  listen: { host: string; port: number };
  tls?: TlsConfig;
  /** When set, clients must present it in their handshake (else UNAUTHORIZED). */
  token?: string;
  maxFrameBytes?: number;
  maxInflightRequestsPerConnection?: number;
  maxConnections?: number;
  /** Connections one remote address may hold (see conn-budget.ts). */
  maxConnectionsPerAddress?: number;
  /** A handshaken connection silent this long is closed. */
  idleTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  logger?: LoggerLike;
  /** Counts rejected input (the `mooring_rejected_frames_total` metric). */
  onReject?: RejectCounter;
}

function isRequestId(v: unknown): v is number | string {
  return (typeof v === 'number' && Number.isSafeInteger(v)) || (typeof v === 'string' && v.length <= 64);
}

export class RpcServer {
  private readonly opts: RpcServerOptions;
  private readonly tls: ResolvedTls | undefined;
  private readonly logger: LoggerLike;
  private readonly maxFrameBytes: number;
  private readonly maxInflight: number;
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly conns = new Set<FramedSocket>();
  private server: net.Server | null = null;
  private boundPort = 0;
  private nextConnId = 1;
  private closed = false;
  private readonly rejects: RejectLog;

  constructor(options: RpcServerOptions) {
    this.opts = options;
    this.tls = resolveTls(options.tls);
    this.logger = options.logger ?? silentLogger;
    this.maxFrameBytes = options.maxFrameBytes ?? defaultMaxFrameBytes;
    this.maxInflight = options.maxInflightRequestsPerConnection ?? defaultMaxInflightRequestsPerConnection;
    this.rejects = new RejectLog(this.logger, 'rpc', options.onReject);
  }

  get port(): number {
    return this.boundPort;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Registers (or replaces) the handler for `method`. */
  handle(method: string, fn: RpcHandler): void {
    this.handlers.set(method, fn);
  }

  async start(): Promise<void> {
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'RPC server closed');
    if (this.server !== null) return;
    const budget = new ConnectionBudget({
      maxConnectionsPerAddress: this.opts.maxConnectionsPerAddress ?? defaultMaxConnectionsPerAddress,
      maxInboundConnections: this.opts.maxConnections ?? defaultMaxInboundConnections,
      idleTimeoutMs: this.opts.idleTimeoutMs ?? defaultIdleTimeoutMs,
    });
    const hsMs = this.opts.handshakeTimeoutMs ?? defaultHandshakeTimeoutMs;
    this.server = createListener(this.tls, this.logger, budget, this.rejects, hsMs, (s, a) => this.onConnection(s, a));
    this.boundPort = await listen(this.server, this.opts.listen.host, this.opts.listen.port);
    this.logger.info({ port: this.boundPort, tls: this.tls !== undefined }, 'RPC server listening');
  }

  /** Stops accepting and closes every connection (in-flight handlers finish, their replies are dropped). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    this.rejects.close();
    if (this.server !== null) await closeServer(this.server);
  }

  private onConnection(socket: net.Socket, admission: Admission): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const conn = new FramedSocket(socket, this.maxFrameBytes);
    const connectionId = this.nextConnId++;
    const remoteAddress = `${socket.remoteAddress}:${socket.remotePort}`;
    this.conns.add(conn);
    conn.onClose((err) => {
      this.conns.delete(conn);
      if (err !== null && !this.closed) this.rejects.reject(reasonOf(err), { remote: remoteAddress, code: (err as MooringError).code, err: err.message }, 'RPC connection closed');
    });
    // Respect backpressure: a client that does not read its replies stops being read from.
    conn.pauseReadsOnBackpressure = true;
    const mine = makeHello(this.opts.clusterId, this.opts.nodeId, 'client');
    acceptHandshake(conn, mine, { clusterId: this.opts.clusterId, role: 'client', token: this.opts.token }, this.opts.handshakeTimeoutMs ?? defaultHandshakeTimeoutMs).then(
      (hello) => {
        admission.authenticated();
        const ctx: RpcContext = { clientNodeId: hello.nodeId, remoteAddress, connectionId };
        const state = { inflight: 0 };
        conn.setHandler((frame) => this.onRequest(conn, ctx, state, frame));
      },
      (err: MooringError) => this.rejects.reject(reasonOf(err), { remote: remoteAddress, code: (err as MooringError).code, err: err.message }, 'RPC handshake refused'),
    );
  }

  private onRequest(conn: FramedSocket, ctx: RpcContext, state: { inflight: number }, frame: unknown): void {
    const req = frame as { id?: unknown; method?: unknown; args?: unknown } | null;
    if (typeof req !== 'object' || req === null || !isRequestId(req.id)) {
      // Without an id nothing can be answered: the client is broken or hostile.
      this.rejects.reject('no_request_id', { remote: ctx.remoteAddress }, 'RPC frame without a request id; closing the connection');
      conn.destroy(new MooringError(ErrorCode.MALFORMED_FRAME, 'request without id'));
      return;
    }
    const id = req.id;
    if (typeof req.method !== 'string' || req.method.length > maxMethodNameChars) {
      this.reply(conn, id, undefined, new MooringError(ErrorCode.INVALID_ARGUMENT, 'request without a valid method name'));
      return;
    }
    const method = req.method;
    const fn = this.handlers.get(method);
    if (fn === undefined) {
      this.reply(conn, id, undefined, new MooringError(ErrorCode.INVALID_ARGUMENT, `unknown method '${method.slice(0, 64)}'`));
      return;
    }
    if (state.inflight >= this.maxInflight) {
      this.reply(conn, id, undefined, new MooringError(ErrorCode.QUEUE_FULL, `more than ${this.maxInflight} requests in flight on this connection`));
      return;
    }
    state.inflight++;
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(fn(req.args, ctx));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (result) => this.reply(conn, id, result, null),
      (err: unknown) => {
        if (err instanceof MooringError) {
          this.reply(conn, id, undefined, err);
        } else {
          this.logger.error({ method, err: (err as Error)?.message ?? String(err), stack: (err as Error)?.stack }, 'RPC handler failed');
          this.reply(conn, id, undefined, new MooringError(ErrorCode.INTERNAL, `internal error in ${method}`));
        }
      },
    ).finally(() => {
      state.inflight--;
    });
  }

  private reply(conn: FramedSocket, id: number | string, result: unknown, error: MooringError | null): void {
    if (conn.closed) return;
    let bytes: Buffer;
    try {
      bytes = encodeFrame(error === null ? { id, result } : { id, error: error.toWire() }, this.maxFrameBytes);
    } catch (err) {
      const e = err instanceof MooringError ? err : new MooringError(ErrorCode.INTERNAL, 'reply does not encode');
      this.logger.error({ id, err: (err as Error).message }, 'RPC reply not sent as is');
      bytes = encodeFrame({ id, error: e.toWire() });
    }
    conn.send(bytes);
  }
}

export interface RpcClientOptions {
  host: string;
  port: number;
  clusterId: string;
  /** Announced in the handshake (for the server's logs). Default 'client'. */
  nodeId?: string;
  tls?: TlsConfig;
  token?: string;
  maxFrameBytes?: number;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  defaultTimeoutMs?: number;
  maxPendingCalls?: number;
  logger?: LoggerLike;
}

interface PendingCall {
  resolve: (v: unknown) => void;
  reject: (e: MooringError) => void;
  timer: NodeJS.Timeout;
  /** The request was handed to the connection: from then on a missing reply leaves its outcome unknown. */
  sent: boolean;
}

export class RpcClient {
  private readonly opts: RpcClientOptions;
  private readonly tls: ResolvedTls | undefined;
  private readonly logger: LoggerLike;
  private conn: FramedSocket | null = null;
  private connecting: Promise<FramedSocket> | null = null;
  private readonly pending = new Map<number, PendingCall>();
  private nextId = 1;
  private closed = false;

  constructor(options: RpcClientOptions) {
    this.opts = options;
    this.tls = resolveTls(options.tls);
    this.logger = options.logger ?? silentLogger;
  }

  get connected(): boolean {
    return this.conn !== null && !this.conn.closed;
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  /** Connects (and handshakes) now; call() also connects lazily, and again after the connection drops. */
  async connect(): Promise<void> {
    await this.ensureConnected();
  }

  call<T = unknown>(method: string, args?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closed) return Promise.reject(new MooringError(ErrorCode.SHUTTING_DOWN, 'RPC client closed'));
    if (this.pending.size >= (this.opts.maxPendingCalls ?? defaultMaxPendingCalls)) {
      return Promise.reject(new MooringError(ErrorCode.QUEUE_FULL, 'too many calls waiting for replies'));
    }
    const timeoutMs = opts.timeoutMs ?? this.opts.defaultTimeoutMs ?? defaultRpcTimeoutMs;
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const p = this.pending.get(id);
        if (p === undefined) return;
        this.pending.delete(id);
        // Still connecting: the request never left, so nothing can have applied it (a definite failure, which a
        // write's caller may report as such instead of OUTCOME_UNKNOWN).
        if (!p.sent) reject(new MooringError(ErrorCode.UNAVAILABLE, `connect to ${this.opts.host}:${this.opts.port} did not complete within ${timeoutMs} ms; ${method} was not sent`, { definite: true }));
        else reject(new MooringError(ErrorCode.TIMEOUT, `${method} got no reply within ${timeoutMs} ms; its outcome is unknown`));
      }, timeoutMs);
      const pending: PendingCall = { resolve: resolve as (v: unknown) => void, reject, timer, sent: false };
      this.pending.set(id, pending);
      this.ensureConnected().then(
        (conn) => {
          if (!this.pending.has(id)) return;
          let bytes: Buffer;
          try {
            bytes = encodeFrame({ id, method, args }, this.opts.maxFrameBytes ?? defaultMaxFrameBytes);
          } catch (err) {
            this.settle(id, undefined, err instanceof MooringError ? err : new MooringError(ErrorCode.INVALID_ARGUMENT, 'arguments do not encode'));
            return;
          }
          pending.sent = true;
          conn.send(bytes);
        },
        (err: MooringError) => this.settle(id, undefined, err),
      );
    });
  }

  /** Closes the connection; pending calls reject with SHUTTING_DOWN. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new MooringError(ErrorCode.SHUTTING_DOWN, 'RPC client closed'));
    this.conn?.destroy();
    this.conn = null;
  }

  private ensureConnected(): Promise<FramedSocket> {
    if (this.conn !== null && !this.conn.closed) return Promise.resolve(this.conn);
    if (this.connecting !== null) return this.connecting;
    const attempt = (async (): Promise<FramedSocket> => {
      const { host, port } = this.opts;
      const socket = await dial(host, port, this.tls, this.opts.connectTimeoutMs ?? defaultRpcConnectTimeoutMs);
      const maxFrameBytes = this.opts.maxFrameBytes ?? defaultMaxFrameBytes;
      const conn = new FramedSocket(socket, maxFrameBytes);
      const hello = makeHello(this.opts.clusterId, this.opts.nodeId ?? 'client', 'client', this.opts.token);
      await dialHandshake(conn, hello, { clusterId: this.opts.clusterId, role: 'client' }, this.opts.handshakeTimeoutMs ?? defaultHandshakeTimeoutMs);
      if (this.closed) {
        conn.destroy();
        throw new MooringError(ErrorCode.SHUTTING_DOWN, 'RPC client closed');
      }
      conn.setHandler((frame) => this.onReply(frame));
      conn.onClose((err) => {
        if (this.conn === conn) this.conn = null;
        // Calls on a dropped connection may or may not have run: the caller decides whether to retry.
        this.failAll(new MooringError(ErrorCode.UNAVAILABLE, `connection to ${host}:${port} lost${err !== null ? `: ${err.message}` : ''}; outcome unknown`));
      });
      this.conn = conn;
      return conn;
    })();
    this.connecting = attempt;
    const clear = (): void => {
      if (this.connecting === attempt) this.connecting = null;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  private onReply(frame: unknown): void {
    const r = frame as { id?: unknown; result?: unknown; error?: unknown } | null;
    if (typeof r !== 'object' || r === null || typeof r.id !== 'number') {
      this.logger.warn({}, 'RPC reply without a request id ignored');
      return;
    }
    if (r.error !== undefined && r.error !== null) this.settle(r.id, undefined, MooringError.fromWire(r.error as WireError));
    else this.settle(r.id, r.result, null);
  }

  private settle(id: number, result: unknown, err: MooringError | null): void {
    const p = this.pending.get(id);
    if (p === undefined) return; // timed out already
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (err !== null) p.reject(err);
    else p.resolve(result);
  }

  private failAll(err: MooringError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }
}
