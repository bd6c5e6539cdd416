/** Randomized fault schedules against the core (see core-faults.ts). */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { action, run } from './core-faults.js';

describe('randomized fault schedules', () => {
  for (const opts of [
    { preVote: true, checkQuorum: true },
    { preVote: false, checkQuorum: false },
  ]) {
    it(`safety holds and the cluster recovers (preVote=${opts.preVote}, checkQuorum=${opts.checkQuorum})`, () => {
      fc.assert(
        fc.property(fc.array(action, { minLength: 20, maxLength: 300 }), (actions) => run(actions, opts)),
        { numRuns: 120 },
      );
    });
  }
});
