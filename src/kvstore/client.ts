/**
 * KvClient: talks to a KvServer cluster (see server.ts for the methods).
 *
 * - Leader discovery: starts with the first endpoint, follows NOT_LEADER hints (`id@host:port`) at once (a hop
 *   is not an attempt; at most maxLeaderHintHops per call), and otherwise moves to the next endpoint.
 * - After failing to reach an endpoint, retries carry `avoidLeader: <that endpoint>`: a server that only knows that
 *   leader holds the request until a new one is elected (see KvServer.leaderOnly) rather than send it back there.
 * - Retries TIMEOUT, UNAVAILABLE (connection refused or lost), NOT_LEADER without a usable hint, SHUTTING_DOWN,
 *   PROPOSAL_DROPPED and QUEUE_FULL with exponential backoff, up to maxAttempts.
 * - Session: each put carries (clientId, seq); a retry re-sends the same seq, so a write retried across a failover
 *   is applied once. The state machine remembers one seq per clientId, so a client's writes are serialized: one
 *   KvClient has at most one put in flight (others queue). For concurrency, use several clients; `fork()` makes a
 *   client with its own session that shares this one's connections and leader knowledge.
 * - A put or get that throws after retrying has an unknown outcome unless the code is INVALID_ARGUMENT.
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { RpcClient } from '../transport/rpc.js';
import type { KvStatus } from './server.js';

export const defaultKvClientTimeoutMs = 2_000;
export const defaultKvClientMaxAttempts = 8;
export const defaultKvClientInitialBackoffMs = 25;
export const defaultKvClientMaxBackoffMs = 1_000;
/** NOT_LEADER hints followed within one call, so two confused nodes cannot bounce a request forever. */
export const maxLeaderHintHops = 4;
export const kvClientConnectTimeoutMs = 1_000;

export interface KvClientOptions {
  /** RPC endpoints, `host:port`. */
  endpoints: string[];
  clusterId?: string;
  /** Session identity. Default: a random UUID. */
  clientId?: string;
  /** Per RPC attempt. */
  timeoutMs?: number;
  maxAttempts?: number;
  backoff?: { initialMs?: number; maxMs?: number };
}

const retryable = new Set<string>([
  ErrorCode.NOT_LEADER,
  ErrorCode.TIMEOUT,
  ErrorCode.UNAVAILABLE,
  ErrorCode.RPC_FAILED,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.PROPOSAL_DROPPED,
  ErrorCode.QUEUE_FULL,
  ErrorCode.LEADERSHIP_TRANSFER_IN_PROGRESS,
  ErrorCode.STORAGE_FAILED,
]);

/** Connections and the believed leader, shared by a client and its forks. */
class Pool {
  readonly conns = new Map<string, RpcClient>();
  current = 0;
  closed = false;
  constructor(readonly endpoints: string[], readonly clusterId: string) {}

  connection(endpoint: string): RpcClient {
    let c = this.conns.get(endpoint);
    if (c === undefined) {
      const { host, port } = parseEndpoint(endpoint);
      c = new RpcClient({ host, port, clusterId: this.clusterId, nodeId: 'kv-client', connectTimeoutMs: kvClientConnectTimeoutMs });
      this.conns.set(endpoint, c);
    }
    return c;
  }

  use(endpoint: string): void {
    let i = this.endpoints.indexOf(endpoint);
    if (i < 0) {
      parseEndpoint(endpoint);
      this.endpoints.push(endpoint);
      i = this.endpoints.length - 1;
    }
    this.current = i;
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.conns.values()].map((c) => c.close()));
    this.conns.clear();
  }
}

export class KvClient {
  readonly clientId: string;
  private readonly opts: KvClientOptions;
  private readonly pool: Pool;
  private readonly owner: boolean;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly initialBackoffMs: number;
  private readonly maxBackoffMs: number;
  private seq = 0;
  private writeChain: Promise<unknown> = Promise.resolve();

