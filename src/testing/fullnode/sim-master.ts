/**
 * One simulated master process: the real RaftNode driving the real master state machine (MasterState through
 * MasterStateMachine), on a simulated clock, disk and network. The Raft log is production's WAL (`Wal.open`, as
 * `openRaftLog` does once there is no 0.1 log to convert) on the node's simulated file system (sim-fs.ts). The
 * state machine's store is memory-level (an abstract-level database, as LevelDB is for production); what it had
 * flushed survives a crash, the rest is lost and replayed from the log, as with the unsynced LevelDB writes in
 * production. With a LeaseLedger it also runs the master's read leases (sim-leases.ts): lease frames are taken out
 * of the node's transport by LeaderContact, as in MasterNode, and travel over the same simulated wire as the Raft
 * frames.
 */
import path from 'node:path';
import { MemoryLevel } from 'memory-level';
import { ErrorCode, MooringError } from '../../errors.js';
import type { Level } from 'level';
import { MasterStateMachine, encodeMasterCommand } from '../../master/state-adapter.js';
import type { NodeId } from '../../raft/core/types.js';
import { RaftNode } from '../../raft/node/raft-node.js';
import { raftDefaults, type RaftTunables } from '../../raft/node/options.js';
import { LeaderContact } from '../../master/leader-contact.js';
import type { AppliedCommand, RaftStateMachine } from '../../raft/state-machine.js';
import type { Command, Result } from '../../statemachine/commands.js';
import { MasterState } from '../../statemachine/master-state.js';
import { StateStore } from '../../statemachine/store.js';
import { silentLogger } from '../../transport/logger.js';
import { Wal } from '../../raft/wal/wal.js';
import type { SimFsDisk } from './sim-fs.js';
import type { SimTransport, SimWire } from './sim-net.js';
import type { PeerTransport } from '../../transport/types.js';
import { MemoryPeerBookStore, MemorySnapshotStore } from './sim-stores.js';
import type { NodeClock } from './scheduler.js';
import { SimLeaseNode, type LeaseLedger } from './sim-leases.js';
import { SimLeaseFileIo } from './sim-lease-file.js';
import { SimExpiryNode, type LivenessLedger } from './sim-liveness.js';
import { LeaseFile, leaseFileName } from '../../master/lease-file.js';
import { announceAheadMs } from '../../master/lease-sync.js';
import { refreshCoversAhead } from '../../master/follower-lease-cover.js';
import { simEpochMs } from './workload.js';

/**
 * A hook into a node's logic for control runs: sees the commands a node is about to apply and returns the ones
 * to apply instead (drop or alter one on a single node and the state-hash check must catch the divergence).
 */
export type ApplyFault = (node: NodeId, commands: AppliedCommand[]) => AppliedCommand[];

/** Where each node keeps its WAL on its simulated disk. */
const walDir = '/data/raft-wal';
/** And its lease file (MasterNode: <dataDir>/read-leases.jsonl). */
const leaseFile = `/data/${leaseFileName}`;

export type HostStatus = 'down' | 'starting' | 'up' | 'failed';

export class SimMasterHost {
  status: HostStatus = 'down';
  raft: RaftNode | null = null;
  state: MasterState | null = null;
  /** The running incarnation's read-lease machinery (null without a ledger, or while down). */
  lease: SimLeaseNode | null = null;
  /** The running incarnation's client expiry (null without a liveness ledger, or while down). */
  expiry: SimExpiryNode | null = null;
  /** Why the node stopped for good (a corrupted log it refuses to serve). */
  failure: Error | null = null;
  crashes = 0;
  /** Reads served under a follower read lease by this host's earlier incarnations (see followerLeaseReads). */
  private leaseReadsBefore = 0;
  fatalStops = 0;
  private storage: Wal | null = null;
  private transport: SimTransport | null = null;
  /** The state machine image as of its last flush (what its store holds durably). */
  private smDurable: Uint8Array[] | null = null;
  private readonly peerBook = new MemoryPeerBookStore();
  applyFault: ApplyFault | null = null;
  /** Set when the node crash-stopped on its own (failed fsync): a supervisor restarts it. */
  pendingRestart = false;

  constructor(
    readonly id: NodeId,
    readonly clock: NodeClock,
    readonly disk: SimFsDisk,
    private readonly wire: SimWire,
    private readonly tunables: Partial<RaftTunables>,
    private readonly seed: number,
    private readonly bootstrapVoters: NodeId[] | undefined,
    private readonly onFatal: (host: SimMasterHost) => void,
    private readonly ledger: LeaseLedger | null,
    private readonly walSegmentBytes: number,
    private readonly liveness: LivenessLedger | null = null,
  ) {}

