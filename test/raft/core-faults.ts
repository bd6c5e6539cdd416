/**
 * Randomized fault schedules (fast-check) against a 5-node in-memory cluster: ticks, drops, reordering,
 * partitions, restarts, proposals, transfers, reads. Checked after every step: one leader per term, applied
 * entries agree across nodes (state-machine safety), commit indexes are consistent with the logs.
 * On failure fast-check prints the seed and path; pass them to fc.assert to replay.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { MemoryStorage } from '../../src/raft/core/memory-storage.js';
import type { ConfChange } from '../../src/raft/core/types.js';
import { dec, enc, Net } from './core-harness.js';

const IDS = ['a', 'b', 'c', 'd', 'e'];

export type Action =
  | { k: 'tick'; who: number }
  | { k: 'tickAll' }
  | { k: 'deliver'; dropPct: number; keepPct: number; seed: number }
  | { k: 'partition'; mask: number }
  | { k: 'heal' }
  | { k: 'propose'; v: number }
  | { k: 'restart'; who: number }
  | { k: 'transfer'; to: number }
  | { k: 'read' }
  | { k: 'conf'; op: 'addVoter' | 'addLearner' | 'removeNode'; who: number; joint: boolean }
  | { k: 'snap'; who: number }
  | { k: 'persist'; who: number; n: number }
  | { k: 'proposeEverywhere'; v: number };

export const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ k: fc.constant('tick' as const), who: fc.nat(4) }) },
  { weight: 6, arbitrary: fc.constant({ k: 'tickAll' as const }) },
  { weight: 10, arbitrary: fc.record({ k: fc.constant('deliver' as const), dropPct: fc.nat(30), keepPct: fc.nat(40), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('partition' as const), mask: fc.nat(31) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'heal' as const }) },
  { weight: 6, arbitrary: fc.record({ k: fc.constant('propose' as const), v: fc.nat(1000) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('restart' as const), who: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('transfer' as const), to: fc.nat(4) }) },
  { weight: 1, arbitrary: fc.constant({ k: 'read' as const }) },
);

/** Writes in flight complete (runs with `asyncWrites: true`; a no-op otherwise): n of node who's, in order. */
const persistAction: fc.Arbitrary<Action> = fc.record({ k: fc.constant('persist' as const), who: fc.nat(4), n: fc.integer({ min: 1, max: 3 }) });

/**
 * Every node that believes it leads (stale leaders of older terms too, as clients still talking to them would) appends
 * a proposal: followers then hold entries that a newer leader overwrites, often while their write is in flight.
 */
const proposeEverywhere: fc.Arbitrary<Action> = fc.record({ k: fc.constant('proposeEverywhere' as const), v: fc.nat(1000) });

/** The base actions plus completions of pipelined writes (and proposals to stale leaders). */
export const actionAsync: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: action },
  { weight: 2, arbitrary: persistAction },
  { weight: 1, arbitrary: proposeEverywhere },
);

/** The same plus membership changes and snapshots/compaction (for runs with `membership: true`). */
export const actionWithMembership: fc.Arbitrary<Action> = fc.oneof(
  { weight: 10, arbitrary: action },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('conf' as const),
      op: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'removeNode' as const),
      who: fc.nat(4),
      joint: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('snap' as const), who: fc.nat(4) }) },
);

export const actionWithMembershipAsync: fc.Arbitrary<Action> = fc.oneof(
  { weight: 6, arbitrary: actionWithMembership },
  { weight: 2, arbitrary: persistAction },
  { weight: 1, arbitrary: proposeEverywhere },
);

export interface RunOptions {
  preVote: boolean;
  checkQuorum: boolean;
  /** Start with voters a, b, c (d, e boot with that membership, outside it) and allow conf changes. */
  membership?: boolean;
  readOnlyOption?: 'safe' | 'lease';
  /** Pipelined storage writes: a Ready's writes (and its acknowledgements) complete only at 'persist' actions. */
  asyncWrites?: boolean;
}

/** What a run exercised (so tests can assert the generator actually reaches the interesting cases). */
export interface RunStats {
  terms: number;
  confChangesApplied: number;
  confProposed: number;
  confRefused: string[];
  snapshotsSent: number;
  lastCommit: number;
}

