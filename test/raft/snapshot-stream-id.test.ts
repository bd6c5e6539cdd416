/**
 * Snapshot stream ids (src/raft/node/snapshot-send.ts): a restarted sender never reuses an id of its previous
 * process, so a late chunk of an old stream cannot be taken into a new one; every id stays a safe integer.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { snapshotStreamId, streamsPerIncarnation } from '../../src/raft/node/snapshot-send.js';

// fast-check prints the seed and counterexample on failure; replay with fc.assert(..., { seed, path }).

describe('snapshot stream ids', () => {
  it('differ between incarnations for any stream numbers, and are safe integers (property)', () => {
    const inc = fc.nat({ max: 0xffff_ffff });
    const n = fc.nat({ max: streamsPerIncarnation - 1 });
    fc.assert(
      fc.property(inc, inc, n, n, (a, b, x, y) => {
        expect(Number.isSafeInteger(snapshotStreamId(a, x))).toBe(true);
        if (a !== b) expect(snapshotStreamId(a, x)).not.toBe(snapshotStreamId(b, y));
        else expect(snapshotStreamId(a, x) === snapshotStreamId(b, y)).toBe(x === y);
      }),
      { numRuns: 1000 },
    );
    expect(Number.isSafeInteger(snapshotStreamId(0xffff_ffff, streamsPerIncarnation - 1))).toBe(true);
  });
});