  /** The open log of the running incarnation (for the log-matching check). */
  get logStorage(): Wal | null {
    return this.storage;
  }

  get up(): boolean {
    return this.status === 'up' && this.raft !== null;
  }

  async start(): Promise<void> {
    if (this.status !== 'down') return;
    this.status = 'starting';
    // A new process: not paused even if the schedule paused the node while it was down (its start would wait on
    // its own held disk completions otherwise: seed 93).
    this.clock.kill();
    const fs = this.disk.mount(this.clock);
    const corrupted = this.disk.injectCorruption(walDir);
    try {
      this.storage = await Wal.open(walDir, { fs, salt: () => this.disk.random32(), walSegmentBytes: this.walSegmentBytes, logger: silentLogger });
      this.countOverlappingSaves(this.storage);
    } catch (err) {
      // Damage found by the WAL's checksums (CORRUPT_LOG): the node refuses to start and stays down.
      if (err instanceof MooringError && err.code === ErrorCode.CORRUPT_LOG) {
        this.disk.stats.corruptionsCaught++;
        // Only a flipped byte may make a log unreadable: crashes, torn, lost and short writes must not.
        if (this.disk.stats.corruptionsInjected === 0) this.disk.violations.push(`${this.id} refused its uncorrupted WAL: ${err.message}`);
      }
      if (err instanceof MooringError && err.code === ErrorCode.STORAGE_FAILED) {
        // A sync failed while the WAL opened (it makes the tail it read durable): a crash-stop like any other (the
        // process exits 70, its supervisor starts it again).
        this.status = 'up'; // so that crash() runs
        this.fatalStops++;
        this.pendingRestart = true;
        this.crash('process');
        return;
      }
      this.status = 'failed';
      this.failure = err as Error;
      return;
    }
    if (corrupted !== null) {
      // Not refused: the damaged batch was the last one and was cut; the node must be recovering (wal.ts, "Recovery").
      const cut = this.storage.recovery.cutAt;
      if (cut !== null && path.basename(corrupted.file) === `${cut.segment.toString(16).padStart(16, '0')}.wal` && corrupted.offset >= cut.offset) {
        if (this.storage.recovery.cutSuspect) {
          this.disk.stats.corruptionsRecovered++;
        } else {
          this.disk.stats.corruptionsCutAsTorn++;
          // Unless the flipped byte is in the write the crash tore (that batch was never complete: never acknowledged).
          if (!corrupted.inTornWrite) this.disk.violations.push(`a byte flipped at ${corrupted.file}:${corrupted.offset} was cut as a torn write (acknowledged data may be lost)`);
        }
      } else {
        this.disk.violations.push(`a byte flipped at ${corrupted.file}:${corrupted.offset} was not detected when the WAL opened`);
      }
    }
    const db = new MemoryLevel<string, Buffer>({ keyEncoding: 'utf8', valueEncoding: 'buffer' });
    const state = await MasterState.openStore(await StateStore.openDb(db as unknown as Level<string, Buffer>), `sim:${this.id}`);
    if (this.smDurable !== null) {
      const image = this.smDurable;
      await state.installSnapshot((async function* () { for (const c of image) yield c; })());
    }
    this.state = state;
    const transport = this.wire.endpoint(this.id, this.clock);
    this.transport = transport;
    const contact = new LeaderContact(this.clock);
    // Lease frames arriving before the lease machinery exists (RaftNode.start is still running) are dropped.
    contact.intercept((_from, frame) => this.ledger !== null && isLeaseFrame(frame));
    const fresh = this.storage.initialState().hardState.term === 0 && this.storage.lastIndex() === 0;
    let raft: RaftNode;
    try {
      raft = await this.startRaft(state, this.storage, contact.wrap(transport));
    } catch (err) {
      // Damage the log's own checks only see together with the snapshot (a log cut below the snapshot it must
      // reach: a corrupted last batch taken for a torn one) is refused at start, like mid-log damage at open.
      if (!(err instanceof MooringError && err.code === ErrorCode.CORRUPT_LOG)) throw err;
      this.disk.stats.corruptionsCaught++;
      if (this.disk.stats.corruptionsInjected === 0) this.disk.violations.push(`${this.id} refused to start on its uncorrupted WAL: ${err.message}`);
      void transport.close();
      this.transport = null;
      this.status = 'failed';
      this.failure = err;
      return;
    }
    raft.on('fatal', () => {
      this.fatalStops++;
      this.pendingRestart = true;
      this.onFatal(this);
    });
    this.raft = raft;
    if (this.ledger !== null) {
      const t = { ...raftDefaults, ...this.tunables };
      const ttl = this.ledger.ttlMs;
      const store = LeaseFile.open(new SimLeaseFileIo(this.disk, fs, this.clock), leaseFile, { longestLeaseMs: ttl + announceAheadMs(ttl), logger: silentLogger });
      this.lease = new SimLeaseNode(this.id, this.clock, raft, state, contact, (to, frame) => transport.send(to, frame), this.ledger, t.electionTimeoutTicks * t.tickMs, simEpochMs, fresh, store);
      this.lease.cover.refreshAhead = refreshCoversAhead(t.followerLeaseTicks);
      if (this.liveness !== null) this.expiry = new SimExpiryNode(this.clock, raft, state, this.liveness, simEpochMs);
    }
    this.status = 'up';
  }

