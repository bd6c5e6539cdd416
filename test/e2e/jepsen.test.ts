/**
 * The short CI run of the fault campaign (`npm run jepsen` runs it for longer): real master and storage
 * processes under a seeded random fault schedule, the client-visible history checked for linearizability, no
 * acknowledged object lost, no read returning wrong bytes. Prints the seed; replay with
 * `npm run jepsen -- --minutes 0.75 --seed <seed>` (process timing still varies between runs).
 */
import { describe, expect, it } from 'vitest';
import { runCampaign } from '../../src/testing/jepsen/campaign.js';

const ciDurationMs = 40_000;

describe('fault campaign (short)', () => {
  it('stays linearizable, loses nothing acknowledged and never returns wrong bytes under faults', async () => {
    const seed = Number(process.env.MOORING_JEPSEN_SEED ?? Date.now() % 1_000_000_007);
    const result = await runCampaign({ durationMs: ciDurationMs, seed });
    console.log(`jepsen (seed ${seed}): ${JSON.stringify(result)}`);
    expect(result.counterexample).toBeUndefined();
    expect(result.linearizable).toBe(true);
    expect(result.lost).toBe(0);
    expect(result.wrong).toBe(0);
    // The run did something: faults were injected and operations were acknowledged through them.
    expect(Object.values(result.faults).reduce((a, b) => a + b, 0)).toBeGreaterThan(3);
    expect(result.acked).toBeGreaterThan(20);
  }, 240_000);
});
