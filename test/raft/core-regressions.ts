/**
 * Fault schedules that once failed (shrunk counterexamples from core-property.test.ts), replayed on every run.
 * Each names what went wrong and the fix.
 */
import { readFileSync } from 'node:fs';
import type { Action, RunOptions } from './core-faults.js';

/** A long schedule kept as JSON beside this file (as the soak wrote it). */
function schedule(file: string): Action[] {
  return JSON.parse(readFileSync(new URL(`./regressions/${file}`, import.meta.url), 'utf8')) as Action[];
}

export interface Regression {
  name: string;
  opts: RunOptions;
  actions: Action[];
}

export const regressions: Regression[] = [
  {
    // Seed 1561758223 (CI, 2026-12-06): leader a of {a, c} proposed its own removal, then a normal entry; it
    // committed and applied the removal and crashed before c learned the commit. Restarted removed, a could not
    // campaign and refused c's votes (its log was longer): no leader ever again. Fix: a leader appends nothing
    // after a conf change that removes it.
    name: 'removed leader restarts with an entry the remaining voter lacks',
    opts: { preVote: true, checkQuorum: true, membership: true },
    actions: [
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'conf', op: 'removeNode', who: 1, joint: false },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'conf', op: 'removeNode', who: 0, joint: false },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'propose', v: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 2, seed: 1097876823 },
      { k: 'restart', who: 0 },
      { k: 'deliver', dropPct: 3, keepPct: 0, seed: 1024811441 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'tickAll' },
      { k: 'tickAll' },
      { k: 'propose', v: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'tick', who: 0 },
      { k: 'tickAll' },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'transfer', to: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'tickAll' },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
      { k: 'tick', who: 0 },
      { k: 'tick', who: 0 },
      { k: 'snap', who: 0 },
      { k: 'tickAll' },
      { k: 'deliver', dropPct: 0, keepPct: 0, seed: 0 },
    ],
  },
  {
    // Soak, membership (seed 672360080, 2026-12-06): a node restarted with the latest membership it had applied,
    // then re-applied the conf changes committed after its snapshot on top of it; a leave-joint replayed onto a
    // later joint config left the node with a membership no other node had, and no leader was elected again.
    // Fix: storage reports the snapshot's membership (Storage.initialState), where the restarted core starts.
    name: 'a restart replays membership changes after the snapshot onto the latest membership (1)',
    opts: { preVote: true, checkQuorum: true, membership: true },
    actions: schedule('restart-membership-replay-1.json'),
  },
  {
    // Soak, membership with lease reads (seed -1920253645, 2026-12-06): the same, on the leader of a joint config.
    name: 'a restart replays membership changes after the snapshot onto the latest membership (2)',
    opts: { preVote: true, checkQuorum: true, membership: true, readOnlyOption: 'lease' },
    actions: schedule('restart-membership-replay-2.json'),
  },
  {
    // Soak, membership without pre-vote and check-quorum (seed 624546404, 2026-12-06): a removed node's elections
    // raised b's term; b, a learner in the membership it had applied, could not campaign, and ignored the appends
    // of leader e (an older term) that needed b as a voter: e led on, committing nothing. Fix: a node always answers
    // a stale leader's append or heartbeat with its term (etcd does only with check-quorum or pre-vote).
    name: "a stale leader never learns of a newer term from a voter that may not campaign",
    opts: { preVote: false, checkQuorum: false, membership: true },
    actions: schedule('stale-leader-never-told.json'),
  },
];
