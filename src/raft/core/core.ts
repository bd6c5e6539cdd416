/**
 * RaftCore: the Raft consensus algorithm as a pure state machine (the etcd-raft model). See types.ts for the
 * Ready contract. No clock, no randomness except config.rng, no promises, no I/O.
 *
 * Design choices worth knowing:
 * - Messages that acknowledge persisted state (appResp, voteResp) go to `persistedMessages`; everything else to
 *   `messages`. A vote request leaves at once, before the candidate's own term and vote are durable (etcd-raft does
 *   the same): the candidate counts its own vote only once they are (onPersisted), so a candidate that crashes before
 *   then never won with a vote it may give again after the restart. That takes one fsync off an election.
 * - The leader counts its own log as persisted only once the caller reports it durable (onPersisted, or advance()
 *   which includes it): a single-node cluster commits only then. Writes may be pipelined (etcd's
 *   AsyncStorageWrites): a Ready's entries are "in progress" once taken, the next ready() does not repeat them, and
 *   they become stable only in onPersisted, if their (index, term) still matches (see unstable.ts).
 * - Committed entries are handed out for applying only up to the last locally durable index.
 * - Removing (or demoting) the leader: it keeps leading while the change is in flight (even in a joint config
 *   where it is only an outgoing voter). Once the caller applies the change that removes it, it refuses
 *   proposals and reads but keeps replicating until a remaining voter holds its whole log, then sends that voter
 *   timeoutNow and steps down (it does not step down on check-quorum meanwhile: it cannot commit alone anyway).
 *   Stepping down at once could deadlock: the remaining voters may not know the commit index yet, and the
 *   departing node (with the longest log) would refuse their votes while no longer being allowed to campaign.
 * - Lease reads ('lease') are served without a heartbeat round only while the leader holds a lease: a quorum
 *   acknowledged a heartbeat that was sent less than (electionTimeoutTicks - 1) ticks ago. Followers that heard
 *   from a leader within an election timeout refuse (pre)votes, so no other leader can exist meanwhile. This
 *   assumes every node's ticks run at the same rate (bounded drift). Once a leadership transfer has been started
 *   in a term, lease reads fall back to heartbeat rounds for the rest of that term (a forced vote ignores leases).
 *   After a restart in lease mode a node refuses votes for one election timeout (it may have acknowledged a
 *   lease before crashing), so a lease-mode cluster elects its first leader by ticking, not by campaign() at t=0.
 * - Learners never campaign and their votes are never counted; they still answer vote requests, because their
 *   own view of the membership may lag (a candidate that has not applied a demotion yet still needs them).
 * - Joining nodes: bootstrap them with the cluster's membership (MemoryStorage({voters, learners})) or let the
 *   leader catch them up with a snapshot; a snapshot that predates their addition is accepted (the entries that
 *   add them follow it). Conf change entries are applied by the caller (applyConfChange), never by the core.
 * - The driver reports snapshots it streamed (reportSnapshot) and peers it could not reach (reportUnreachable);
 *   a follower in snapshot state waits for that report or for the follower's response.
 */
import { assert, ErrorCode, MooringError } from '../../errors.js';
import {
  applyChange,
  decodeConfChange,
  encodeConfChange,
  isLeaveJoint,
  restoreConfState,
  type ChangeResult,
} from './confchange.js';
import { FOLLOWER_LEASE_MARGIN_TICKS, FollowerLeaseGrants, FollowerLeaseHolder, MAX_FOLLOWER_LEASE_VOTERS } from './follower-lease.js';
import { RaftLog } from './log.js';
import type { Progress } from './progress.js';
import { decodeRoundId, encodeRoundId, ReadOnly, type ReadRequest } from './read-only.js';
import { isJoint, ProgressTracker } from './tracker.js';
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  LogPosition,
  Message,
  MessageType,
  NodeId,
  ProgressStatus,
  RaftConfig,
  ReadState,
  Ready,
  Role,
  SoftState,
  Snapshot,
  Status,
} from './types.js';
import type { Rng } from '../../util/rng.js';
import { bytesEqual, EMPTY_BYTES, entriesSize, reaches } from './util.js';

/** The one declaration of each core-level default (RaftNode, the master config and the simulator use these too). */
export const DEFAULT_ELECTION_TIMEOUT_TICKS = 6;
export const DEFAULT_HEARTBEAT_INTERVAL_TICKS = 1;
export const DEFAULT_MAX_ENTRIES_PER_APPEND = 512;
export const DEFAULT_MAX_BYTES_PER_APPEND = 1024 * 1024;
export const DEFAULT_MAX_INFLIGHT_APPENDS = 256;
export const DEFAULT_MAX_INFLIGHT_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_UNCOMMITTED_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_COMMITTED_BYTES_PER_READY = 4 * 1024 * 1024;
export const DEFAULT_PRE_VOTE = true;
export const DEFAULT_CHECK_QUORUM = true;
/** Follower read leases off: they move cost onto the write path (follower-lease.ts, docs/raft.md). */
export const DEFAULT_FOLLOWER_LEASE_TICKS = 0;
/**
 * Check-quorum: a leader steps down once no quorum has answered it for this many election timeouts, counted from each
 * peer's last answer (not in fixed windows, which let a silence of anywhere between one and two windows count). Two,
 * not one: under CPU starvation (a leader flooded by clients, a host shared with them) leader and followers stall for
 * 75-450 ms at times, a starved follower's answer then came too late for a healthy leader, and its step-down started
 * an election: 15 s floods of 2,048 sessions on the 2-core bench machine saw 4-10 leader changes each before, 0 in
 * most runs after (up to 3: leader stalls longer than the followers' own timeouts; bench/RESULTS.md, fifteenth session).
 * Safety does not rest on this: lease reads end on their own clock (hasLease), and followers elect without the old
 * leader after their own election timeout. The cost: a leader cut off from its quorum answers its clients NOT_LEADER
 * after 300 ms (default timers) instead of 150-300 ms.
 */
export const CHECK_QUORUM_ELECTION_TIMEOUTS = 2;
/**
 * 'safe' (ReadIndex) for a bare RaftCore: it does not depend on check-quorum. Nodes always pass the read mode
 * explicitly, from raftDefaults.readMode (src/raft/node/options.ts), through toCoreOptions.
 */
export const DEFAULT_READ_ONLY_OPTION = 'safe';

/** Reads (ReadIndex rounds and reads waiting for the first commit of a term) a leader keeps at most. */
export const MAX_PENDING_READS = 10_000;

/** `context` of a vote request forced by a leadership transfer (it bypasses leader stickiness). */
export const TRANSFER_CONTEXT: Uint8Array = new TextEncoder().encode('transfer');

type CampaignType = 'preElection' | 'election' | 'transfer';

// preVoteResp is not among them: a pre-vote answer promises nothing durable (it changes no term or vote), so it may
// go out at once (takeUrgentMessages), like the pre-vote request itself.
const PERSISTED_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['appResp', 'voteResp']);
/** Messages that depend on nothing being written: a driver may send them before the current Ready's saves finish. */
const URGENT_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['preVote', 'preVoteResp', 'heartbeat', 'heartbeatResp']);

function voteRespType(t: MessageType): MessageType {
  return t === 'vote' ? 'voteResp' : 'preVoteResp';
}

function posInt(v: number | undefined, def: number, name: string): number {
  const x = v ?? def;
  if (!Number.isSafeInteger(x) || x <= 0) throw new MooringError(ErrorCode.INVALID_CONFIG, `${name} must be a positive integer, got ${x}`);
  return x;
}

/** The result of proposeBatch: the entries occupy [firstIndex, lastIndex] in `term`. */
export interface BatchProposal {
  firstIndex: number;
  lastIndex: number;
  term: number;
}

export class RaftCore {
  readonly id: NodeId;
  private readonly rng: Rng;
  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly fastFailover: boolean;
  private readonly readOnlyOption: 'safe' | 'lease';
  private readonly maxEntriesPerAppend: number;
  private readonly maxBytesPerAppend: number;
  private readonly maxUncommittedBytes: number;
  /** Follower read leases (follower-lease.ts): the lease a follower counts, in its ticks; 0 = off. */
  private readonly followerLeaseTicks: number;
  private readonly flHolder: FollowerLeaseHolder;
  private readonly flGrants: FollowerLeaseGrants;

  private term = 0;
  private vote: NodeId | null = null;
  private lead: NodeId | null = null;
  private role: Role = 'follower';

  readonly log: RaftLog;
  private trk: ProgressTracker;
  private readOnly = new ReadOnly();

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  /** Leader: check-quorum on hold (holdCheckQuorum). */
  private checkQuorumHeld = false;
  private randomizedElectionTimeout = 0;
  /** Ticks since construction: the leader's clock for leases. */
  private tickCount = 0;
  /** Lease mode only: refuse votes for one election timeout after (re)start, as if a leader was just heard. */
  private startupLease: boolean;

