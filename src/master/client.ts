/**
 * MasterClient: how storage clients and tools talk to a Mooring master cluster.
 *
 * - An endpoint list; calls go through the shared LeaderClient (src/client/leader-client.ts): leader hints with
 *   terms, hedging to other masters when the leader is silent, failed endpoints skipped for a while, and a retry
 *   budget by time (default 5 s per call). A write that gives up after an attempt that may have applied fails with
 *   OUTCOME_UNKNOWN (`definite: false`).
 * - A session (clientId, seq): every write carries the next seq, and a retry re-sends the same seq, so a write
 *   retried across a failover (or hedged to two masters) is applied once (the state machine returns the first reply).
 * - A ping loop (1 s) keeps the client alive on the leader; on NEED_REMOUNT (a new master that does not know
 *   this client, or the client was expired) it mounts its segments again.
 */
import { withFields } from '../util/with-fields.js';
import { randomUUID } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import type { TlsConfig } from '../transport/net-util.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';
import type { NodeStatus, PutOptions, ReplicaDescriptor, Result, SegmentSpec } from '../statemachine/commands.js';
import type { GetReplicaListValue, PutStartValue, StateStats } from '../statemachine/state-core.js';
import type { SegmentInfo } from '../statemachine/segments.js';
import type { ConfState } from '../raft/core/types.js';
import { sessionReplyWindow } from '../statemachine/limits.js';
import type { Writable } from 'node:stream';
import { streamBackup, type BackupProgress, type BackupResult } from './backup.js';
import { expandReplicaLists } from './replica-lists-wire.js';
import { LeaderPool, callWithRetry, defaultRetryPolicy, isRetryable, parseEndpoint, resolvePolicy, type RetryPolicy } from '../client/leader-client.js';
import { ReadBalancer } from '../client/read-balancer.js';
import {
  isAdminMethod,
  isReadMethod,
  isWriteMethod,
  type ArgsOf,
  type MasterMethod,
  type MemberInfo,
  type NewMember,
  type PingReply,
  type ResultOf,
  type SegmentReply,
  type WireArgsOf,
  type WriteMethod,
} from './rpc-methods.js';

export { parseEndpoint, type RetryPolicy };
export const defaultPingIntervalMs = 1_000;

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
  /** One attempt's timeout (default defaultRetryPolicy.attemptTimeoutMs); the call's budget is retry.deadlineMs. */
  requestTimeoutMs?: number;
  retry?: RetryPolicy;
  pingIntervalMs?: number;
  /**
   * Where linearizable reads (getReplicaList, existKey, ...) go: 'any' (default) sends each to the master with the
   * lowest expected wait as this client sees it, its recent latency × this client's reads in flight there
   * (src/client/read-balancer.ts; every master serves them, see docs/raft.md "Follower reads"), falling back to the
   * leader path on a retryable failure; 'leader' sends them to the leader only.
   */
  readFrom?: 'leader' | 'any';
  logger?: LoggerLike;
}

export interface CallOptions {
  /** One attempt's timeout; a longer one also extends the call's deadline to cover it. */
  timeoutMs?: number;
  /** Retry policy override for this call. */
  retry?: RetryPolicy;
}

/** How long a client that found no sessions in the cluster writes without one before asking again. */
export const sessionRetryMs = 30_000;

