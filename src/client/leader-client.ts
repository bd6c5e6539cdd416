/**
 * LeaderClient: the one leader-following, retrying RPC client under MasterClient and KvClient.
 *
 * - **A budget by time, not a count.** Each call has a deadline (`deadlineMs`, default 5 s) and keeps trying until
 *   it. A failover (an election takes 150–300 ms with the default timers) fits in it many times over.
 * - **Hedging.** An attempt silent for `hedgeAfterMs` (below the election timeout) does not hold the call: the same
 *   request (same session seq for writes, so it applies once) goes to another master too, carrying
 *   `avoidLeader: <the silent endpoint>`. A follower that knows no live leader, or only that one, parks it until a
 *   leader is elected and answers from there. The first success wins; a paused leader costs one election, not a
 *   per-attempt timeout.
 * - **Leader belief with a term.** NOT_LEADER hints carry the hinted leader's term; an older hint never overrides a
 *   newer belief, so two confused masters cannot bounce a call between them.
 * - **Skipping failed endpoints.** An endpoint that refused a connection or stayed silent past `attemptTimeoutMs` is
 *   skipped for `failedEndpointSkipMs` unless a hint with a newer term names it.
 * - **Backpressure.** A saturated leader refuses a request with BUSY before proposing it (definite) and says when to
 *   come back (`retryAfterMs`); the call waits that long (plus up to half again, so refused callers do not return
 *   together) and retries the same leader, within its deadline. A call whose deadline runs out on BUSY fails BUSY,
 *   also when the time left after the pause is shorter than the refused attempt took (one more would only time
 *   out, an unknown outcome).
 * - **Honest errors.** When a write gives up after an attempt that may have applied (a timeout, a lost connection,
 *   a leader that stepped down with it in flight, an attempt still unanswered), the error is OUTCOME_UNKNOWN with
 *   `definite: false` and the last attempt's error as `cause`; otherwise the last error (`definite: true`). A
 *   refusal that leaves the write's seq open (a read lease) is first sent back to the refusing leader to be sealed
 *   (`sealRefusal`: recorded as the seq's answer, so definite; every attempt after one of unknown fate asks for it);
 *   a refusal that could not be sealed waits for the write's other attempts still out, and is OUTCOME_UNKNOWN if
 *   any of them may still apply.
 *
 * Connections and the leader belief live in a LeaderPool shared by a client and its forks. Reads pick their target
 * in `LeaderPool.target()` (the single place a read-routing choice belongs).
 */
import { ErrorCode, MooringError } from '../errors.js';
import { RpcClient } from '../transport/rpc.js';
import { CoarseTimer } from './coarse-timer.js';
import { withFields } from '../util/with-fields.js';
import type { TlsConfig } from '../transport/net-util.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';

export interface RetryPolicy {
  /** The whole call, all attempts and waits included. */
  deadlineMs?: number;
  /** One attempt's RPC timeout. */
  attemptTimeoutMs?: number;
  /** An attempt silent this long is hedged to another endpoint (0 disables hedging). */
  hedgeAfterMs?: number;
  /** An endpoint that failed (refused, lost, silent) is skipped this long. */
  failedEndpointSkipMs?: number;
  /** Pause between rounds when no endpoint has a useful answer (doubles up to maxBackoffMs). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Optional cap on attempts per call (hedges count); default: only the deadline bounds a call. */
  maxAttempts?: number;
}

/** The one set of client retry defaults (MasterClient, KvClient, StoreClient). */
export const defaultRetryPolicy: Required<RetryPolicy> = {
  deadlineMs: 5_000,
  attemptTimeoutMs: 1_000,
  hedgeAfterMs: 100,
  failedEndpointSkipMs: 1_000,
  initialBackoffMs: 10,
  maxBackoffMs: 250,
  maxAttempts: Number.POSITIVE_INFINITY,
};
export const defaultConnectTimeoutMs = 1_000;
/** Endpoints a client learns from hints at most (a cluster has a handful of masters; a hint never grows it further). */
export const maxKnownEndpoints = 64;

