/** Randomized fault schedules against the core (see core-faults.ts). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { action, actionAsync, actionWithMembership, actionWithMembershipAsync, run } from './core-faults.js';
import { regressions } from './core-regressions.js';

describe('randomized fault schedules', () => {
  for (const r of regressions) {
    it(`replays a schedule that once failed: ${r.name}`, () => {
      run(r.actions, r.opts);
    });
  }

  for (const opts of [
    { preVote: true, checkQuorum: true },
    { preVote: false, checkQuorum: false },
  ]) {
    it(`safety holds and the cluster recovers (preVote=${opts.preVote}, checkQuorum=${opts.checkQuorum})`, () => {
      fc.assert(
        fc.property(fc.array(action, { minLength: 20, maxLength: 300, size: 'max' }), (actions) => {
          run(actions, opts);
        }),
        { numRuns: 100 },
      );
    });
  }

  it('safety holds under membership churn, snapshots and compaction', () => {
    const total = { confChangesApplied: 0, snapshotsSent: 0, terms: 0 };
    fc.assert(
      fc.property(fc.array(actionWithMembership, { minLength: 20, maxLength: 300, size: 'max' }), (actions) => {
        const st = run(actions, { preVote: true, checkQuorum: true, membership: true });
        total.confChangesApplied += st.confChangesApplied;
        total.snapshotsSent += st.snapshotsSent;
        total.terms += st.terms;
      }),
      { numRuns: 120 },
    );
    // The generator does reach the cases this test is about.
    expect(total.confChangesApplied).toBeGreaterThan(100);
    expect(total.snapshotsSent).toBeGreaterThan(10);
    expect(total.terms).toBeGreaterThan(150);
  });

  it('safety holds with pipelined storage writes (acks, commits and applies wait for durability; crashes lose writes in flight)', () => {
    fc.assert(
      fc.property(fc.array(actionAsync, { minLength: 20, maxLength: 300, size: 'max' }), (actions) => {
        run(actions, { preVote: true, checkQuorum: true, asyncWrites: true });
      }),
      { numRuns: 100 },
    );
  });

  it('safety holds with pipelined storage writes under membership churn, snapshots and compaction', () => {
    fc.assert(
      fc.property(fc.array(actionWithMembershipAsync, { minLength: 20, maxLength: 300, size: 'max' }), (actions) => {
        run(actions, { preVote: true, checkQuorum: true, membership: true, asyncWrites: true });
      }),
      { numRuns: 100 },
    );
  });

  it('safety holds with lease reads', () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 20, maxLength: 300, size: 'max' }), (actions) => {
        run(actions, { preVote: true, checkQuorum: true, readOnlyOption: 'lease' });
      }),
      { numRuns: 50 },
    );
  });
});
