/**
 * MasterClient: how storage clients and tools talk to a Mooring master cluster.
 *
 * - An endpoint list; the client finds the leader, follows NOT_LEADER hints at once, and retries retryable
 *   failures on the next endpoint with exponential backoff (defaults: 100 ms initial, 5 s max, 3 attempts).
 * - A session (clientId, seq): every write carries the next seq, and a retry re-sends the same seq, so a write
 *   retried across a failover is applied once (the state machine returns the first reply).
 * - A ping loop (1 s) keeps the client alive on the leader; on NEED_REMOUNT (a new master that does not know
 *   this client, or the client was expired) it mounts its segments again.
 */
import { randomUUID } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { RpcClient } from '../transport/rpc.js';
import type { TlsConfig } from '../transport/net-util.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';
import type { NodeStatus, PutOptions, ReplicaDescriptor, SegmentSpec } from '../statemachine/commands.js';
import type { PutStartValue } from '../statemachine/state-core.js';
import { sessionReplyWindow } from '../statemachine/limits.js';
import { isReadMethod, parseLeaderHint, writeMethods, type MemberInfo, type PingReply, type WriteMethod } from './rpc-methods.js';

export const defaultRequestTimeoutMs = 2_000;
export const defaultInitialBackoffMs = 100;
export const defaultMaxBackoffMs = 5_000;
export const defaultMaxAttempts = 3;
export const defaultPingIntervalMs = 1_000;
/** NOT_LEADER hints followed within one call, so two confused masters cannot bounce a request forever. */
export const maxLeaderHintHopsPerCall = 8;

export interface RetryPolicy {
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  maxAttempts?: number;
}

export interface MasterClientOptions {
  /** RPC endpoints of the masters, `host:port`. */
  endpoints: string[];
  clusterId?: string;
  /** Stable identity of this client (its session). Default: a random UUID. */
  clientId?: string;
  tls?: TlsConfig;
  /** Connection token, when the masters require one. */
  token?: string;
  /** Sent with admin methods. */
  adminToken?: string;
  requestTimeoutMs?: number;
  retry?: RetryPolicy;
  pingIntervalMs?: number;
  /**
   * Where linearizable reads (getReplicaList, existKey, ...) go: 'any' (default) sends each to the master this
   * client has the fewest calls in flight with (every master serves them, see docs/raft.md "Follower reads"),
   * falling back to the leader path on a retryable failure; 'leader' sends them to the leader only.
   */
  readFrom?: 'leader' | 'any';
  logger?: LoggerLike;
}

export interface CallOptions {
  timeoutMs?: number;
  /** Retry policy override for this call. */
  retry?: RetryPolicy;
}

const retryableCodes = new Set<string>([
  ErrorCode.NOT_LEADER,
  ErrorCode.TIMEOUT,
  ErrorCode.UNAVAILABLE,
  ErrorCode.RPC_FAILED,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.PROPOSAL_DROPPED,
  ErrorCode.LEADERSHIP_TRANSFER_IN_PROGRESS,
  ErrorCode.QUEUE_FULL,
]);

export class MasterClient {
  readonly clientId: string;
  private readonly opts: MasterClientOptions;
  private readonly log: LoggerLike;
  private readonly endpoints: string[];
  private readonly conns = new Map<string, RpcClient>();
  private current = 0;
  private readRotation = 0;
  private readonly readsInFlight = new Map<string, number>();
  private seq = 0;
  private readonly mounted = new Map<string, SegmentSpec>();
  private pingTimer: NodeJS.Timeout | null = null;
  private remounting: Promise<void> | null = null;
  private closed = false;
  /** Writes of this session in flight, and callers waiting for one of the sessionReplyWindow slots. */
  private writesInFlight = 0;
  private readonly writeSlotWaiters: Array<() => void> = [];
  /** The last leader viewVersion seen in a ping reply. */
  viewVersion = 0;