export interface LeaderPoolOptions {
  endpoints: string[];
  clusterId: string;
  /** Handshake identity of this client. */
  nodeId: string;
  tls?: TlsConfig;
  token?: string;
  connectTimeoutMs?: number;
  logger?: LoggerLike;
  /** The clock, timers, randomness and connections (default: the process's; tests pass virtual ones). */
  env?: ClientEnv;
}

/** One connection to one endpoint, as a pool uses it (RpcClient in production). */
export interface ClientConnection {
  /** Whether it is connected now (an error before it ever connected is definite: the request never left). */
  readonly connected: boolean;
  call<T = unknown>(method: string, args?: unknown, opts?: { timeoutMs?: number }): Promise<T>;
  close(): Promise<void>;
}

/**
 * Everything a pool and its calls take from their surroundings. The process's by default (`systemClientEnv`); the
 * client property test (test/client/retry-property.test.ts) runs the real retry policy on virtual time and scripted
 * servers through it.
 */
export interface ClientEnv {
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Like Promise.race over `promises` and a timer that yields null after `ms`. */
  race<T>(promises: ReadonlyArray<Promise<T>> | Promise<T>, ms: number): Promise<T | null>;
  /** Uniform in [0, 1): the jitter of BUSY pauses. */
  random(): number;
  connect(endpoint: string): ClientConnection;
  /** Releases the timers (the pool is closing). */
  close(): void;
}

/** The process's clock and timers (one CoarseTimer for the silence checks) and RpcClient connections. */
export function systemClientEnv(opts: Omit<LeaderPoolOptions, 'endpoints' | 'env'>): ClientEnv {
  const timer = new CoarseTimer();
  return {
    now: () => Date.now(),
    sleep,
    race: (promises, ms) => timer.race(promises, ms),
    random: () => Math.random(),
    connect: (endpoint) => {
      const { host, port } = parseEndpoint(endpoint);
      return new RpcClient({
        host,
        port,
        clusterId: opts.clusterId,
        nodeId: opts.nodeId,
        ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
        ...(opts.token !== undefined ? { token: opts.token } : {}),
        connectTimeoutMs: opts.connectTimeoutMs ?? defaultConnectTimeoutMs,
        logger: opts.logger ?? silentLogger,
      });
    },
    close: () => timer.close(),
  };
}

export interface CallSpec {
  /** The call has side effects: its outcome matters when it fails (OUTCOME_UNKNOWN). */
  write: boolean;
  retry?: RetryPolicy;
  /** Default true. Off for admin operations that are not idempotent and have long timeouts of their own. */
  hedge?: boolean;
  /** Pass `avoidLeader: <endpoint>` on retries after an endpoint failed (servers park instead of bouncing). */
  avoidLeaderArg?: boolean;
  /** Default true: only the leader answers, so a success tells who leads. False for reads any member serves. */
  leaderOnly?: boolean;
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
  ErrorCode.BUSY,
  ErrorCode.STORAGE_FAILED,
]);

/**
 * Refusals by the leader's soft state before proposing (admission: a read lease). Unlike a state machine's answer,
 * which the session's reply table seals for the seq, they leave the write's seq open: an attempt of the same write
 * elsewhere may still be proposed later. Definite for a write only when no other attempt of it can still apply
 * (a jepsen run saw a remove refused by a stalled leader applied by its hedge, parked at the next leader).
 */
const unsealedRefusalCodes = new Set<string>([ErrorCode.OBJECT_HAS_LEASE]);

/** Errors after which another attempt (another master, or later) may succeed. */
export function isRetryable(code: string): boolean {
  return retryableCodes.has(code);
}

/** Connections, the believed leader (with its term) and recently failed endpoints, shared by a client and its forks. */
export class LeaderPool {
  readonly endpoints: string[];
  private readonly conns = new Map<string, ClientConnection>();
  private readonly skipUntil = new Map<string, number>();
  private leader: string | null = null;
  private leaderTerm = 0;
  private cursor = 0;
  closed = false;
  /** Clock, timers (the silence checks of every call through this pool), randomness, connections. */
  readonly env: ClientEnv;