  /**
   * Counts synced saves the driver issues while an earlier synced save is still in flight: the pipelined Ready loop
   * at work (0 with a serial loop). Only counts; the save itself is the WAL's.
   */
  private countOverlappingSaves(wal: Wal): void {
    const save = wal.save.bind(wal);
    let inFlight = 0;
    const done = (): void => {
      inFlight--;
    };
    wal.save = (batch, opts) => {
      if (opts?.sync !== true) return save(batch, opts);
      if (inFlight > 0) this.disk.stats.overlappedWrites++;
      inFlight++;
      const p = save(batch, opts);
      p.then(done, done);
      return p;
    };
  }

  private startRaft(state: MasterState, storage: Wal, transport: PeerTransport): Promise<RaftNode> {
    return RaftNode.start({
      id: this.id,
      storage,
      transport,
      stateMachine: this.stateMachine(state),
      clock: this.clock,
      snapshotStore: new MemorySnapshotStore(),
      peerBookStore: this.peerBook,
      // With client expiry, the peer book carries each master's client address (as production's does), so NOT_LEADER
      // hints name an endpoint the client can reach (sim-client.ts: `n2` at `n2:1`). Not otherwise: the seed-pinned
      // runs were found with hints that named no address.
      peers: this.liveness !== null ? (this.bootstrapVoters ?? []).map((id) => ({ id, host: id, port: 1, rpcPort: 1 })) : [],
      ...(this.bootstrapVoters !== undefined ? { bootstrapVoters: this.bootstrapVoters } : {}),
      seed: this.seed + this.crashes * 7919,
      logger: silentLogger,
      ...this.tunables,
    });
  }

  /** Reads this host served under its follower read lease (raft.followerLeaseTicks), over all its incarnations. */
  get followerLeaseReads(): number {
    return this.leaseReadsBefore + (this.raft?.followerLeaseReads ?? 0);
  }

  /**
   * The process dies: memory and timers are lost; the disk and flushed state survive. 'power' (a power loss, the
   * default): unsynced writes may be lost too and the boot id changes; 'process' (SIGKILL): the page cache stays.
   */
  crash(kind: 'power' | 'process' = 'power'): void {
    if (this.status === 'down' || this.status === 'failed') return;
    this.crashes++;
    this.leaseReadsBefore = this.followerLeaseReads;
    this.clock.kill();
    this.disk.crash(kind);
    void this.transport?.close();
    this.raft = null;
    this.state = null;
    this.lease = null;
    this.expiry = null;
    this.storage = null;
    this.transport = null;
    this.status = 'down';
  }

  /** Proposes a client command on this node (it must lead); resolves with the state machine's Result. */
  propose(command: Command, timeMs: number): Promise<Result> {
    if (this.raft === null) return Promise.reject(new Error('node down'));
    return this.raft.propose(encodeMasterCommand(command, timeMs)) as Promise<Result>;
  }

  private stateMachine(state: MasterState): RaftStateMachine {
    const inner = new MasterStateMachine(state);
    const host = this;
    return {
      appliedIndex: () => inner.appliedIndex(),
      apply: (commands, noopThrough) => {
        const applied = host.applyFault ? host.applyFault(host.id, commands) : commands;
        return inner.apply(applied, noopThrough).then((results) => {
          host.ledger?.noteApplied(applied, results, simEpochMs);
          host.liveness?.noteApplied(applied, results, simEpochMs);
          return results.length === commands.length ? results : commands.map((_, i) => results[i]);
        });
      },
      async flush() {
        await inner.flush();
        const chunks: Uint8Array[] = [];
        for await (const c of state.createSnapshot()) chunks.push(c.slice());
        if (host.state === state) host.smDurable = chunks;
      },
      snapshot: () => inner.snapshot(),
      restore: (index, chunks) => inner.restore(index, chunks),
    };
  }
}

function isLeaseFrame(frame: unknown): boolean {
  const k = (frame as { k?: unknown } | null)?.k;
  return k === 'ls' || k === 'la' || k === 'lq' || k === 'lr';
}