export class MasterClient {
  readonly clientId: string;
  private readonly opts: MasterClientOptions;
  private readonly log: LoggerLike;
  private readonly pool: LeaderPool;
  /** Where readFrom 'any' sends the next read (peak-EWMA latency × reads in flight: read-balancer.ts). */
  private readonly reads = new ReadBalancer();
  private seq = 0;
  /**
   * This client's session (state version ≥ 3, docs/store.md "Sessions"): its epoch once opened, the nonce that makes
   * a retried openSession idempotent, and until when a cluster without sessions is not asked again.
   */
  private sessionEpoch: number | null = null;
  private readonly sessionNonce = randomUUID();
  private opening: Promise<number | null> | null = null;
  private sessionsUnsupportedUntil = 0;
  private readonly mounted = new Map<string, SegmentSpec>();
  private pingTimer: NodeJS.Timeout | null = null;
  private remounting: Promise<void> | null = null;
  private closed = false;
  /** The retry policy of a call without options, resolved once (a policy built per call was ~10% of a get's client CPU). */
  private readonly callPolicy: Required<RetryPolicy>;
  /** Writes of this session in flight, and callers waiting for one of the sessionReplyWindow slots. */
  private writesInFlight = 0;
  private readonly writeSlotWaiters: Array<() => void> = [];
  /** The last leader viewVersion seen in a ping reply. */
  viewVersion = 0;