  private leadTransferee: NodeId | null = null;
  /** Lease reads are off for the rest of a term once a transfer was started in it. */
  private transferStartedThisTerm = false;
  /** Index of the latest conf change entry appended by this leader; no new one until it is applied. */
  private pendingConfIndex = 0;
  /**
   * Leader: a conf change in its log removes or demotes it. It appends nothing after that entry (the remaining
   * voters must be able to hold its whole log: see maybeHandOff).
   */
  private removingSelf = false;
  private uncommittedSize = 0;
  /** A timeoutNow received in this term while a conf change was unapplied: campaign once it is applied. */
  private pendingTimeoutNowTerm = -1;
  /** readIndex requests waiting for this leader's first commit in its term. */
  private pendingReadIndex: ReadRequest[] = [];
  /** Leader: per peer, the tick at which the latest heartbeat it acknowledged was sent. */
  private leaseAcks = new Map<NodeId, number>();
  /** Fast failover: the tick at which this follower pre-votes, having lost its leader's connection. */
  private fastCampaignAtTick: number | null = null;
  private fastPreVoteCount = 0;
  /** Candidate: the term whose own vote is counted once a Ready holding it is durable (onPersisted). */
  private selfVoteTerm: number | null = null;
  /** The latest pre-vote ignored because we were in a leader's lease (fast failover may still grant it). */
  private ignoredPreVote: { m: Message; atTick: number } | null = null;
  /** Follower: the tick at which it last heard from its leader (append, heartbeat, snapshot). */
  private leaderHeardAtTick = -1;

  private msgs: Message[] = [];
  private msgsAfterAppend: Message[] = [];
  private readStates: ReadState[] = [];

  private prevSoft: SoftState;
  private prevHard: HardState;
  /** HardState.recovering: no votes, no campaigns until a leader says `recovered` (wal.ts, "Recovery"). */
  private recovering = false;
  /** HardState.recoveringBound: while recovering, a candidate must be at least this up to date for our vote. */
  private recoveringBound: LogPosition | null = null;
  /** Names this node's recovery in its messages (drawn at start; 0 when not recovering). */
  private readonly recoveryId: number;
  private outstanding: Ready | null = null;

  constructor(config: RaftConfig) {
    if (typeof config.id !== 'string' || config.id.length === 0) throw new MooringError(ErrorCode.INVALID_CONFIG, 'id must be a non-empty string');
    this.id = config.id;
    this.rng = config.rng;
    this.electionTimeout = posInt(config.electionTimeoutTicks, DEFAULT_ELECTION_TIMEOUT_TICKS, 'electionTimeoutTicks');
    this.heartbeatTimeout = posInt(config.heartbeatIntervalTicks, DEFAULT_HEARTBEAT_INTERVAL_TICKS, 'heartbeatIntervalTicks');
    if (this.heartbeatTimeout >= this.electionTimeout) {
      throw new MooringError(ErrorCode.INVALID_CONFIG, 'heartbeatIntervalTicks must be smaller than electionTimeoutTicks');
    }
    this.preVote = config.preVote ?? DEFAULT_PRE_VOTE;
    this.checkQuorum = config.checkQuorum ?? DEFAULT_CHECK_QUORUM;
    this.readOnlyOption = config.readOnlyOption ?? DEFAULT_READ_ONLY_OPTION;
    if (this.readOnlyOption === 'lease' && !this.checkQuorum) {
      throw new MooringError(ErrorCode.INVALID_CONFIG, "readOnlyOption 'lease' requires checkQuorum");
    }
    if (this.readOnlyOption === 'lease' && this.electionTimeout < 3) {
      throw new MooringError(ErrorCode.INVALID_CONFIG, "readOnlyOption 'lease' needs electionTimeoutTicks >= 3");
    }
    this.startupLease = this.readOnlyOption === 'lease';
    const flt = config.followerLeaseTicks ?? DEFAULT_FOLLOWER_LEASE_TICKS;
    if (!Number.isSafeInteger(flt) || flt < 0) throw new MooringError(ErrorCode.INVALID_CONFIG, 'followerLeaseTicks must be a non-negative integer');
    if (flt > 0) {
      if (this.readOnlyOption !== 'lease') throw new MooringError(ErrorCode.INVALID_CONFIG, "followerLeaseTicks needs readOnlyOption 'lease'");
      if (flt + FOLLOWER_LEASE_MARGIN_TICKS >= this.electionTimeout) {
        throw new MooringError(ErrorCode.INVALID_CONFIG, `followerLeaseTicks (${flt}) + ${FOLLOWER_LEASE_MARGIN_TICKS} must be below electionTimeoutTicks (${this.electionTimeout})`);
      }
      if (this.heartbeatTimeout >= flt) {
        throw new MooringError(ErrorCode.INVALID_CONFIG, `heartbeatIntervalTicks (${this.heartbeatTimeout}) must be below followerLeaseTicks (${flt}): the lease would lapse between heartbeats`);
      }
    }
    this.followerLeaseTicks = flt;
    this.flGrants = new FollowerLeaseGrants(flt);
    if (config.fastFailover === true && !(this.preVote && this.checkQuorum)) {
      throw new MooringError(ErrorCode.INVALID_CONFIG, 'fastFailover needs preVote and checkQuorum (they keep a flapping connection from disrupting a healthy leader)');
    }
    this.fastFailover = (config.fastFailover ?? true) && this.preVote && this.checkQuorum;
    this.maxEntriesPerAppend = posInt(config.maxEntriesPerAppend, DEFAULT_MAX_ENTRIES_PER_APPEND, 'maxEntriesPerAppend');
    this.maxBytesPerAppend = posInt(config.maxBytesPerAppend, DEFAULT_MAX_BYTES_PER_APPEND, 'maxBytesPerAppend');
    const window = {
      appends: posInt(config.maxInflightAppends, DEFAULT_MAX_INFLIGHT_APPENDS, 'maxInflightAppends'),
      bytes: posInt(config.maxInflightBytes, DEFAULT_MAX_INFLIGHT_BYTES, 'maxInflightBytes'),
    };
    this.maxUncommittedBytes = posInt(config.maxUncommittedBytes, DEFAULT_MAX_UNCOMMITTED_BYTES, 'maxUncommittedBytes');
    const maxCommitted = posInt(config.maxCommittedBytesPerReady, DEFAULT_MAX_COMMITTED_BYTES_PER_READY, 'maxCommittedBytesPerReady');

    this.log = new RaftLog(config.storage, maxCommitted);
    this.trk = new ProgressTracker(window);
    const { hardState, confState } = config.storage.initialState();
    const restored = restoreConfState(confState, this.log.lastIndex(), window);
    this.switchToConfig(restored);

    if (hardState.term !== 0 || hardState.vote !== null || hardState.commit !== 0) {
      // A commit index below the snapshot (hard state written before the snapshot) is harmless: the snapshot
      // is committed. One beyond the log means committed entries were lost.
      if (hardState.commit > this.log.lastIndex()) {
        throw new MooringError(ErrorCode.CORRUPT_LOG, `hard state commit ${hardState.commit} beyond the last index ${this.log.lastIndex()}`);
      }
      this.log.committed = Math.max(hardState.commit, this.log.committed);
      this.term = hardState.term;
      this.vote = hardState.vote;
    }
    // A sole voter has no one to learn from: what it lost is lost either way, and refusing to campaign would keep
    // the cluster down for good.
    this.recovering = hardState.recovering === true && !(this.trk.isSingleton() && this.trk.voterIds().includes(this.id));
    // Drawn only when needed: the random stream of every other start stays as it was (replayable seeds).
    this.recoveryId = this.recovering ? 1 + this.rng.nextInt(0x7fff_ffff) : 0;
    // Drawn only with follower leases on, for the same reason.
    this.flHolder = new FollowerLeaseHolder(flt, flt > 0 ? 1 + this.rng.nextInt(0x7fff_ffff) : 0);
    const bound = hardState.recoveringBound;
    if (this.recovering && bound !== undefined) {
      assert(Number.isSafeInteger(bound.index) && bound.index >= 0 && Number.isSafeInteger(bound.term) && bound.term >= 0, () => `recovering bound ${JSON.stringify(bound)} is not a log position`);
      this.recoveringBound = { index: bound.index, term: bound.term };
    }
    const applied = config.applied ?? 0;
    if (applied > 0) {
      if (applied > this.log.lastIndex()) throw new MooringError(ErrorCode.CORRUPT_LOG, `applied ${applied} beyond the last index ${this.log.lastIndex()}`);
      // Only committed entries are ever applied, so the applied index is committed even when the stored commit lags
      // it: a commit-index update is written without a sync, and a crash may lose it while the snapshot that covers
      // it (synced) survives. Refusing to start there would keep a healthy node down for good.
      this.log.committed = Math.max(this.log.committed, applied);
      if (applied > this.log.applied) this.log.appliedTo(applied);
    }
    this.becomeFollower(this.term, null);
    this.prevSoft = this.softState();
    this.prevHard = this.hardState();
  }

  // ------------------------------------------------------------------ public API

  /** Advances logical time by one tick. */
  tick(): void {
    this.tickCount++;
    if (this.role === 'leader') this.tickHeartbeat();
    else this.tickElection();
    this.checkInvariants();
  }

