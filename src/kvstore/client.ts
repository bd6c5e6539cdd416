/**
 * KvClient: talks to a KvServer cluster (see server.ts for the methods).
 *
 * - Calls go through the shared LeaderClient (src/client/leader-client.ts), with MasterClient's defaults: leader
 *   hints with terms, hedging when the leader is silent, failed endpoints skipped for a while, a retry budget by
 *   time. Retries after failing to reach an endpoint carry `avoidLeader: <that endpoint>`: a server that only knows
 *   that leader holds the request until a new one is elected (see KvServer.leaderOnly) rather than send it back.
 * - Session: each put carries (clientId, seq); a retry re-sends the same seq, so a write retried across a failover
 *   is applied once. The state machine remembers one seq per clientId, so a client's writes are serialized: one
 *   KvClient has at most one put in flight (others queue). For concurrency, use several clients; `fork()` makes a
 *   client with its own session that shares this one's connections and leader knowledge.
 * - A put that gives up after an attempt that may have applied throws OUTCOME_UNKNOWN (`definite: false`).
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { LeaderPool, callWithRetry, defaultRetryPolicy, parseEndpoint, type RetryPolicy } from '../client/leader-client.js';
import type { KvStatus } from './server.js';

export { parseEndpoint };

export interface KvClientOptions {
  /** RPC endpoints, `host:port`. */
  endpoints: string[];
  clusterId?: string;
  /** Session identity. Default: a random UUID. */
  clientId?: string;
  /** Per RPC attempt (default: defaultRetryPolicy.attemptTimeoutMs). */
  timeoutMs?: number;
  /** Optional cap on attempts per call; the call's budget is retry.deadlineMs. */
  maxAttempts?: number;
  backoff?: { initialMs?: number; maxMs?: number };
  retry?: RetryPolicy;
}

export class KvClient {
  readonly clientId: string;
  private readonly opts: KvClientOptions;
  private readonly pool: LeaderPool;
  private readonly owner: boolean;
  private readonly retry: RetryPolicy;
  private seq = 0;
  private writeChain: Promise<unknown> = Promise.resolve();

  constructor(opts: KvClientOptions, shared?: LeaderPool) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'KvClient needs at least one endpoint (host:port)');
    }
    this.clientId = opts.clientId ?? randomUUID();
    this.pool = shared ?? new LeaderPool({ endpoints: opts.endpoints, clusterId: opts.clusterId ?? 'mooring', nodeId: 'kv-client' });
    this.owner = shared === undefined;
    this.retry = {
      ...opts.retry,
      ...(opts.timeoutMs !== undefined ? { attemptTimeoutMs: opts.timeoutMs } : {}),
      ...(opts.maxAttempts !== undefined ? { maxAttempts: opts.maxAttempts } : {}),
      ...(opts.backoff?.initialMs !== undefined ? { initialBackoffMs: opts.backoff.initialMs } : {}),
      ...(opts.backoff?.maxMs !== undefined ? { maxBackoffMs: opts.backoff.maxMs } : {}),
    };
    this.opts = opts;
  }

  /** A client with its own session (clientId) sharing this client's connections; closing it closes nothing shared. */
  fork(clientId?: string): KvClient {
    const { clientId: _mine, ...rest } = this.opts;
    return new KvClient({ ...rest, endpoints: this.pool.endpoints, ...(clientId !== undefined ? { clientId } : {}) }, this.pool);
  }

  /** The endpoint this client currently believes is the leader. */
  get leaderEndpoint(): string {
    return this.pool.leaderEndpoint;
  }

  /**
   * Writes key=value exactly once. With `{prev: true}` it resolves with the previous value (null if none), which
   * costs the leader a read of it before it answers (etcd's prevKv); without, with `{}`.
   */
  put(key: string, value: string, opts: { prev?: boolean } = {}): Promise<{ prev?: string | null }> {
    const run = async (): Promise<{ prev?: string | null }> => {
      const seq = ++this.seq;
      return this.call<{ prev?: string | null }>('put', { key, value, clientId: this.clientId, seq, ...(opts.prev === true ? { prev: true } : {}) }, undefined, true);
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

  /** Status of one node (no retries), or of the believed leader (with retries); the state hash only on request. */
  status(endpoint?: string, opts: { stateHash?: boolean } = {}): Promise<KvStatus> {
    const args = opts.stateHash === true ? { stateHash: true } : {};
    if (endpoint !== undefined) return this.pool.connection(endpoint).call<KvStatus>('status', args, { timeoutMs: this.retry.attemptTimeoutMs ?? 1_000 });
    return this.call<KvStatus>('status', args);
  }

  transferLeader(to: string): Promise<{ leader: string | null }> {
    return this.call('transferLeader', { to }, 10_000, true);
  }

  addMember(m: { id: string; host: string; raftPort: number; rpcPort: number }): Promise<unknown> {
    return this.call('addMember', m, 60_000, true);
  }

  removeMember(id: string): Promise<unknown> {
    return this.call('removeMember', { id }, 20_000, true);
  }

  async close(): Promise<void> {
    if (this.owner) await this.pool.close();
  }

  /** One call with leader discovery and retries (`write`: it has side effects; a long `timeoutMs` is not hedged). */
  call<T>(method: string, args: Record<string, unknown>, timeoutMs?: number, write = false): Promise<T> {
    const retry: RetryPolicy = timeoutMs === undefined ? this.retry : { ...this.retry, attemptTimeoutMs: timeoutMs, deadlineMs: Math.max(timeoutMs, this.retry.deadlineMs ?? defaultRetryPolicy.deadlineMs) };
    return callWithRetry<T>(this.pool, method, args, { write, retry, hedge: timeoutMs === undefined, avoidLeaderArg: true });
  }
}