  constructor(opts: MasterClientOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'MasterClient needs at least one endpoint (host:port)');
    }
    this.opts = opts;
    this.callPolicy = callPolicy(opts, {});
    this.clientId = opts.clientId ?? randomUUID();
    this.log = opts.logger ?? silentLogger;
    this.pool = new LeaderPool({
      endpoints: opts.endpoints,
      clusterId: opts.clusterId ?? 'mooring',
      nodeId: this.clientId,
      ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
      ...(opts.token !== undefined ? { token: opts.token } : {}),
      logger: this.log,
    });
  }

  /** The master this client currently believes leads. */
  get leaderEndpoint(): string {
    return this.pool.leaderEndpoint;
  }

  // ------------------------------------------------------------------ generic calls

  /** Calls a method with leader discovery and retries. Writes should use `write()` to get exactly-once. */
  call<M extends MasterMethod>(method: M, args?: NoInfer<WireArgsOf<M>>, options?: CallOptions): Promise<ResultOf<M>> {
    return this.callRaw(method, args, options) as Promise<ResultOf<M>>;
  }

  /** Untyped form for tools that build requests themselves (the server validates them all the same). */
  callRaw(method: string, args?: object, options: CallOptions = {}): Promise<unknown> {
    // Not async: the promise of the path taken is returned as is (an async wrapper added a promise and two microtask
    // hops per call).
    if (this.closed) return Promise.reject(new MooringError(ErrorCode.SHUTTING_DOWN, 'MasterClient closed'));
    const retry = options.retry === undefined && options.timeoutMs === undefined ? this.callPolicy : callPolicy(this.opts, options);
    const attemptTimeoutMs = retry.attemptTimeoutMs;
    let wireArgs = (args ?? {}) as Record<string, unknown>;
    if (isReadMethod(method) && method !== 'ping' && wireArgs.stale !== true) {
      if (this.opts.readFrom === 'leader') wireArgs = withFields(wireArgs, { readFrom: 'leader' }); // followers answer NOT_LEADER
      else if (this.pool.endpoints.length > 1) {
        // Reads any master serves (follower reads): the one with the lowest expected wait first, the leader path when
        // it fails or stays silent past hedgeAfterMs (a paused or catching-up master must not hold a read for a whole
        // attempt).
        return this.readAnyThenLeader(method, wireArgs, retry, attemptTimeoutMs);
      }
    }
    return this.leaderPath(method, wireArgs, retry);
  }

  private leaderPath(method: string, wire: Record<string, unknown>, retry: RetryPolicy): Promise<unknown> {
    const admin = isAdminMethod(method);
    return callWithRetry<unknown>(this.pool, method, wire, {
      write: admin || isWriteMethod(method),
      retry,
      hedge: !admin,
      avoidLeaderArg: true,
      leaderOnly: wire.stale !== true,
    });
  }

  /**
   * A read at the master with the lowest expected wait; if it fails retryably, or has not answered within
   * hedgeAfterMs, the leader path runs too and the first answer wins (reads have no effects, so both may run). A
   * definite error from either is the answer.
   */
  private async readAnyThenLeader(method: string, wire: Record<string, unknown>, retry: RetryPolicy, attemptTimeoutMs: number): Promise<unknown> {
    const hedgeAfterMs = retry.hedgeAfterMs ?? defaultRetryPolicy.hedgeAfterMs;
    const first = this.readFromAny(method, wire, attemptTimeoutMs);
    const early = await this.pool.env.race(first, Math.max(1, hedgeAfterMs));
    if (early !== null) {
      if (early.ok) return early.value;
      return this.leaderPath(method, wire, retry);
    }
    const leader = this.leaderPath(method, wire, retry);
    // The first success wins; the leader path's outcome is final otherwise (it retries until its deadline).
    const fromAny = first.then((r) => (r.ok ? r : new Promise<never>(() => {})));
    const won = await Promise.race([fromAny, leader.then((value) => ({ ok: true as const, value }))]);
    leader.catch(() => {}); // the loser's failure is nobody's answer
    return won.value;
  }

  /**
   * A write with this client's session: a retry re-sends the same seq and gets the first reply. At most
   * sessionReplyWindow writes of one session are in flight (the masters keep that many replies per session, so
   * every retry still finds its reply); further writes wait for a slot.
   */
  async write<M extends WriteMethod>(method: M, args: ArgsOf<M> & { adminToken?: string }, options?: CallOptions): Promise<ResultOf<M>> {
    if (!isWriteMethod(method)) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${method} is not a write method`);
    }
    while (this.writesInFlight >= sessionReplyWindow) await new Promise<void>((r) => this.writeSlotWaiters.push(r));
    this.writesInFlight++;
    try {
      const epoch = await this.session();
      const seq = ++this.seq;
      // The contract's arguments plus the session: exactly what WireArgsOf<M> allows (TS cannot see it through M).
      const wire = withFields(args, { clientId: this.clientId, seq, ...(epoch !== null ? { epoch } : {}) }) as WireArgsOf<M>;
      try {
        return await this.call(method, wire, options);
      } catch (err) {
        // Not applied now; an earlier attempt of it may have been. The next write opens a new session.
        if (err instanceof MooringError && err.code === ErrorCode.SESSION_EXPIRED) {
          if (epoch !== null && this.sessionEpoch === epoch) {
            this.sessionEpoch = null;
            this.log.warn({ clientId: this.clientId, method, err: err.message }, 'the session of this client is not open any more (expired, or another process uses this client id); the next write opens a new one');
          }
          // This attempt changed nothing, but an earlier one (a timeout, a lost connection) may have applied.
          throw new MooringError(ErrorCode.SESSION_EXPIRED, `${method}: ${err.message}`, { definite: false, cause: err });
        }
        throw err;
      }
    } finally {
      this.writesInFlight--;
      this.writeSlotWaiters.shift()?.();
    }
  }

  /**
   * The epoch of this client's open session, opening one first if needed (one write to the log per session); null
   * when the cluster has no sessions yet (an older master, or a state version below 3: writes go without an epoch,
   * and the client asks again after sessionRetryMs).
   */
  private session(): Promise<number | null> {
    if (this.sessionEpoch !== null) return Promise.resolve(this.sessionEpoch);
    if (Date.now() < this.sessionsUnsupportedUntil) return Promise.resolve(null);
    this.opening ??= this.openSession().finally(() => { this.opening = null; });
    return this.opening;
  }

  private async openSession(): Promise<number | null> {
    try {
      const { epoch } = await this.call('openSession', { clientId: this.clientId, nonce: this.sessionNonce });
      this.sessionEpoch = epoch;
      return epoch;
    } catch (err) {
      // An older master does not know the method; a cluster below state version 3 refuses it: no sessions yet.
      if (err instanceof MooringError && err.code === ErrorCode.INVALID_ARGUMENT) {
        this.sessionsUnsupportedUntil = Date.now() + sessionRetryMs;
        this.log.debug({ clientId: this.clientId, err: err.message }, 'the cluster has no client sessions yet; writing without an epoch');
        return null;
      }
      throw err;
    }
  }

  /** The admin token, spread into the arguments of admin methods. */
  private admin(): { adminToken?: string } {
    return this.opts.adminToken !== undefined ? { adminToken: this.opts.adminToken } : {};
  }

  // ------------------------------------------------------------------ object API (Mooncake-shaped)

  /** Reserves space for `key`; resolves with where to write each replica. */
  async putStart(key: string, size: number, opts: Omit<PutOptions, 'key' | 'size' | 'replicaNum'> & { replicaNum?: number } = {}): Promise<ReplicaDescriptor[]> {
    const value = await this.write('putStart', { key, size, replicaNum: opts.replicaNum ?? 1, ...opts });
    return value.replicas;
  }

  putEnd(key: string): Promise<null> {
    return this.write('putEnd', { key });
  }

  putRevoke(key: string): Promise<null> {
    return this.write('putRevoke', { key });
  }

  /** One result per item, in order (a failed item does not fail the others). */
  batchPutStart(items: PutOptions[]): Promise<Array<Result<PutStartValue>>> {
    return this.write('batchPutStart', { items });
  }

  batchPutEnd(keys: string[]): Promise<Array<Result<null>>> {
    return this.write('batchPutEnd', { keys });
  }

  batchPutRevoke(keys: string[]): Promise<Array<Result<null>>> {
    return this.write('batchPutRevoke', { keys });
  }

  /** Replicas, size and status of a complete object; grants a read lease (OBJECT_NOT_READY while incomplete). */
  getReplicaList(key: string, opts: { stale?: boolean } = {}): Promise<GetReplicaListValue> {
    return this.call('getReplicaList', { key, ...opts });
  }

  /**
   * Asks for the compact reply with binary rows (replica-lists-wire.ts version 2; an older master answers with version
   * 1 or in full) and returns one result per key.
   */
  async batchGetReplicaList(keys: string[], opts: { stale?: boolean } = {}): Promise<Array<Result<GetReplicaListValue>>> {
    return expandReplicaLists(await this.call('batchGetReplicaList', { keys, compact: true, rows: 'binary', ...opts }), keys.length);
  }

  existKey(key: string, opts: { stale?: boolean } = {}): Promise<boolean> {
    return this.call('existKey', { key, ...opts });
  }

  batchExistKey(keys: string[], opts: { stale?: boolean } = {}): Promise<boolean[]> {
    return this.call('batchExistKey', { keys, ...opts });
  }

  remove(key: string, force = false): Promise<null> {
    return this.write('remove', { key, force });
  }

  removeAll(force = false): Promise<{ removed: number }> {
    return this.write('removeAll', { force });
  }

  removeByPrefix(prefix: string, force = false): Promise<{ removed: number }> {
    return this.write('removeByPrefix', { prefix, force });
  }

  // ------------------------------------------------------------------ segments and liveness

  async mountSegment(segment: SegmentSpec): Promise<SegmentReply> {
    const r = await this.write('mountSegment', { segment });
    this.mounted.set(segment.id, segment);
    return r;
  }

  async unmountSegment(segmentId: string, graceful = false): Promise<SegmentReply> {
    const r = await this.write('unmountSegment', { segmentId, graceful });
    this.mounted.delete(segmentId);
    return r;
  }

  reMountSegments(): Promise<Array<Result<SegmentReply>>> {
    return this.write('reMountSegment', { segments: [...this.mounted.values()] });
  }

  listSegments(): Promise<SegmentInfo[]> {
    return this.call('listSegments', {});
  }

  stats(): Promise<StateStats> {
    return this.call('stats', {});
  }

  async ping(): Promise<PingReply> {
    const reply = await this.call('ping', { clientId: this.clientId });
    this.viewVersion = reply.viewVersion;
    // The master no longer knows this client: it expired, and its session with it.
    if (reply.status === 'NEED_REMOUNT') this.sessionEpoch = null;
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

  /** Status of one master (no retries), or of the leader. */
  /** `opts.stateHash` adds the whole-state hash (costly on a large master: see docs/operations.md). */
  status(endpoint?: string, opts: { stateHash?: boolean } = {}): Promise<Record<string, unknown>> {
    const args = opts.stateHash === true ? { stateHash: true } : {};
    if (endpoint !== undefined) return this.pool.connection(endpoint).call<Record<string, unknown>>('status', args, { timeoutMs: this.opts.requestTimeoutMs ?? defaultRetryPolicy.attemptTimeoutMs });
    return this.call('status', args);
  }

  members(): Promise<MemberInfo[]> {
    return this.call('members', this.admin());
  }

  setNodeStatus(nodeId: string, status: NodeStatus): Promise<{ nodeId: string; status: NodeStatus }> {
    return this.write('setNodeStatus', { nodeId, status, ...this.admin() });
  }

  transferLeader(to: string): Promise<{ leader: string }> {
    return this.call('transferLeader', { to, ...this.admin() }, { timeoutMs: 10_000 });
  }

  addMember(member: NewMember): Promise<ConfState> {
    return this.call('addMember', { ...member, ...this.admin() }, { timeoutMs: 60_000 });
  }

  removeMember(id: string): Promise<ConfState> {
    return this.call('removeMember', { id, ...this.admin() }, { timeoutMs: 20_000 });
  }

  snapshot(): Promise<{ index: number }> {
    return this.call('snapshot', this.admin(), { timeoutMs: 60_000 });
  }

  /** Streams a consistent backup of the master state into `out` (see backup.ts); admin token needed. */
  backup(out: Writable, onProgress?: (p: BackupProgress) => void): Promise<BackupResult> {
    return streamBackup((m, a, o) => this.callRaw(m, a, o), (a) => ({ ...a, ...this.admin() }), out, onProgress);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopPing();
    await this.pool.close();
  }

  /**
   * One attempt of a read at the master with the lowest expected wait (ReadBalancer: its latency as this client
   * sees it × this client's reads in flight there). A retryable failure is not final: the caller goes on with the
   * leader path.
   */
  private async readFromAny(method: string, args: Record<string, unknown>, timeoutMs: number): Promise<{ ok: true; value: unknown } | { ok: false }> {
    const now = Date.now();
    const startMs = performance.now();
    // An endpoint that just failed is chosen only when every one did.
    const best = this.reads.pick(this.pool.endpoints, startMs, (e) => this.pool.skipping(e, now));
    this.reads.started(best);
    let failed = true;
    try {
      const value = await this.pool.connection(best).call(method, args, { timeoutMs });
      failed = false;
      return { ok: true, value };
    } catch (err) {
      // A definite error (OBJECT_NOT_FOUND, ...) is an answer, not a failure of the master.
      if (err instanceof MooringError && !isRetryable(err.code)) {
        failed = false;
        throw err;
      }
      if (err instanceof MooringError && err.code !== ErrorCode.NOT_LEADER) this.pool.noteFailure(best, Date.now(), this.opts.retry?.failedEndpointSkipMs ?? defaultRetryPolicy.failedEndpointSkipMs);
      return { ok: false };
    } finally {
      const end = performance.now();
      this.reads.finished(best, end - startMs, end, failed);
    }
  }
}

/**
 * A call's retry policy: the call's fields over the client's over the defaults; the attempt timeout is the call's
 * `timeoutMs`, else the client's `requestTimeoutMs`, else the policy's; the deadline is at least one attempt.
 */
export function callPolicy(client: Pick<MasterClientOptions, 'retry' | 'requestTimeoutMs'>, call: CallOptions): Required<RetryPolicy> {
  const base = resolvePolicy(call.retry, client.retry);
  const attemptTimeoutMs = call.timeoutMs ?? client.requestTimeoutMs ?? base.attemptTimeoutMs;
  return { ...base, attemptTimeoutMs, deadlineMs: Math.max(base.deadlineMs, attemptTimeoutMs) };
}
