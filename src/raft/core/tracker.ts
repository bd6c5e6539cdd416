/**
 * ProgressTracker: the membership (possibly joint), the leader's per-peer Progress, and the votes of an
 * election in progress.
 */
import { Progress, type InflightLimits } from './progress.js';
import { jointCommitted, jointVoteResult, type VoteResult } from './quorum.js';
import type { ConfState, NodeId } from './types.js';

export interface TrackerConfig {
  /** Voters of the (incoming) configuration. */
  incoming: Set<NodeId>;
  /** Voters of the outgoing configuration; non-empty only while joint. */
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  /** Outgoing voters that become learners when the joint configuration is left. */
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

export function emptyTrackerConfig(): TrackerConfig {
  return { incoming: new Set(), outgoing: new Set(), learners: new Set(), learnersNext: new Set(), autoLeave: false };
}

export function cloneTrackerConfig(c: TrackerConfig): TrackerConfig {
  return {
    incoming: new Set(c.incoming),
    outgoing: new Set(c.outgoing),
    learners: new Set(c.learners),
    learnersNext: new Set(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

export function isJoint(c: TrackerConfig): boolean {
  return c.outgoing.size > 0;
}

const sorted = (s: Set<NodeId>): NodeId[] => [...s].sort();

export function confStateOf(c: TrackerConfig): ConfState {
  return {
    voters: sorted(c.incoming),
    learners: sorted(c.learners),
    votersOutgoing: sorted(c.outgoing),
    learnersNext: sorted(c.learnersNext),
    autoLeave: c.autoLeave,
  };
}

export class ProgressTracker {
  config: TrackerConfig = emptyTrackerConfig();
  progress: Map<NodeId, Progress> = new Map();
  votes: Map<NodeId, boolean> = new Map();
  /** Each follower's pipelining window. */
  readonly window: InflightLimits;

  constructor(window: InflightLimits) {
    this.window = window;
  }

  confState(): ConfState {
    return confStateOf(this.config);
  }

  isVoter(id: NodeId): boolean {
    return this.config.incoming.has(id) || this.config.outgoing.has(id);
  }

  /** True when the configuration has exactly one voter (no joint): it decides alone. */
  isSingleton(): boolean {
    return this.config.incoming.size === 1 && this.config.outgoing.size === 0;
  }

  /** Every voter of the incoming and outgoing configs, sorted for deterministic iteration. */
  voterIds(): NodeId[] {
    const s = new Set(this.config.incoming);
    for (const id of this.config.outgoing) s.add(id);
    return [...s].sort();
  }

  /**
   * All tracked peers (voters and learners), sorted. Kept between calls while the tracked set is unchanged: sorting a
   * fresh copy at every append broadcast was one of the leader's largest allocations per write. Callers only read it.
   */
  ids(): readonly NodeId[] {
    const c = this.sortedIds;
    if (c !== null && c.length === this.progress.size) {
      let same = true;
      for (let i = 0; i < c.length && same; i++) same = this.progress.has(c[i]!);
      if (same) return c;
    }
    this.sortedIds = [...this.progress.keys()].sort();
    return this.sortedIds;
  }
  private sortedIds: NodeId[] | null = null;

  /** The highest index acknowledged by a quorum (of both halves when joint). */
  committed(): number {
    const c = jointCommitted(this.config.incoming, this.config.outgoing, (id) => this.progress.get(id)?.match);
    return c === Infinity ? 0 : c;
  }

  /** Whether a quorum of voters (self included) was heard from at or after tick `since` (see Progress.lastHeardTick). */
  quorumHeardSince(self: NodeId, since: number): boolean {
    const votes = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      votes.set(id, id === self || (pr.lastHeardTick !== null && pr.lastHeardTick >= since));
    }
    return jointVoteResult(this.config.incoming, this.config.outgoing, votes) === 'won';
  }

  resetVotes(): void {
    this.votes = new Map();
  }

  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted);
  }

  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0;
    let rejected = 0;
    for (const [id, pr] of this.progress) {
      if (pr.isLearner) continue;
      const v = this.votes.get(id);
      if (v === undefined) continue;
      if (v) granted++;
      else rejected++;
    }
    return { granted, rejected, result: this.voteResult(this.votes) };
  }

  voteResult(votes: ReadonlyMap<NodeId, boolean>): VoteResult {
    return jointVoteResult(this.config.incoming, this.config.outgoing, votes);
  }
}
