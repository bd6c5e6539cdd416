/**
 * The shared leader-following client (src/client/leader-client.ts) against real RPC servers on 127.0.0.1 that play
 * a silent leader, followers with hints, and refusals.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError, maxRetryAfterMs } from '../../src/errors.js';
import { LeaderPool, callWithRetry, systemClientEnv, type ClientEnv } from '../../src/client/leader-client.js';
import { RpcServer } from '../../src/transport/rpc.js';
import { freePorts } from '../helpers/ports.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

type Handler = (args: Record<string, unknown>) => Promise<unknown>;

async function servers(handlers: Array<Handler | null>): Promise<string[]> {
  const ports = await freePorts(handlers.length);
  const out: string[] = [];
  for (let i = 0; i < handlers.length; i++) {
    out.push(`127.0.0.1:${ports[i]}`);
    const h = handlers[i];
    if (h === null) continue; // nothing listens: connection refused
    const s = new RpcServer({ clusterId: 'mooring', nodeId: `s${i}`, listen: { host: '127.0.0.1', port: ports[i]! } });
    s.handle('op', async (args) => h(args as Record<string, unknown>));
    await s.start();
    cleanup.push(() => s.close());
  }
  return out;
}

function pool(endpoints: string[]): LeaderPool {
  const p = new LeaderPool({ endpoints, clusterId: 'mooring', nodeId: 'test-client' });
  cleanup.push(() => p.close());
  return p;
}

const never = (): Promise<unknown> => new Promise(() => {});
const notLeader = (hint?: string, term?: number) => async (): Promise<unknown> => {
  throw new MooringError(ErrorCode.NOT_LEADER, 'not the leader', { ...(hint !== undefined ? { leaderHint: hint } : {}), ...(term !== undefined ? { leaderTerm: term } : {}) });
};

describe('LeaderPool leader belief', () => {
  it('never lets an older hint override a newer one, and ignores a same-term hint naming an endpoint that just failed', () => {
    const p = pool(['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003']);
    expect(p.noteHint('m2@127.0.0.1:1002', 5, '127.0.0.1:1001', 0)).toBe('127.0.0.1:1002');
    expect(p.noteHint('m1@127.0.0.1:1001', 4, '127.0.0.1:1003', 0)).toBeNull(); // older term
    expect(p.leaderEndpoint).toBe('127.0.0.1:1002');
    p.noteFailure('127.0.0.1:1002', 0, 1_000);
    expect(p.noteHint('m2@127.0.0.1:1002', 5, '127.0.0.1:1003', 10)).toBeNull(); // same term, just failed
    expect(p.noteHint('m2@127.0.0.1:1002', 6, '127.0.0.1:1003', 10)).toBe('127.0.0.1:1002'); // newer term wins
    expect(p.noteHint('m3@127.0.0.1:1003', undefined, '127.0.0.1:1001', 10)).toBeNull(); // termless never overrides
  });

  it('a NOT_LEADER from the believed leader naming a leader without an address ends the belief: the next attempt goes elsewhere', () => {
    const p = pool(['127.0.0.1:1001', '127.0.0.1:1002', '127.0.0.1:1003']);
    expect(p.noteHint('m1@127.0.0.1:1001', 5, '127.0.0.1:1002', 0)).toBe('127.0.0.1:1001');
    expect(p.noteHint('m2', 6, '127.0.0.1:1001', 0)).toBeNull(); // "the leader is m2", no address
    // No belief: retries go round the endpoints instead of back to the one that said it does not lead.
    expect(new Set([p.target(new Set(), 0), p.target(new Set(), 0), p.target(new Set(), 0)]).size).toBe(3);
    // From a member we do not believe leads, such a hint changes nothing.
    expect(p.noteHint('m1@127.0.0.1:1001', 7, '127.0.0.1:1002', 0)).toBe('127.0.0.1:1001');
    expect(p.noteHint('m2', 7, '127.0.0.1:1003', 0)).toBeNull();
    expect(p.leaderEndpoint).toBe('127.0.0.1:1001');
  });
});

describe('callWithRetry', () => {
  it('hedges to another master when the current one is silent, instead of waiting out the attempt timeout', async () => {
    const seen: Array<Record<string, unknown>> = [];
    const eps = await servers([never, async (a) => { seen.push(a); return 'from-b'; }]);
    const p = pool(eps);
    // An attempt timeout longer than the whole budget: only hedging can succeed.
    const r = await callWithRetry(p, 'op', { x: 1 }, { write: true, avoidLeaderArg: true, retry: { attemptTimeoutMs: 60_000, deadlineMs: 3_000, hedgeAfterMs: 50 } });
    expect(r).toBe('from-b');
    expect(seen[0]).toEqual({ x: 1, avoidLeader: eps[0] }); // the hedge names the silent endpoint
    expect(p.leaderEndpoint).toBe(eps[1]);
  });

  it('does not ping-pong between a dead leader and a follower still naming it: reaches the live leader within 4 attempts', async () => {
    const ports = await freePorts(1);
    const dead = `127.0.0.1:${ports[0]}`;
    const eps = await servers([notLeader(`m1@${dead}`, 3), async () => 'ok']);
    const p = pool([dead, ...eps]);
    await expect(callWithRetry(p, 'op', {}, { write: false, retry: { maxAttempts: 4 } })).resolves.toBe('ok');
  });

  it('reports OUTCOME_UNKNOWN (definite: false) when a write gives up with an attempt unanswered', async () => {
    const eps = await servers([never]);
    const err = await callWithRetry(pool(eps), 'op', {}, { write: true, retry: { deadlineMs: 300, hedgeAfterMs: 0 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MooringError);
    expect(err).toMatchObject({ code: ErrorCode.OUTCOME_UNKNOWN, definite: false });
  });

  /** The process's env, recording every backoff sleep and every attempt sent. */
  function recordingEnv(): { env: ClientEnv; sleeps: number[]; attempts: string[] } {
    const base = systemClientEnv({ clusterId: 'mooring', nodeId: 'test-client' });
    const sleeps: number[] = [];
    const attempts: string[] = [];
    const env: ClientEnv = {
      now: () => base.now(),
      sleep: (ms) => { sleeps.push(ms); return base.sleep(ms); },
      race: (ps, ms) => base.race(ps, ms),
      random: () => base.random(),
      connect: (endpoint) => {
        const c = base.connect(endpoint);
        return { get connected() { return c.connected; }, call: (m, a, o) => { attempts.push(endpoint); return c.call(m, a, o); }, close: () => c.close() };
      },
      close: () => base.close(),
    };
    return { env, sleeps, attempts };
  }

  it('after the connection to the leader is lost, the next attempt goes to another master at once (no backoff), naming the lost one', async () => {
    // A leader that dies with the request in flight: its server closes, destroying the connection (what a SIGKILL's
    // kernel does). A backoff here cost a leader SIGKILL's failover a third of its time (bench:failover).
    const seen: Array<Record<string, unknown>> = [];
    const [port] = await freePorts(1);
    const dying = new RpcServer({ clusterId: 'mooring', nodeId: 'dying', listen: { host: '127.0.0.1', port: port! } });
    dying.handle('op', async () => { void dying.close(); return never(); });
    await dying.start();
    cleanup.push(() => dying.close());
    const eps = [`127.0.0.1:${port}`, ...(await servers([async (a) => { seen.push(a); return 'from-b'; }]))];
    const { env, sleeps, attempts } = recordingEnv();
    const p = new LeaderPool({ endpoints: eps, clusterId: 'mooring', nodeId: 'test-client', env });
    cleanup.push(() => p.close());
    const r = await callWithRetry(p, 'op', { x: 1 }, { write: true, avoidLeaderArg: true, retry: { initialBackoffMs: 5_000, deadlineMs: 4_000, hedgeAfterMs: 0 } });
    expect(r).toBe('from-b');
    expect(attempts).toEqual([eps[0], eps[1]]);
    expect(seen[0]).toMatchObject({ x: 1, avoidLeader: eps[0] });
    expect(sleeps).toEqual([]);
  });

  it('when every master refuses, each gets one attempt per round and the rounds back off (no busy loop)', async () => {
    const ports = await freePorts(3);
    const eps = ports.map((x) => `127.0.0.1:${x}`);
    const { env, sleeps, attempts } = recordingEnv();
    const p = new LeaderPool({ endpoints: eps, clusterId: 'mooring', nodeId: 'test-client', env });
    cleanup.push(() => p.close());
    const err = await callWithRetry(p, 'op', {}, { write: true, retry: { deadlineMs: 400, initialBackoffMs: 40, failedEndpointSkipMs: 10_000 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.UNAVAILABLE, definite: true });
    expect(new Set(attempts.slice(0, 3)).size).toBe(3); // the first round tries each master once, without pausing
    expect(sleeps.length).toBeGreaterThanOrEqual(2); // then it pauses between rounds: 40, 80, 160 ms...
    expect(attempts.length).toBeLessThanOrEqual(3 + sleeps.length);
  });

  it('reports a definite error when no attempt can have applied (connections refused, refusals)', async () => {
    const ports = await freePorts(1);
    const err = await callWithRetry(pool([`127.0.0.1:${ports[0]}`]), 'op', {}, { write: true, retry: { deadlineMs: 300 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.UNAVAILABLE, definite: true });
    const eps = await servers([async () => { throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased'); }]);
    await expect(callWithRetry(pool(eps), 'op', {}, { write: true })).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE, definite: true });
  });

  it('a write refused by a read lease while its hedge is still out waits for the hedge: the hedge applied it', async () => {
    // The jepsen shape: the first master (a stalled leader) answers late with a lease refusal; the hedge, parked at
    // the next leader, is proposed after that and applies. The write's answer is the hedge's, not the refusal.
    const sleepMs = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const eps = await servers([
      async () => { await sleepMs(150); throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased'); },
      async () => { await sleepMs(400); return 'applied'; },
    ]);
    const p = pool(eps);
    await expect(callWithRetry(p, 'op', {}, { write: true, avoidLeaderArg: true, retry: { hedgeAfterMs: 50 } })).resolves.toBe('applied');
  });

  it('a lease refusal after an attempt whose fate is unknown is OUTCOME_UNKNOWN; after definite refusals of the others it stays definite', async () => {
    const refused = async (): Promise<unknown> => { throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased'); };
    // First attempt silent past its timeout (it may be applied later), then a refusal from the other master.
    const eps = await servers([never, refused]);
    const err = await callWithRetry(pool(eps), 'op', {}, { write: true, retry: { attemptTimeoutMs: 100, hedgeAfterMs: 0 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.OUTCOME_UNKNOWN, definite: false });
    expect((err as MooringError).cause).toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    // The hedge answers "not the leader" (definite: never proposed) after the refusal: the refusal stands. Meanwhile
    // one more attempt goes out: the refusing master is asked to seal the refusal (an older one, as here, ignores it).
    const sealAsked: boolean[] = [];
    const eps2 = await servers([
      async (a) => { sealAsked.push(a.sealRefusal === true); await new Promise((r) => setTimeout(r, 150)); return refused(); },
      async (a) => { sealAsked.push(a.sealRefusal === true); await new Promise((r) => setTimeout(r, 300)); throw new MooringError(ErrorCode.NOT_LEADER, 'no leader'); },
    ]);
    const err2 = await callWithRetry(pool(eps2), 'op', {}, { write: true, avoidLeaderArg: true, retry: { hedgeAfterMs: 50 } }).catch((e: unknown) => e);
    expect(err2).toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE, definite: true, sealed: false });
    expect(sealAsked).toEqual([false, false, true]);
  });

  it('a lease refusal after an attempt of unknown fate is sealed when the master can: definite, no waiting', async () => {
    const asked: boolean[] = [];
    // The first master stays silent (its attempt's fate unknown); the second seals the refusal when asked.
    const eps = await servers([never, async (a) => {
      asked.push(a.sealRefusal === true);
      throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, 'leased', a.sealRefusal === true ? { sealed: true } : {});
    }]);
    const err = await callWithRetry(pool(eps), 'op', {}, { write: true, retry: { attemptTimeoutMs: 100, hedgeAfterMs: 0 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE, definite: true, sealed: true });
    expect(asked).toEqual([true]); // asked at once: the silent attempt's fate was already unknown
  });

  it('keeps retrying until the deadline, not a small attempt count: a leader that appears after 600 ms is found', async () => {
    const startedAt = Date.now();
    const eps = await servers([
      async () => { if (Date.now() - startedAt < 600) throw new MooringError(ErrorCode.NOT_LEADER, 'no leader known'); return 'late'; },
    ]);
    await expect(callWithRetry(pool(eps), 'op', {}, { write: true })).resolves.toBe('late');
  });

  it('BUSY: waits the server\'s retryAfterMs (not its own short backoff), retries the same master, and succeeds', async () => {
    const calls: number[] = [];
    const eps = await servers([
      async () => {
        calls.push(Date.now());
        if (calls.length <= 2) throw new MooringError(ErrorCode.BUSY, 'saturated', { retryAfterMs: 80 });
        return 'taken';
      },
      async () => { throw new Error('the follower must not be tried: BUSY is not a failure of the leader'); },
    ]);
    await expect(callWithRetry(pool(eps), 'op', {}, { write: true, retry: { initialBackoffMs: 1, maxBackoffMs: 1 } })).resolves.toBe('taken');
    expect(calls).toHaveLength(3);
    // 80 ms at least between attempts (up to 1.5× for jitter), although the backoff policy alone would wait 1 ms.
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(78);
    expect(calls[2]! - calls[1]!).toBeGreaterThanOrEqual(78);
  });

  it('BUSY until the deadline: the call fails BUSY, definite (nothing was proposed), with the retry hint', async () => {
    const eps = await servers([async () => { throw new MooringError(ErrorCode.BUSY, 'saturated', { retryAfterMs: 50 }); }]);
    const err = await callWithRetry(pool(eps), 'op', {}, { write: true, retry: { deadlineMs: 300 } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCode.BUSY, definite: true, retryAfterMs: 50 });
  });

  it('BUSY with too little time left for another attempt fails BUSY at once, not an unknown outcome', async () => {
    // Each refusal takes 40 ms to arrive: an attempt started in the deadline's last 40 ms could only time out.
    const eps = await servers([async () => {
      await new Promise((r) => setTimeout(r, 40));
      throw new MooringError(ErrorCode.BUSY, 'saturated', { retryAfterMs: 20 });
    }]);
    for (let i = 0; i < 5; i++) {
      const err = await callWithRetry(pool(eps), 'op', {}, { write: true, retry: { deadlineMs: 250 } }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCode.BUSY, definite: true });
    }
  });

  it('a reply-only error carries everything the wire needs but no stack frames (built cheaply for bursts)', () => {
    const e = MooringError.replyOnly(ErrorCode.NOT_LEADER, 'not the leader', { leaderHint: 'm2@127.0.0.1:1', leaderTerm: 7, definite: false });
    expect(e.stack!.split('\n').filter((l) => l.trimStart().startsWith('at '))).toEqual([]);
    expect(new MooringError(ErrorCode.NOT_LEADER).stack!.split('\n').some((l) => l.trimStart().startsWith('at '))).toBe(true);
    expect(MooringError.fromWire(e.toWire())).toMatchObject({ code: ErrorCode.NOT_LEADER, leaderHint: 'm2@127.0.0.1:1', leaderTerm: 7, definite: false });
    expect(Error.stackTraceLimit).toBeGreaterThan(0); // restored
  });

  it('a retryAfterMs from the wire is clamped: a hostile server cannot park a client for long', async () => {
    expect(MooringError.fromWire({ code: 'BUSY', message: 'x', retryAfterMs: 1e12 }).retryAfterMs).toBe(maxRetryAfterMs);
    expect(MooringError.fromWire({ code: 'BUSY', message: 'x', retryAfterMs: -5 }).retryAfterMs).toBe(0);
    expect(MooringError.fromWire({ code: 'BUSY', message: 'x', retryAfterMs: 'soon' }).retryAfterMs).toBeUndefined();
    expect(MooringError.fromWire({ code: 'BUSY', message: 'x', retryAfterMs: Number.NaN }).retryAfterMs).toBeUndefined();
  });
});