  /**
   * Handles a message from a peer. Never throws on a message that passed validateMessage: stale terms,
   * unknown senders and out-of-place types are ignored.
   */
  step(m: Message): void {
    if (m.to !== this.id || m.from === this.id) return;
    if (m.term > this.term) {
      if (m.type === 'vote' || m.type === 'preVote') {
        const force = bytesEqual(m.context, TRANSFER_CONTEXT);
        if (this.followerLeaseBlocksVotes() || (!force && this.inLease())) {
          // Leader stickiness: ignore, and do not adopt the term. Fast failover answers it if the leader's
          // connection turns out to be lost (a peer may see the reset a moment before we do).
          if (m.type === 'preVote') this.ignoredPreVote = { m, atTick: this.tickCount };
          return;
        }
      }
      if (m.type === 'preVote') {
        // A pre-vote never changes our term.
      } else if (m.type === 'preVoteResp' && !m.reject) {
        // The term in a granted pre-vote response is the one we will campaign in, not a newer leader's.
      } else if (m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap') {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (m.type === 'heartbeat' || m.type === 'app') {
        // A stale leader: tell it about our term so it steps down (it may be cut off from everyone else). etcd
        // does so only with check-quorum or pre-vote, counting on elections to spread the term otherwise; but a
        // node that may not campaign (a learner in the membership it applied, one the stale leader still needs
        // as a voter) would then stay silent, and the stale leader would wait for it forever.
        this.send({ type: 'appResp', to: m.from, from: this.id, term: this.term });
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', to: m.from, from: this.id, term: this.term, reject: true });
      }
      return;
    }

    if (m.type === 'vote' || m.type === 'preVote') {
      this.handleVoteRequest(m);
      return;
    }
    switch (this.role) {
      case 'leader':
        this.stepLeader(m);
        break;
      case 'candidate':
      case 'preCandidate':
        this.stepCandidate(m);
        break;
      case 'follower':
        this.stepFollower(m);
        break;
    }
    this.checkInvariants();
  }

  /** Proposes one normal entry. Returns where it landed (it commits only if that index gets that term). */
  propose(data: Uint8Array): { index: number; term: number } {
    const r = this.proposeBatch([data]);
    return { index: r.firstIndex, term: r.term };
  }

  /** Proposes many normal entries at once (all or nothing): one append, one message per follower. */
  proposeBatch(datas: Uint8Array[]): BatchProposal {
    this.checkCanPropose();
    if (datas.length === 0) {
      const li = this.log.lastIndex();
      return { firstIndex: li + 1, lastIndex: li, term: this.term };
    }
    const li = this.log.lastIndex();
    const ents: Entry[] = new Array<Entry>(datas.length);
    for (let i = 0; i < datas.length; i++) {
      const data = datas[i]!;
      if (!(data instanceof Uint8Array)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'proposal data must be a Uint8Array');
      ents[i] = { term: this.term, index: li + 1 + i, type: 'normal', data };
    }
    this.appendEntries(ents);
    this.bcastAppend();
    this.checkInvariants();
    return { firstIndex: li + 1, lastIndex: li + datas.length, term: this.term };
  }

  /**
   * Proposes a membership change. Only one may be in flight (MEMBERSHIP_CHANGE_IN_PROGRESS); an invalid change
   * is refused with INVALID_ARGUMENT. The caller applies it with applyConfChange() when the entry is committed.
   */
  proposeConfChange(cc: ConfChange): { index: number; term: number } {
    this.checkCanPropose();
    if (this.pendingConfIndex > this.log.applied) {
      throw new MooringError(ErrorCode.MEMBERSHIP_CHANGE_IN_PROGRESS, `conf change at ${this.pendingConfIndex} not applied yet (applied ${this.log.applied})`);
    }
    const joint = isJoint(this.trk.config);
    if (joint && !isLeaveJoint(cc)) {
      throw new MooringError(ErrorCode.MEMBERSHIP_CHANGE_IN_PROGRESS, 'in a joint configuration: only leaving it is allowed');
    }
    if (!joint && isLeaveJoint(cc)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'not in a joint configuration');
    // Dry run against the current config: refuse now what would be a no-op at apply time.
    const after = applyChange(this.trk.config, this.trk.progress, cc, this.log.lastIndex(), this.trk.window);
    const index = this.log.lastIndex() + 1;
    this.appendEntries([{ term: this.term, index, type: 'confChange', data: encodeConfChange(cc) }]);
    this.pendingConfIndex = index;
    if (this.excludesSelf(after)) this.removingSelf = true;
    this.bcastAppend();
    return { index, term: this.term };
  }

  /**
   * Must be called by the caller when it applies a committed 'confChange' entry (in log order, like any
   * entry). Returns the resulting membership (persist it with the applied index). A change that is invalid in
   * the current config is ignored (deterministically on every node) and the current ConfState is returned.
   */
  applyConfChange(cc: ConfChange): ConfState {
    let r: ChangeResult;
    try {
      r = applyChange(this.trk.config, this.trk.progress, cc, this.log.lastIndex(), this.trk.window);
    } catch (e) {
      if (e instanceof MooringError && e.code === ErrorCode.INVALID_ARGUMENT) return this.trk.confState();
      throw e;
    }
    const cs = this.switchToConfig(r);
    this.checkInvariants();
    return cs;
  }

  /** Convenience: applies a confChange entry's data (decode + applyConfChange). */
  applyConfChangeEntry(entry: Entry): ConfState {
    assert(entry.type === 'confChange', 'not a confChange entry');
    let cc: ConfChange;
    try {
      cc = decodeConfChange(entry.data);
    } catch {
      return this.trk.confState();
    }
    return this.applyConfChange(cc);
  }

  /**
   * Requests a linearizable read. On the leader the answer arrives as a ReadState in a later Ready; on a
   * follower the request is forwarded to the leader and the answer comes back the same way.
   */
  readIndex(context: Uint8Array): void {
    if (this.isLeaving()) throw new MooringError(ErrorCode.NOT_LEADER, 'this leader was removed from the cluster');
    if (this.role === 'leader') {
      this.handleReadIndex({ from: this.id, context });
      return;
    }
    if (this.lead === null) throw new MooringError(ErrorCode.NOT_LEADER, 'no leader known');
    this.send({ type: 'readIndex', to: this.lead, from: this.id, term: this.term, context });
  }