  constructor(readonly opts: LeaderPoolOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'a client needs at least one endpoint (host:port)');
    }
    for (const e of opts.endpoints) parseEndpoint(e);
    this.endpoints = [...new Set(opts.endpoints)];
    this.env = opts.env ?? systemClientEnv(opts);
  }

  /** The endpoint believed to lead (or the one calls start with). */
  get leaderEndpoint(): string {
    return this.leader ?? this.endpoints[this.cursor % this.endpoints.length]!;
  }

  /** The term of the current leader belief (0: none known). */
  get knownTerm(): number {
    return this.leaderTerm;
  }

  /**
   * Where the next attempt goes: the believed leader unless it recently failed, else the next endpoint that did
   * not, else the one whose skip ends first. `busy` endpoints (attempts in flight for this call) are not chosen.
   */
  target(busy: ReadonlySet<string>, now: number): string | null {
    if (this.leader !== null && !busy.has(this.leader) && !this.skipping(this.leader, now)) return this.leader;
    const n = this.endpoints.length;
    let soonest: string | null = null;
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[(this.cursor + i) % n]!;
      if (busy.has(e)) continue;
      if (!this.skipping(e, now)) {
        this.cursor = (this.cursor + i + 1) % n;
        return e;
      }
      if (soonest === null || this.skipUntil.get(e)! < this.skipUntil.get(soonest)!) soonest = e;
    }
    return soonest;
  }

  /**
   * A NOT_LEADER hint. Returns the hinted endpoint if it is now the belief (newer or equal term, or the first
   * belief), else null. A hint without a term only fills an empty belief.
   */
  noteHint(hint: string | undefined, term: number | undefined, from: string, now: number): string | null {
    if (hint === undefined) {
      // "No leader known" from the member we believed: the belief is stale.
      if (from === this.leader) this.leader = null;
      return null;
    }
    const endpoint = hintEndpoint(hint);
    if (endpoint === null || endpoint === from) {
      // A leader named without an address (its RPC port is not known to the member that answered): at least the
      // member that answered does not lead. Believing it still would send every retry back to it until the call's
      // deadline (the full-node simulator with client expiry: a ping stuck 2.6 s on a follower, its client expired).
      if (from === this.leader) this.leader = null;
      return null;
    }
    if (!this.endpoints.includes(endpoint) && this.endpoints.length >= maxKnownEndpoints) return null;
    if (term !== undefined) {
      if (term < this.leaderTerm) return null;
      // The same term naming an endpoint that just failed is old news (the ping-pong between a dead leader and a
      // follower that still names it); a newer term may name a restarted member that really leads now.
      if (term === this.leaderTerm && this.skipping(endpoint, now)) return null;
      if (term > this.leaderTerm) this.skipUntil.delete(endpoint);
      this.leaderTerm = term;
    } else if (this.leader !== null || this.skipping(endpoint, now)) {
      return this.leader === endpoint ? endpoint : null;
    }
    this.adopt(endpoint);
    this.leader = endpoint;
    return endpoint;
  }

  /** A leader-only call succeeded at `endpoint`: it leads (in a term at least as new as the belief's). */
  noteSuccess(endpoint: string): void {
    this.skipUntil.delete(endpoint);
    this.adopt(endpoint);
    this.leader = endpoint;
  }

  noteFailure(endpoint: string, now: number, skipMs: number): void {
    this.skipUntil.set(endpoint, now + skipMs);
    if (this.leader === endpoint) this.leader = null;
  }

  /** Whether `e` failed recently (refused, silent past its attempt timeout) and is being skipped. */
  skipping(e: string, now: number): boolean {
    const until = this.skipUntil.get(e);
    return until !== undefined && until > now;
  }

  private adopt(endpoint: string): void {
    if (this.endpoints.includes(endpoint)) return;
    parseEndpoint(endpoint);
    this.endpoints.push(endpoint);
  }

  connection(endpoint: string): ClientConnection {
    let c = this.conns.get(endpoint);
    if (c === undefined) {
      c = this.env.connect(endpoint);
      this.conns.set(endpoint, c);
    }
    return c;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.env.close();
    await Promise.all([...this.conns.values()].map((c) => c.close()));
    this.conns.clear();
  }
}

