// Client expiry in the full-node simulator (src/testing/fullnode/sim-liveness.ts): every simulated master runs
// production's ClientExpiry on its own clock (pings through the leader gate, housekeeping ticks held while paused, a
// fresh TTL at each election) and every client pings through production's client; no pinging client may be expired.
import { afterEach, describe, expect, it } from 'vitest';
import { ClientExpiry } from '../../src/master/client-expiry.js';
import { fullScheduleForSeed, runFullNodeSchedule } from '../../src/testing/fullnode/full-schedule.js';

const becameLeader = ClientExpiry.prototype.becameLeader;
afterEach(() => {
  ClientExpiry.prototype.becameLeader = becameLeader;
});

describe('client expiry in the full-node simulator', () => {
  it('random fault schedules expire no client that keeps pinging, and stay linearizable', async () => {
    let pings = 0;
    for (let seed = 1; seed <= 16; seed++) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed), { clientExpiry: true });
      expect({ seed, violations: r.violations, linearizable: r.linearizable, lostAcked: r.lostAcked, expired: r.clientsExpired, liveness: r.livenessOk })
        .toEqual({ seed, violations: [], linearizable: true, lostAcked: 0, expired: 0, liveness: true });
      pings += r.pingsOk;
    }
    expect(pings).toBeGreaterThan(500);
  }, 120_000);

  it('control: a new leader that does not give its clients a fresh TTL expires a pinging client (seed 16)', async () => {
    ClientExpiry.prototype.becameLeader = function () {};
    const r = await runFullNodeSchedule(16, fullScheduleForSeed(16), { clientExpiry: true });
    expect(r.clientsExpired).toBeGreaterThan(0);
    expect(r.violations.some((v) => v.startsWith('client expiry: storage-0'))).toBe(true);
  }, 60_000);
});
