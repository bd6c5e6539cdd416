// Production's client in the full-node simulator (src/testing/fullnode/sim-client.ts): writes (PutStart, PutEnd,
// Remove, the batch forms) go through callWithRetry over a LeaderPool on virtual time — hedges, NOT_LEADER answers,
// requests parked at followers, lease refusals — against the RPC surface's write steps on every simulated master,
// under the random fault schedules. What the client answers is checked against what applied (linearizability, the
// lease ledger, the exactly-once tables).
import { describe, expect, it } from 'vitest';
import { fullScheduleForSeed, runFullNodeSchedule } from '../../src/testing/fullnode/full-schedule.js';

describe('writes through production\'s client in the full-node simulator', () => {
  it('random fault schedules stay linearizable; the client path is exercised (refusals, applied removes)', async () => {
    let refused = 0;
    let applied = 0;
    let sent = 0;
    for (let seed = 1; seed <= 24; seed++) {
      const r = await runFullNodeSchedule(seed, fullScheduleForSeed(seed), { clientWrites: true });
      expect({ seed, violations: r.violations, linearizable: r.linearizable, lostAcked: r.lostAcked, leaseViolations: r.leaseViolations, liveness: r.livenessOk })
        .toEqual({ seed, violations: [], linearizable: true, lostAcked: 0, leaseViolations: 0, liveness: true });
      refused += r.removesRefusedByLease;
      applied += r.removesApplied;
      sent += r.clientWrites;
    }
    expect(sent).toBeGreaterThan(1_000);
    expect(refused).toBeGreaterThan(0);
    expect(applied).toBeGreaterThan(0);
  }, 120_000);
});
