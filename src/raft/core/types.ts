/**
 * Public types of the Raft core. The core (RaftCore) is a pure state machine in the etcd-raft model:
 * `tick()`, `step(message)`, `propose(data)`, `readIndex(ctx)` change memory only and accumulate a `Ready`;
 * the caller (RaftNode, or the simulator) persists, sends, applies, then calls `advance(ready)`.
 *
 * Nothing in the core reads a clock, calls Math.random, awaits a promise or does I/O.
 */
import type { Rng } from '../../util/rng.js';

export type NodeId = string;

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export type EntryType = 'normal' | 'confChange';

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque to the core for 'normal' entries; an encoded ConfChange for 'confChange' entries. Empty = no-op. */
  data: Uint8Array;
}

export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
  /**
   * Set by storage when it cut a damaged end of the log that may have been acknowledged (src/raft/wal/wal.ts,
   * "Recovery"): the node does not campaign, and votes only as `recoveringBound` allows, until a leader has brought it
   * up to date, then the core clears it. Absent means false.
   */
  recovering?: boolean;
  /**
   * Only with `recovering`, read at start: the end of the log before the cut (last index and term), an upper bound on
   * anything this node may have acknowledged. While recovering the node votes only for a candidate whose log is at
   * least as up to date as this AND as its own log (Raft's vote rule against the log it had), so a cluster with
   * one node down and one recovering still elects a leader that holds every committed entry. Absent: the bound is
   * unknown and the node never votes while recovering. Not written back by the core.
   */
  recoveringBound?: LogPosition;
}

/** A point in the log: an index and the term of the entry there. */
export interface LogPosition {
  index: number;
  term: number;
}

/** Membership. While joint, a decision needs a majority of `voters` AND a majority of `votersOutgoing`. */
export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
  /** Non-empty only while in a joint configuration (the old voter set). */
  votersOutgoing: NodeId[];
  /** Voters of the outgoing config that become learners when the joint config is left. */
  learnersNext: NodeId[];
  /** When true, the leader proposes leaving the joint config as soon as entering it is committed. */
  autoLeave: boolean;
}

export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode';

export interface ConfChangeSingle {
  type: ConfChangeType;
  node: NodeId;
}

/**
 * A membership change. An empty `changes` list while joint means "leave the joint config".
 * `transition`: 'auto' (default) applies a single voter change directly and uses joint consensus with
 * automatic leave for anything larger; 'joint' always goes through a joint config (auto-leave);
 * 'jointExplicit' enters a joint config that is left only by an explicit empty change.
 */
export interface ConfChange {
  changes: ConfChangeSingle[];
  transition?: 'auto' | 'joint' | 'jointExplicit';
}

export interface SnapshotMetadata {
  index: number;
  term: number;
  confState: ConfState;
}

export interface Snapshot {
  metadata: SnapshotMetadata;
  /**
   * The state machine's image. The core never looks inside. A driver that streams snapshots out of band
   * (RaftNode) may leave this empty in messages and carry the bytes in chunks beside them.
   */
  data: Uint8Array;
}

export type MessageType =
  | 'preVote'
  | 'preVoteResp'
  | 'vote'
  | 'voteResp'
  | 'app'
  | 'appResp'
  | 'heartbeat'
  | 'heartbeatResp'
  | 'snap'
  | 'timeoutNow'
  | 'readIndex'
  | 'readIndexResp';

/**
 * One flat message shape (as raftpb.Message): which optional fields are set depends on `type`.
 * - vote / preVote: index/logTerm = candidate's last log index/term; context = 'transfer' marker when forced.
 * - app: index/logTerm = previous entry; entries; commit.
 * - appResp: index = last matching index (accept) or rejected index (reject); rejectHint/logTerm = conflict hint.
 * - heartbeat / heartbeatResp: commit; context = read-index round id; index = the leader's tick count when the
 *   heartbeat was sent, echoed in the response (lease reads count a lease from the send time).
 * - snap: snapshot.
 * - readIndex / readIndexResp: context = caller's request context; index = read index (response).
 */
export interface Message {
  type: MessageType;
  from: NodeId;
  to: NodeId;
  term: number;
  logTerm?: number;
  index?: number;
  entries?: Entry[];
  commit?: number;
  reject?: boolean;
  rejectHint?: number;
  snapshot?: Snapshot;
  context?: Uint8Array;
  /**
   * appResp / heartbeatResp: the sender is recovering a cut log (HardState.recovering); its older acks are void. The
   * value names this recovery (a random number drawn when the node started), so no message of an earlier one counts.
   */
  recovering?: number;
  /** app / heartbeat to a recovering follower: recovery `recovering` is over (it holds all it may have acknowledged). */
  recovered?: number;
  /**
   * Follower read leases (follower-lease.ts). heartbeatResp: the follower's tick when it asked, and its incarnation's
   * epoch. heartbeat: the grant, echoing both, with the leader's commit index in leaseCommit.
   */
  leaseAsk?: number;
  leaseEpoch?: number;
  leaseCommit?: number;
}

export interface SoftState {
  leader: NodeId | null;
  role: Role;
}

export interface ReadState {
  /** The commit index the read must wait for: serve it once applied ≥ index. */
  index: number;
  /** The context given to readIndex(), returned unchanged. */
  context: Uint8Array;
}