type Outcome = { endpoint: string; ok: true; value: unknown } | { endpoint: string; ok: false; error: MooringError };

/** No endpoint busy (pool.target's argument when nothing is in flight). */
const noEndpoints: ReadonlySet<string> = new Set();

/**
 * One call with leader discovery, hedging and retries until the deadline. See the file comment for the policy.
 */
export async function callWithRetry<T>(pool: LeaderPool, method: string, args: Record<string, unknown>, spec: CallSpec): Promise<T> {
  const p = resolvePolicy(spec.retry);
  const env = pool.env;
  const hedge = spec.hedge !== false && p.hedgeAfterMs > 0;
  const start = env.now();
  const deadline = start + p.deadlineMs;
  const inflight = new Map<string, Promise<Outcome>>();
  let attempts = 0;
  let backoff = p.initialBackoffMs;
  let ambiguous = false;
  let last: MooringError | null = null;
  /** A write's unsealed refusal (see unsealedRefusalCodes), held while attempts still out may yet apply it. */
  let refusal: MooringError | null = null;
  /**
   * A write asks for its lease refusal to be sealed (`sealRefusal`: the leader records it as the seq's answer, so no
   * attempt can apply after it) once an attempt's fate is unknown or a refusal came with attempts still out.
   */
  let sealWanted = false;
  /** Endpoints whose attempt now out asked for a sealed refusal. */
  const sealAskedAt = new Set<string>();
  let avoid: string | null = null;
  let next: string | null = pool.target(noEndpoints, start);

  /** When the latest attempt to each endpoint was sent (the next attempt will take about as long as a refusal did). */
  const launchedAt = new Map<string, number>();
  const launch = (endpoint: string): void => {
    attempts++;
    launchedAt.set(endpoint, env.now());
    let a = spec.avoidLeaderArg === true && avoid !== null && avoid !== endpoint ? withFields(args, { avoidLeader: avoid }) : args;
    const seal = spec.write && (ambiguous || sealWanted);
    if (seal) a = withFields(a, { sealRefusal: true });
    if (seal) sealAskedAt.add(endpoint);
    else sealAskedAt.delete(endpoint);
    const timeoutMs = Math.max(1, Math.min(p.attemptTimeoutMs, deadline - env.now()));
    const wasConnected = pool.connection(endpoint).connected;
    inflight.set(endpoint, pool.connection(endpoint).call(method, a, { timeoutMs }).then(
      (value): Outcome => ({ endpoint, ok: true, value }),
      (err: unknown): Outcome => ({ endpoint, ok: false, error: classify(err, wasConnected) }),
    ));
  };

  while (!pool.closed) {
    const now = env.now();
    if (now >= deadline) break;
    if (refusal !== null && inflight.size === 0) break;
    if (next !== null && refusal === null && !inflight.has(next) && attempts < p.maxAttempts) launch(next);
    next = null;
    if (inflight.size === 0) {
      // Nothing useful to wait for: pause, then the next endpoint.
      await env.sleep(Math.min(backoff, deadline - now));
      backoff = Math.min(backoff * 2, p.maxBackoffMs);
      if (attempts >= p.maxAttempts) break;
      next = pool.target(noEndpoints, env.now());
      continue;
    }
    const waitMs = Math.max(1, Math.min(hedge ? p.hedgeAfterMs : Number.POSITIVE_INFINITY, deadline - now));
    const r = await env.race(inflight.size === 1 ? inflight.values().next().value! : [...inflight.values()], waitMs);
    if (r === null) {
      // Silent: hedge to another endpoint (each at most once in flight), telling it which one was silent.
      if (hedge && refusal === null && attempts < p.maxAttempts) {
        const busy = new Set(inflight.keys());
        const other = pool.target(busy, env.now());
        if (other !== null && !busy.has(other)) {
          avoid = [...inflight.keys()][0] ?? null;
          next = other;
        }
      }
      continue;
    }
    inflight.delete(r.endpoint);
    if (r.ok) {
      if (spec.leaderOnly !== false) pool.noteSuccess(r.endpoint);
      return r.value as T;
    }
    const e = r.error;
    const askedSeal = sealAskedAt.delete(r.endpoint);
    // A refusal the state machine recorded for this seq: no attempt of the write applies after it.
    if (e.sealed) throw e;
    if (refusal !== null) {
      // Settling the attempts still out after a refusal: only their fate matters now, no new attempt is sent. A
      // state machine's answer to one of them is the write's answer (sealed for its seq).
      if (!e.definite) ambiguous = true;
      if (!retryableCodes.has(e.code) && !unsealedRefusalCodes.has(e.code)) throw e;
      continue;
    }
    last = e;
    if (!e.definite) ambiguous = true;
    if (spec.write && unsealedRefusalCodes.has(e.code) && (ambiguous || inflight.size > 0)) {
      // The refusal left this write's seq open, and another attempt of it may still be proposed: one parked at a
      // follower that then becomes leader, or one a stalled leader has not read yet. First ask the refusing leader to
      // seal it (once: a master that cannot, an older one, refuses unsealed again).
      if (!askedSeal && !sealWanted && !pool.closed && env.now() < deadline) {
        sealWanted = true;
        launch(r.endpoint);
        continue;
      }
      // Otherwise wait for the attempts still out (one may succeed: then the write applied); if the fate of any stays
      // unknown, so does the write's.
      refusal = e;
      continue;
    }
    if (!retryableCodes.has(e.code)) {
      // An answer of the state machine (sealed in the session's reply table for this seq: any other attempt gets
      // the same answer) or a refusal any attempt would get (bad arguments): definite, unless the error says
      // otherwise.
      throw e;
    }
    const endpointFailed = e.code === ErrorCode.UNAVAILABLE || e.code === ErrorCode.TIMEOUT || e.code === ErrorCode.SHUTTING_DOWN;
    if (e.code === ErrorCode.NOT_LEADER) {
      const hinted = pool.noteHint(e.leaderHint, e.leaderTerm, r.endpoint, env.now());
      if (hinted !== null && !inflight.has(hinted)) {
        next = hinted; // a hint is progress: go at once
        continue;
      }
    } else if (endpointFailed) {
      pool.noteFailure(r.endpoint, env.now(), p.failedEndpointSkipMs);
      avoid = r.endpoint;
    }
    if (inflight.size > 0) continue; // another attempt may still answer
    if (endpointFailed) {
      // The failure was that endpoint's (a dead leader's connection resets at once): try one not failed recently now,
      // carrying avoidLeader, instead of after a backoff (10 ms, a third of a leader SIGKILL's failover). A follower
      // that knows no other live leader parks it until one is elected. Each endpoint fails at most once per
      // failedEndpointSkipMs, so a cluster that is all down costs one attempt per endpoint, then the backoff below.
      const t = env.now();
      const fresh = pool.target(noEndpoints, t);
      if (fresh !== null && !pool.skipping(fresh, t) && attempts < p.maxAttempts) {
        next = fresh;
        continue;
      }
    }
    if (e.code === ErrorCode.BUSY) {
      // The leader is alive and asked us to come back later: no failure to note, no backoff growth.
      const pause = (e.retryAfterMs ?? backoff) * (1 + env.random() / 2);
      // Not enough time left after the pause for an attempt as long as this refused one took (with half again to
      // spare): fail BUSY now. An attempt squeezed into the deadline's last milliseconds would time out and turn a
      // definite refusal into an unknown outcome.
      const tookMs = env.now() - launchedAt.get(r.endpoint)!;
      if (deadline - env.now() < pause + 1.5 * tookMs) break;
      await env.sleep(pause);
      if (attempts >= p.maxAttempts) break;
      next = r.endpoint;
      continue;
    }
    await env.sleep(Math.min(backoff, Math.max(0, deadline - env.now())));
    backoff = Math.min(backoff * 2, p.maxBackoffMs);
    if (attempts >= p.maxAttempts) break;
    next = pool.target(noEndpoints, env.now());
  }
  if (pool.closed && last === null) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'client closed');
  if (refusal !== null && !ambiguous && inflight.size === 0) throw refusal;
  if (spec.write && (ambiguous || inflight.size > 0)) {
    const why = last !== null ? `last: ${last.code}: ${last.message}` : 'no attempt answered';
    throw new MooringError(ErrorCode.OUTCOME_UNKNOWN, `${method} gave up after ${attempts} attempt(s) in ${env.now() - start} ms and may have applied (${why})`, { definite: false, cause: last ?? undefined });
  }
  if (last === null) throw new MooringError(ErrorCode.UNAVAILABLE, `${method}: no master answered within ${p.deadlineMs} ms`);
  throw last;
}

