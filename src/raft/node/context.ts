/**
 * What the driver's parts share: the core, the effects (log storage, transport, clock, staging stores), the
 * settings, the node's view of its role, and the cross-cutting actions (kick the Ready loop, crash-stop).
 * Each concept (proposals, reads, apply, membership, peers, snapshot send/receive, the Ready loop) is a part in
 * its own file; parts reach each other through `parts`, wired once by RaftNode.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { LoggerLike } from '../../transport/logger.js';
import type { PeerTransport } from '../../transport/types.js';
import type { RaftCore } from '../core/core.js';
import type { NodeId, Role } from '../core/types.js';
import type { RaftStateMachine } from '../state-machine.js';
import type { Clock } from './clock.js';
import type { LogStorage } from './log-storage.js';
import type { PeerBookStore } from './peer-book-store.js';
import type { SnapshotStore } from './snapshot-store.js';
import type { Applier } from './apply.js';
import type { Membership } from './membership.js';
import type { PeerBook } from './peer-book.js';
import type { Proposals } from './proposals.js';
import type { ReadQueue } from './reads.js';
import type { ReadyLoop } from './ready-loop.js';
import type { SnapshotReceiver } from './snapshot-receive.js';
import type { SnapshotSender } from './snapshot-send.js';
import type { RaftTunables } from './options.js';

/** The tunables the driver's parts read at run time (the core gets its own through toCoreOptions). */
export type NodeSettings = Pick<RaftTunables, 'tickMs' | 'electionTimeoutTicks' | 'proposalTimeoutMs' | 'readTimeoutMs'
  | 'maxProposalWaitMs' | 'maxPendingProposals' | 'maxPendingReads' | 'snapshotEveryEntries' | 'snapshotKeepEntries' | 'maxInflightSaves'
  | 'maxBytesPerAppend'>;

export interface NodeEffects {
  storage: LogStorage;
  transport: PeerTransport;
  stateMachine: RaftStateMachine;
  clock: Clock;
  snapshotStore: SnapshotStore;
  peerBookStore: PeerBookStore;
  logger: LoggerLike;
}

export interface NodeParts {
  loop: ReadyLoop;
  proposals: Proposals;
  reads: ReadQueue;
  applier: Applier;
  membership: Membership;
  peers: PeerBook;
  sender: SnapshotSender;
  receiver: SnapshotReceiver;
}

export class NodeContext {
  role: Role = 'follower';
  leader: NodeId | null = null;
  term = 0;
  stopped = false;
  fatalError: Error | null = null;
  parts!: NodeParts;

  constructor(
    readonly id: NodeId,
    readonly core: RaftCore,
    readonly fx: NodeEffects,
    readonly settings: NodeSettings,
    private readonly onCrash: (err: unknown) => void,
    readonly emit: (event: string, ...args: unknown[]) => void,
  ) {}

  get storage(): LogStorage { return this.fx.storage; }
  get transport(): PeerTransport { return this.fx.transport; }
  get sm(): RaftStateMachine { return this.fx.stateMachine; }
  get clock(): Clock { return this.fx.clock; }
  get log(): LoggerLike { return this.fx.logger; }

  kick(): void {
    this.parts.loop.kick();
  }

  crash(err: unknown): void {
    this.onCrash(err);
  }

  checkRunning(): void {
    if (this.fatalError !== null) throw new MooringError(ErrorCode.STORAGE_FAILED, 'the node stopped after a storage failure', { cause: this.fatalError });
    if (this.stopped) throw new MooringError(ErrorCode.SHUTTING_DOWN);
  }

  notLeader(): MooringError {
    const hint = this.leader !== null && this.leader !== this.id ? { leaderHint: this.leader } : undefined;
    return new MooringError(ErrorCode.NOT_LEADER, hint ? `not the leader; try ${hint.leaderHint}` : 'not the leader; no leader is known yet', hint);
  }

  withLeaderAddress(err: unknown): Error {
    if (err instanceof MooringError && err.code === ErrorCode.NOT_LEADER) return this.notLeader();
    return err instanceof Error ? err : new Error(String(err));
  }

  electionTimeoutMs(): number {
    return this.settings.electionTimeoutTicks * this.settings.tickMs;
  }

  /** Polls `cond` every half tick until it holds; TIMEOUT after `timeoutMs`, SHUTTING_DOWN once stopped. */
  waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const started = this.clock.now();
      const check = (): void => {
        if (cond()) {
          timer.cancel();
          resolve();
        } else if (this.stopped || this.clock.now() - started > timeoutMs) {
          timer.cancel();
          reject(new MooringError(this.stopped ? ErrorCode.SHUTTING_DOWN : ErrorCode.TIMEOUT, what));
        }
      };
      const timer = this.clock.setInterval(check, Math.max(5, Math.floor(this.settings.tickMs / 2)));
    });
  }
}