export function run(actions: Action[], ro: RunOptions): RunStats {
  const opts = { preVote: ro.preVote, checkQuorum: ro.checkQuorum, readOnlyOption: ro.readOnlyOption ?? 'safe' };
  const initialVoters = ro.membership === true ? ['a', 'b', 'c'] : IDS;
  const net = new Net([], { ...opts, electionTimeoutTicks: 5 }, 7);
  net.asyncWrites = ro.asyncWrites === true;
  for (const id of IDS) net.addNode(id, MemoryStorage.withVoters(initialVoters));
  /** The leader of the highest term (stale leaders of older terms may linger, cut off). */
  const leader = (): string | undefined => {
    let best: string | undefined;
    let bestTerm = -1;
    for (const n of net.nodes.values()) {
      const st = n.core.status();
      if (st.role === 'leader' && st.term > bestTerm) {
        best = n.id;
        bestTerm = st.term;
      }
    }
    return best;
  };
  const leaderOfTerm = new Map<number, string>();
  const appliedAt = new Map<number, string>();
  const side = new Set<string>();
  let confApplied = 0;
  let confProposed = 0;
  const confRefused: string[] = [];
  let rngState = 1;
  const rand = (): number => {
    rngState = (Math.imul(rngState, 1103515245) + 12345) >>> 0;
    return rngState / 0x100000000;
  };

  const check = (): void => {
    for (const n of net.nodes.values()) {
      const st = n.core.status();
      if (st.role === 'leader') {
        const prev = leaderOfTerm.get(st.term);
        expect(prev === undefined || prev === n.id, `two leaders in term ${st.term}: ${prev} and ${n.id}`).toBe(true);
        leaderOfTerm.set(st.term, n.id);
      }
      expect(st.applied).toBeLessThanOrEqual(st.commit);
      expect(st.commit).toBeLessThanOrEqual(st.lastIndex);
      // The core's log is what its storage will hold once the writes in flight complete: a completed write never
      // makes the core forget entries that replaced its own (stableTo checks the term).
      const expected = new Map<number, number>();
      for (let i = n.storage.firstIndex(); i <= n.storage.lastIndex(); i++) expected.set(i, n.storage.term(i));
      let last = n.storage.lastIndex();
      for (const rd of n.pending) {
        if (rd.entries.length === 0) continue;
        for (let i = rd.entries[0]!.index; i <= last; i++) expected.delete(i);
        for (const e of rd.entries) expected.set(e.index, e.term);
        last = rd.entries[rd.entries.length - 1]!.index;
      }
      expect(st.lastIndex, `${n.id}: log ends at ${st.lastIndex}, storage + writes in flight at ${last}`).toBe(last);
      const termAt = (i: number): number | undefined => (n.core as unknown as { log: { termOrUndefined(i: number): number | undefined } }).log.termOrUndefined(i);
      for (const [i, t] of expected) expect(termAt(i), `${n.id}: term at ${i}`).toBe(t);
      // A leader counts in the commit quorum only the log its storage holds (async writes: not what is in flight).
      const self = st.progress?.[n.id];
      if (self !== undefined) expect(self.match, `leader ${n.id} counts match ${self.match} beyond its stored log`).toBeLessThanOrEqual(n.storage.lastIndex());
      for (const e of n.appliedAll) {
        if (e.type === 'confChange') confApplied++;
        const key = `${e.term}:${e.type}:${dec(e.data)}`;
        const prev = appliedAt.get(e.index);
        expect(prev === undefined || prev === key, `index ${e.index} applied as ${prev} and ${key}`).toBe(true);
        appliedAt.set(e.index, key);
      }
      n.appliedAll = [];
    }
  };

  const processAll = (): void => {
    for (const id of IDS) while (net.processReady(id)) { /* drain */ }
  };

  for (const a of actions) {
    switch (a.k) {
      case 'tick':
        net.core(IDS[a.who]!).tick();
        break;
      case 'tickAll':
        net.tick();
        break;
      case 'deliver': {
        processAll();
        rngState = a.seed || 1;
        const q = net.queue;
        net.queue = [];
        const later: typeof q = [];
        for (const m of q) {
          const r = rand() * 100;
          // The driver reports a snapshot that did not arrive (as RaftNode and the simulator do).
          const lost = (): void => {
            if (m.type === 'snap') net.nodes.get(m.from)?.core.reportSnapshot(m.to, false);
          };
          if (r < a.dropPct) {
            lost();
            continue;
          }
          if (r < a.dropPct + a.keepPct) {
            later.push(m); // delivered in a later round: reordering
            continue;
          }
          const cut = side.size > 0 && side.has(m.from) !== side.has(m.to);
          if (!cut) {
            net.core(m.to).step(m);
            if (m.type === 'snap') net.nodes.get(m.from)?.core.reportSnapshot(m.to, true);
          } else lost();
        }
        net.queue.push(...later);
        break;
      }
      case 'partition':
        side.clear();
        IDS.forEach((id, i) => {
          if (a.mask & (1 << i)) side.add(id);
        });
        break;
      case 'heal':
        side.clear();
        break;
      case 'propose': {
        const l = leader();
        if (l !== undefined) {
          try {
            net.core(l).propose(enc(`v${a.v}`));
          } catch {
            /* transfer in progress, removed, or over the limit */
          }
        }
        break;
      }
      case 'restart':
        processAll(); // what was handed out is persisted (async writes: a prefix of it); in-memory state is lost
        net.restart(IDS[a.who]!);
        break;
      case 'persist':
        net.persist(IDS[a.who]!, a.n);
        break;
      case 'proposeEverywhere':
        for (const n of net.nodes.values()) {
          if (n.core.status().role !== 'leader') continue;
          try {
            n.core.propose(enc(`v${a.v}`));
          } catch {
            /* transfer in progress, removed, or over the limit */
          }
        }
        break;
      case 'transfer': {
        const l = leader();
        try {
          if (l !== undefined) net.core(l).transferLeadership(IDS[a.to]!);
        } catch {
          /* not a voter (any more) */
        }
        break;
      }
      case 'read': {
        const l = leader();
        try {
          if (l !== undefined) net.core(l).readIndex(enc('r'));
        } catch {
          /* a leaving (removed) leader serves no reads */
        }
        break;
      }
      case 'conf': {
        const l = leader();
        if (l === undefined) break;
        const cc: ConfChange = { changes: [{ type: a.op, node: IDS[a.who]! }] };
        if (a.joint) cc.transition = 'joint';
        try {
          net.core(l).proposeConfChange(cc);
          confProposed++;
        } catch (e) {
          confRefused.push(String((e as Error).message));
        }
        break;
      }
      case 'snap': {
        const n = net.node(IDS[a.who]!);
        const applied = n.core.status().applied;
        if (applied > n.storage.snapshot().metadata.index) {
          n.storage.createSnapshot(applied, n.confState, enc(JSON.stringify(net.appliedStrings(n.id))));
          n.storage.compact(applied);
        }
        break;
      }
    }
    processAll();
    check();
  }
  // Liveness after healing: the cluster elects a leader and commits a new entry everywhere.
  side.clear();
  net.heal();
  for (const m of net.queue) if (m.type === 'snap') net.nodes.get(m.from)?.core.reportSnapshot(m.to, false);
  net.queue = [];
  // Stable = one leader of the highest term that every member of its configuration follows.
  const members = (id: string): string[] => {
    const cs = net.core(id).status().confState;
    return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners])];
  };
  const stable = (): boolean => {
    const l = leader();
    return l !== undefined && members(l).every((id) => net.core(id).status().leader === l);
  };
  const summary = (): string =>
    [...net.nodes.values()]
      .map((n) => {
        const st = n.core.status();
        const cs = st.confState;
        return `${n.id}:${st.role}/t${st.term} lead=${st.leader} last=${st.lastIndex} commit=${st.commit} applied=${st.applied} first=${n.storage.firstIndex()} cs=${cs.voters.join('')}|${cs.votersOutgoing.join('')}|${cs.learners.join('')} pr=${JSON.stringify(st.progress ?? {})}`;
      })
      .join('\n');
  // Liveness: within a bounded number of ticks, a proposal made on a stable leader is committed by every member
  // of its configuration. (A leader may still change hands meanwhile, e.g. a removed leader handing over: then
  // the proposal may be lost and a new one is made.)
  let p: { index: number; term: number } | undefined;
  let done = false;
  for (let i = 0; i < 400 && !done; i++) {
    net.tickAll(1);
    const l = leader();
    if (l === undefined || !stable()) continue;
    if (p !== undefined && net.core(l).status().term !== p.term) p = undefined; // lost with its leader
    if (p === undefined) {
      try {
        p = net.core(l).propose(enc('final'));
      } catch {
        /* transfer pending, or a leaving leader: retry later */
      }
      continue;
    }
    const pi = p.index;
    done = members(l).every((id) => net.core(id).status().commit >= pi);
  }
  expect(done, `no proposal committed on every member after healing (p=${JSON.stringify(p)}):\n${summary()}`).toBe(true);
  check();
  return {
    terms: leaderOfTerm.size,
    confProposed,
    confRefused,
    confChangesApplied: confApplied,
    snapshotsSent: net.log.filter((m) => m.type === 'snap').length,
    lastCommit: net.core(leader()!).status().commit,
  };
}