/**
 * Whether an attempt's error leaves its effect unknown. Errors raised before the request left (a refused or timed
 * out connect, a full send queue) are definite; a reply timeout or a connection lost with the request sent is not;
 * a server's error says so itself (`definite` on the wire, TIMEOUT/PROPOSAL_DROPPED ambiguous by default).
 */
function classify(err: unknown, wasConnected: boolean): MooringError {
  const e = err instanceof MooringError ? err : new MooringError(ErrorCode.RPC_FAILED, String(err), { definite: false });
  const local = /^(cannot connect to|connect to .* timed out)/.test(e.message);
  if (local && !wasConnected) return new MooringError(e.code, e.message, { definite: true, cause: e });
  if (e.code === ErrorCode.UNAVAILABLE && /lost/.test(e.message) && e.definite) return new MooringError(e.code, e.message, { definite: false, cause: e });
  return e;
}

function hintEndpoint(hint: string): string | null {
  const at = hint.indexOf('@');
  return at < 0 ? null : hint.slice(at + 1);
}

/**
 * Each field from `r`, else from `under`, else the default (a field left undefined, even explicitly, falls through).
 */
export function resolvePolicy(r: RetryPolicy | undefined, under?: RetryPolicy): Required<RetryPolicy> {
  if (r === undefined && under === undefined) return defaultRetryPolicy;
  // Already whole (MasterClient resolves its policy once): used as is, never changed here.
  if (r !== undefined && r.deadlineMs !== undefined && r.attemptTimeoutMs !== undefined && r.hedgeAfterMs !== undefined && r.failedEndpointSkipMs !== undefined &&
    r.initialBackoffMs !== undefined && r.maxBackoffMs !== undefined && r.maxAttempts !== undefined) return r as Required<RetryPolicy>;
  const d = defaultRetryPolicy;
  return {
    deadlineMs: r?.deadlineMs ?? under?.deadlineMs ?? d.deadlineMs,
    attemptTimeoutMs: r?.attemptTimeoutMs ?? under?.attemptTimeoutMs ?? d.attemptTimeoutMs,
    hedgeAfterMs: r?.hedgeAfterMs ?? under?.hedgeAfterMs ?? d.hedgeAfterMs,
    failedEndpointSkipMs: r?.failedEndpointSkipMs ?? under?.failedEndpointSkipMs ?? d.failedEndpointSkipMs,
    initialBackoffMs: r?.initialBackoffMs ?? under?.initialBackoffMs ?? d.initialBackoffMs,
    maxBackoffMs: r?.maxBackoffMs ?? under?.maxBackoffMs ?? d.maxBackoffMs,
    maxAttempts: r?.maxAttempts ?? under?.maxAttempts ?? d.maxAttempts,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.max(0, ms)));
}

export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(endpoint);
  const port = m !== null ? Number(m[2]) : NaN;
  if (m === null || !(port >= 1 && port <= 65535)) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `endpoint must be host:port, got ${JSON.stringify(endpoint)}`);
  }
  return { host: m[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}
