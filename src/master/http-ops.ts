/**
 * The operations HTTP endpoint (node:http): GET /health, /ready, /metrics, /status. Nothing else.
 *
 * Bounded by construction: request bodies are never read (a request that announces one gets its answer and the
 * connection is closed), header size/count, header and request timeouts and the number of connections are capped,
 * and a failing status()/ready()/metrics callback yields a 500/503, never a crashed process.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/** Limits (named, with units). */
export const HTTP_HEADERS_TIMEOUT_MS = 5_000;
export const HTTP_REQUEST_TIMEOUT_MS = 10_000;
export const HTTP_KEEP_ALIVE_TIMEOUT_MS = 5_000;
export const HTTP_MAX_HEADER_BYTES = 16 * 1024;
export const HTTP_MAX_HEADERS_COUNT = 64;
export const HTTP_MAX_CONNECTIONS = 256;
/**
 * Connections one remote address may hold on this port (default). With HTTP_MAX_CONNECTIONS well above it, one
 * host holding its share cannot keep a liveness probe from another host out. This port has its own budget, so
 * /health and /ready answer whatever the peer and RPC ports are going through.
 */
export const HTTP_MAX_CONNECTIONS_PER_ADDRESS = 32;

export interface Readiness {
  ready: boolean;
  reason?: string;
}

export interface HttpOpsOptions {
  host: string;
  /** 0 = ephemeral (the chosen port is in the result). */
  port: number;
  /** Anything with a prom-client Registry, e.g. the MasterMetrics from createMasterMetrics(). */
  metrics: { registry: { metrics(): Promise<string>; contentType: string } };
  /**
   * JSON for /status (may be async). Must not contain secrets: see redactConfig(). `stateHash` only for
   * `/status?stateHash=1`: hashing the whole state is O(state) on the event loop, and a cheap unauthenticated
   * request must not be able to stall a leader past its election timeout.
   */
  status: (opts: { stateHash: boolean }) => unknown;
  /** /ready: 200 when ready, else 503 with the reason (may be async). */
  ready: () => Readiness | Promise<Readiness>;
  logger: Logger;
  maxConnectionsPerAddress?: number;
  /** Counts refused connections (the `mooring_rejected_frames_total` metric, port "http"). */
  onReject?: (port: 'http', reason: string) => void;
}

export interface HttpOps {
  /** The port actually bound. */
  port: number;
  /** Stops accepting, closes open connections. Idempotent. */
  close(): Promise<void>;
}

export async function startHttpOps(options: HttpOpsOptions): Promise<HttpOps> {
  const log = options.logger.child({ component: 'http-ops' });
  const server = createServer({ maxHeaderSize: HTTP_MAX_HEADER_BYTES }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, url: req.url }, 'http-ops handler failed');
      if (!res.headersSent) send(res, 500, 'application/json', JSON.stringify({ error: 'internal error' }));
      else res.destroy();
    });
  });
  server.headersTimeout = HTTP_HEADERS_TIMEOUT_MS;
  server.requestTimeout = HTTP_REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = HTTP_KEEP_ALIVE_TIMEOUT_MS;
  server.maxHeadersCount = HTTP_MAX_HEADERS_COUNT;
  server.maxConnections = HTTP_MAX_CONNECTIONS;
  const perAddressLimit = Math.min(options.maxConnectionsPerAddress ?? HTTP_MAX_CONNECTIONS_PER_ADDRESS, HTTP_MAX_CONNECTIONS_PER_ADDRESS);
  const perAddress = new Map<string, number>();
  server.on('connection', (socket) => {
    const addr = socket.remoteAddress ?? '?';
    const n = perAddress.get(addr) ?? 0;
    if (n >= perAddressLimit) {
      options.onReject?.('http', 'per_address_limit');
      socket.destroy();
      return;
    }
    perAddress.set(addr, n + 1);
    socket.once('close', () => {
      const left = (perAddress.get(addr) ?? 1) - 1;
      if (left <= 0) perAddress.delete(addr);
      else perAddress.set(addr, left);
    });
  });
  // Malformed HTTP: answer 400 if the socket still can, never throw.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    log.debug({ code: err.code }, 'bad http request');
    options.onReject?.('http', 'bad_request');
    if (socket.writable && !(err.code === 'ECONNRESET')) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Bodies are never read; closing afterwards keeps an unread body from being parsed as the next request.
    if (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0') res.shouldKeepAlive = false;
    if (req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false;
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    switch (path) {
      case '/health':
        return send(res, 200, 'text/plain; charset=utf-8', 'ok');
      case '/ready': {
        let r: Readiness;
        try {
          const got: unknown = await options.ready();
          r = typeof got === 'object' && got !== null ? (got as Readiness) : { ready: false, reason: 'readiness check returned nothing' };
        } catch (err) {
          log.warn({ err }, 'readiness check failed');
          r = { ready: false, reason: `readiness check failed: ${(err as Error)?.message ?? String(err)}` };
        }
        const body = r.ready === true ? { ready: true } : { ready: false, reason: typeof r.reason === 'string' ? r.reason : 'not ready' };
        return send(res, body.ready ? 200 : 503, 'application/json', JSON.stringify(body));
      }
      case '/metrics': {
        const text = await options.metrics.registry.metrics();
        return send(res, 200, options.metrics.registry.contentType, text);
      }
      case '/status': {
        const query = (req.url ?? '').split('?', 2)[1] ?? '';
        const stateHash = new URLSearchParams(query).get('stateHash') === '1';
        const body = JSON.stringify(await options.status({ stateHash }), (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
        return send(res, 200, 'application/json', body ?? 'null');
      }
      default:
        return send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'http-ops server error'));
  const port = (server.address() as AddressInfo).port;
  log.info({ host: options.host, port }, 'http-ops listening');

  let closing: Promise<void> | null = null;
  return {
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}