/**
 * Everything the caller must do, in this order:
 *  1. Send `messages` (may go out at once, in parallel with step 2: they never acknowledge this Ready's writes;
 *     this is how the leader replicates while its own append is being persisted).
 *  2. Persist `snapshot` (if any), then `entries` (appending; an entry whose index already exists replaces it
 *     and every later one), then `hardState` (if any) — atomically and durably (fsync) when `mustSync`.
 *  3. Send `persistedMessages` (responses that acknowledge what step 2 wrote: appResp, voteResp, ...) — only once
 *     step 2 of this Ready AND of every earlier Ready is durable.
 *  4. Apply `snapshot` to the state machine (if any), then `committedEntries` in order; serve `readStates` once
 *     applied ≥ their index. (committedEntries are always already durable locally.)
 *  5. Synchronous callers: `advance(ready)`. Pipelined callers (etcd's AsyncStorageWrites): `onApplied(ready)` once
 *     the writes were handed to storage (in order) and steps 1 and 4 are done — the next ready() may then be taken
 *     and does not repeat entries in flight — and `onPersisted(ready)` when step 2 is durable, in Ready order.
 *     Only then does the leader count its own log as persisted for commitment.
 * Applying a committed 'confChange' entry (step 4) means calling `core.applyConfChange(decodeConfChange(data))`
 * (etcd style) and persisting the returned ConfState with the applied index; the core never applies
 * membership changes by itself. Call `ready()` only after the previous Ready was advanced (onApplied); `step`,
 * `tick`, `propose` may be called in between.
 */
export interface Ready {
  softState?: SoftState;
  hardState?: HardState;
  entries: Entry[];
  snapshot?: Snapshot;
  committedEntries: Entry[];
  messages: Message[];
  persistedMessages: Message[];
  readStates: ReadState[];
  /** True when entries, a vote or a term change must reach the disk before persistedMessages are sent. */
  mustSync: boolean;
}

/**
 * The core's read-only view of stable storage (MemoryStorage, or the LevelDB log's in-memory index).
 * The caller writes to it while handling Ready; the core only reads. All calls are synchronous.
 */
export interface Storage {
  /**
   * The hard state, and the membership as of the snapshot point: a restarted core starts there (`applied` = the
   * snapshot index) and the caller re-applies the conf changes committed after it, in order. (The latest membership
   * instead would have them applied twice: a leave-joint replayed onto a later joint config corrupts it.)
   */
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at least one if any exist, stopping once their total data size exceeds maxBytes. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Term of the entry at index i; throws MooringError COMPACTED if i < firstIndex()-1 and no snapshot covers it. */
  term(i: number): number;
  /** Index of the first entry still available (snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The most recent snapshot (index 0 when none). */
  snapshot(): Snapshot;
}

export interface RaftConfig {
  id: NodeId;
  storage: Storage;
  /** The only source of randomness: election timeout jitter. */
  rng: Rng;
  /** Followers campaign after a random timeout in [electionTimeoutTicks, 2*electionTimeoutTicks). Default 6 (DEFAULT_ELECTION_TIMEOUT_TICKS). */
  electionTimeoutTicks?: number;
  /** Default 1. */
  heartbeatIntervalTicks?: number;
  /** Default true. */
  preVote?: boolean;
  /** A leader that has not heard from a quorum within an election timeout steps down. Default true. */
  checkQuorum?: boolean;
  /**
   * Fast failover: a follower whose connection to its leader was reset, closed or refused (reported by the driver
   * through reportConnectionLost) stops waiting for its election timeout and pre-votes at once (or, if another
   * voter is first in line, a few ticks later). Needs preVote and checkQuorum. Default true (off when either is off).
   */
  fastFailover?: boolean;
  /** 'safe' = ReadIndex confirmed by a heartbeat round; 'lease' = needs checkQuorum. Default 'safe'. */
  readOnlyOption?: 'safe' | 'lease';
  /**
   * Follower read leases (follower-lease.ts): a follower that serves reads asks its leader for a lease of this many of
   * its own ticks, and under it answers followerLeaseRead() with no message per read; the leader then commits an entry
   * only once every lease holder has it. 0 = off (default). Needs readOnlyOption 'lease', a heartbeat interval below
   * it, and followerLeaseTicks + FOLLOWER_LEASE_MARGIN_TICKS < electionTimeoutTicks. Granted only while the
   * configuration has at most three voters and is not joint.
   */
  followerLeaseTicks?: number;
  /** Per AppendEntries message. Defaults 512 entries, 1 MiB. */
  maxEntriesPerAppend?: number;
  maxBytesPerAppend?: number;
  /** Unacknowledged AppendEntries per follower in replicate state. Default 256. */
  maxInflightAppends?: number;
  /**
   * Unacknowledged entry bytes per follower in replicate state: the window is full at maxInflightAppends or at this
   * many bytes. It bounds what one Ready sends a follower that is far behind (and so the leader's time encoding it).
   * Default 4 MiB.
   */
  maxInflightBytes?: number;
  /** Proposals are refused (PROPOSAL_DROPPED) once uncommitted entry bytes exceed this. Default 64 MiB. */
  maxUncommittedBytes?: number;
  /** Committed entries handed out per Ready, by data size. Default 4 MiB. */
  maxCommittedBytesPerReady?: number;
  /** Last index applied to the state machine before a restart (entries ≤ applied are not re-delivered). */
  applied?: number;
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: 'probe' | 'replicate' | 'snapshot';
  recentActive: boolean;
  isLearner: boolean;
}

export interface Status {
  id: NodeId;
  term: number;
  vote: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  role: Role;
  leader: NodeId | null;
  confState: ConfState;
  /** Only on the leader. */
  progress?: Record<NodeId, ProgressStatus>;
  leadTransferee: NodeId | null;
  /** Present (true) while this node recovers a cut log: it does not campaign and votes only past its bound (HardState.recovering). */
  recovering?: boolean;
}
