/**
 * Follower read leases (RaftConfig.followerLeaseTicks > 0): a follower answers linearizable reads from its own
 * applied state with no message per read. Pure state (ticks only); RaftCore decides when to call what.
 *
 * The protocol, and why each rule is there (docs/raft.md, "Follower read leases"):
 * - Asking. A follower that serves reads puts its own tick in its heartbeat answers (`leaseAsk`).
 * - Granting. The leader echoes the latest ask in its next heartbeat with its commit index (`leaseCommit`) and from
 *   then on gates its commit index on that follower's match for `leaseTicks + FOLLOWER_LEASE_MARGIN_TICKS` of its
 *   own ticks. The follower holds the lease until `ask + leaseTicks` of its own ticks: the ask left before the leader
 *   sent the grant, so the follower's lease ends before the leader's gate as long as the two clocks' rates differ by
 *   less than the margin over the lease (the same bounded-drift assumption as leader leases).
 * - Reading. While its lease holds, a follower serves a read once it has applied max(leaseCommit, what its leader
 *   has matched in its log). Everything committed before the read started is in there: entries committed before the
 *   grant are at most leaseCommit, and entries committed after it were on this follower first (the gate). A write is
 *   therefore visible nowhere before it is in every lease holder's log, so no read anywhere can see it while a later
 *   one here misses it.
 * - Leader changes. A lease holder refuses every (pre)vote while its lease holds, and so does a node while any of the
 *   gates it set may still be running (also after it stepped down); such a node does not campaign either. The
 *   leader grants only while its configuration has at most three voters and is not joint: then every quorum a new
 *   leader needs holds the lease's granter or its holder, so no other leader can commit while a lease runs. A
 *   restarted node holds no lease (soft state) and, in lease mode, refuses votes for one election timeout, which
 *   outlasts the gates it set before it crashed.
 * - Transfers. Once a leadership transfer starts the leader grants no more, and it sends timeoutNow (whose forced
 *   vote would ignore leases) only once its gates have run out.
 * - A lease holder drops its lease when it adopts a newer term, forgets its leader (a connection reset), pre-votes
 *   or campaigns.
 */

/** Ticks the leader's gate outlasts the lease a follower counts: covers tick granularity on both sides and clock rates. */
export const FOLLOWER_LEASE_MARGIN_TICKS = 2;
/** Voters up to which every quorum holds a lease's granter or its holder (see "Leader changes" above). */
export const MAX_FOLLOWER_LEASE_VOTERS = 3;

interface HeldLease {
  /** The follower's tick when it asked; the lease holds while tickCount < ask + leaseTicks. */
  ask: number;
  until: number;
  /** The leader's commit index when it granted. */
  commit: number;
}

/** Follower side: whether to ask, what it holds, and how far its log is known to match its leader's. */
export class FollowerLeaseHolder {
  private wantUntilTick = -1;
  private lease: HeldLease | null = null;
  /** The highest index this follower told its current leader it holds (appResp): the leader's match never exceeds it. */
  private leaderMatched = 0;

  /**
   * `epoch` names this incarnation (drawn at start): ticks restart at 0 with the process, so a grant echoing an ask of
   * an earlier incarnation (a message delivered late) must not count from a tick number that means a later time now.
   */
  constructor(
    private readonly leaseTicks: number,
    readonly epoch: number,
  ) {}

  /** A read wanted the lease: keep asking for `ticks` more ticks. */
  want(now: number, ticks: number): void {
    this.wantUntilTick = Math.max(this.wantUntilTick, now + ticks);
  }

  asking(now: number): boolean {
    return now < this.wantUntilTick;
  }

  /** A grant from the current leader in the current term. Only a newer ask moves the lease. */
  granted(ask: number, epoch: number, commit: number, now: number): void {
    if (epoch !== this.epoch || ask > now) return; // not an ask of this incarnation
    if (this.lease !== null && ask <= this.lease.ask) {
      if (ask === this.lease.ask && commit > this.lease.commit) this.lease.commit = commit;
      return;
    }
    this.lease = { ask, until: ask + this.leaseTicks, commit };
  }

  matched(index: number): void {
    if (index > this.leaderMatched) this.leaderMatched = index;
  }

  /** A newer term, a lost leader, a campaign: the lease and what the old leader matched are void. */
  drop(): void {
    this.lease = null;
    this.leaderMatched = 0;
  }

  held(now: number): boolean {
    return this.lease !== null && now < this.lease.until;
  }

  /** The index a read starting now must wait to have applied, or null without a lease. */
  readIndex(now: number, lastIndex: number): number | null {
    const l = this.lease;
    if (l === null || now >= l.until) return null;
    return Math.max(l.commit, Math.min(this.leaderMatched, lastIndex));
  }

  /** Ticks the lease still holds (0 without one), for status. */
  remaining(now: number): number {
    return this.lease === null ? 0 : Math.max(0, this.lease.until - now);
  }
}

/** Leader side: the asks heard and the gates set. Gates outlive the term: they bound votes and campaigns. */
export class FollowerLeaseGrants {
  private readonly asks = new Map<string, { ask: number; epoch: number; heardAt: number }>();
  private readonly gates = new Map<string, number>();
  private maxUntil = -1;

  constructor(private readonly leaseTicks: number) {}

  noteAsk(from: string, ask: number, epoch: number, now: number): void {
    const prev = this.asks.get(from);
    if (prev !== undefined && prev.epoch === epoch && ask < prev.ask) return; // reordered: an older ask
    this.asks.set(from, { ask, epoch, heardAt: now });
  }

  /** The ask to echo to `to` if it was heard at or after `since`, else undefined. */
  freshAsk(to: string, since: number): { ask: number; epoch: number } | undefined {
    const a = this.asks.get(to);
    return a !== undefined && a.heardAt >= since ? a : undefined;
  }

  /** A new term: asks heard in the old one are void (gates are not). */
  clearAsks(): void {
    this.asks.clear();
  }

  /** Records the grant sent now to `to`: commits wait for its match until the gate runs out. */
  gate(to: string, now: number, marginTicks: number): void {
    const until = now + this.leaseTicks + marginTicks;
    if (until > (this.gates.get(to) ?? -1)) this.gates.set(to, until);
    if (until > this.maxUntil) this.maxUntil = until;
  }

  /** Some gate may still be running: a lease this node granted may still be held. */
  active(now: number): boolean {
    return this.maxUntil > now;
  }

  /** Forgets gates that ran out; true if any did (the commit index may move now). */
  prune(now: number): boolean {
    let any = false;
    for (const [id, until] of this.gates) {
      if (until <= now) {
        this.gates.delete(id);
        any = true;
      }
    }
    return any;
  }

  /** The highest index the running gates let commit: the least match among gated peers (Infinity if none). */
  commitBound(now: number, match: (id: string) => number): number {
    let bound = Infinity;
    for (const [id, until] of this.gates) if (until > now) bound = Math.min(bound, match(id));
    return bound;
  }

  get gated(): number {
    return this.gates.size;
  }
}
