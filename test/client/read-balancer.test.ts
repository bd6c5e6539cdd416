/**
 * ReadBalancer (peak-EWMA latency × reads in flight) on a virtual clock, and MasterClient's readFrom 'any' through
 * it against two fake masters on 127.0.0.1 that answer after 2 ms and 25 ms.
 */
import { describe, expect, it } from 'vitest';
import { ReadBalancer, readFailurePenaltyMs, readLatencyDecayMs } from '../../src/client/read-balancer.js';
import { MasterClient } from '../../src/master/client.js';
import { RpcServer } from '../../src/transport/rpc.js';
import { freePorts } from '../helpers/ports.js';

const never = (): boolean => false;

/** Sequential reads (one in flight) for `ms` of virtual time against endpoints answering after the given latencies. */
function sequential(b: ReadBalancer, latencies: Record<string, number>, ms: number): Record<string, number> {
  const picks: Record<string, number> = Object.fromEntries(Object.keys(latencies).map((e) => [e, 0]));
  for (let now = 0; now < ms;) {
    const e = b.pick(Object.keys(latencies), now, never);
    b.started(e);
    now += latencies[e]!;
    b.finished(e, latencies[e]!, now);
    picks[e]!++;
  }
  return picks;
}

describe('ReadBalancer', () => {
  it('sends a single reader to the faster master, trying the slower one again as its estimate decays', () => {
    const picks = sequential(new ReadBalancer(), { near: 1, far: 10 }, 10_000);
    expect(picks.near! / (picks.near! + picks.far!)).toBeGreaterThan(0.95);
    // Not never: an unsampled estimate decays, so the far one is probed now and then (a recovered master is found).
    expect(picks.far!).toBeGreaterThan(1);
  });

  it('spreads reads over equally fast masters by their reads in flight, ties round-robin', () => {
    const b = new ReadBalancer();
    const eps = ['a', 'b', 'c'];
    const first = [0, 1, 2].map(() => {
      const e = b.pick(eps, 0, never);
      b.started(e);
      return e;
    });
    expect(new Set(first).size).toBe(3);
    for (const e of first) b.finished(e, 2, 2);
    expect(sequential(b, { a: 2, b: 2, c: 2 }, 3_000)).toEqual({ a: 500, b: 500, c: 500 });
  });

  it('a slow answer counts at once, a fast one gradually; an avoided master only when every one is', () => {
    const b = new ReadBalancer();
    b.started('a');
    b.finished('a', 2, 0);
    b.started('a');
    b.finished('a', 50, 1); // above the estimate: taken as is
    expect(b.estimate('a', 1)).toBe(50);
    b.started('a');
    b.finished('a', 2, 2); // below: averaged in over readLatencyDecayMs
    expect(b.estimate('a', 2)).toBeGreaterThan(40);
    // Unsampled for one decay time: e⁻¹ of it.
    expect(b.estimate('a', 2 + readLatencyDecayMs)).toBeCloseTo(b.estimate('a', 2) / Math.E, 6);
    expect(b.pick(['a', 'b'], 3, (e) => e === 'b')).toBe('a');
    expect(b.pick(['a', 'b'], 3, () => true)).toMatch(/^[ab]$/);
  });

  it('a failed read counts as slow even when the master refused at once', () => {
    const b = new ReadBalancer();
    b.started('follower');
    b.finished('follower', 0.2, 1, true);
    expect(b.estimate('follower', 1)).toBe(readFailurePenaltyMs);
    expect(b.pending('follower')).toBe(0);
    b.started('leader');
    b.finished('leader', 3, 1);
    expect(b.pick(['follower', 'leader'], 2, never)).toBe('leader');
  });

  it('refuses no endpoints and a decay time that is not positive', () => {
    expect(() => new ReadBalancer().pick([], 0, never)).toThrow(RangeError);
    expect(() => new ReadBalancer(0)).toThrow(RangeError);
  });
});

describe("MasterClient readFrom 'any'", () => {
  it('sends sequential reads mostly to the master that answers faster (fewest in flight alone split them evenly)', async () => {
    const ports = await freePorts(2);
    const served = [0, 0];
    const servers = ports.map((port, i) => {
      const s = new RpcServer({ clusterId: 'mooring', nodeId: `m${i + 1}`, listen: { host: '127.0.0.1', port } });
      const delayMs = i === 0 ? 25 : 2;
      s.handle('existKey', async () => {
        served[i]!++;
        await new Promise((r) => setTimeout(r, delayMs));
        return true;
      });
      return s;
    });
    for (const s of servers) await s.start();
    // No hedge to the leader path within the test: every read is the balancer's choice.
    const c = new MasterClient({ endpoints: ports.map((p) => `127.0.0.1:${p}`), readFrom: 'any', retry: { maxAttempts: 1, hedgeAfterMs: 10_000 } });
    try {
      const end = Date.now() + 1_500;
      while (Date.now() < end) expect(await c.existKey('k')).toBe(true);
      const fastShare = served[1]! / (served[0]! + served[1]!);
      expect(fastShare).toBeGreaterThan(0.8);
    } finally {
      await c.close();
      for (const s of servers) await s.close();
    }
  }, 20_000);
});
