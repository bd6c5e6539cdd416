/**
 * Listening and dialing over TCP or TLS, shared by the peer transport and the RPC layer.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { ErrorCode, MooringError } from '../errors.js';
import type { Admission, ConnectionBudget } from './conn-budget.js';
import type { LoggerLike } from './logger.js';
import type { RejectLog } from './reject-log.js';

/** PEM material given inline (contents) or as file paths. */
export interface TlsConfig {
  cert: string | Buffer;
  key: string | Buffer;
  /** The cluster CA: verifies the other side's certificate. */
  ca: string | Buffer;
  /** Server side: demand and verify a client certificate (mTLS). Default false. */
  requireClientCert?: boolean;
  /** Client side: check the server certificate's name against the host dialed. Default true. */
  verifyHostname?: boolean;
  /**
   * Peer transport under mTLS: the client certificate's CN must equal the node id announced in the handshake,
   * so one member's certificate cannot speak as another member. Default false.
   */
  verifyPeerIdentity?: boolean;
}

/** Socket-level keepalive, so a dead peer behind a silent network is noticed. */
export const tcpKeepAliveInitialDelayMs = 10_000;
export { defaultMaxInboundConnections } from './conn-budget.js';

function pem(v: string | Buffer): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v.includes('-----BEGIN')) return Buffer.from(v);
  try {
    return readFileSync(v);
  } catch (err) {
    throw new MooringError(ErrorCode.INVALID_CONFIG, `cannot read TLS file ${v}: ${(err as Error).message}`);
  }
}

export interface ResolvedTls {
  cert: Buffer;
  key: Buffer;
  ca: Buffer;
  requireClientCert: boolean;
  verifyHostname: boolean;
  verifyPeerIdentity: boolean;
}

/** The CN of the verified client certificate on a TLS socket, or null. */
export function peerCertificateCn(socket: net.Socket): string | null {
  if (!(socket instanceof tls.TLSSocket) || !socket.authorized) return null;
  const cn = socket.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' ? cn : Array.isArray(cn) ? (cn[0] ?? null) : null;
}

export function resolveTls(cfg: TlsConfig | undefined): ResolvedTls | undefined {
  if (cfg === undefined) return undefined;
  return {
    cert: pem(cfg.cert),
    key: pem(cfg.key),
    ca: pem(cfg.ca),
    requireClientCert: cfg.requireClientCert ?? false,
    verifyHostname: cfg.verifyHostname ?? true,
    verifyPeerIdentity: cfg.verifyPeerIdentity ?? false,
  };
}

function tuneSocket(socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.setKeepAlive(true, tcpKeepAliveInitialDelayMs);
}

/** Hard cap on sockets a server holds, over the budget's total: room for connections being refused. */
const listenerSlackConnections = 64;

/**
 * Creates a TCP or TLS server; `onSocket` gets each connection once it is ready (TLS: after the TLS handshake,
 * which must finish within handshakeTimeoutMs) and admitted by the budget; refused ones are closed at once.
 */
export function createListener(
  tlsCfg: ResolvedTls | undefined,
  logger: LoggerLike,
  budget: ConnectionBudget,
  rejects: RejectLog,
  handshakeTimeoutMs: number,
  onSocket: (socket: net.Socket, admission: Admission) => void,
): net.Server {
  let server: net.Server;
  budget.onEvict = (s) => rejects.reject('handshake_evicted', { remote: s.remoteAddress }, 'connection still in its handshake displaced by a newer one');
  const accept = (socket: net.Socket): void => {
    socket.on('error', () => {}); // reported through FramedSocket; never an uncaught 'error'
    const admission = budget.admit(socket);
    if (typeof admission === 'string') {
      rejects.reject(admission, { remote: socket.remoteAddress }, 'connection refused: over budget');
      socket.destroy();
      return;
    }
    tuneSocket(socket);
    onSocket(socket, admission);
  };
  if (tlsCfg !== undefined) {
    server = tls.createServer(
      {
        cert: tlsCfg.cert,
        key: tlsCfg.key,
        ca: tlsCfg.ca,
        requestCert: tlsCfg.requireClientCert,
        rejectUnauthorized: tlsCfg.requireClientCert,
        minVersion: 'TLSv1.2',
        handshakeTimeout: handshakeTimeoutMs,
      },
      accept,
    );
    server.on('tlsClientError', (err, socket) => {
      rejects.reject('tls_handshake', { err: err.message, remote: socket.remoteAddress }, 'TLS handshake refused');
      socket.destroy();
    });
  } else {
    server = net.createServer(accept);
  }
  server.maxConnections = budget.limits.maxInboundConnections + listenerSlackConnections;
  server.on('error', (err) => logger.error({ err: err.message }, 'listener error'));
  return server;
}

export function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(new MooringError(ErrorCode.INVALID_CONFIG, `cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
    });
  });
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Dials host:port; resolves once connected (TLS: once the server certificate verified). */
export function dial(host: string, port: number, tlsCfg: ResolvedTls | undefined, connectTimeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new MooringError(ErrorCode.TIMEOUT, `connect to ${host}:${port} timed out`));
    }, connectTimeoutMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(new MooringError(ErrorCode.UNAVAILABLE, `cannot connect to ${host}:${port}: ${err.message}`, { cause: err }));
    };
    const ok = (): void => {
      clearTimeout(timer);
      socket.off('error', fail);
      socket.on('error', () => {});
      tuneSocket(socket);
      resolve(socket);
    };
    if (tlsCfg !== undefined) {
      const opts: tls.ConnectionOptions = { host, port, ca: tlsCfg.ca, cert: tlsCfg.cert, key: tlsCfg.key, minVersion: 'TLSv1.2' };
      if (!net.isIP(host)) opts.servername = host;
      if (!tlsCfg.verifyHostname) opts.checkServerIdentity = () => undefined;
      socket = tls.connect(opts, ok);
    } else {
      socket = net.connect({ host, port }, ok);
    }
    socket.once('error', fail);
  });
}
