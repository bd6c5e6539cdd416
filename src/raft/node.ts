/**
 * RaftNode: the driver that gives the pure RaftCore a clock, a disk and a network.
 *
 * - Timers call `core.tick()` every `tickMs`.
 * - One Ready loop, strictly serialized: send `messages` at once (the leader replicates while its own append is
 *   being persisted) → persist snapshot + entries + hard state in ONE synced LevelDB batch (group commit: every
 *   proposal that arrived while the previous batch was syncing shares the next fsync) → send
 *   `persistedMessages` → apply committed entries → serve reads → `advance()`.
 * - `propose()` resolves with the state machine's result once the entry is applied, and rejects with
 *   NOT_LEADER (leader hint), QUEUE_FULL, PROPOSAL_DROPPED (definitely not applied) or TIMEOUT (unknown).
 * - `read()` resolves when a linearizable read may be served from the state machine (ReadIndex or lease, as the
 *   core is configured); concurrent reads share one ReadIndex round.
 * - Snapshots: every `snapshotEveryEntries` applied entries the state machine is flushed and the log compacted.
 *   A follower that needs compacted entries gets a fresh image of the state machine streamed in chunks with a
 *   bounded window (memory stays bounded); it stages the chunks on disk and installs them only once the core
 *   accepts the snapshot.
 * - A failed durable write stops the node (crash-stop): it never continues with a log it could not persist.
 *
 * Restart model (as etcd): the core restarts at the snapshot index; committed entries after it are delivered
 * again; membership changes among them are re-applied to the core, and commands the state machine already holds
 * (index ≤ its appliedIndex) are skipped.
 */
import { EventEmitter } from 'node:events';
import { createReadStream, createWriteStream, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync, readFileSync, existsSync, openSync, fsyncSync, closeSync } from 'node:fs';
import type { WriteStream } from 'node:fs';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError, assert } from '../errors.js';
import { SeededRng } from '../util/rng.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';
import type { PeerAddress, PeerTransport } from '../transport/types.js';
import { RaftCore } from './core.js';
import { decodeConfChange } from './confchange.js';
import { cloneConfState as cloneConf } from './util.js';
import { validateMessage } from './validate.js';
import { answerReadContext, encodeReadContext, maxReadPayloadBytesPerRound, readPayloads, readReplies, readRoundKey } from './read-context.js';
import type { LogStore } from './log-store.js';
import type { AppliedCommand, RaftStateMachine } from './state-machine.js';
import type { ConfChange, ConfState, Entry, Message, NodeId, Ready, Role, SnapshotMetadata, Status } from './types.js';

/** Normal entries carry a one-byte kind so the driver's own metadata shares the log with commands. */
const entryKindCommand = 0x01;
const entryKindPeerAddress = 0x02;
/** Several commands proposed in the same event-loop turn, carried by one entry (one checksum, one LevelDB op). */
const entryKindCommandBatch = 0x03;

export const defaultTickMs = 25;
export const defaultProposalTimeoutMs = 5_000;
export const defaultReadTimeoutMs = 5_000;
export const defaultMaxPendingProposals = 65_536;
export const defaultMaxPendingReads = 65_536;
export const defaultSnapshotEveryEntries = 10_000;
/** Entries kept behind a local snapshot so a briefly lagging follower is caught up from the log, not a snapshot. */
export const defaultSnapshotKeepEntries = 2_000;
export const snapshotChunksInFlight = 4;
export const snapshotChunkAckTimeoutMs = 10_000;
/** An inbound snapshot whose chunks stop arriving is abandoned after this long. */
export const snapshotReceiveIdleMs = 30_000;
/** A learner counts as caught up for promotion when its match index is within this many entries of the commit. */
export const learnerCatchUpEntries = 64;
export const learnerCatchUpTimeoutMs = 30_000;
/**
 * Commands per state-machine apply call. Applies are synchronous CPU work on the event loop; bounding them keeps
 * timers (heartbeats) and sockets served while a large backlog is applied.
 */
export const maxCommandsPerApply = 256;
/** Committed commands handed to the apply pipeline but not yet applied; past this the Ready loop waits. */
export const maxApplyLagCommands = 16_384;
/** Most commands one log entry carries (proposals that arrive together share an entry). */
export const maxCommandsPerEntry = 1_024;
/** A batch entry stops growing at this many command bytes (a single larger command still gets its own entry). */
export const maxBatchEntryBytes = 1024 * 1024;
/** Follower ReadIndex requests held until the next Ready round (each carries one round of that follower's reads). */
export const maxDeferredReadIndex = 4_096;

const packr = new Packr({ useRecords: false });

export interface RaftNodeOptions {
  id: NodeId;
  /** Where the node keeps peers.json and staged snapshots (the LogStore and state machine have their own dirs). */
  dataDir: string;
  storage: LogStore;
  transport: PeerTransport;
  stateMachine: RaftStateMachine;
  /** Addresses of the initial members (and any known peers). Persisted; later changes come through the log. */
  peers: PeerAddress[];
  /** Initial voters for a brand-new cluster (ignored once the log has any state). Omit to join an existing one. */
  bootstrapVoters?: NodeId[];
  seed?: number;
  tickMs?: number;
  electionTimeoutTicks?: number;
  heartbeatIntervalTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  readMode?: 'lease' | 'readIndex';
  /** Pre-vote at once when the leader's connection resets (RaftConfig.fastFailover). Default true. */
  fastFailover?: boolean;
  maxEntriesPerAppend?: number;
  maxBytesPerAppend?: number;
  maxInflightAppends?: number;
  proposalTimeoutMs?: number;
  readTimeoutMs?: number;
  maxPendingProposals?: number;
  maxPendingReads?: number;
  snapshotEveryEntries?: number;
  snapshotKeepEntries?: number;
  logger?: LoggerLike;
}

interface ProposalWaiter {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | null;
  settled: boolean;
}

/** The waiters of one proposed entry, by position of their command in it. */
interface PendingEntry {
  term: number;
  waiters: ProposalWaiter[];
}

interface ReadWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  /** Follower reads: sent to the leader with the ReadIndex request; `reply` is the leader's answer to it. */
  payload: Uint8Array | null;
  allowFollower: boolean;
  reply?: Uint8Array | null;
}

export interface ReadOptions {
  /**
   * Serve the read on a follower too (linearizable ReadIndex: the follower asks the leader for its commit index
   * and resolves once it has applied it). Default false: NOT_LEADER on a follower.
   */
  allowFollower?: boolean;
  /** Bytes for the leader's forwarded-read handler (setForwardedReadHandler); its answer is what read() resolves with. */
  payload?: Uint8Array;
}

/** On the leader: answers the payloads of a follower's ReadIndex round, synchronously, before the answer is sent. */
export type ForwardedReadHandler = (from: NodeId, payloads: Array<Uint8Array | null>) => Array<Uint8Array | null>;

interface ReadBatch {
  waiters: ReadWaiter[];
  index: number | null;
}

interface OutboundSnapshot {
  sid: number;
  acked: number;
  ackWaiters: Map<number, () => void>;
  aborted: boolean;
}

interface InboundSnapshot {
  sid: number;
  from: NodeId;
  nextSeq: number;
  file: string;
  out: WriteStream;
  idleTimer: NodeJS.Timeout;
}

