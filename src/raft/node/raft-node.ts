/**
 * RaftNode: the driver that gives the pure RaftCore a clock, a disk and a network.
 *
 * - Timers call `core.tick()` every `tickMs` (ready-loop.ts; time comes from the injected Clock).
 * - One Ready loop with pipelined storage writes (ready-loop.ts): hand each round's entries to the LogStorage as
 *   one synced batch without waiting (group commit; at most maxInflightSaves in flight, saves strictly ordered),
 *   replicate, apply (apply.ts) what is durable, serve reads (reads.ts), `core.onApplied()`; acknowledgements
 *   leave and `core.onPersisted()` runs as each save completes.
 * - `propose()` resolves with the state machine's result once the entry is applied, and rejects with
 *   NOT_LEADER (leader hint), BUSY (backpressure, retryAfterMs), PROPOSAL_DROPPED (definitely not applied) or TIMEOUT (unknown)
 *   (proposals.ts, envelope.ts).
 * - `read()` resolves when a linearizable read may be served from the state machine (ReadIndex or lease, as the
 *   core is configured); concurrent reads share one ReadIndex round.
 * - Snapshots: every `snapshotEveryEntries` applied entries the state machine is flushed and the log compacted.
 *   A follower that needs compacted entries gets a fresh image streamed in chunks (snapshot-send.ts); it stages
 *   them through the SnapshotStore and installs them only once the core accepts the snapshot
 *   (snapshot-receive.ts).
 * - A failed durable write stops the node (crash-stop): it never continues with a log it could not persist.
 *
 * Restart model (as etcd): the core restarts at the snapshot index; committed entries after it are delivered
 * again; membership changes among them are re-applied to the core, and commands the state machine already holds
 * (index ≤ its appliedIndex) are skipped.
 *
 * Effects are injected (clock, log storage, snapshot staging, address-book store, transport); the files of this
 * folder never touch timers, clocks or the file system directly (test/raft/driver-effects.test.ts checks it).
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import { ErrorCode, MooringError } from '../../errors.js';
import { SeededRng } from '../../util/rng.js';
import { silentLogger, type LoggerLike } from '../../transport/logger.js';
import type { PeerAddress, PeerTransport } from '../../transport/types.js';
import { RaftCore } from '../core/core.js';
import type { ConfChange, ConfState, NodeId, Role, Status } from '../core/types.js';
import type { RaftStateMachine } from '../state-machine.js';
import { FilePeerBookStore } from '../effects/file-peer-book-store.js';
import { FileSnapshotStore } from '../effects/file-snapshot-store.js';
import { systemClock } from '../effects/system-clock.js';
import { Applier } from './apply.js';
import type { Clock } from './clock.js';
import { NodeContext, type NodeEffects, type NodeSettings } from './context.js';
import type { LogStorage } from './log-storage.js';
import { learnerCatchUpTimeoutMs, Membership } from './membership.js';
import { resolveRaftTunables, toCoreOptions, type RaftTunables } from './options.js';
import { PeerBook } from './peer-book.js';
import type { PeerBookStore } from './peer-book-store.js';
import { Proposals } from './proposals.js';
import { ReadQueue, type ForwardedReadHandler, type ReadOptions } from './reads.js';
import { ReadyLoop } from './ready-loop.js';
import { SnapshotReceiver } from './snapshot-receive.js';
import { SnapshotSender } from './snapshot-send.js';
import type { SnapshotStore } from './snapshot-store.js';

/** The node's effects and identity; every tunable not given takes its one default from raftDefaults. */
export interface RaftNodeOptions extends Partial<RaftTunables> {
  id: NodeId;
  /**
   * Where the production adapters keep peers.json and staged snapshots (the LogStorage and state machine have
   * their own dirs). Not needed when `snapshotStore` and `peerBookStore` are given.
   */
  dataDir?: string;
  storage: LogStorage;
  transport: PeerTransport;
  stateMachine: RaftStateMachine;
  /** Monotonic time and timers; the process's clock by default. */
  clock?: Clock;
  /** Staging of inbound snapshots; files under dataDir/snapshots by default. */
  snapshotStore?: SnapshotStore;
  /** Persistence of the address book; dataDir/peers.json by default. */
  peerBookStore?: PeerBookStore;
  /** Addresses of the initial members (and any known peers). Persisted; later changes come through the log. */
  peers: PeerAddress[];
  /** Initial voters for a brand-new cluster (ignored once the log has any state). Omit to join an existing one. */
  bootstrapVoters?: NodeId[];
  /**
   * Seeds this process's randomness: election timeouts, the follower read lease's epoch, the incarnation in read
   * round and snapshot stream ids (read-context.ts, snapshot-send.ts). Default: drawn at random at start, so that each
   * incarnation of a node differs (a default derived from the node id made a restarted node reuse its previous
   * process's epoch and round ids). The full-node simulator passes one per incarnation.
   */
  seed?: number;
  logger?: LoggerLike;
}