  constructor(opts: KvClientOptions, shared?: Pool) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'KvClient needs at least one endpoint (host:port)');
    }
    for (const e of opts.endpoints) parseEndpoint(e);
    this.clientId = opts.clientId ?? randomUUID();
    this.pool = shared ?? new Pool([...opts.endpoints], opts.clusterId ?? 'mooring');
    this.owner = shared === undefined;
    this.timeoutMs = opts.timeoutMs ?? defaultKvClientTimeoutMs;
    this.maxAttempts = opts.maxAttempts ?? defaultKvClientMaxAttempts;
    this.initialBackoffMs = opts.backoff?.initialMs ?? defaultKvClientInitialBackoffMs;
    this.maxBackoffMs = opts.backoff?.maxMs ?? defaultKvClientMaxBackoffMs;
    this.opts = opts;
  }

  /** A client with its own session (clientId) sharing this client's connections; closing it closes nothing shared. */
  fork(clientId?: string): KvClient {
    const { clientId: _mine, ...rest } = this.opts;
    return new KvClient({ ...rest, endpoints: this.pool.endpoints, ...(clientId !== undefined ? { clientId } : {}) }, this.pool);
  }

  /** The endpoint this client currently believes is the leader. */
  get leaderEndpoint(): string {
    return this.pool.endpoints[this.pool.current]!;
  }

  /** Writes key=value exactly once; resolves with the previous value. */
  put(key: string, value: string): Promise<{ prev: string | null }> {
    const run = async (): Promise<{ prev: string | null }> => {
      const seq = ++this.seq;
      return this.call<{ prev: string | null }>('put', { key, value, clientId: this.clientId, seq });
    };
    const p = this.writeChain.then(run, run);
    this.writeChain = p.catch(() => {});
    return p;
  }

  /** A linearizable read through the leader. */
  async get(key: string): Promise<string | null> {
    const r = await this.call<{ value: string | null }>('get', { key });
    return r.value;
  }

  /** Status of one node (no retries), or of the believed leader (with retries). */
  status(endpoint?: string): Promise<KvStatus> {
    if (endpoint !== undefined) return this.pool.connection(endpoint).call<KvStatus>('status', {}, { timeoutMs: this.timeoutMs });
    return this.call<KvStatus>('status', {});
  }

  transferLeader(to: string): Promise<{ leader: string | null }> {
    return this.call('transferLeader', { to }, 10_000);
  }

  addMember(m: { id: string; host: string; raftPort: number; rpcPort: number }): Promise<unknown> {
    return this.call('addMember', m, 60_000);
  }

  removeMember(id: string): Promise<unknown> {
    return this.call('removeMember', { id }, 20_000);
  }

  async close(): Promise<void> {
    if (this.owner) await this.pool.close();
  }

  /** One call with leader discovery and retries. */
  async call<T>(method: string, args: Record<string, unknown>, timeoutMs = this.timeoutMs): Promise<T> {
    let attempts = 0;
    let hops = 0;
    let backoff = this.initialBackoffMs;
    let last: MooringError | null = null;
    // An endpoint this call could not reach: servers hold the request until they know a leader other than it.
    let avoid: string | null = null;
    while (!this.pool.closed) {
      const endpoint = this.pool.endpoints[this.pool.current]!;
      try {
        return await this.pool.connection(endpoint).call<T>(method, avoid !== null ? { ...args, avoidLeader: avoid } : args, { timeoutMs });
      } catch (err) {
        const e = err instanceof MooringError ? err : new MooringError(ErrorCode.RPC_FAILED, String(err));
        last = e;
        if (!retryable.has(e.code)) throw e;
        if (e.code === ErrorCode.UNAVAILABLE || e.code === ErrorCode.TIMEOUT) avoid = endpoint;
        if (e.code === ErrorCode.NOT_LEADER && e.leaderHint !== undefined && hops < maxLeaderHintHops) {
          const at = e.leaderHint.indexOf('@');
          const hinted = at >= 0 ? e.leaderHint.slice(at + 1) : null;
          if (hinted !== null && hinted !== endpoint && hinted !== avoid) {
            hops++;
            this.pool.use(hinted);
            continue;
          }
        }
        attempts++;
        if (attempts >= this.maxAttempts) break;
        // Move on only if the believed leader has not been changed meanwhile by another call sharing the pool.
        if (this.pool.endpoints[this.pool.current] === endpoint) this.pool.current = (this.pool.current + 1) % this.pool.endpoints.length;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, this.maxBackoffMs);
      }
    }
    throw last ?? new MooringError(ErrorCode.SHUTTING_DOWN, 'KvClient closed');
  }
}

export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(endpoint);
  const port = m !== null ? Number(m[2]) : NaN;
  if (m === null || !(port >= 1 && port <= 65535)) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `endpoint must be host:port, got ${JSON.stringify(endpoint)}`);
  }
  return { host: m[1]!, port };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