  constructor(opts: MasterClientOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'MasterClient needs at least one endpoint (host:port)');
    }
    for (const e of opts.endpoints) parseEndpoint(e);
    this.opts = opts;
    this.endpoints = [...opts.endpoints];
    this.clientId = opts.clientId ?? randomUUID();
    this.log = opts.logger ?? silentLogger;
  }

  // ------------------------------------------------------------------ generic calls

  /** Calls a method with leader discovery and retries. Writes should use `write()` to get exactly-once. */
  async call<T = unknown>(method: string, args: Record<string, unknown> = {}, options: CallOptions = {}): Promise<T> {
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'MasterClient closed');
    const retry = { ...this.opts.retry, ...options.retry };
    const maxAttempts = retry.maxAttempts ?? defaultMaxAttempts;
    let backoff = retry.initialBackoffMs ?? defaultInitialBackoffMs;
    const maxBackoff = retry.maxBackoffMs ?? defaultMaxBackoffMs;
    const timeoutMs = options.timeoutMs ?? this.opts.requestTimeoutMs ?? defaultRequestTimeoutMs;
    if (isReadMethod(method) && method !== 'ping') {
      if (this.opts.readFrom === 'leader') args = { ...args, readFrom: 'leader' }; // followers answer NOT_LEADER
      else if (this.endpoints.length > 1) {
        const served = await this.readFromAny(method, args, timeoutMs);
        if (served.ok) return served.value as T;
      }
    }
    let attempts = 0;
    let hops = 0;
    let lastError: MooringError | null = null;
    for (;;) {
      const endpoint = this.endpoints[this.current]!;
      try {
        const result = await this.connection(endpoint).call(method, args, { timeoutMs });
        return result as T;
      } catch (err) {
        const e = err instanceof MooringError ? err : new MooringError(ErrorCode.RPC_FAILED, String(err));
        lastError = e;
        if (!retryableCodes.has(e.code)) throw e;
        if (e.code === ErrorCode.NOT_LEADER && e.leaderHint !== undefined && hops < maxLeaderHintHopsPerCall) {
          const hinted = parseLeaderHint(e.leaderHint).endpoint;
          if (hinted !== null && hinted !== endpoint) {
            hops++;
            this.useEndpoint(hinted);
            continue; // a hint is progress, not a failed attempt
          }
        }
        attempts++;
        if (attempts >= maxAttempts) break;
        this.current = (this.current + 1) % this.endpoints.length;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
    throw lastError ?? new MooringError(ErrorCode.UNAVAILABLE, 'no master answered');
  }

  /**
   * A write with this client's session: a retry re-sends the same seq and gets the first reply. At most
   * sessionReplyWindow writes of one session are in flight (the masters keep that many replies per session, so
   * every retry still finds its reply); further writes wait for a slot.
   */
  async write<T = unknown>(method: WriteMethod, args: Record<string, unknown>, options?: CallOptions): Promise<T> {
    if (!Object.prototype.hasOwnProperty.call(writeMethods, method)) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${method} is not a write method`);
    }
    while (this.writesInFlight >= sessionReplyWindow) await new Promise<void>((r) => this.writeSlotWaiters.push(r));
    this.writesInFlight++;
    try {
      const seq = ++this.seq;
      return await this.call<T>(method, { ...args, clientId: this.clientId, seq }, options);
    } finally {
      this.writesInFlight--;
      this.writeSlotWaiters.shift()?.();
    }
  }

  private adminArgs(args: Record<string, unknown>): Record<string, unknown> {
    return this.opts.adminToken !== undefined ? { ...args, adminToken: this.opts.adminToken } : args;
  }

  // ------------------------------------------------------------------ object API (Mooncake-shaped)

  /** Reserves space for `key`; resolves with where to write each replica. */
  async putStart(key: string, size: number, opts: Omit<PutOptions, 'key' | 'size' | 'replicaNum'> & { replicaNum?: number } = {}): Promise<ReplicaDescriptor[]> {
    const value = await this.write<PutStartValue>('putStart', { key, size, replicaNum: opts.replicaNum ?? 1, ...opts });
    return value.replicas;
  }

  putEnd(key: string): Promise<unknown> {
    return this.write('putEnd', { key });
  }

  putRevoke(key: string): Promise<unknown> {
    return this.write('putRevoke', { key });
  }

  batchPutStart(items: PutOptions[]): Promise<unknown[]> {
    return this.write('batchPutStart', { items });
  }

  batchPutEnd(keys: string[]): Promise<unknown[]> {
    return this.write('batchPutEnd', { keys });
  }

  batchPutRevoke(keys: string[]): Promise<unknown[]> {
    return this.write('batchPutRevoke', { keys });
  }

  getReplicaList(key: string, opts: { stale?: boolean } = {}): Promise<{ replicas: ReplicaDescriptor[]; leaseTtlMs: number }> {
    return this.call('getReplicaList', { key, ...opts });
  }

  batchGetReplicaList(keys: string[], opts: { stale?: boolean } = {}): Promise<unknown[]> {
    return this.call('batchGetReplicaList', { keys, ...opts });
  }

  existKey(key: string, opts: { stale?: boolean } = {}): Promise<boolean> {
    return this.call('existKey', { key, ...opts });
  }

  batchExistKey(keys: string[], opts: { stale?: boolean } = {}): Promise<boolean[]> {
    return this.call('batchExistKey', { keys, ...opts });
  }

  remove(key: string, force = false): Promise<unknown> {
    return this.write('remove', { key, force });
  }

  removeAll(force = false): Promise<number> {
    return this.write('removeAll', { force });
  }

  removeByPrefix(prefix: string, force = false): Promise<number> {
    return this.write('removeByPrefix', { prefix, force });
  }

  // ------------------------------------------------------------------ segments and liveness

  async mountSegment(segment: SegmentSpec): Promise<unknown> {
    const r = await this.write('mountSegment', { segment });
    this.mounted.set(segment.id, segment);
    return r;
  }

  async unmountSegment(segmentId: string, graceful = false): Promise<unknown> {
    const r = await this.write('unmountSegment', { segmentId, graceful });
    this.mounted.delete(segmentId);
    return r;
  }

  reMountSegments(): Promise<unknown> {
    return this.write('reMountSegment', { segments: [...this.mounted.values()] });
  }

  listSegments(): Promise<unknown[]> {
    return this.call('listSegments', {});
  }

  stats(): Promise<Record<string, unknown>> {
    return this.call('stats', {});
  }

  async ping(): Promise<PingReply> {
    const reply = await this.call<PingReply>('ping', { clientId: this.clientId });
    this.viewVersion = reply.viewVersion;
    if (reply.status === 'NEED_REMOUNT' && this.mounted.size > 0 && this.remounting === null) {
      this.log.info({ clientId: this.clientId, segments: this.mounted.size }, 'master asked for a remount');
      this.remounting = this.reMountSegments().then(
        () => { this.remounting = null; },
        (err) => { this.remounting = null; this.log.warn({ err: String(err) }, 'remount failed; will retry on the next ping'); },
      );
      await this.remounting;
    }
    return reply;
  }

  /** Starts the 1 s ping loop (idempotent). Failures are logged and retried on the next tick. */
  startPing(intervalMs = this.opts.pingIntervalMs ?? defaultPingIntervalMs): void {
    if (this.pingTimer !== null) return;
    let inFlight = false;
    this.pingTimer = setInterval(() => {
      if (inFlight || this.closed) return;
      inFlight = true;
      this.ping().catch((err) => this.log.debug({ err: String(err) }, 'ping failed')).finally(() => { inFlight = false; });
    }, intervalMs);
    this.pingTimer.unref();
  }

  stopPing(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  // ------------------------------------------------------------------ admin

  status(endpoint?: string): Promise<Record<string, unknown>> {
    if (endpoint !== undefined) return this.connection(endpoint).call('status', {}, { timeoutMs: this.opts.requestTimeoutMs ?? defaultRequestTimeoutMs }) as Promise<Record<string, unknown>>;
    return this.call('status', {});
  }

  members(): Promise<MemberInfo[]> {
    return this.call('members', this.adminArgs({}));
  }

  setNodeStatus(nodeId: string, status: NodeStatus): Promise<unknown> {
    return this.write('setNodeStatus', this.adminArgs({ nodeId, status }));
  }

  transferLeader(to: string): Promise<unknown> {
    return this.call('transferLeader', this.adminArgs({ to }), { timeoutMs: 10_000 });
  }

  addMember(member: { id: string; host: string; raftPort: number; rpcPort: number; httpPort?: number }): Promise<unknown> {
    return this.call('addMember', this.adminArgs({ ...member }), { timeoutMs: 60_000 });
  }

  removeMember(id: string): Promise<unknown> {
    return this.call('removeMember', this.adminArgs({ id }), { timeoutMs: 20_000 });
  }

  snapshot(): Promise<{ index: number }> {
    return this.call('snapshot', this.adminArgs({}), { timeoutMs: 60_000 });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopPing();
    await Promise.all([...this.conns.values()].map((c) => c.close()));
    this.conns.clear();
  }

  // ------------------------------------------------------------------ internals

  private useEndpoint(endpoint: string): void {
    let i = this.endpoints.indexOf(endpoint);
    if (i < 0) {
      parseEndpoint(endpoint);
      this.endpoints.push(endpoint);
      i = this.endpoints.length - 1;
    }
    this.current = i;
  }

  /**
   * One attempt of a read at the least-busy master (fewest calls of this client in flight; ties rotate). A
   * retryable failure is not final: the caller goes on with the leader path.
   */
  private async readFromAny(method: string, args: Record<string, unknown>, timeoutMs: number): Promise<{ ok: true; value: unknown } | { ok: false }> {
    let best = '';
    let bestLoad = Infinity;
    for (let i = 0; i < this.endpoints.length; i++) {
      const e = this.endpoints[(this.readRotation + i) % this.endpoints.length]!;
      const load = this.readsInFlight.get(e) ?? 0;
      if (load < bestLoad) {
        best = e;
        bestLoad = load;
      }
    }
    this.readRotation = (this.readRotation + 1) % this.endpoints.length;
    this.readsInFlight.set(best, bestLoad + 1);
    try {
      return { ok: true, value: await this.connection(best).call(method, args, { timeoutMs }) };
    } catch (err) {
      if (err instanceof MooringError && !retryableCodes.has(err.code)) throw err;
      return { ok: false };
    } finally {
      this.readsInFlight.set(best, (this.readsInFlight.get(best) ?? 1) - 1);
    }
  }

  private connection(endpoint: string): RpcClient {
    let c = this.conns.get(endpoint);
    if (c === undefined) {
      const { host, port } = parseEndpoint(endpoint);
      c = new RpcClient({
        host,
        port,
        clusterId: this.opts.clusterId ?? 'mooring',
        nodeId: this.clientId,
        ...(this.opts.tls !== undefined ? { tls: this.opts.tls } : {}),
        ...(this.opts.token !== undefined ? { token: this.opts.token } : {}),
        connectTimeoutMs: Math.min(this.opts.requestTimeoutMs ?? defaultRequestTimeoutMs, 3_000),
        logger: this.log,
      });
      this.conns.set(endpoint, c);
    }
    return c;
  }
}

export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(endpoint);
  const port = m !== null ? Number(m[2]) : NaN;
  if (m === null || !(port >= 1 && port <= 65535)) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `endpoint must be host:port, got ${JSON.stringify(endpoint)}`);
  }
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
