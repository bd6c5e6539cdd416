/**
 * Long randomized fault runs (minutes): skipped unless MOORING_SOAK=1. A failing schedule is written to
 * /tmp/raft-core-soak-<case>.json and fast-check prints the seed; replay with run(JSON.parse(...), opts).
 *   MOORING_SOAK=1 npx vitest run test/raft/core-soak.test.ts
 * MOORING_SOAK_RUNS sets the runs per case (default 400), MOORING_SOAK_CASE picks one case. Schedules that once
 * failed are replayed on every test run (core-regressions.ts).
 */
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'vitest';
import { action, actionWithMembership, actionWithMembershipAsync, run, type Action, type RunOptions } from './core-faults.js';

const soak = process.env['MOORING_SOAK'] === '1';
const runsPerCase = Number(process.env['MOORING_SOAK_RUNS'] ?? 400);

const cases: [string, fc.Arbitrary<Action>, RunOptions][] = [
  ['membership', actionWithMembership, { preVote: true, checkQuorum: true, membership: true }],
  ['membership-no-prevote', actionWithMembership, { preVote: false, checkQuorum: false, membership: true }],
  ['membership-lease', actionWithMembership, { preVote: true, checkQuorum: true, membership: true, readOnlyOption: 'lease' }],
  ['prevote-only', action, { preVote: true, checkQuorum: false }],
  ['membership-async', actionWithMembershipAsync, { preVote: true, checkQuorum: true, membership: true, asyncWrites: true }],
];
const only = process.env['MOORING_SOAK_CASE']; // run one case: MOORING_SOAK_CASE=membership-async

describe.skipIf(!soak)('raft core soak', () => {
  for (const [name, arb, opts] of cases) {
    if (only !== undefined && only !== name) continue;
    it(`soak ${name}`, () => {
      fc.assert(
        fc.property(fc.array(arb, { minLength: 50, maxLength: 500, size: 'max' }), (actions) => {
          try {
            run(actions, opts);
          } catch (e) {
            writeFileSync(`/tmp/raft-core-soak-${name}.json`, JSON.stringify(actions));
            throw e;
          }
        }),
        { numRuns: runsPerCase, endOnFailure: true, interruptAfterTimeLimit: 1_800_000 },
      );
    }, 1_800_000);
  }
});