export interface RaftNodeEvents {
  leaderChange: (leader: NodeId | null, term: number) => void;
  roleChange: (role: Role) => void;
  applied: (index: number) => void;
  /** A snapshot point was taken here (log compacted) or installed from the leader. */
  snapshot: (index: number, how: 'taken' | 'installed') => void;
  fatal: (err: Error) => void;
}

export class RaftNode extends EventEmitter {
  readonly id: NodeId;
  /** This process's nonce in its read rounds' and snapshot streams' ids: differs at each start unless `seed` is given. */
  readonly incarnation: number;
  private readonly ctx: NodeContext;
  private readonly loop: ReadyLoop;
  private readonly proposals: Proposals;
  private readonly reads: ReadQueue;
  private readonly applier: Applier;
  private readonly membership: Membership;
  private readonly peers: PeerBook;
  private readonly sender: SnapshotSender;
  private readonly receiver: SnapshotReceiver;

  private constructor(core: RaftCore, fx: NodeEffects, settings: NodeSettings, opts: RaftNodeOptions, incarnation: number) {
    super();
    this.id = opts.id;
    if (!(settings.tickMs > 0)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'tickMs must be positive');
    const ctx = new NodeContext(opts.id, core, fx, settings, (err) => this.crash(err), (event, ...args) => this.emit(event, ...args));
    this.ctx = ctx;
    this.loop = new ReadyLoop(ctx);
    this.proposals = new Proposals(ctx);
    this.incarnation = incarnation;
    this.reads = new ReadQueue(ctx, incarnation);
    this.applier = new Applier(ctx);
    this.membership = new Membership(ctx, fx.storage.initialState().confState, this.applier.lastSnapshotIndex);
    this.peers = new PeerBook(ctx);
    this.sender = new SnapshotSender(ctx, incarnation);
    this.receiver = new SnapshotReceiver(ctx);
    ctx.parts = {
      loop: this.loop, proposals: this.proposals, reads: this.reads, applier: this.applier,
      membership: this.membership, peers: this.peers, sender: this.sender, receiver: this.receiver,
    };
    // A state machine that persists behind its applies reports a failed write here: stop now, not at the next apply.
    fx.stateMachine.onFailure?.((err) => {
      if (ctx.stopped) return; // a write failing during a graceful stop: the state is reopened from disk anyway
      this.crash(new MooringError(ErrorCode.STORAGE_FAILED, `the state machine's storage failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
    });
  }

  /**
   * Creates the node: bootstraps the membership of a brand-new cluster when asked, restores the address book, and
   * starts ticking. The storage, transport and state machine are the caller's (opened before, closed after).
   */
  static async start(opts: RaftNodeOptions): Promise<RaftNode> {
    const storage = opts.storage;
    const fx: NodeEffects = {
      storage,
      transport: opts.transport,
      stateMachine: opts.stateMachine,
      clock: opts.clock ?? systemClock,
      snapshotStore: opts.snapshotStore ?? new FileSnapshotStore(path.join(requireDataDir(opts), 'snapshots')),
      peerBookStore: opts.peerBookStore ?? new FilePeerBookStore(requireDataDir(opts)),
      logger: opts.logger ?? silentLogger,
    };
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
    const t = resolveRaftTunables(opts);
    const seed = opts.seed ?? randomBytes(4).readUInt32BE(0);
    const core = new RaftCore({
      id: opts.id,
      storage,
      rng: new SeededRng(seed),
      ...toCoreOptions(t),
      applied: snapMeta.index,
    });
    const settings: NodeSettings = t;
    // Its own stream (not the core's: drawing from that would move every election timeout the simulator replays).
    const incarnation = new SeededRng(seed ^ incarnationSalt).nextUint32();
    const node = new RaftNode(core, fx, settings, opts, incarnation);
    node.peers.load(opts.peers);
    fx.snapshotStore.clear();
    fx.transport.onFrame((from, frame) => node.loop.onFrame(from, frame));
    fx.transport.onPeerDown?.((peer) => node.loop.onPeerDown(peer));
    node.loop.start();
    return node;
  }

  // ---------------------------------------------------------------- public API

  /**
   * Proposes a command; resolves with the state machine's result once applied. `housekeeping: true` is for the
   * leader's own paced duties (expiry, eviction, repair): they are not refused for the queue's wait (clients' load
   * must not starve the eviction that makes room for it), only at maxPendingProposals.
   */
  propose(command: Uint8Array, opts: { housekeeping?: boolean } = {}): Promise<unknown> {
    return this.proposals.propose(command, opts.housekeeping === true);
  }

  /**
   * Resolves when the state machine may answer a linearizable read: on the leader (lease or ReadIndex), or with
   * `allowFollower` on a follower once it applied the leader's read index. Resolves with the leader's reply to
   * `payload` when this is a follower and the leader has a forwarded-read handler (else undefined/null).
   */
  read(opts: ReadOptions = {}): Promise<Uint8Array | null | undefined> {
    return this.reads.read(opts);
  }

  /** Leader: the handler that answers follower reads' payloads (e.g. records their read leases). */
  setForwardedReadHandler(handler: ForwardedReadHandler | null): void {
    this.reads.setForwardedReadHandler(handler);
  }

  /** Hands leadership to `to` (caught up first by the core); resolves once `to` leads, TIMEOUT otherwise. */
  transferLeadership(to: NodeId, timeoutMs = this.ctx.electionTimeoutMs() * 3): Promise<void> {
    return this.membership.transferLeadership(to, timeoutMs);
  }

  /** Adds a non-voting member (it receives the log but does not vote or count for commitment). */
  addLearner(peer: PeerAddress): Promise<ConfState> {
    return this.membership.addLearner(peer);
  }

  /** Adds a voter safely: as a learner first, promoted once it has caught up with the log. */
  addMember(peer: PeerAddress, timeoutMs = learnerCatchUpTimeoutMs): Promise<ConfState> {
    return this.membership.addMember(peer, timeoutMs);
  }

  promote(id: NodeId): Promise<ConfState> {
    return this.membership.change({ changes: [{ type: 'addVoter', node: id }] });
  }

  /**
   * Removes a member. Asked of the leader to remove itself, it first hands leadership to the most caught-up voter
   * and answers NOT_LEADER naming it, so the caller asks the new leader (clients follow the hint). Why: a leader
   * that commits its own removal steps down at apply, and the survivors learn of that commit only from heartbeats it
   * no longer sends; in a two-voter cluster the survivor then needs the removed node's vote to elect itself, and an
   * operator who stops the removed node as soon as the call returns leaves the cluster without a leader for good.
   */
  async removeMember(id: NodeId): Promise<ConfState> {
    const ctx = this.ctx;
    if (id === ctx.id && ctx.role === 'leader') {
      const target = this.membership.bestTransferTarget();
      if (target !== null) {
        await this.transferLeadership(target, ctx.electionTimeoutMs() * 2);
        throw ctx.notLeader(); // names `target`: transferLeadership resolved once it leads
      }
    }
    return this.membership.change({ changes: [{ type: 'removeNode', node: id }] });
  }

  /** Proposes a membership change and resolves with the resulting configuration once it is applied. */
  changeMembership(cc: ConfChange): Promise<ConfState> {
    return this.membership.change(cc);
  }

  /** Starts an election on this node now (scripted simulations, an operator's forced failover). */
  campaign(): void {
    this.ctx.checkRunning();
    this.ctx.core.campaign();
    this.loop.kick();
  }

  status(): Status & { appliedToStateMachine: number; peers: PeerAddress[]; tickMs: number; fastPreVotes: number; clockStalls: number; longestClockStallMs: number; busyRefusals: number; followerLease: { heldTicks: number; gates: number; readsServed: number } } {
    const st = this.ctx.core.status();
    return { ...st, appliedToStateMachine: this.applier.smApplied, peers: this.peers.all(), tickMs: this.ctx.settings.tickMs, fastPreVotes: this.ctx.core.fastPreVotes, clockStalls: this.loop.clockStalls, longestClockStallMs: this.loop.longestClockStallMs, busyRefusals: this.proposals.refusedBusy + this.reads.refusedBusy, followerLease: { ...this.ctx.core.followerLeaseStatus(), readsServed: this.reads.followerLeaseReads } };
  }

  /** Follower reads served under this node's follower read lease since start (no round to the leader). */
  get followerLeaseReads(): number {
    return this.reads.followerLeaseReads;
  }

  get isLeader(): boolean {
    return this.ctx.role === 'leader';
  }

  get leaderId(): NodeId | null {
    return this.ctx.leader;
  }

  get currentTerm(): number {
    return this.ctx.term;
  }

  /** The core's term: ahead of currentTerm between a term change and its persistence (role changes see this one). */
  get coreTerm(): number {
    return this.ctx.core.currentTerm;
  }

  get appliedIndex(): number {
    return this.applier.smApplied;
  }

  get commitIndex(): number {
    return this.ctx.core.commitIndex;
  }

  peerAddress(id: NodeId): PeerAddress | undefined {
    return this.peers.get(id);
  }

  members(): ConfState {
    return { ...this.membership.confState };
  }

  /** Forces a local snapshot and log compaction now (admin `snapshot`). Resolves with the snapshot index. */
  async snapshotNow(): Promise<number> {
    this.ctx.checkRunning();
    await this.loop.serialized(() => this.applier.takeLocalSnapshot());
    return this.applier.lastSnapshotIndex;
  }

  /**
   * Stops the node. With `transfer`, a leader first hands leadership to the most caught-up voter so the cluster
   * does not wait out an election timeout. Pending proposals are rejected with SHUTTING_DOWN (outcome unknown).
   */
  async stop(opts: { transfer?: boolean } = {}): Promise<void> {
    const ctx = this.ctx;
    if (ctx.stopped) return;
    if (opts.transfer === true && ctx.role === 'leader' && ctx.fatalError === null) {
      const target = this.membership.bestTransferTarget();
      if (target !== null) {
        try {
          await this.transferLeadership(target, ctx.electionTimeoutMs() * 2);
        } catch (err) {
          ctx.log.warn({ err: String(err), target }, 'leadership transfer before stop failed');
        }
      }
    }
    ctx.stopped = true;
    this.loop.stopTicking();
    await this.loop.running?.catch(() => {});
    await this.loop.drainSaves();
    await this.applier.idle().catch(() => {});
    this.failAll(new MooringError(ErrorCode.SHUTTING_DOWN, 'the node is shutting down; the outcome of pending requests is unknown'));
    this.sender.abortAll();
    this.receiver.abortInbound('node stopping');
  }

  private failAll(err: MooringError): void {
    this.proposals.failAll(err);
    this.membership.failAll(err);
    this.reads.failAll(err);
  }

  /** Crash-stop: a storage failure (or a broken invariant) stops the node for good. */
  private crash(err: unknown): void {
    const ctx = this.ctx;
    const error = err instanceof Error ? err : new Error(String(err));
    if (ctx.fatalError !== null) return;
    ctx.fatalError = error;
    ctx.log.error({ err: error.message, code: (error as MooringError).code }, 'raft node stopped: fatal error');
    ctx.stopped = true;
    this.loop.stopTicking();
    this.failAll(new MooringError(ErrorCode.STORAGE_FAILED, `the node stopped: ${error.message}`, { cause: error }));
    this.emit('fatal', error);
  }
}

function requireDataDir(opts: RaftNodeOptions): string {
  if (opts.dataDir === undefined) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'RaftNode needs dataDir unless snapshotStore and peerBookStore are given');
  return opts.dataDir;
}

/** Mixed into the seed for the read rounds' incarnation (any constant: it only separates that stream from the core's). */
const incarnationSalt = 0x5bd1e995;