interface StagedSnapshot {
  index: number;
  file: string;
  peers: PeerAddress[];
}

export interface RaftNodeEvents {
  leaderChange: (leader: NodeId | null, term: number) => void;
  roleChange: (role: Role) => void;
  applied: (index: number) => void;
  fatal: (err: Error) => void;
}

export class RaftNode extends EventEmitter {
  readonly id: NodeId;
  private readonly core: RaftCore;
  private readonly storage: LogStore;
  private readonly transport: PeerTransport;
  private readonly sm: RaftStateMachine;
  private readonly log: LoggerLike;
  private readonly dataDir: string;
  private readonly tickMs: number;
  private readonly electionTimeoutTicks: number;
  private readonly proposalTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly maxPendingProposals: number;
  private readonly maxPendingReads: number;
  private readonly snapshotEveryEntries: number;
  private readonly snapshotKeepEntries: number;

  private readonly peers = new Map<NodeId, PeerAddress>();
  private readonly pending = new Map<number, PendingEntry>();
  /** Commands proposed since the Ready loop last ran; they become log entries at its next round. */
  private proposalBuffer: Array<{ data: Uint8Array; waiter: ProposalWaiter }> = [];
  private unsettledProposals = 0;
  private readonly pendingConf = new Map<number, { resolve: (cs: ConfState) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private nextReadBatch: ReadWaiter[] = [];
  private readonly readBatches = new Map<string, ReadBatch>();
  private readonly readsAwaitingApply: ReadBatch[] = [];
  private pendingReadCount = 0;
  private readRoundSeq = 0;

  private confState: ConfState;
  private lastSnapshotIndex: number;
  private smApplied: number;
  private applied: number;
  private role: Role = 'follower';
  private leader: NodeId | null = null;
  private term = 0;

  private ticker: NodeJS.Timeout | null = null;
  /** Monotonic time up to which the core has been ticked. */
  private lastTickAtMs = performance.now();
  private loopScheduled = false;
  private loopRunning: Promise<void> | null = null;
  private stopped = false;
  private fatalError: Error | null = null;

  private readonly afterAdvance: Array<() => void> = [];
  /**
   * The apply pipeline: committed commands are applied in order on this chain while the Ready loop goes on
   * persisting and replicating the next entries (etcd's server does the same with its applier goroutine).
   */
  private applyChain: Promise<void> = Promise.resolve();
  private applyLagCommands = 0;
  /** Highest index handed to the apply pipeline (entries at or below it are never handed over again). */
  private dispatchedThrough: number;
  /** Membership after each applied change, so a snapshot taken at any applied index records the right one. */
  private confHistory: Array<{ index: number; confState: ConfState }> = [];
  private readonly outSnapshots = new Map<NodeId, OutboundSnapshot>();
  private forwardedReadHandler: ForwardedReadHandler | null = null;
  private deferredReadIndex: Message[] = [];
  private inSnapshot: InboundSnapshot | null = null;
  private staged: StagedSnapshot | null = null;
  private snapshotSeq = 0;

  private constructor(opts: RaftNodeOptions, core: RaftCore, confState: ConfState) {
    super();
    this.id = opts.id;
    this.core = core;
    this.storage = opts.storage;
    this.transport = opts.transport;
    this.sm = opts.stateMachine;
    this.log = opts.logger ?? silentLogger;
    this.dataDir = opts.dataDir;
    this.tickMs = opts.tickMs ?? defaultTickMs;
    this.electionTimeoutTicks = opts.electionTimeoutTicks ?? 10;
    this.proposalTimeoutMs = opts.proposalTimeoutMs ?? defaultProposalTimeoutMs;
    this.readTimeoutMs = opts.readTimeoutMs ?? defaultReadTimeoutMs;
    this.maxPendingProposals = opts.maxPendingProposals ?? defaultMaxPendingProposals;
    this.maxPendingReads = opts.maxPendingReads ?? defaultMaxPendingReads;
    this.snapshotEveryEntries = opts.snapshotEveryEntries ?? defaultSnapshotEveryEntries;
    this.snapshotKeepEntries = opts.snapshotKeepEntries ?? defaultSnapshotKeepEntries;
    this.confState = confState;
    this.lastSnapshotIndex = opts.storage.snapshot().metadata.index;
    this.smApplied = opts.stateMachine.appliedIndex();
    this.dispatchedThrough = this.smApplied;
    this.applied = this.lastSnapshotIndex;
    this.confHistory.push({ index: this.lastSnapshotIndex, confState: cloneConf(confState) });
    assert(this.tickMs > 0, 'tickMs must be positive');
  }

  /**
   * Creates the node: bootstraps the membership of a brand-new cluster when asked, restores the address book, and
   * starts ticking. The storage, transport and state machine are the caller's (opened before, closed after).
   */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    mkdirSync(opts.dataDir, { recursive: true });
    const storage = opts.storage;
    const initial = storage.initialState();
    const empty = storage.lastIndex() === 0 && storage.snapshot().metadata.index === 0 && initial.hardState.term === 0
      && initial.confState.voters.length === 0;
    if (empty && opts.bootstrapVoters !== undefined && opts.bootstrapVoters.length > 0) {
      // A brand-new cluster: every founding member records the same initial membership as snapshot point 1
      // (term 1), not 0: a member that joins later starts with an empty log, and entries from index 1 would never
      // tell it the founding voters (it would believe itself alone in the cluster). With the log starting at 2, a
      // joiner can only be caught up by a snapshot, which carries the membership.
      await storage.applySnapshot({
        index: 1,
        term: 1,
        confState: { voters: [...opts.bootstrapVoters].sort(), learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
      });
    }
    const snapMeta = storage.snapshot().metadata;
    const core = new RaftCore({
      id: opts.id,
      storage,
      rng: new SeededRng(opts.seed ?? hashSeed(opts.id)),
      electionTimeoutTicks: opts.electionTimeoutTicks ?? 10,
      heartbeatIntervalTicks: opts.heartbeatIntervalTicks ?? 1,
      preVote: opts.preVote ?? true,
      checkQuorum: opts.checkQuorum ?? true,
      readOnlyOption: (opts.readMode ?? 'lease') === 'lease' ? 'lease' : 'safe',
      ...(opts.fastFailover !== undefined ? { fastFailover: opts.fastFailover } : {}),
      ...(opts.maxEntriesPerAppend !== undefined ? { maxEntriesPerAppend: opts.maxEntriesPerAppend } : {}),
      ...(opts.maxBytesPerAppend !== undefined ? { maxBytesPerAppend: opts.maxBytesPerAppend } : {}),
      ...(opts.maxInflightAppends !== undefined ? { maxInflightAppends: opts.maxInflightAppends } : {}),
      applied: snapMeta.index,
    });
    const node = new RaftNode(opts, core, storage.initialState().confState);
    node.loadPeers(opts.peers);
    node.cleanStagedFiles();
    node.transport.onFrame((from, frame) => node.onFrame(from, frame));
    node.transport.onPeerDown?.((peer) => node.onPeerDown(peer));
    node.ticker = setInterval(() => node.onTick(), node.tickMs);
    node.kick();
    return node;
  }

  // ---------------------------------------------------------------- public API

  /** Proposes a command; resolves with the state machine's result once applied. */
  propose(command: Uint8Array): Promise<unknown> {
    this.checkRunning();
    if (this.role !== 'leader') return Promise.reject(this.notLeader());
    if (this.unsettledProposals >= this.maxPendingProposals) {
      return Promise.reject(new MooringError(ErrorCode.QUEUE_FULL, `more than ${this.maxPendingProposals} proposals pending`));
    }
    return new Promise((resolve, reject) => {
      const waiter: ProposalWaiter = { resolve, reject, timer: null, settled: false };
      waiter.timer = setTimeout(() => {
        this.settleWaiter(waiter, undefined, new MooringError(ErrorCode.TIMEOUT, `proposal not applied within ${this.proposalTimeoutMs} ms; its outcome is unknown`));
      }, this.proposalTimeoutMs);
      this.unsettledProposals++;
      this.proposalBuffer.push({ data: command, waiter });
      this.kick();
    });
  }

  /** Turns buffered proposals into log entries: up to maxCommandsPerEntry commands (maxBatchEntryBytes) each. */
  private flushProposals(): void {
    if (this.proposalBuffer.length === 0) return;
    const items = this.proposalBuffer;
    this.proposalBuffer = [];
    let i = 0;
    while (i < items.length) {
      let j = i + 1;
      let bytes = items[i]!.data.byteLength;
      while (j < items.length && j - i < maxCommandsPerEntry && bytes + items[j]!.data.byteLength <= maxBatchEntryBytes) {
        bytes += items[j]!.data.byteLength;
        j++;
      }
      const group = items.slice(i, j);
      i = j;
      const data = group.length === 1 ? withKind(entryKindCommand, group[0]!.data) : withKind(entryKindCommandBatch, packr.pack(group.map((g) => g.data)) as Uint8Array);
      try {
        const at = this.core.propose(data);
        this.pending.set(at.index, { term: at.term, waiters: group.map((g) => g.waiter) });
      } catch (err) {
        const e = this.withLeaderAddress(err);
        for (const g of group) this.settleWaiter(g.waiter, undefined, e);
      }
    }
  }

  private settleWaiter(w: ProposalWaiter, value: unknown, err?: Error): void {
    if (w.settled) return;
    w.settled = true;
    if (w.timer !== null) clearTimeout(w.timer);
    this.unsettledProposals--;
    if (err !== undefined) w.reject(err);
    else w.resolve(value);
  }

  /**
   * Resolves when the state machine may answer a linearizable read: on the leader (lease or ReadIndex), or with
   * `allowFollower` on a follower once it applied the leader's read index. Resolves with the leader's reply to
   * `payload` when this is a follower and the leader has a forwarded-read handler (else undefined/null).
   */
  read(opts: ReadOptions = {}): Promise<Uint8Array | null | undefined> {
    this.checkRunning();
    if (this.role !== 'leader' && !(opts.allowFollower === true && this.leader !== null)) return Promise.reject(this.notLeader());
    if (this.pendingReadCount >= this.maxPendingReads) {
      return Promise.reject(new MooringError(ErrorCode.QUEUE_FULL, `more than ${this.maxPendingReads} reads pending`));
    }
    this.pendingReadCount++;
    return new Promise<Uint8Array | null | undefined>((resolve, reject) => {
      const waiter: ReadWaiter = {
        payload: opts.payload ?? null,
        allowFollower: opts.allowFollower === true,
        resolve: () => { clearTimeout(waiter.timer); this.pendingReadCount--; resolve(waiter.reply); },
        reject: (e) => { clearTimeout(waiter.timer); this.pendingReadCount--; reject(e); },
        timer: setTimeout(() => {
          waiter.resolve = () => {};
          waiter.reject = () => {};
          this.pendingReadCount--;
          reject(new MooringError(ErrorCode.TIMEOUT, `read not confirmed within ${this.readTimeoutMs} ms`));
        }, this.readTimeoutMs),
      };
      this.nextReadBatch.push(waiter);
      this.kick();
    });
  }

  /** Hands leadership to `to` (caught up first by the core); resolves once `to` leads, TIMEOUT otherwise. */
  async transferLeadership(to: NodeId, timeoutMs = this.electionTimeoutMs() * 3): Promise<void> {
    this.checkRunning();
    if (this.role !== 'leader') throw this.notLeader();
    if (to === this.id) return;
    this.core.transferLeadership(to);
    this.kick();
    await this.waitFor(() => this.leader === to, timeoutMs, `leadership did not move to ${to} within ${timeoutMs} ms`);
  }

  /** Adds a non-voting member (it receives the log but does not vote or count for commitment). */
  async addLearner(peer: PeerAddress): Promise<ConfState> {
    await this.publishAddress(peer);
    return this.changeMembership({ changes: [{ type: 'addLearner', node: peer.id }] });
  }

  /** Adds a voter safely: as a learner first, promoted once it has caught up with the log. */
  async addMember(peer: PeerAddress, timeoutMs = learnerCatchUpTimeoutMs): Promise<ConfState> {
    if (!this.confState.learners.includes(peer.id) && !this.confState.voters.includes(peer.id)) await this.addLearner(peer);
    await this.waitFor(() => {
      const st = this.core.status();
      const pr = st.progress?.[peer.id];
      return pr !== undefined && pr.match + learnerCatchUpEntries >= st.commit;
    }, timeoutMs, `learner ${peer.id} did not catch up within ${timeoutMs} ms`);
    return this.promote(peer.id);
  }

  async promote(id: NodeId): Promise<ConfState> {
    return this.changeMembership({ changes: [{ type: 'addVoter', node: id }] });
  }

  async removeMember(id: NodeId): Promise<ConfState> {
    return this.changeMembership({ changes: [{ type: 'removeNode', node: id }] });
  }

  /** Proposes a membership change and resolves with the resulting configuration once it is applied. */
  changeMembership(cc: ConfChange): Promise<ConfState> {
    this.checkRunning();
    let at: { index: number; term: number };
    try {
      at = this.core.proposeConfChange(cc);
    } catch (err) {
      return Promise.reject(this.withLeaderAddress(err));
    }
    this.kick();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingConf.delete(at.index);
        reject(new MooringError(ErrorCode.TIMEOUT, `membership change at index ${at.index} not applied in time`));
      }, this.proposalTimeoutMs * 2);
      this.pendingConf.set(at.index, { resolve, reject, timer });
    });
  }

  status(): Status & { appliedToStateMachine: number; peers: PeerAddress[]; tickMs: number; fastPreVotes: number } {
    const st = this.core.status();
    return { ...st, appliedToStateMachine: this.smApplied, peers: [...this.peers.values()], tickMs: this.tickMs, fastPreVotes: this.core.fastPreVotes };
  }

  get isLeader(): boolean {
    return this.role === 'leader';
  }

  get leaderId(): NodeId | null {
    return this.leader;
  }

  get currentTerm(): number {
    return this.term;
  }

  get appliedIndex(): number {
    return this.smApplied;
  }

  get commitIndex(): number {
    return this.core.status().commit;
  }

  peerAddress(id: NodeId): PeerAddress | undefined {
    return this.peers.get(id);
  }

  members(): ConfState {
    return { ...this.confState };
  }

  /** Forces a local snapshot and log compaction now (admin `snapshot`). Resolves with the snapshot index. */
  async snapshotNow(): Promise<number> {
    this.checkRunning();
    await this.serialized(() => this.takeLocalSnapshot());
    return this.lastSnapshotIndex;
  }

  /**
   * Stops the node. With `transfer`, a leader first hands leadership to the most caught-up voter so the cluster
   * does not wait out an election timeout. Pending proposals are rejected with SHUTTING_DOWN (outcome unknown).
   */
  async stop(opts: { transfer?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    if (opts.transfer === true && this.role === 'leader' && this.fatalError === null) {
      const target = this.bestTransferTarget();
      if (target !== null) {
        try {
          await this.transferLeadership(target, this.electionTimeoutMs() * 2);
        } catch (err) {
          this.log.warn({ err: String(err), target }, 'leadership transfer before stop failed');
        }
      }
    }
    this.stopped = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    await this.loopRunning?.catch(() => {});
    await this.applyChain.catch(() => {});
    this.failAll(new MooringError(ErrorCode.SHUTTING_DOWN, 'the node is shutting down; the outcome of pending requests is unknown'));
    for (const s of this.outSnapshots.values()) this.abortOutbound(s);
    this.abortInbound('node stopping');
  }

  // ---------------------------------------------------------------- the Ready loop

  private kick(): void {
    if (this.loopScheduled || this.stopped) return;
    this.loopScheduled = true;
    // setImmediate (not a microtask) lets socket reads and RPCs that already arrived join this round: that is
    // what batches many proposals into one fsync.
    setImmediate(() => {
      this.loopScheduled = false;
      if (this.loopRunning !== null || this.stopped) return;
      this.loopRunning = this.runLoop().finally(() => {
        this.loopRunning = null;
        if (this.core.hasReady() || this.nextReadBatch.length > 0 || this.proposalBuffer.length > 0 || this.deferredReadIndex.length > 0) this.kick();
      });
    });
  }

  private async runLoop(): Promise<void> {
    try {
      this.catchUpTicks();
      this.startReadRound();
      this.stepDeferredReadIndex();
      this.flushProposals();
      while (!this.stopped && this.core.hasReady()) {
        const rd = this.core.ready();
        await this.handleReady(rd);
        this.core.advance(rd);
        // Membership waiters settle only now: the core counts a conf entry as applied in advance().
        for (const settle of this.afterAdvance.splice(0)) settle();
        this.catchUpTicks();
        this.startReadRound();
        this.stepDeferredReadIndex();
        this.flushProposals();
      }
    } catch (err) {
      this.crash(err);
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.softState !== undefined) this.onSoftState(rd.softState.role, rd.softState.leader);
    this.sendMessages(rd.messages);
    if (rd.snapshot !== undefined) await this.installSnapshot(rd.snapshot.metadata, rd.snapshot.data);
    if (rd.entries.length > 0 || rd.hardState !== undefined) {
      if (rd.hardState !== undefined) this.term = rd.hardState.term;
      const saved = this.storage.save(
        { entries: rd.entries, ...(rd.hardState !== undefined ? { hardState: rd.hardState } : {}) },
        { sync: rd.mustSync },
      );
      // Only a commit-index change needs no fsync and acknowledges nothing: do not wait for it (the store
      // serializes writes, and a failure still stops the node).
      if (rd.mustSync || rd.entries.length > 0) await saved;
      else saved.catch((err) => this.crash(err));
    }
    this.sendMessages(rd.persistedMessages);
    if (rd.committedEntries.length > 0) this.dispatchCommitted(rd.committedEntries);
    if (this.applyLagCommands > maxApplyLagCommands) await this.applyChain;
    for (const rs of rd.readStates) {
      const key = readRoundKey(rs.context);
      const batch = this.readBatches.get(key);
      if (batch === undefined) continue;
      this.readBatches.delete(key);
      batch.index = rs.index;
      this.attachReadReplies(batch, rs.context);
      this.readsAwaitingApply.push(batch);
    }
    this.serveReads();
    if (this.applied - this.lastSnapshotIndex >= this.snapshotEveryEntries) await this.takeLocalSnapshot();
  }

  /**
   * Applies membership changes to the core at once (in log order) and hands commands to the apply pipeline in
   * chunks of at most maxCommandsPerApply.
   */
  private dispatchCommitted(entries: Entry[]): void {
    let commands: AppliedCommand[] = [];
    const handOver = (through: number): void => {
      if (commands.length === 0 && through <= this.dispatchedThrough) return;
      const batch = commands;
      commands = [];
      this.dispatchedThrough = Math.max(this.dispatchedThrough, through);
      this.enqueueApply(batch, through);
    };
    for (const e of entries) {
      if (e.type === 'confChange') {
        this.applyConfEntry(e);
      } else if (e.data.byteLength > 0 && e.data[0] === entryKindCommand) {
        if (e.index > this.dispatchedThrough) commands.push({ index: e.index, data: e.data.subarray(1), position: 0 });
      } else if (e.data.byteLength > 0 && e.data[0] === entryKindCommandBatch) {
        if (e.index > this.dispatchedThrough) {
          const parts = decodeCommandBatch(e);
          for (let k = 0; k < parts.length; k++) commands.push({ index: e.index, data: parts[k]!, position: k });
        }
      } else if (e.data.byteLength > 0 && e.data[0] === entryKindPeerAddress) {
        this.applyPeerAddress(e.data.subarray(1));
      }
      // Settle a proposal whose index was taken by another leader's entry: it can never be applied.
      const p = this.pending.get(e.index);
      if (p !== undefined && p.term !== e.term) {
        this.pending.delete(e.index);
        const dropped = new MooringError(ErrorCode.PROPOSAL_DROPPED, `proposal at index ${e.index} was superseded by another leader; it was not applied`);
        for (const w of p.waiters) this.settleWaiter(w, undefined, dropped);
      }
      this.applied = e.index;
      // Chunk at entry boundaries only: an entry's commands are applied together (never half an entry).
      if (commands.length >= maxCommandsPerApply) handOver(e.index);
    }
    handOver(this.applied);
  }

  private enqueueApply(batch: AppliedCommand[], through: number): void {
    this.applyLagCommands += batch.length;
    this.applyChain = this.applyChain.then(async () => {
      if (this.fatalError !== null) return;
      const results = await this.sm.apply(batch, through);
      assert(results.length === batch.length, 'state machine returned one result per command');
      this.applyLagCommands -= batch.length;
      this.smApplied = Math.max(this.smApplied, through);
      for (let i = 0; i < batch.length; i++) this.settleProposal(batch[i]!, results[i]);
      this.serveReads();
      this.emit('applied', this.smApplied);
    }).catch((err) => this.crash(err));
  }

  /** Runs `fn` on the apply pipeline once every earlier apply finished (state machine at dispatchedThrough). */
  private onApplyChain<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.applyChain.then(fn);
    this.applyChain = run.then(() => {}, (err) => this.crash(err));
    return run;
  }

  private confStateAt(index: number): ConfState {
    for (let i = this.confHistory.length - 1; i >= 0; i--) {
      if (this.confHistory[i]!.index <= index) return cloneConf(this.confHistory[i]!.confState);
    }
    return cloneConf(this.confHistory[0]!.confState);
  }

  private startReadRound(): void {
    if (this.nextReadBatch.length === 0) return;
    this.catchUpTicks(); // a lease is judged on the time that really passed
    let waiters = this.takeReadRound();
    if (this.role !== 'leader') {
      // Follower reads go to the leader as a forwarded ReadIndex; the others are refused with a hint.
      const ok = this.leader !== null ? waiters.filter((w) => w.allowFollower) : [];
      for (const w of waiters) if (!ok.includes(w)) w.reject(this.notLeader());
      waiters = ok;
      if (waiters.length === 0) return;
    }
    const ctx = encodeReadContext(++this.readRoundSeq, waiters.map((w) => w.payload));
    try {
      this.core.readIndex(ctx);
    } catch (err) {
      // The core refuses reads it cannot confirm (leader leaving, too many pending): the callers get the reason.
      const e = err instanceof MooringError ? (err.code === ErrorCode.NOT_LEADER ? this.notLeader() : err) : new MooringError(ErrorCode.UNAVAILABLE, String(err));
      for (const w of waiters) w.reject(e);
      return;
    }
    this.readBatches.set(readRoundKey(ctx), { waiters, index: null });
  }

  /** The next round's reads: all waiting, up to maxReadPayloadBytesPerRound of payloads (the rest wait). */
  private takeReadRound(): ReadWaiter[] {
    let bytes = 0;
    let n = 0;
    for (const w of this.nextReadBatch) {
      bytes += w.payload?.byteLength ?? 0;
      if (n > 0 && bytes > maxReadPayloadBytesPerRound) break;
      n++;
    }
    const round = this.nextReadBatch.splice(0, n);
    if (this.nextReadBatch.length > 0) this.kick();
    return round;
  }

  /** A follower's answered round: hand each read the leader's reply to its payload. */
  private attachReadReplies(batch: ReadBatch, ctx: Uint8Array): void {
    let replies: Array<Uint8Array | null> | undefined;
    try {
      replies = readReplies(ctx);
    } catch (err) {
      this.log.warn({ err: String(err) }, 'leader reply to a read round does not decode; reads get no reply');
    }
    batch.waiters.forEach((w, i) => { w.reply = replies?.[i] ?? null; });
  }

  /**
   * A follower's ReadIndex request is stepped at the next Ready round, after the core's clock is caught up: the
   * leader may answer it from its lease at once, and a lease must be judged on the time that really passed (a
   * leader resumed from a pause reads its sockets before its timer runs). Bounded: beyond maxDeferredReadIndex
   * requests the rest are dropped (the follower's read times out and its client retries).
   */
  private deferReadIndex(m: Message): void {
    if (this.deferredReadIndex.length >= maxDeferredReadIndex) return;
    this.deferredReadIndex.push(m);
  }

  private stepDeferredReadIndex(): void {
    if (this.deferredReadIndex.length === 0) return;
    const msgs = this.deferredReadIndex;
    this.deferredReadIndex = [];
    for (const m of msgs) this.core.step(m);
  }

  /** Leader: the handler that answers follower reads' payloads (e.g. records their read leases). */
  setForwardedReadHandler(handler: ForwardedReadHandler | null): void {
    this.forwardedReadHandler = handler;
  }

  /**
   * Leader: answers the payloads of a follower's ReadIndex round just before the answer is sent, so whatever the
   * handler records (read leases) is in place before the follower can serve the read.
   */
  private answerForwardedRead(m: Message): void {
    const h = this.forwardedReadHandler;
    if (h === null || m.context === undefined) return;
    let payloads: Array<Uint8Array | null>;
    try {
      payloads = readPayloads(m.context);
    } catch (err) {
      this.log.warn({ to: m.to, err: String(err) }, 'a follower read round does not decode; answered without replies');
      return;
    }
    if (payloads.length === 0) return;
    m.context = answerReadContext(m.context, h(m.to, payloads));
  }

  private serveReads(): void {
    if (this.readsAwaitingApply.length === 0) return;
    let kept = 0;
    for (const batch of this.readsAwaitingApply) {
      if (batch.index !== null && batch.index <= this.smApplied) {
        for (const w of batch.waiters) w.resolve();
      } else {
        this.readsAwaitingApply[kept++] = batch;
      }
    }
    this.readsAwaitingApply.length = kept;
  }

  private settleProposal(c: AppliedCommand, result: unknown): void {
    const p = this.pending.get(c.index);
    if (p === undefined) return;
    const w = p.waiters[c.position ?? 0];
    if (w !== undefined) this.settleWaiter(w, result);
    if ((c.position ?? 0) >= p.waiters.length - 1) this.pending.delete(c.index);
  }

  private applyConfEntry(e: Entry): void {
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch (err) {
      // A committed entry that does not decode is a bug or corruption that passed the checksum: stop.
      throw new MooringError(ErrorCode.CORRUPT_LOG, `committed membership change at ${e.index} does not decode`, { cause: err });
    }
    this.confState = this.core.applyConfChange(cc);
    this.confHistory.push({ index: e.index, confState: cloneConf(this.confState) });
    for (const id of [...this.confState.voters, ...this.confState.learners, ...this.confState.votersOutgoing]) {
      const addr = this.peers.get(id);
      if (addr !== undefined) this.transport.setPeer(addr);
    }
    const w = this.pendingConf.get(e.index);
    if (w !== undefined) {
      this.pendingConf.delete(e.index);
      clearTimeout(w.timer);
      const cs = cloneConf(this.confState);
      this.afterAdvance.push(() => w.resolve(cs));
    }
    this.log.info({ index: e.index, confState: this.confState }, 'membership changed');
  }

  private async publishAddress(peer: PeerAddress): Promise<void> {
    this.checkRunning();
    this.transport.setPeer(peer);
    const body = packr.pack(peerRecord(peer)) as Uint8Array;
    const data = new Uint8Array(body.byteLength + 1);
    data[0] = entryKindPeerAddress;
    data.set(body, 1);
    let at: { index: number; term: number };
    try {
      at = this.core.propose(data);
    } catch (err) {
      throw this.withLeaderAddress(err);
    }
    this.kick();
    await this.waitFor(() => this.applied >= at.index, this.proposalTimeoutMs, `address of ${peer.id} not committed in time`);
  }

  private applyPeerAddress(body: Uint8Array): void {
    const parsed = (() => {
      try {
        return parsePeers([packr.unpack(body)]);
      } catch {
        return [];
      }
    })();
    const peer = parsed[0];
    if (peer === undefined) {
      this.log.error({}, 'a committed peer-address entry does not decode; ignored');
      return;
    }
    this.peers.set(peer.id, peer);
    if (peer.id !== this.id) this.transport.setPeer(peer);
    this.savePeers();
  }

  private async takeLocalSnapshot(): Promise<void> {
    await this.applyChain;
    const index = this.smApplied;
    if (index <= this.lastSnapshotIndex) return;
    // The state machine must be durable at `index` before the log forgets the entries that rebuild it.
    await this.sm.flush();
    const meta: SnapshotMetadata = { index, term: this.storage.term(index), confState: this.confStateAt(index) };
    const compactTo = Math.max(this.storage.firstIndex() - 1, index - this.snapshotKeepEntries);
    await this.storage.compact(Math.min(compactTo, index), meta);
    this.lastSnapshotIndex = index;
    // Keep the membership history from the snapshot point on (older points can no longer be asked for).
    const keepFrom = this.confHistory.findLastIndex((h) => h.index <= index);
    if (keepFrom > 0) this.confHistory = this.confHistory.slice(keepFrom);
    this.log.info({ index, compactedTo: compactTo }, 'local snapshot; log compacted');
  }

  private async installSnapshot(meta: SnapshotMetadata, inline: Uint8Array): Promise<void> {
    await this.applyChain;
    const staged = this.staged;
    if (staged !== null && staged.index === meta.index) {
      await this.sm.restore(meta.index, readChunks(staged.file));
      for (const p of staged.peers) this.peers.set(p.id, p);
      this.savePeers();
      rmSync(staged.file, { force: true });
      this.staged = null;
    } else if (inline.byteLength > 0) {
      await this.sm.restore(meta.index, (async function* () { yield inline; })());
    } else {
      throw new MooringError(ErrorCode.INTERNAL, `the core accepted snapshot ${meta.index} but no image was staged`);
    }
    await this.sm.flush();
    await this.storage.applySnapshot(meta);
    this.confState = cloneConf(meta.confState);
    for (const id of [...meta.confState.voters, ...meta.confState.learners]) {
      const addr = this.peers.get(id);
      if (addr !== undefined && id !== this.id) this.transport.setPeer(addr);
    }
    this.lastSnapshotIndex = meta.index;
    this.applied = meta.index;
    this.smApplied = meta.index;
    this.dispatchedThrough = meta.index;
    this.confHistory = [{ index: meta.index, confState: cloneConf(meta.confState) }];
    this.log.info({ index: meta.index, term: meta.term }, 'installed snapshot from leader');
  }

  // ---------------------------------------------------------------- network

  private sendMessages(msgs: Message[]): void {
    if (msgs.length === 0) return;
    const byPeer = new Map<NodeId, Message[]>();
    for (const m of msgs) {
      if (m.type === 'readIndexResp') this.answerForwardedRead(m);
      if (m.type === 'snap') {
        this.startOutboundSnapshot(m);
        continue;
      }
      let list = byPeer.get(m.to);
      if (list === undefined) byPeer.set(m.to, (list = []));
      list.push(m);
    }
    for (const [to, list] of byPeer) {
      if (!this.transport.send(to, { k: 'r', m: list })) this.core.reportUnreachable(to);
    }
  }

  /**
   * Fast failover: the transport saw a connection to or from `peer` reset/closed or a dial refused. The core
   * decides (a follower of that leader pre-votes without waiting out its election timeout; a leader drops that
   * peer's lease acknowledgement). Time is caught up first so the decision sees the current tick.
   */
  private onPeerDown(peer: NodeId): void {
    if (this.stopped) return;
    this.catchUpTicks();
    if (this.core.reportConnectionLost(peer)) this.log.info({ peer, term: this.core.status().term }, 'lost the leader\'s connection: pre-voting without waiting for the election timeout');
    this.sendUrgentMessagesNow();
    this.kick();
  }

  /**
   * Pre-vote requests and answers acknowledge nothing on disk: send them now rather than after the fsync the Ready
   * loop may be waiting for (under load that wait is tens of milliseconds, twice per pre-vote round trip).
   */
  private sendUrgentMessagesNow(): void {
    const msgs = this.core.takeUrgentMessages();
    if (msgs.length > 0) this.sendMessages(msgs);
  }

  private onFrame(from: NodeId, frame: unknown): void {
    if (this.stopped) return;
    try {
      if (typeof frame !== 'object' || frame === null) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'frame is not an object');
      const f = frame as Record<string, unknown>;
      switch (f.k) {
        case 'r': {
          if (!Array.isArray(f.m) || f.m.length > 100_000) throw new MooringError(ErrorCode.MALFORMED_FRAME, 'raft frame without a message list');
          let urgent = false;
          for (const raw of f.m) {
            const msg = validateMessage(raw);
            if (msg.from !== from) throw new MooringError(ErrorCode.MALFORMED_FRAME, `message claims to be from ${msg.from} on ${from}'s connection`);
            if (msg.to !== this.id) continue;
            if (msg.type === 'snap') continue; // snapshots only arrive through the chunked stream
            if (msg.type === 'readIndex') {
              this.deferReadIndex(msg);
              continue;
            }
            if (msg.type === 'preVote') urgent = true;
            this.core.step(msg);
          }
          if (urgent) this.sendUrgentMessagesNow();
          break;
        }
        case 'sc':
          this.onSnapshotChunk(from, f);
          break;
        case 'sa':
          this.onSnapshotAck(from, f);
          break;
        case 'sx':
          this.onSnapshotAbort(from, f);
          break;
        default:
          throw new MooringError(ErrorCode.MALFORMED_FRAME, `unknown frame kind ${String(f.k)}`);
      }
    } catch (err) {
      this.log.warn({ from, err: err instanceof Error ? err.message : String(err) }, 'dropped a bad frame from a peer');
    }
    this.kick();
  }

  // ---------------------------------------------------------------- snapshot streaming (sender)

  private startOutboundSnapshot(m: Message): void {
    const to = m.to;
    if (this.outSnapshots.has(to)) return; // one stream per follower at a time
    const session: OutboundSnapshot = { sid: ++this.snapshotSeq * 1000 + (Date.now() % 1000), acked: -1, ackWaiters: new Map(), aborted: false };
    this.outSnapshots.set(to, session);
    // Take the image on the apply pipeline, between applies, so it is exactly the state at its index.
    void this.onApplyChain(() => {
      const image = this.sm.snapshot();
      const meta: SnapshotMetadata = { index: image.index, term: this.storage.term(image.index), confState: this.confStateAt(image.index) };
      return { image, meta };
    }).then(({ image, meta }) => {
      const fin: Message = { ...m, snapshot: { metadata: meta, data: new Uint8Array(0) } };
      this.log.info({ to, index: meta.index }, 'streaming snapshot to follower');
      return this.streamSnapshot(to, session, image.chunks, fin);
    }).then(
      (ok) => {
        this.outSnapshots.delete(to);
        this.core.reportSnapshot(to, ok);
        this.kick();
      },
      (err) => {
        this.log.warn({ to, err: String(err) }, 'snapshot stream failed');
        this.outSnapshots.delete(to);
        this.core.reportSnapshot(to, false);
        this.kick();
      },
    );
  }

  private async streamSnapshot(to: NodeId, s: OutboundSnapshot, chunks: AsyncIterable<Uint8Array>, fin: Message): Promise<boolean> {
    let seq = 0;
    const peers = [...this.peers.values()];
    const sendChunk = async (frame: Record<string, unknown>): Promise<boolean> => {
      // Bounded window: wait until at most snapshotChunksInFlight chunks are unacknowledged.
      while (seq - s.acked > snapshotChunksInFlight) {
        const waitSeq = s.acked + 1;
        const ok = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), snapshotChunkAckTimeoutMs);
          s.ackWaiters.set(waitSeq, () => { clearTimeout(t); resolve(true); });
        });
        if (!ok || s.aborted || this.stopped) return false;
      }
      if (!this.transport.send(to, frame)) return false;
      seq++;
      return true;
    };
    if (!(await sendChunk({ k: 'sc', sid: s.sid, seq, hdr: { peers } }))) return false;
    for await (const data of chunks) {
      if (s.aborted || this.stopped) return false;
      if (!(await sendChunk({ k: 'sc', sid: s.sid, seq, data }))) return false;
    }
    if (!(await sendChunk({ k: 'sc', sid: s.sid, seq, fin }))) return false;
    // Wait for the final acknowledgement (the follower staged everything and stepped the snapshot).
    const last = seq - 1;
    while (s.acked < last) {
      const ok = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), snapshotChunkAckTimeoutMs);
        s.ackWaiters.set(s.acked + 1, () => { clearTimeout(t); resolve(true); });
      });
      if (!ok || s.aborted) return false;
    }
    this.log.info({ to, index: fin.snapshot?.metadata.index, chunks: seq }, 'snapshot streamed to follower');
    return true;
  }

  private onSnapshotAck(from: NodeId, f: Record<string, unknown>): void {
    const s = this.outSnapshots.get(from);
    if (s === undefined || f.sid !== s.sid || typeof f.seq !== 'number') return;
    if (f.seq > s.acked) {
      for (let q = s.acked + 1; q <= f.seq; q++) {
        const w = s.ackWaiters.get(q);
        s.ackWaiters.delete(q);
        s.acked = q;
        w?.();
      }
    }
  }

  private onSnapshotAbort(from: NodeId, f: Record<string, unknown>): void {
    const s = this.outSnapshots.get(from);
    if (s !== undefined && f.sid === s.sid) this.abortOutbound(s);
    if (this.inSnapshot !== null && this.inSnapshot.from === from && f.sid === this.inSnapshot.sid) this.abortInbound('sender aborted');
  }

  private abortOutbound(s: OutboundSnapshot): void {
    s.aborted = true;
    for (const w of s.ackWaiters.values()) w();
    s.ackWaiters.clear();
  }

  // ---------------------------------------------------------------- snapshot streaming (receiver)

  private onSnapshotChunk(from: NodeId, f: Record<string, unknown>): void {
    const sid = f.sid;
    const seq = f.seq;
    if (typeof sid !== 'number' || typeof seq !== 'number') throw new MooringError(ErrorCode.MALFORMED_FRAME, 'snapshot chunk without sid/seq');
    let inb = this.inSnapshot;
    if (seq === 0) {
      if (inb !== null) this.abortInbound('superseded by a new snapshot stream');
      const file = path.join(this.snapshotDir(), `incoming-${sid}.snap`);
      mkdirSync(this.snapshotDir(), { recursive: true });
      inb = {
        sid, from, nextSeq: 0, file, out: createWriteStream(file),
        idleTimer: setTimeout(() => this.abortInbound('snapshot stream idle'), snapshotReceiveIdleMs),
      };
      this.inSnapshot = inb;
      const hdr = f.hdr as { peers?: unknown } | undefined;
      (inb as InboundSnapshot & { peers?: PeerAddress[] }).peers = parsePeers(hdr?.peers);
    }
    if (inb === null || inb.sid !== sid || inb.from !== from) {
      this.transport.send(from, { k: 'sx', sid, reason: 'no such snapshot stream' });
      return;
    }
    if (seq !== inb.nextSeq) {
      this.abortInbound(`snapshot chunk ${seq} out of order (expected ${inb.nextSeq})`);
      this.transport.send(from, { k: 'sx', sid, reason: 'out of order' });
      return;
    }
    inb.idleTimer.refresh();
    inb.nextSeq++;
    if (f.data instanceof Uint8Array) {
      // Length-prefixed, so restore() gets back exactly the chunks snapshot() produced.
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(f.data.byteLength);
      inb.out.write(len);
      inb.out.write(f.data);
    }
    if (f.fin !== undefined) {
      const fin = validateMessage(f.fin);
      const current = inb;
      this.inSnapshot = null;
      clearTimeout(current.idleTimer);
      current.out.end(() => {
        if (this.stopped) return;
        if (this.staged !== null && this.staged.file !== current.file) rmSync(this.staged.file, { force: true });
        const meta = fin.snapshot?.metadata;
        if (meta === undefined) return;
        this.staged = { index: meta.index, file: current.file, peers: (current as InboundSnapshot & { peers?: PeerAddress[] }).peers ?? [] };
        this.core.step(fin);
        this.transport.send(from, { k: 'sa', sid, seq });
        this.kick();
      });
      return;
    }
    this.transport.send(from, { k: 'sa', sid, seq });
  }

  private abortInbound(reason: string): void {
    const inb = this.inSnapshot;
    if (inb === null) return;
    this.inSnapshot = null;
    clearTimeout(inb.idleTimer);
    inb.out.destroy();
    rmSync(inb.file, { force: true });
    this.log.warn({ from: inb.from, sid: inb.sid, reason }, 'inbound snapshot abandoned');
  }

  private snapshotDir(): string {
    return path.join(this.dataDir, 'snapshots');
  }

  private cleanStagedFiles(): void {
    const dir = this.snapshotDir();
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) rmSync(path.join(dir, name), { force: true });
  }

  // ---------------------------------------------------------------- peers (address book)

  private loadPeers(configured: PeerAddress[]): void {
    for (const p of configured) this.peers.set(p.id, peerRecord(p));
    const file = path.join(this.dataDir, 'peers.json');
    if (existsSync(file)) {
      try {
        for (const p of parsePeers(JSON.parse(readFileSync(file, 'utf8')))) this.peers.set(p.id, p);
      } catch (err) {
        this.log.warn({ err: String(err) }, 'peers.json unreadable; using configured peers');
      }
    }
    for (const p of this.peers.values()) if (p.id !== this.id) this.transport.setPeer(p);
  }

  private savePeers(): void {
    const file = path.join(this.dataDir, 'peers.json');
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.peers.values()]));
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, file);
  }

  // ---------------------------------------------------------------- helpers

  /**
   * The interval only schedules the Ready loop, which ticks the core at the start of each round: socket input that
   * arrived meanwhile (the poll phase runs before setImmediate) is stepped first. A leader starved for a while thus
   * sees the acknowledgements waiting in its sockets before check-quorum judges it, instead of stepping down over
   * messages it has not read yet.
   */
  private onTick(): void {
    if (this.stopped) return;
    this.kick();
  }

  /**
   * Advances the core by the ticks of monotonic time that really passed. One tick per timer callback is not
   * enough: after a pause (SIGSTOP, a long GC, a stalled VM) the interval fires once, and a leader would go on
   * believing in a lease that expired while it was frozen. Called at the start of every Ready round and before
   * every ReadIndex/lease decision, so a resumed leader steps down (check-quorum) before it answers a read.
   */
  private catchUpTicks(): void {
    const now = performance.now();
    let due = Math.floor((now - this.lastTickAtMs) / this.tickMs);
    if (due <= 0) return;
    this.lastTickAtMs += due * this.tickMs;
    // More than a few election timeouts' worth of ticks changes nothing further (leases and elections expire).
    due = Math.min(due, maxCatchUpTicks(this.electionTimeoutTicks));
    try {
      for (let i = 0; i < due; i++) this.core.tick();
    } catch (err) {
      this.crash(err);
    }
  }

  private onSoftState(role: Role, leader: NodeId | null): void {
    const wasLeader = this.role === 'leader';
    if (role !== this.role) {
      this.role = role;
      this.emit('roleChange', role);
    }
    if (leader !== this.leader) {
      this.leader = leader;
      // A follower's rounds were sent to the old leader: their answers will not come (the core drops them).
      if (role !== 'leader' && !wasLeader) this.failFollowerReadRounds();
      this.emit('leaderChange', leader, this.core.status().term);
    }
    if (wasLeader && role !== 'leader') {
      // Reads not yet confirmed cannot be confirmed by a node that is no longer leader.
      for (const w of this.nextReadBatch) w.reject(this.notLeader());
      this.nextReadBatch = [];
      for (const b of this.readBatches.values()) for (const w of b.waiters) w.reject(this.notLeader());
      this.readBatches.clear();
    }
  }

  private failFollowerReadRounds(): void {
    if (this.readBatches.size === 0) return;
    const err = new MooringError(ErrorCode.NOT_LEADER, 'the leader changed while a follower read waited for it; retry');
    for (const b of this.readBatches.values()) for (const w of b.waiters) w.reject(err);
    this.readBatches.clear();
  }

  private notLeader(): MooringError {
    const hint = this.leader !== null && this.leader !== this.id ? { leaderHint: this.leader } : undefined;
    return new MooringError(ErrorCode.NOT_LEADER, hint ? `not the leader; try ${hint.leaderHint}` : 'not the leader; no leader is known yet', hint);
  }

  private withLeaderAddress(err: unknown): Error {
    if (err instanceof MooringError && err.code === ErrorCode.NOT_LEADER) return this.notLeader();
    return err instanceof Error ? err : new Error(String(err));
  }

  private electionTimeoutMs(): number {
    return this.electionTimeoutTicks * this.tickMs;
  }

  private bestTransferTarget(): NodeId | null {
    const st = this.core.status();
    // Prefer a voter heard from recently. Check-quorum clears every recentActive flag once per election timeout
    // and heartbeat responses set them again, so right after a reset no voter is flagged: then fall back to the
    // most caught-up voter rather than skip the transfer (a failed transfer costs no more than no transfer).
    let best: NodeId | null = null;
    let bestMatch = -1;
    let fallback: NodeId | null = null;
    let fallbackMatch = -1;
    for (const id of this.confState.voters) {
      if (id === this.id) continue;
      const pr = st.progress?.[id];
      if (pr === undefined) continue;
      if (pr.recentActive && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
      if (pr.match > fallbackMatch) {
        fallback = id;
        fallbackMatch = pr.match;
      }
    }
    return best ?? fallback;
  }

  private waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const check = (): void => {
        if (cond()) {
          cleanup();
          resolve();
        } else if (this.stopped || Date.now() - started > timeoutMs) {
          cleanup();
          reject(new MooringError(this.stopped ? ErrorCode.SHUTTING_DOWN : ErrorCode.TIMEOUT, what));
        }
      };
      const timer = setInterval(check, Math.max(5, Math.floor(this.tickMs / 2)));
      const cleanup = (): void => clearInterval(timer);
    });
  }

  /** Runs `fn` when the Ready loop is idle, so it never interleaves with an apply. */
  private async serialized(fn: () => Promise<void>): Promise<void> {
    while (this.loopRunning !== null) await this.loopRunning.catch(() => {});
    const run = fn();
    this.loopRunning = run.finally(() => {
      this.loopRunning = null;
      this.kick();
    });
    await this.loopRunning;
  }

  private checkRunning(): void {
    if (this.fatalError !== null) throw new MooringError(ErrorCode.STORAGE_FAILED, 'the node stopped after a storage failure', { cause: this.fatalError });
    if (this.stopped) throw new MooringError(ErrorCode.SHUTTING_DOWN);
  }

  private failAll(err: MooringError): void {
    for (const p of this.pending.values()) for (const w of p.waiters) this.settleWaiter(w, undefined, err);
    this.pending.clear();
    for (const b of this.proposalBuffer) this.settleWaiter(b.waiter, undefined, err);
    this.proposalBuffer = [];
    for (const p of this.pendingConf.values()) { clearTimeout(p.timer); p.reject(err); }
    this.pendingConf.clear();
    for (const w of this.nextReadBatch) w.reject(err);
    this.nextReadBatch = [];
    for (const b of this.readBatches.values()) for (const w of b.waiters) w.reject(err);
    this.readBatches.clear();
    for (const b of this.readsAwaitingApply) for (const w of b.waiters) w.reject(err);
    this.readsAwaitingApply.length = 0;
  }

  /** Crash-stop: a storage failure (or a broken invariant) stops the node for good. */
  private crash(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.fatalError !== null) return;
    this.fatalError = error;
    this.log.error({ err: error.message, code: (error as MooringError).code }, 'raft node stopped: fatal error');
    this.stopped = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.failAll(new MooringError(ErrorCode.STORAGE_FAILED, `the node stopped: ${error.message}`, { cause: error }));
    this.emit('fatal', error);
  }
}

