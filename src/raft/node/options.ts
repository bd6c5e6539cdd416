/**
 * The Raft tunables, each with its ONE default, and the ONE conversion from them to the core's configuration.
 * The master config (src/master/config.ts), the KV server, RaftNode and the simulator all take their defaults
 * from `raftDefaults`; the core-level numbers are the core's own DEFAULT_* constants (declared once, in core.ts).
 * The read mode is called `readMode` ('lease' | 'readIndex') everywhere above the core; `toCoreOptions` is the
 * only place that turns it into the core's `readOnlyOption` ('lease' | 'safe').
 */
import {
  DEFAULT_ELECTION_TIMEOUT_TICKS,
  DEFAULT_HEARTBEAT_INTERVAL_TICKS,
  DEFAULT_MAX_BYTES_PER_APPEND,
  DEFAULT_MAX_ENTRIES_PER_APPEND,
  DEFAULT_MAX_INFLIGHT_APPENDS,
  DEFAULT_MAX_INFLIGHT_BYTES,
  DEFAULT_CHECK_QUORUM,
  DEFAULT_FOLLOWER_LEASE_TICKS,
  DEFAULT_PRE_VOTE,
} from '../core/core.js';
import type { RaftConfig } from '../core/types.js';

export type ReadMode = 'lease' | 'readIndex';

export interface RaftTunables {
  /** Milliseconds per core tick. */
  tickMs: number;
  /** Followers campaign after a random timeout in [electionTimeoutTicks, 2*electionTimeoutTicks) ticks. */
  electionTimeoutTicks: number;
  heartbeatIntervalTicks: number;
  preVote: boolean;
  /** A leader that has not heard from a quorum within an election timeout steps down. */
  checkQuorum: boolean;
  /**
   * A follower whose connection to the leader resets pre-votes at once instead of waiting out its election
   * timeout (needs preVote and checkQuorum, which keep a flapping connection from disrupting a healthy leader).
   */
  fastFailover: boolean;
  /** 'lease' needs checkQuorum; 'readIndex' confirms every read round with a heartbeat round. */
  readMode: ReadMode;
  /**
   * Follower read leases (src/raft/core/follower-lease.ts): a follower serving reads holds a lease of this many ticks
   * from its leader and answers reads that carry no payload from its own state, with no message per read; the leader
   * then commits an entry only once every lease holder has it (a write waits for the slowest of them, and for up to
   * followerLeaseTicks + 2 ticks when one stops answering). 0 = off. Needs readMode 'lease' and at most
   * electionTimeoutTicks - 3; granted only while the cluster has at most three voters.
   */
  followerLeaseTicks: number;
  maxEntriesPerAppend: number;
  maxBytesPerAppend: number;
  maxInflightAppends: number;
  /** Unacknowledged entry bytes per follower (the pipelining window is full at either bound). */
  maxInflightBytes: number;
  /**
   * Log saves (WAL batches) the Ready loop keeps in flight: while one is being synced the next Ready is taken and its
   * batch queued, so messages, proposals and replication go on during an fsync. 1 = serial (each Ready waits for the
   * previous save); more than 2 only queues more behind the disk, which writes one batch at a time.
   */
  maxInflightSaves: number;
  proposalTimeoutMs: number;
  readTimeoutMs: number;
  /**
   * Backpressure: while the leader's oldest unsettled proposal has waited longer than this, new proposals are refused
   * with BUSY (never proposed; `retryAfterMs` says when to come back) instead of queueing behind it.
   */
  maxProposalWaitMs: number;
  /** Unsettled proposals on the leader; more are refused with BUSY. */
  maxPendingProposals: number;
  maxPendingReads: number;
  /** Applied entries between local snapshots (log compaction). */
  snapshotEveryEntries: number;
  /** Entries kept behind a local snapshot so a briefly lagging follower is caught up from the log, not a snapshot. */
  snapshotKeepEntries: number;
}

/**
 * Failover-oriented production defaults: 25 ms ticks, election timeout 6 ticks (randomized 150–300 ms),
 * heartbeat every tick, pre-vote and check-quorum on, lease reads.
 */
export const raftDefaults: Readonly<RaftTunables> = Object.freeze({
  tickMs: 25,
  electionTimeoutTicks: DEFAULT_ELECTION_TIMEOUT_TICKS,
  heartbeatIntervalTicks: DEFAULT_HEARTBEAT_INTERVAL_TICKS,
  preVote: DEFAULT_PRE_VOTE,
  checkQuorum: DEFAULT_CHECK_QUORUM,
  fastFailover: true,
  readMode: 'lease',
  followerLeaseTicks: DEFAULT_FOLLOWER_LEASE_TICKS,
  maxEntriesPerAppend: DEFAULT_MAX_ENTRIES_PER_APPEND,
  maxBytesPerAppend: DEFAULT_MAX_BYTES_PER_APPEND,
  maxInflightAppends: DEFAULT_MAX_INFLIGHT_APPENDS,
  maxInflightBytes: DEFAULT_MAX_INFLIGHT_BYTES,
  maxInflightSaves: 2,
  proposalTimeoutMs: 5_000,
  readTimeoutMs: 5_000,
  maxProposalWaitMs: 200,
  maxPendingProposals: 65_536,
  maxPendingReads: 65_536,
  snapshotEveryEntries: 10_000,
  snapshotKeepEntries: 2_000,
});

/** Fills every tunable not given (undefined) from raftDefaults. */
export function resolveRaftTunables(given: Partial<RaftTunables>): RaftTunables {
  const out = { ...raftDefaults } as RaftTunables;
  for (const key of Object.keys(raftDefaults) as Array<keyof RaftTunables>) {
    const v = given[key];
    if (v !== undefined) (out as unknown as Record<string, unknown>)[key] = v;
  }
  return out;
}

export type CoreOptions = Required<Pick<RaftConfig, 'electionTimeoutTicks' | 'heartbeatIntervalTicks' | 'preVote' | 'checkQuorum' | 'fastFailover' | 'readOnlyOption' | 'followerLeaseTicks' | 'maxEntriesPerAppend' | 'maxBytesPerAppend' | 'maxInflightAppends' | 'maxInflightBytes'>>;

/** The core configuration the tunables imply (everything but id, storage, rng, applied). */
export function toCoreOptions(t: RaftTunables): CoreOptions {
  return {
    electionTimeoutTicks: t.electionTimeoutTicks,
    heartbeatIntervalTicks: t.heartbeatIntervalTicks,
    preVote: t.preVote,
    checkQuorum: t.checkQuorum,
    // Off, not an error, when pre-vote or check-quorum is off: the core refuses it only when asked for explicitly.
    fastFailover: t.fastFailover && t.preVote && t.checkQuorum,
    readOnlyOption: t.readMode === 'lease' ? 'lease' : 'safe',
    followerLeaseTicks: t.followerLeaseTicks,
    maxEntriesPerAppend: t.maxEntriesPerAppend,
    maxBytesPerAppend: t.maxBytesPerAppend,
    maxInflightAppends: t.maxInflightAppends,
    maxInflightBytes: t.maxInflightBytes,
  };
}