  /** Starts transferring leadership to `to` (a voter). Proposals are refused until it ends or aborts. */
  transferLeadership(to: NodeId): void {
    if (this.role !== 'leader') this.throwNotLeader();
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.isLearner) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${to} is not a voter`);
    if (this.leadTransferee !== null) {
      if (this.leadTransferee === to) return;
      this.abortLeaderTransfer();
    }
    if (to === this.id) return;
    this.electionElapsed = 0; // the transfer must finish within one election timeout
    this.leadTransferee = to;
    this.transferStartedThisTerm = true;
    if (pr.match === this.log.lastIndex()) this.maybeSendTimeoutNow();
    else this.sendAppend(to);
  }

  /**
   * Moves the clock `n` ticks with no timer effects (no election, no heartbeat). For a driver that counts a stall as
   * one tick for the election timer (its leader's messages waited in its sockets) while time-bound state — a follower
   * read lease — must still see all the time that passed.
   */
  skipTicks(n: number): void {
    assert(Number.isSafeInteger(n) && n >= 0, () => `skipTicks(${n})`);
    this.tickCount += n;
    if (this.role === 'follower' && this.leaderHeardAtTick === this.tickCount - n) this.leaderHeardAtTick = this.tickCount;
  }

  /** Starts an election now (pre-vote first when enabled). */
  campaign(): void {
    this.hup('election');
  }

  /**
   * Fast failover. The driver saw its connection to `peer` reset, closed, or a reconnect refused — what every peer
   * sees at once when a process dies (its kernel resets its sockets). Not a timeout: a black-holed peer is still
   * found out by the election timeout.
   * - A follower whose leader that is forgets it (so it stops honouring the leader's lease: others' pre-votes may
   *   now be granted) and pre-votes without waiting for its election timeout: at once if it is first in this term's
   *   succession order, else 2 ticks per place later, so the first one normally wins before the next one tries
   *   (two pre-votes at once would both succeed and split the real vote). A pre-vote still fails while a quorum
   *   hears the leader (voters in lease ignore it), so a flapping connection cannot depose a healthy leader.
   * - A leader stops counting that peer's lease acknowledgement: the peer may now vote for another node.
   * Returns true when it started or scheduled a pre-vote.
   */
  reportConnectionLost(peer: NodeId): boolean {
    if (this.role === 'leader') {
      this.leaseAcks.delete(peer);
      return false;
    }
    if (!this.fastFailover || this.role !== 'follower' || peer !== this.lead || !this.promotable()) return false;
    this.lead = null;
    this.flHolder.drop(); // its lease came from that leader: whoever wins next must not find it still running
    // A peer saw the reset first and already asked: grant its pre-vote now and stand back (it is ahead of us). If
    // its log is behind ours it cannot win, and it will not ask again before its election timeout: go now, whatever
    // our place in line (waiting it out cost 2 ticks, 50 ms, in the failover bench).
    const asked = this.takeRecentIgnoredPreVote();
    let rank = this.successionRank(peer);
    if (asked !== null && asked.from !== peer) {
      if (this.grantPreVote(asked)) rank = Math.max(rank, 1);
      else if (!this.log.isUpToDate(asked.index ?? 0, asked.logTerm ?? 0)) rank = 0;
    }
    if (rank <= 0) this.fastPreVote();
    else this.fastCampaignAtTick = this.tickCount + 2 * rank;
    this.checkInvariants();
    return true;
  }

  /**
   * Removes and returns the pending pre-votes, heartbeats and their answers: they may be sent before the current
   * Ready is finished (they acknowledge nothing on disk). Lets a driver whose Ready loop is waiting for an fsync start
   * or answer a pre-vote at once, and a leader keep its followers' election timers reset while its disk is slow.
   */
  takeUrgentMessages(): Message[] {
    const out: Message[] = [];
    let kept = 0;
    for (const m of this.msgs) {
      if (URGENT_TYPES.has(m.type)) out.push(m);
      else this.msgs[kept++] = m;
    }
    this.msgs.length = kept;
    return out;
  }

  /** The current term (cheap; status() builds the whole picture). */
  get currentTerm(): number {
    return this.term;
  }

  get commitIndex(): number {
    return this.log.committed;
  }

  /** Pre-votes started by reportConnectionLost (not by an election timeout) since construction. */
  get fastPreVotes(): number {
    return this.fastPreVoteCount;
  }

  /**
   * True when this follower heard from its leader since its last tick. A driver catching up the ticks of a stall
   * (a long GC, SIGSTOP, a starved process) then counts the stall as one tick: the leader's messages waited in its
   * sockets during the stall, so the time before them must not push the election timer past its timeout.
   */
  get heardFromLeaderSinceTick(): boolean {
    return this.role === 'follower' && this.leaderHeardAtTick === this.tickCount;
  }

  /**
   * Leader: holds check-quorum (no step-down) until releaseCheckQuorum(). A driver catching up the ticks of a stall
   * holds it until it has read the socket input that waited during the stall: the stall may have ended in the middle
   * of the event loop's turn, with the followers' answers still unread, and counting the stall against them deposed a
   * healthy leader (the overload traces: a leader stepped down 50 ms after a follower had heard its heartbeat).
   * Liveness only: lease reads keep their own clock (hasLease), and time goes on counting while held.
   */
  holdCheckQuorum(): void {
    this.checkQuorumHeld = true;
  }

  /** Ends holdCheckQuorum() and judges check-quorum at once. */
  releaseCheckQuorum(): void {
    this.checkQuorumHeld = false;
    if (this.role === 'leader') this.stepDownIfQuorumLost();
  }

  reportUnreachable(id: NodeId): void {
    if (this.role !== 'leader') return;
    const pr = this.trk.progress.get(id);
    if (pr !== undefined && pr.state === 'replicate') pr.becomeProbe();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    if (this.role !== 'leader') return;
    const pr = this.trk.progress.get(id);
    if (pr === undefined || pr.state !== 'snapshot') return;
    if (!ok) pr.pendingSnapshot = 0;
    pr.becomeProbe();
    // Wait for the follower's response (or a heartbeat) before the next append.
    pr.msgAppFlowPaused = true;
  }

  hasReady(): boolean {
    if (this.outstanding !== null) return false;
    if (this.msgs.length > 0 || this.msgsAfterAppend.length > 0 || this.readStates.length > 0) return true;
    if (this.log.hasNextUnstableEnts() || this.log.hasNextUnstableSnapshot()) return true;
    if (this.log.hasNextCommittedEnts()) return true;
    // Compared field by field: hasReady() is on the hot path and should not allocate.
    if (this.lead !== this.prevSoft.leader || this.role !== this.prevSoft.role) return true;
    const ph = this.prevHard;
    return this.term !== ph.term || this.vote !== ph.vote || this.log.committed !== ph.commit;
  }

  /**
   * Collects what the caller must do. Its entries and snapshot are then "in progress": a later ready() does not
   * hand them out again. Call onApplied(ready) (or advance(ready)) before the next ready().
   */
  ready(): Ready {
    assert(this.outstanding === null, 'ready() called again before the previous Ready was advanced');
    const entries = this.log.nextUnstableEnts();
    const snapshot = this.log.nextUnstableSnapshot();
    const committedEntries = this.log.nextCommittedEnts();
    const rd: Ready = {
      entries,
      committedEntries,
      messages: this.msgs,
      persistedMessages: this.msgsAfterAppend,
      readStates: this.readStates,
      mustSync: false,
    };
    if (snapshot !== undefined) rd.snapshot = snapshot;
    const ss = this.softState();
    if (ss.leader !== this.prevSoft.leader || ss.role !== this.prevSoft.role) {
      rd.softState = ss;
      this.prevSoft = ss;
    }
    const hs = this.hardState();
    if (!hardStateEqual(hs, this.prevHard)) {
      rd.hardState = hs;
      rd.mustSync = entries.length > 0 || hs.term !== this.prevHard.term || hs.vote !== this.prevHard.vote || hs.recovering !== this.prevHard.recovering;
      this.prevHard = hs;
    }
    if (entries.length > 0 || snapshot !== undefined) rd.mustSync = true;
    this.msgs = [];
    this.msgsAfterAppend = [];
    this.readStates = [];
    this.log.acceptUnstable();
    if (committedEntries.length > 0) this.log.acceptApplying(committedEntries[committedEntries.length - 1]!.index);
    this.outstanding = rd;
    return rd;
  }

  /**
   * Synchronous callers: the caller finished the Ready — persisted (durably), sent, applied. The same as
   * onPersisted(rd) followed by onApplied(rd).
   */
  advance(rd: Ready): void {
    this.onPersisted(rd);
    this.onApplied(rd);
  }

  /**
   * The Ready's snapshot, entries and hard state are durable (its persistedMessages may now be sent). Report
   * Readys in the order they were taken; it may come long after onApplied(rd) and after later ready() calls.
   * Entries replaced meanwhile (a follower's log truncated by a conflicting append) are not marked stable: the
   * write that replaces them reports them later. Only now does the leader count its own log towards commitment.
   */
  onPersisted(rd: Ready): void {
    if (rd.snapshot !== undefined) this.log.stableSnapTo(rd.snapshot.metadata.index);
    if (rd.entries.length > 0) {
      const last = rd.entries[rd.entries.length - 1]!;
      this.log.stableTo(last.index, last.term);
    }
    if (this.selfVoteTerm !== null && this.role === 'candidate' && rd.hardState !== undefined && rd.hardState.term === this.selfVoteTerm && rd.hardState.vote === this.id) {
      // Our term and vote for ourselves are durable: now our vote counts (it may decide the election).
      this.selfVoteTerm = null;
      const res = this.poll(this.id, 'voteResp', true);
      if (res === 'won') {
        this.becomeLeader();
        this.bcastAppend();
      } else if (res === 'lost') {
        this.becomeFollower(this.term, null);
      }
    }
    if (this.role === 'leader') {
      // The leader's own ack: only what the caller has persisted counts towards commitment.
      const self = this.trk.progress.get(this.id);
      if (self !== undefined && self.maybeUpdate(this.log.stableLastIndex())) {
        if (this.maybeCommit()) this.afterCommitAdvanced();
      }
    }
    this.checkInvariants();
  }

  /**
   * The caller handled everything in the Ready except waiting for its writes to be durable: it sent `messages`,
   * handed the writes to storage (in order), applied `committedEntries` (applyConfChange for conf entries) and
   * took its readStates. The next ready() may now be taken; report durability with onPersisted(rd).
   */
  onApplied(rd: Ready): void {
    assert(this.outstanding === rd, 'onApplied() with a Ready that is not the outstanding one');
    this.outstanding = null;
    if (rd.snapshot !== undefined) {
      const si = rd.snapshot.metadata.index;
      if (si > this.log.applied && si <= this.log.committed) this.log.appliedTo(si);
    }
    if (rd.committedEntries.length > 0) {
      const lastApplied = rd.committedEntries[rd.committedEntries.length - 1]!.index;
      if (lastApplied > this.log.applied) this.log.appliedTo(lastApplied);
      if (this.role === 'leader') this.reduceUncommittedSize(rd.committedEntries);
    }
    if (this.pendingTimeoutNowTerm !== -1 && rd.committedEntries.length > 0) {
      if (this.pendingTimeoutNowTerm !== this.term || this.role !== 'follower') this.pendingTimeoutNowTerm = -1;
      else if (!this.hasUnappliedConfChanges()) {
        this.pendingTimeoutNowTerm = -1;
        this.hup('transfer');
      }
    }
    if (this.role === 'leader') this.maybeAutoLeave();
    this.checkInvariants();
  }

  status(): Status {
    const s: Status = {
      id: this.id,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      role: this.role,
      leader: this.lead,
      confState: this.trk.confState(),
      leadTransferee: this.leadTransferee,
    };
    if (this.recovering) s.recovering = true;
    if (this.role === 'leader') {
      const progress: Record<NodeId, ProgressStatus> = {};
      for (const id of this.trk.ids()) {
        const pr = this.trk.progress.get(id)!;
        progress[id] = { match: pr.match, next: pr.next, state: pr.state, recentActive: pr.recentActive, isLearner: pr.isLearner };
      }
      s.progress = progress;
    }
    return s;
  }

  /** Lease mode: whether this leader may serve a read without a heartbeat round right now. */
  hasLease(): boolean {
    if (this.role !== 'leader' || this.readOnlyOption !== 'lease' || this.transferStartedThisTerm || this.isLeaving()) return false;
    const c = this.trk.config;
    const acked = (id: NodeId): number | undefined => (id === this.id ? this.tickCount : this.leaseAcks.get(id));
    const quorumSent = Math.min(majorityAck(c.incoming, acked), majorityAck(c.outgoing, acked));
    return this.tickCount < quorumSent + this.electionTimeout - 1;
  }

  /**
   * Follower read lease (followerLeaseTicks > 0): the index a linearizable read starting now must wait to have
   * applied before it reads this node's state, or null when this node holds no lease (use readIndex). Either way the
   * node keeps asking its leader for a lease for the next election timeout. A driver must have caught up its ticks
   * with the time that passed (a paused process) before it asks: the lease is counted in ticks.
   */
  followerLeaseRead(): number | null {
    if (this.followerLeaseTicks === 0) return null;
    this.flHolder.want(this.tickCount, this.electionTimeout);
    if (!this.mayHoldFollowerLease()) return null;
    return this.flHolder.readIndex(this.tickCount, this.log.lastIndex());
  }

  /** Ticks the follower read lease still holds (0: none), and the gates this node has running. */
  followerLeaseStatus(): { heldTicks: number; gates: number } {
    return { heldTicks: this.mayHoldFollowerLease() ? this.flHolder.remaining(this.tickCount) : 0, gates: this.flGrants.active(this.tickCount) ? this.flGrants.gated : 0 };
  }

  private mayHoldFollowerLease(): boolean {
    if (this.followerLeaseTicks === 0 || this.role !== 'follower' || this.recovering || this.lead === null) return false;
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner;
  }

  /** A lease this node holds, or one it granted, may still run: it must help no one else become leader. */
  private followerLeaseBlocksVotes(): boolean {
    return this.followerLeaseTicks > 0 && (this.flHolder.held(this.tickCount) || this.flGrants.active(this.tickCount));
  }

  // ------------------------------------------------------------------ roles

  private softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  private hardState(): HardState {
    const hs: HardState = { term: this.term, vote: this.vote, commit: this.log.committed };
    if (this.recovering) hs.recovering = true;
    return hs;
  }

  /** True while this node recovers a cut log (it does not campaign; it votes only past its recovering bound). */
  get isRecovering(): boolean {
    return this.recovering;
  }

  private promotable(): boolean {
    const pr = this.trk.progress.get(this.id);
    return pr !== undefined && !pr.isLearner && this.log.unstable.snapshot === undefined && !this.recovering;
  }

  private inLease(): boolean {
    if (!this.checkQuorum) return false;
    if (this.startupLease) return true;
    return this.lead !== null && this.electionElapsed < this.electionTimeout;
  }

  private reset(term: number): void {
    assert(term >= this.term, () => `term must not decrease (${this.term} -> ${term})`);
    if (this.term !== term) {
      this.term = term;
      this.vote = null;
      this.transferStartedThisTerm = false;
    }
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.fastCampaignAtTick = null;
    this.ignoredPreVote = null;
    this.selfVoteTerm = null;
    this.resetRandomizedElectionTimeout();
    this.abortLeaderTransfer();
    this.trk.resetVotes();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.trk.progress) {
      pr.match = 0;
      pr.next = last + 1;
      pr.state = 'probe';
      pr.pendingSnapshot = 0;
      pr.msgAppFlowPaused = false;
      pr.recentActive = false;
      pr.lastHeardTick = null;
      pr.inflights.reset();
      if (id === this.id) pr.match = this.log.stableLastIndex();
    }
    this.pendingConfIndex = 0;
    this.removingSelf = false;
    this.uncommittedSize = 0;
    this.readOnly = new ReadOnly();
    this.pendingReadIndex = [];
    this.leaseAcks = new Map();
    this.flHolder.drop();
    this.flGrants.clearAsks();
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTimeout + this.rng.nextInt(this.electionTimeout);
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.lead = lead;
    this.role = 'follower';
  }

  private becomeCandidate(): void {
    assert(this.role !== 'leader', 'leader cannot become candidate');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
  }

  private becomePreCandidate(): void {
    assert(this.role !== 'leader', 'leader cannot become pre-candidate');
    // Neither term nor vote change: a pre-election disturbs nobody.
    this.trk.resetVotes();
    this.lead = null;
    this.flHolder.drop();
    this.role = 'preCandidate';
  }

  private becomeLeader(): void {
    assert(this.role !== 'follower', 'follower cannot become leader directly');
    this.reset(this.term);
    this.lead = this.id;
    this.role = 'leader';
    const self = this.trk.progress.get(this.id);
    if (self !== undefined) {
      self.becomeReplicate();
      self.recentActive = true;
    }
    // Conservative: any conf change in the log we inherited may still be unapplied.
    this.pendingConfIndex = this.log.lastIndex();
    this.removingSelf = this.unappliedConfChangesExcludeSelf();
    // The no-op of this term: entries of earlier terms commit with it (Raft §5.4.2).
    const ok = this.appendEntries([{ term: this.term, index: this.log.lastIndex() + 1, type: 'normal', data: EMPTY_BYTES }]);
    assert(ok, 'the empty entry must always be accepted');
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.fastCampaignAtTick !== null && this.tickCount >= this.fastCampaignAtTick) {
      this.fastCampaignAtTick = null;
      // Only if no leader was heard meanwhile (a heartbeat sets lead, a new term resets the schedule).
      // (fastPreVote resets electionElapsed, so the timeout check below cannot campaign a second time.)
      if (this.role === 'follower' && this.lead === null) this.fastPreVote();
    }
    // One election timeout after (re)start, on our own clock: tickCount, not electionElapsed (which restarts at each
    // heartbeat and never exceeds tickCount).
    if (this.startupLease && this.tickCount >= this.electionTimeout) this.startupLease = false;
    if (!this.promotable()) return;
    if (this.electionElapsed >= this.electionTimeout && this.grantIgnoredPreVote()) {
      this.electionElapsed = 0;
      return;
    }
    if (this.electionElapsed >= this.electionDueAfter()) {
      this.electionElapsed = 0;
      this.hup('election');
    }
  }

  /**
   * Ticks without a leader's word after which this follower campaigns. A follower that still names the leader that
   * went silent (a black hole: no reset seen) follows the same succession order as fast failover: first in order at
   * the election timeout, each next one 2 ticks later. Random timeouts with 25 ms ticks give two survivors the same
   * tick about one time in six, and both then pre-vote, campaign and split the vote (another 150–300 ms). With no
   * leader known (start-up, a failed election) the timeout stays randomized.
   */
  private electionDueAfter(): number {
    if (this.fastFailover && this.role === 'follower' && this.lead !== null) {
      const rank = this.successionRank(this.lead);
      if (rank >= 0) return this.electionTimeout + 2 * rank;
    }
    return this.randomizedElectionTimeout;
  }

  /**
   * Once our lease on a silent leader is over: a pre-vote we ignored while still in lease (within the last election
   * timeout) came from a peer that noticed the silence a moment before us (timers are not aligned). Grant it now and
   * stand back for a round instead of competing with it. A grant changes no term or vote: only liveness is at stake.
   */
  private grantIgnoredPreVote(): boolean {
    if (!this.fastFailover || this.role !== 'follower') return false;
    const asked = this.takeRecentIgnoredPreVote();
    if (asked === null || asked.term <= this.term || asked.from === this.lead) return false;
    this.lead = null; // our lease on the silent leader is over: the grant below must not be refused as "in lease"
    this.flHolder.drop();
    if (!this.log.isUpToDate(asked.index ?? 0, asked.logTerm ?? 0)) {
      // It cannot win (its log is behind ours): campaign now instead of waiting for our place in the order.
      this.hup('election');
      return true;
    }
    return this.grantPreVote(asked);
  }

  /** The pre-vote ignored in lease within the last election timeout, if any (forgotten either way). */
  private takeRecentIgnoredPreVote(): Message | null {
    const r = this.ignoredPreVote;
    this.ignoredPreVote = null;
    return r !== null && this.tickCount - r.atTick < this.electionTimeout ? r.m : null;
  }

  /** Answers a remembered pre-vote of a newer term now; true if it was granted. */
  private grantPreVote(asked: Message): boolean {
    if (asked.term <= this.term) return false;
    this.handleVoteRequest(asked);
    const grantedTo = (m: Message): boolean => m.type === 'preVoteResp' && m.to === asked.from && m.reject !== true;
    return this.msgsAfterAppend.some(grantedTo) || this.msgs.some(grantedTo);
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.stepDownIfQuorumLost()) return;
    if (this.flGrants.gated > 0 && this.flGrants.prune(this.tickCount)) {
      // A gate ran out: commits held for that follower may go, and a transfer or hand-off held for it too.
      if (this.maybeCommit()) this.afterCommitAdvanced();
      this.maybeSendTimeoutNow();
      this.maybeHandOff();
      if (this.role !== 'leader') return; // handed off
    }
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum) for (const [id, pr] of this.trk.progress) if (id !== this.id) pr.recentActive = false;
      // A transfer that did not finish within an election timeout is abandoned.
      if (this.leadTransferee !== null) this.abortLeaderTransfer();
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  /** Check-quorum; true if this leader stepped down. */
  private stepDownIfQuorumLost(): boolean {
    // A leaving leader keeps leading until it has handed over (it can neither commit alone nor serve reads).
    if (!this.checkQuorum || this.checkQuorumHeld || this.isLeaving() || this.quorumHeardRecently()) return false;
    this.becomeFollower(this.term, null);
    return true;
  }

  /** Check-quorum: a quorum answered within the last CHECK_QUORUM_ELECTION_TIMEOUTS election timeouts. */
  private quorumHeardRecently(): boolean {
    // A peer not heard from since this node became leader (or since it was added) is counted from now.
    for (const pr of this.trk.progress.values()) if (pr.lastHeardTick === null) pr.lastHeardTick = this.tickCount;
    return this.trk.quorumHeardSince(this.id, this.tickCount - CHECK_QUORUM_ELECTION_TIMEOUTS * this.electionTimeout);
  }

  private fastPreVote(): void {
    this.fastCampaignAtTick = null;
    this.electionElapsed = 0;
    this.hup('election');
    if (this.role !== 'follower') this.fastPreVoteCount++;
  }

  /**
   * This node's place among the voters other than the lost leader, in an order rotated by the term (so the same
   * node is not always first). Every follower of the same leader computes the same order.
   */
  private successionRank(lost: NodeId): number {
    const order = this.trk.voterIds().filter((id) => id !== lost).sort();
    const i = order.indexOf(this.id);
    if (i < 0) return -1;
    return (i - (this.term % order.length) + order.length) % order.length;
  }

  private hup(t: CampaignType): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    // A follower lease we granted may still be running: no leader may commit without its holder until it ends.
    if (this.flGrants.active(this.tickCount)) return;
    if (this.hasUnappliedConfChanges()) return; // its outcome could change who may vote
    if (t === 'election' && this.preVote) this.campaignWith('preElection');
    else this.campaignWith(t);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    let lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const hi = this.log.committed + 1;
    while (lo < hi) {
      const ents = this.log.slice(lo, hi, 4 * 1024 * 1024);
      if (ents.length === 0) break;
      for (const e of ents) if (e.type === 'confChange') return true;
      lo = ents[ents.length - 1]!.index + 1;
    }
    return false;
  }

  private campaignWith(t: CampaignType): void {
    let voteMsg: MessageType;
    let term: number;
    if (t === 'preElection') {
      this.becomePreCandidate();
      voteMsg = 'preVote';
      term = this.term + 1; // the term we would campaign in
    } else {
      this.becomeCandidate();
      voteMsg = 'vote';
      term = this.term;
      // Our own vote counts once it is durable (onPersisted); the requests go out now.
      this.selfVoteTerm = term;
    }
    if (t === 'preElection' && this.poll(this.id, 'preVoteResp', true) === 'won') {
      // Single voter: no one to ask.
      this.campaignWith('election');
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const id of this.trk.voterIds()) {
      if (id === this.id) continue;
      const m: Message = { type: voteMsg, to: id, from: this.id, term, index: lastIndex, logTerm: lastTerm };
      if (t === 'transfer') m.context = TRANSFER_CONTEXT;
      this.send(m);
    }
  }

  private poll(id: NodeId, _t: MessageType, granted: boolean): 'won' | 'lost' | 'pending' {
    this.trk.recordVote(id, granted);
    return this.trk.tallyVotes().result;
  }

  private handleVoteRequest(m: Message): void {
    const index = m.index ?? 0;
    const logTerm = m.logTerm ?? 0;
    const canVote =
      !this.followerLeaseBlocksVotes() &&
      (this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === 'preVote' && m.term > this.term));
    // A recovering node may lack entries it acknowledged: it votes only for a candidate at least as up to date as the
    // log it had before the cut (its bound), which holds all it acknowledged; with no bound it does not vote.
    if (canVote && this.log.isUpToDate(index, logTerm) && (!this.recovering || this.coversLostTail(index, logTerm))) {
      // A granted pre-vote carries the candidate's term; a granted vote carries ours (equal to it here).
      this.send({ type: voteRespType(m.type), to: m.from, from: this.id, term: m.term });
      if (m.type === 'vote') {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: voteRespType(m.type), to: m.from, from: this.id, term: this.term, reject: true });
      // Succession (fast failover on): waiting our turn after losing the leader (a reset seen, or its silence past our
      // lease), we just refused a pre-candidate whose log is behind ours. It cannot win; we may. Go now rather than
      // after our 2-tick place in line.
      const waitingOurTurn = this.fastFailover && this.role === 'follower' && !this.inLease() &&
        ((this.lead === null && this.fastCampaignAtTick !== null) || this.lead !== null);
      if (m.type === 'preVote' && waitingOurTurn && this.promotable() && !this.log.isUpToDate(index, logTerm)) {
        if (this.lead === null) {
          this.fastPreVote(); // counted with the reset-started pre-votes
        } else {
          this.electionElapsed = 0;
          this.hup('election');
        }
      }
    }
  }

  /** Is a log ending at (index, logTerm) at least as up to date as the end of our log before its cut? */
  private coversLostTail(index: number, logTerm: number): boolean {
    return this.recoveringBound !== null && reaches(index, logTerm, this.recoveringBound);
  }

  private stepCandidate(m: Message): void {
    const myResp: MessageType = this.role === 'preCandidate' ? 'preVoteResp' : 'voteResp';
    switch (m.type) {
      case 'app':
        this.becomeFollower(m.term, m.from);
        this.handleAppendEntries(m);
        break;
      case 'heartbeat':
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        break;
      case 'preVoteResp':
      case 'voteResp': {
        if (m.type !== myResp) return;
        const res = this.poll(m.from, m.type, m.reject !== true);
        if (res === 'won') {
          if (this.role === 'preCandidate') {
            this.campaignWith('election');
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (res === 'lost') {
          this.becomeFollower(this.term, null);
        }
        break;
      }
      default:
        break; // timeoutNow, readIndex...: no leader to act for
    }
  }

  /**
   * A leader's word. It also ends the startup lease: from now on the ordinary lease (a leader heard within the
   * election timeout) protects whatever lease that leader holds. Left in place, the startup lease of a follower that
   * never timed out (it heard heartbeats from its first tick) made it ignore every pre-vote for as long as it ran, so
   * after its leader's reset the first in succession order could not win (seen in the failover bench).
   */
  private heardLeader(from: NodeId): void {
    this.electionElapsed = 0;
    this.leaderHeardAtTick = this.tickCount;
    this.lead = from;
    this.startupLease = false;
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'app':
        this.heardLeader(m.from);
        if (m.recovered === this.recoveryId) this.recovering = false;
        this.handleAppendEntries(m);
        break;
      case 'heartbeat':
        this.heardLeader(m.from);
        if (m.recovered === this.recoveryId) this.recovering = false;
        this.handleHeartbeat(m);
        break;
      case 'snap':
        this.heardLeader(m.from);
        this.handleSnapshot(m);
        break;
      case 'timeoutNow':
        // Sent by our leader: campaign at once, skipping pre-vote, with a vote that overrides stickiness.
        // If a committed conf change is still unapplied (typically the one that removed the leader), campaign
        // as soon as it is applied instead (onApplied()).
        if (this.hasUnappliedConfChanges()) this.pendingTimeoutNowTerm = this.term;
        else this.hup('transfer');
        break;
      case 'readIndexResp':
        if (m.context !== undefined && m.index !== undefined && m.from === this.lead) {
          this.readStates.push({ index: m.index, context: m.context });
        }
        break;
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === 'readIndex') {
      if (!this.trk.progress.has(m.from) || this.isLeaving()) return;
      this.handleReadIndex({ from: m.from, context: m.context ?? EMPTY_BYTES });
      return;
    }
    const pr = this.trk.progress.get(m.from);
    if (pr === undefined) return;
    switch (m.type) {
      case 'appResp':
        this.handleAppendResponse(m, pr);
        break;
      case 'heartbeatResp':
        this.handleHeartbeatResponse(m, pr);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ replication (leader)

  private checkCanPropose(): void {
    if (this.role !== 'leader') this.throwNotLeader();
    if (this.leadTransferee !== null) {
      throw new MooringError(ErrorCode.LEADERSHIP_TRANSFER_IN_PROGRESS, `transferring leadership to ${this.leadTransferee}`);
    }
    // Nothing after our own removal: were we to crash with entries the remaining voters lack, restart removed
    // (unable to campaign) and refuse their votes for a shorter log, no one could be elected.
    if (this.removingSelf || this.isLeaving()) {
      throw new MooringError(ErrorCode.PROPOSAL_DROPPED, 'this leader is being removed from the cluster', { definite: true });
    }
  }

  /** Whether a membership leaves this node out of its voters (removed, or demoted to learner). */
  private excludesSelf(r: ChangeResult): boolean {
    const pr = r.progress.get(this.id);
    return pr === undefined || pr.isLearner;
  }

  /** New leader: whether the conf changes in its log not applied yet, applied in order, remove or demote it. */
  private unappliedConfChangesExcludeSelf(): boolean {
    let r: ChangeResult = { config: this.trk.config, progress: this.trk.progress };
    let found = false;
    let lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const hi = this.log.lastIndex() + 1;
    while (lo < hi) {
      const ents = this.log.slice(lo, hi, 4 * 1024 * 1024);
      if (ents.length === 0) break;
      for (const e of ents) {
        if (e.type !== 'confChange') continue;
        try {
          r = applyChange(r.config, r.progress, decodeConfChange(e.data), this.log.lastIndex(), this.trk.window);
          found = true;
        } catch {
          /* undecodable or invalid: a no-op when applied (applyConfChangeEntry) */
        }
      }
      lo = ents[ents.length - 1]!.index + 1;
    }
    return found && this.excludesSelf(r);
  }

  private throwNotLeader(): never {
    const opts = this.lead !== null && this.lead !== this.id ? { leaderHint: this.lead } : undefined;
    throw new MooringError(ErrorCode.NOT_LEADER, undefined, opts);
  }

  /** Appends to the leader's log (not persisted yet). Refuses with PROPOSAL_DROPPED over the uncommitted limit. */
  private appendEntries(ents: Entry[]): boolean {
    const size = entriesSize(ents);
    if (this.uncommittedSize > 0 && size > 0 && this.uncommittedSize + size > this.maxUncommittedBytes) {
      throw new MooringError(ErrorCode.PROPOSAL_DROPPED, `uncommitted entries exceed ${this.maxUncommittedBytes} bytes`, {
        definite: true, // refused before it reached the log
      });
    }
    this.uncommittedSize += size;
    this.log.append(ents);
    return true;
  }

  private reduceUncommittedSize(ents: Entry[]): void {
    this.uncommittedSize = Math.max(0, this.uncommittedSize - entriesSize(ents));
  }

  private bcastAppend(): void {
    for (const id of this.trk.ids()) if (id !== this.id) this.sendAppend(id);
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends an append to `to` if its flow control allows it: the next entries (bounded by count and bytes),
   * an empty one to carry the commit index when sendIfEmpty, or a snapshot when the entries were compacted.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.termOrUndefined(prevIndex);
    if (prevTerm === undefined) return this.maybeSendSnapshot(to, pr);
    let ents: Entry[] = [];
    const last = this.log.lastIndex();
    if (pr.next <= last) {
      try {
        ents = this.log.slice(pr.next, Math.min(last + 1, pr.next + this.maxEntriesPerAppend), this.maxBytesPerAppend);
      } catch (e) {
        if (e instanceof MooringError && e.code === ErrorCode.COMPACTED) return this.maybeSendSnapshot(to, pr);
        throw e;
      }
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    const m: Message = { type: 'app', to, from: this.id, term: this.term, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed };
    if (pr.recoverTo !== null && pr.match >= pr.recoverTo) m.recovered = pr.recoveryId;
    this.send(m);
    pr.sentEntries(ents.length, entriesSize(ents));
    return true;
  }

  private maybeSendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) return false; // do not push a snapshot at a peer that may be down
    const snapshot = this.log.snapshot();
    if (snapshot.metadata.index === 0) return false; // nothing compacted yet: cannot happen with a sane storage
    pr.becomeSnapshot(snapshot.metadata.index);
    this.send({ type: 'snap', to, from: this.id, term: this.term, snapshot });
    return true;
  }

  private sendHeartbeat(to: NodeId, round: number | undefined): void {
    const pr = this.trk.progress.get(to)!;
    // Never tell a follower to commit past what it is known to hold.
    const commit = Math.min(pr.match, this.log.committed);
    const m: Message = { type: 'heartbeat', to, from: this.id, term: this.term, commit, index: this.tickCount };
    if (round !== undefined) m.context = encodeRoundId(round);
    if (pr.recoverTo !== null && pr.match >= pr.recoverTo) m.recovered = pr.recoveryId;
    const grant = this.followerLeaseGrantFor(to, pr);
    if (grant !== undefined) {
      m.leaseAsk = grant.ask;
      m.leaseEpoch = grant.epoch;
      m.leaseCommit = this.log.committed;
      this.flGrants.gate(to, this.tickCount, FOLLOWER_LEASE_MARGIN_TICKS); // before it can arrive
    }
    this.send(m);
  }

  /** The ask this heartbeat may grant a follower read lease for, if any (follower-lease.ts says why each rule). */
  private followerLeaseGrantFor(to: NodeId, pr: Progress): { ask: number; epoch: number } | undefined {
    if (this.followerLeaseTicks === 0 || pr.isLearner || pr.recoverTo !== null) return undefined;
    // Not to a follower still being probed or sent a snapshot: its lease would gate every commit behind its catch-up,
    // and its reads would wait for the catch-up anyway.
    if (pr.state !== 'replicate') return undefined;
    if (this.leadTransferee !== null || this.transferStartedThisTerm || this.isLeaving() || this.removingSelf) return undefined;
    // A new leader learns the commit index only once an entry of its term commits: leaseCommit must be it.
    if (!this.committedEntryInCurrentTerm()) return undefined;
    const c = this.trk.config;
    if (isJoint(c) || c.incoming.size > MAX_FOLLOWER_LEASE_VOTERS) return undefined;
    // Only to a follower that answered within a heartbeat interval: one that went quiet would hold commits up.
    return this.flGrants.freshAsk(to, this.tickCount - this.heartbeatTimeout);
  }

  private bcastHeartbeat(round?: number): void {
    const r = round ?? this.readOnly.lastPendingRound();
    for (const id of this.trk.ids()) if (id !== this.id) this.sendHeartbeat(id, r);
  }

  /**
   * Transfer: timeoutNow once the transferee holds our whole log and no follower lease we granted may still run (the
   * forced vote it starts ignores leases).
   */
  private maybeSendTimeoutNow(): boolean {
    const to = this.leadTransferee;
    if (to === null) return false;
    const pr = this.trk.progress.get(to);
    if (pr === undefined || pr.match !== this.log.lastIndex() || this.flGrants.active(this.tickCount)) return false;
    this.sendTimeoutNow(to);
    return true;
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'timeoutNow', to, from: this.id, term: this.term });
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = null;
  }

  private maybeCommit(): boolean {
    let index = this.trk.committed();
    // Follower read leases: nothing commits before every lease holder has it (it would be visible elsewhere first).
    if (this.flGrants.gated > 0) index = Math.min(index, this.flGrants.commitBound(this.tickCount, (id) => this.trk.progress.get(id)?.match ?? 0));
    return this.log.maybeCommit(index, this.term);
  }

  private afterCommitAdvanced(): void {
    this.releasePendingReadIndex();
    this.bcastAppend();
  }

  /**
   * A follower recovering a cut log: the first such response voids what it acknowledged before (match reset, probe
   * again from our last index). Until it has caught up, an unflagged ack can only come from before the cut: ignored.
   * Returns true when `m` must be ignored.
   */
  private staleAfterRecovery(m: Message, pr: Progress): boolean {
    if (m.recovering !== undefined) {
      // Once per recovery: a duplicated or reordered response of a recovery that already ended (the seed 908 of the
      // simulator) must not start it again — the follower, no longer flagging its acks, would never catch up.
      if (pr.recoveryId !== m.recovering) pr.resetForRecovery(m.recovering, this.log.lastIndex(), this.log.lastIndex() + 1);
      return false;
    }
    if (pr.recoverTo === null) return false;
    if (pr.match < pr.recoverTo) return true;
    pr.recoverTo = null; // it heard `recovered`
    return false;
  }

  private handleAppendResponse(m: Message, pr: Progress): void {
    if (this.staleAfterRecovery(m, pr)) return;
    pr.recentActive = true;
    pr.lastHeardTick = this.tickCount;
    const index = m.index ?? 0;
    if (m.reject === true) {
      // Fast backtracking: skip every entry the follower cannot have (§5.3 optimisation, etcd style).
      let nextProbeIdx = m.rejectHint ?? index;
      if ((m.logTerm ?? 0) > 0) nextProbeIdx = this.log.findConflictByTerm(nextProbeIdx, m.logTerm!).index;
      if (pr.maybeDecrTo(index, nextProbeIdx)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    if (index > this.log.lastIndex()) return; // acks an index we never sent: ignore
    if (pr.maybeUpdate(index) || (pr.match === index && pr.state === 'probe')) {
      if (pr.state === 'probe') {
        pr.becomeReplicate();
      } else if (pr.state === 'snapshot' && pr.match + 1 >= this.log.firstIndex()) {
        // The follower caught up (through the snapshot or otherwise): resume normal replication.
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') {
        pr.inflights.freeLE(index);
      }
      if (this.maybeCommit()) {
        this.afterCommitAdvanced();
      }
      // Flow control may have opened: send as much as the window allows (no empty appends).
      while (this.maybeSendAppend(m.from, false)) {
        /* keep filling the window */
      }
      if (m.from === this.leadTransferee) this.maybeSendTimeoutNow();
      this.maybeHandOff();
    }
  }

  private handleHeartbeatResponse(m: Message, pr: Progress): void {
    if (this.staleAfterRecovery(m, pr)) return;
    if (m.leaseAsk !== undefined && m.leaseEpoch !== undefined) this.flGrants.noteAsk(m.from, m.leaseAsk, m.leaseEpoch, this.tickCount);
    pr.recentActive = true;
    pr.lastHeardTick = this.tickCount;
    const sentAt = m.index;
    // Heartbeat answers ease flow control at most once per tick per follower. A peer that comes back reads every
    // heartbeat queued for it while it was down and answers them all at once: a slot (or a probe) per answer sent the
    // restarted follower one append per queued heartbeat, 128 appends (25 MB) in one round, past the byte window
    // (found in the failover bench). Not gated on the answer's age: under load a round trip may outlast a few ticks.
    if (pr.heartbeatFlowTick !== this.tickCount) {
      pr.heartbeatFlowTick = this.tickCount;
      pr.msgAppFlowPaused = false;
      // The peer is alive but its appends' acks may be lost: open one slot so replication cannot stall.
      if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne();
    }
    if (sentAt !== undefined && sentAt <= this.tickCount && sentAt > (this.leaseAcks.get(m.from) ?? -1)) {
      this.leaseAcks.set(m.from, sentAt);
    }
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
    const round = decodeRoundId(m.context);
    if (round === undefined) return;
    const acks = this.readOnly.recvAck(m.from, round);
    if (acks === undefined) return;
    const withSelf = new Map(acks);
    withSelf.set(this.id, true);
    if (this.trk.voteResult(withSelf) !== 'won') return;
    for (const rs of this.readOnly.advance(round)) this.respondToRead(rs.request, rs.index);
  }

  // ------------------------------------------------------------------ reads

  private committedEntryInCurrentTerm(): boolean {
    return this.log.termOrUndefined(this.log.committed) === this.term;
  }

  /** Refuses (local) or drops (forwarded) a read when too many are waiting, e.g. with no quorum reachable. */
  private tooManyPendingReads(): boolean {
    return this.pendingReadIndex.length + this.readOnly.pendingCount() >= MAX_PENDING_READS;
  }

  private handleReadIndex(req: ReadRequest): void {
    if (this.tooManyPendingReads()) {
      if (req.from === this.id) throw new MooringError(ErrorCode.UNAVAILABLE, `${MAX_PENDING_READS} reads already wait for a quorum`);
      return;
    }
    if (this.trk.isSingleton()) {
      this.respondToRead(req, this.log.committed);
      return;
    }
    // A new leader does not know the commit index until an entry of its own term commits.
    if (!this.committedEntryInCurrentTerm()) {
      this.pendingReadIndex.push(req);
      return;
    }
    this.startRead(req);
  }

  private startRead(req: ReadRequest): void {
    if (this.hasLease()) {
      this.respondToRead(req, this.log.committed);
      return;
    }
    const round = this.readOnly.addRequest(this.log.committed, req);
    this.bcastHeartbeat(round);
  }

  private releasePendingReadIndex(): void {
    if (this.pendingReadIndex.length === 0 || !this.committedEntryInCurrentTerm()) return;
    const reqs = this.pendingReadIndex;
    this.pendingReadIndex = [];
    for (const r of reqs) this.startRead(r);
  }

  private respondToRead(req: ReadRequest, index: number): void {
    if (req.from === this.id) {
      this.readStates.push({ index, context: req.context });
    } else {
      this.send({ type: 'readIndexResp', to: req.from, from: this.id, term: this.term, index, context: req.context });
    }
  }

  // ------------------------------------------------------------------ follower handlers

  private handleAppendEntries(m: Message): void {
    const index = m.index ?? 0;
    const logTerm = m.logTerm ?? 0;
    const ents = m.entries ?? [];
    // Well-shaped but inconsistent input (not from a correct leader): drop it.
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i]!;
      if (e.index !== index + 1 + i || e.term > m.term || e.term < (i === 0 ? logTerm : ents[i - 1]!.term)) return;
    }
    if (index < this.log.committed) {
      this.ackAppend(m.from, this.log.committed);
      return;
    }
    if (this.log.matchTerm(index, logTerm)) {
      const ci = this.log.findConflict(ents);
      if (ci !== 0 && ci <= this.log.committed) return; // would rewrite committed history: not a correct leader
    }
    const last = this.log.maybeAppend(index, logTerm, m.commit ?? 0, ents);
    if (last !== undefined) {
      this.ackAppend(m.from, last);
      return;
    }
    // Reject with a hint: the largest index ≤ min(index, our last) whose term ≤ logTerm.
    const hint = this.log.findConflictByTerm(Math.min(index, this.log.lastIndex()), logTerm);
    this.send({ type: 'appResp', to: m.from, from: this.id, term: this.term, index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  /**
   * Tells the leader this node holds its log up to `index` (an accepting appResp). The follower read lease counts on
   * what its leader was told it holds (FollowerLeaseHolder.matched).
   */
  private ackAppend(to: NodeId, index: number): void {
    this.flHolder.matched(index);
    this.send({ type: 'appResp', to, from: this.id, term: this.term, index });
  }

  private handleHeartbeat(m: Message): void {
    const commit = m.commit ?? 0;
    if (commit <= this.log.lastIndex()) this.log.commitTo(commit);
    const mayHold = this.mayHoldFollowerLease();
    if (mayHold && m.leaseAsk !== undefined && m.leaseEpoch !== undefined && m.leaseCommit !== undefined) {
      this.flHolder.granted(m.leaseAsk, m.leaseEpoch, m.leaseCommit, this.tickCount);
    }
    const resp: Message = { type: 'heartbeatResp', to: m.from, from: this.id, term: this.term };
    if (mayHold && this.flHolder.asking(this.tickCount)) {
      resp.leaseAsk = this.tickCount;
      resp.leaseEpoch = this.flHolder.epoch;
    }
    if (m.context !== undefined) resp.context = m.context;
    if (m.index !== undefined) resp.index = m.index; // echo the leader's send tick (leases)
    this.send(resp);
  }

  private handleSnapshot(m: Message): void {
    const s = m.snapshot;
    if (s === undefined) return;
    if (this.restore(s)) {
      this.ackAppend(m.from, this.log.lastIndex());
    } else {
      this.ackAppend(m.from, this.log.committed);
    }
  }

  /** Installs a snapshot newer than our commit. Returns false when it was ignored (or only fast-forwarded). */
  private restore(s: Snapshot): boolean {
    const { index, term, confState } = s.metadata;
    if (index <= this.log.committed) return false;
    if (this.role !== 'follower') return false;
    // Unlike etcd, a snapshot whose membership does not include us is accepted: a node being added after the
    // leader's last snapshot gets that snapshot, then the entries that add it (until then it is not promotable).
    let restored: ChangeResult;
    try {
      restored = restoreConfState(confState, index, this.trk.window);
    } catch {
      return false; // inconsistent membership in the snapshot: ignore it
    }
    if (this.log.matchTerm(index, term)) {
      // We already have the entries: just fast-forward the commit index.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(s);
    this.switchToConfig(restored);
    return true;
  }

  // ------------------------------------------------------------------ membership

  private switchToConfig(r: ChangeResult): ConfState {
    this.trk.config = r.config;
    this.trk.progress = r.progress;
    const cs = this.trk.confState();
    if (this.isLeaving()) {
      // We were removed (or demoted): keep replicating (so the remaining voters learn the commit index and
      // catch up) and hand over as soon as one of them holds our whole log (maybeHandOff).
      if (this.maybeCommit()) this.afterCommitAdvanced();
      else this.bcastAppend();
      this.maybeHandOff();
      return cs;
    }
    if (this.role !== 'leader' || cs.voters.length === 0) return cs;
    if (this.maybeCommit()) {
      this.afterCommitAdvanced();
    } else {
      // Probe newly added peers at once instead of waiting for the next heartbeat.
      for (const id of this.trk.ids()) if (id !== this.id) this.maybeSendAppend(id, false);
    }
    if (this.leadTransferee !== null && !this.trk.isVoter(this.leadTransferee)) this.abortLeaderTransfer();
    return cs;
  }

  /** A leader that is no longer a voter of the configuration it applied (removed or demoted). */
  private isLeaving(): boolean {
    if (this.role !== 'leader') return false;
    const pr = this.trk.progress.get(this.id);
    return pr === undefined || pr.isLearner;
  }

  /**
   * A leaving leader steps down once a remaining voter has its whole log, after telling that voter to campaign
   * (timeoutNow). Stepping down earlier could leave the remaining voters unable to elect anyone: the one
   * holding the longest log (us) would refuse their votes while no longer being allowed to campaign itself.
   */
  private maybeHandOff(): void {
    if (!this.isLeaving() || this.flGrants.active(this.tickCount)) return; // timeoutNow forces a vote: leases first
    const last = this.log.lastIndex();
    for (const id of this.trk.voterIds()) {
      const pr = this.trk.progress.get(id);
      if (id !== this.id && pr !== undefined && pr.match === last) {
        this.sendTimeoutNow(id);
        this.becomeFollower(this.term, null);
        return;
      }
    }
  }

  /** Leader: once a joint config with autoLeave is applied, propose leaving it. */
  private maybeAutoLeave(): void {
    const c = this.trk.config;
    if (!c.autoLeave || !isJoint(c) || this.log.applied < this.pendingConfIndex) return;
    if (!this.trk.progress.has(this.id)) return;
    const index = this.log.lastIndex() + 1;
    const data = encodeConfChange({ changes: [] });
    const after = applyChange(c, this.trk.progress, { changes: [] }, this.log.lastIndex(), this.trk.window);
    // Bypasses the uncommitted-bytes limit: leaving the joint config must not be starved by client load.
    this.uncommittedSize += data.length;
    this.log.append([{ term: this.term, index, type: 'confChange', data }]);
    this.pendingConfIndex = index;
    if (this.excludesSelf(after)) this.removingSelf = true;
    this.bcastAppend();
  }

  // ------------------------------------------------------------------ plumbing

  private send(m: Message): void {
    if (this.recovering && (m.type === 'appResp' || m.type === 'heartbeatResp')) m.recovering = this.recoveryId;
    if (PERSISTED_TYPES.has(m.type)) this.msgsAfterAppend.push(m);
    else this.msgs.push(m);
  }

  private checkInvariants(): void {
    const last = this.log.lastIndex();
    assert(this.log.committed <= last, () => `commit ${this.log.committed} > lastIndex ${last}`);
    assert(this.log.applied <= this.log.applying && this.log.applying <= this.log.committed, () => `applied ${this.log.applied} ≤ applying ${this.log.applying} ≤ commit ${this.log.committed} violated`);
    assert(this.role !== 'leader' || this.lead === this.id, 'a leader leads itself');
    assert(this.role !== 'candidate' || this.vote === this.id, 'a candidate votes for itself');
    assert(this.term >= this.prevHard.term, () => `term went back from ${this.prevHard.term} to ${this.term}`);
  }
}

function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit && a.recovering === b.recovering;
}

/** The latest tick acknowledged by a majority of `voters` (Infinity when empty, -Infinity when none). */
function majorityAck(voters: ReadonlySet<NodeId>, acked: (id: NodeId) => number | undefined): number {
  if (voters.size === 0) return Infinity;
  const xs: number[] = [];
  for (const id of voters) xs.push(acked(id) ?? -Infinity);
  xs.sort((a, b) => b - a);
  return xs[Math.floor(voters.size / 2)]!;
}