function maxCatchUpTicks(electionTimeoutTicks: number): number {
  return electionTimeoutTicks * 4;
}

function withKind(kind: number, body: Uint8Array): Uint8Array {
  const data = new Uint8Array(body.byteLength + 1);
  data[0] = kind;
  data.set(body, 1);
  return data;
}

function decodeCommandBatch(e: Entry): Uint8Array[] {
  let parts: unknown;
  try {
    parts = packr.unpack(e.data.subarray(1));
  } catch (err) {
    throw new MooringError(ErrorCode.CORRUPT_LOG, `committed command batch at ${e.index} does not decode`, { cause: err });
  }
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > maxCommandsPerEntry || !parts.every((p) => p instanceof Uint8Array)) {
    throw new MooringError(ErrorCode.CORRUPT_LOG, `committed command batch at ${e.index} is malformed`);
  }
  return parts as Uint8Array[];
}


function bytesKey(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function hashSeed(id: string): number {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619) >>> 0;
  return h;
}

function parsePeers(v: unknown): PeerAddress[] {
  if (!Array.isArray(v)) return [];
  const out: PeerAddress[] = [];
  for (const p of v.slice(0, 1000)) {
    if (typeof p !== 'object' || p === null) continue;
    const r = p as Record<string, unknown>;
    if (typeof r.id === 'string' && typeof r.host === 'string' && typeof r.port === 'number') {
      out.push(peerRecord({ id: r.id, host: r.host, port: r.port, rpcPort: r.rpcPort as number, httpPort: r.httpPort as number }));
    }
  }
  return out;
}

function peerRecord(p: PeerAddress): PeerAddress {
  const rec: PeerAddress = { id: p.id, host: p.host, port: p.port };
  if (typeof p.rpcPort === 'number') rec.rpcPort = p.rpcPort;
  if (typeof p.httpPort === 'number') rec.httpPort = p.httpPort;
  return rec;
}

/** Reads back the length-prefixed chunks of a staged snapshot file, one original chunk at a time. */
async function* readChunks(file: string): AsyncIterable<Uint8Array> {
  let buf: Buffer = Buffer.alloc(0);
  for await (const piece of createReadStream(file, { highWaterMark: 1 << 20 })) {
    buf = buf.length === 0 ? (piece as Buffer) : Buffer.concat([buf, piece as Buffer]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (buf.length < 4 + len) break;
      yield buf.subarray(4, 4 + len);
      buf = buf.subarray(4 + len);
    }
  }
  if (buf.length !== 0) throw new MooringError(ErrorCode.CORRUPT_LOG, `staged snapshot ${file} ends mid-chunk`);
}
