/**
 * The leader's client expiry (src/master/client-expiry.ts) on a fake clock: pings, a new leader's fresh TTL, a
 * paused leader's own silence, and what a ping of an unknown id may not do.
 */
import { describe, expect, it } from 'vitest';
import { ClientExpiry, housekeepingIntervalMs } from '../../src/master/client-expiry.js';
import type { ClientRecord } from '../../src/statemachine/clients.js';
import { silentLogger } from '../../src/transport/logger.js';

const ttl = 4_000;

function setup(): { e: ClientExpiry; clock: { t: number }; state: { clients: Map<string, ClientRecord>; ping(id: string): { status: 'OK' | 'NEED_REMOUNT'; viewVersion: number } } } {
  const clock = { t: 1_000_000 };
  const clients = new Map<string, ClientRecord>([['c1', { clientId: 'c1', nodeStatus: 'OK' as ClientRecord['nodeStatus'], lastSeenMs: 0, segmentIds: [], retiredSeq: 0 }]]);
  const state = { clients, ping: (id: string) => ({ status: clients.has(id) ? 'OK' as const : 'NEED_REMOUNT' as const, viewVersion: 0 }) };
  return { e: new ClientExpiry({ clientTtlMs: ttl, now: () => clock.t, logger: silentLogger }), clock, state };
}

/** Ticks every housekeeping interval for `ms` (a running leader), pinging c1 every `pingMs` if given. */
function run(s: ReturnType<typeof setup>, ms: number, pingMs?: number): string[] {
  const expired: string[] = [];
  for (let at = housekeepingIntervalMs; at <= ms; at += housekeepingIntervalMs) {
    s.clock.t += housekeepingIntervalMs;
    if (pingMs !== undefined && at % pingMs === 0) s.e.answerPing(s.state, 'c1');
    if (s.e.resumedFromPause(true)) continue;
    const cmd = s.e.plan(s.state);
    if (cmd !== null) expired.push(...cmd.clientIds);
  }
  return expired;
}

describe('ClientExpiry', () => {
  it('a new leader gives every client one TTL; a client that pings is never expired, a silent one is after its TTL', () => {
    const s = setup();
    s.e.becameLeader();
    expect(run(s, 10_000, 1_000)).toEqual([]);
    const silent = run(s, 10_000);
    expect(silent.length).toBeGreaterThan(0);
    expect(new Set(silent)).toEqual(new Set(['c1']));
  });

  it('a leader resumed from a pause gives a fresh TTL instead of blaming its clients for its own silence', () => {
    const s = setup();
    s.e.becameLeader();
    run(s, 3_000, 1_000); // c1 pinged at the last tick
    s.clock.t += ttl + 2_000; // paused (SIGSTOP) longer than the TTL; c1's pings wait in the socket
    expect(s.e.resumedFromPause(true)).toBe(true);
    expect(s.e.plan(s.state)).toBeNull();
    // A follower's tick (or a short delay) is no pause.
    s.clock.t += housekeepingIntervalMs;
    expect(s.e.resumedFromPause(false)).toBe(false);
  });

  it('a pause too short to count as one is still not its clients\' silence (a 3 s TTL, pings every second)', () => {
    // Ticks every second; the client's pings land just after the ticks. The leader stops right after the tick at
    // 2 s, for 2.49 s (under the 2.5-interval pause threshold): the tick due at 3 s runs at resume, before the ping
    // held in its socket is read. Counted as the client's silence that is 3.49 s, past its TTL.
    const clock = { t: 0 };
    const clients = new Map<string, ClientRecord>([['c1', { clientId: 'c1', nodeStatus: 'OK' as ClientRecord['nodeStatus'], lastSeenMs: 0, segmentIds: [], retiredSeq: 0 }]]);
    const state = { clients, ping: (id: string) => ({ status: clients.has(id) ? 'OK' as const : 'NEED_REMOUNT' as const, viewVersion: 0 }) };
    const e = new ClientExpiry({ clientTtlMs: 3_000, now: () => clock.t, logger: silentLogger });
    e.becameLeader();
    const tick = (at: number): string[] => {
      clock.t = at;
      if (e.resumedFromPause(true)) return [];
      return e.plan(state)?.clientIds ?? [];
    };
    const ping = (at: number): void => { clock.t = at; e.answerPing(state, 'c1'); };
    expect(tick(1_000)).toEqual([]);
    ping(1_000.5);
    expect(tick(2_000)).toEqual([]);
    // paused from 2,000.5 to 4,490: the ping sent at 2,000.5 waits in the socket
    expect(tick(4_490)).toEqual([]);
    ping(4_490.5);
    expect(tick(5_490)).toEqual([]);
  });

  it("only a registered client's ping is kept: ids a stranger makes up do not grow the table", () => {
    const s = setup();
    s.e.becameLeader();
    for (let i = 0; i < 100; i++) expect(s.e.answerPing(s.state, `stranger-${i}`).status).toBe('NEED_REMOUNT');
    expect(s.e.answerPing(s.state, 'c1').status).toBe('OK');
    expect(s.e.liveness.size).toBe(1);
  });

  it('refuses a TTL that is not positive', () => {
    expect(() => new ClientExpiry({ clientTtlMs: 0, now: () => 0, logger: silentLogger })).toThrow(RangeError);
  });
});
