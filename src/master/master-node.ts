/**
 * MasterNode: one member of a Mooring master cluster, embeddable in any Node.js process.
 *
 *   RaftNode (WAL + TcpPeerTransport)  ←→  MasterState (its own LevelDB)
 *   + a client RPC server (msgpackr frames over TCP/TLS, its own port) serving the RPC surface (rpc-surface.ts)
 *   + an HTTP ops server (/health, /ready, /metrics, /status)
 *   + leader policy: parking and hints (leader-gate.ts), admission, demotions, lease sync, and the leader duties
 *     (leader-duties.ts: client TTL expiry (client-expiry.ts), reclaim of abandoned PutStarts, eviction, repair).
 *
 * This file is the composition: it opens and wires those parts, follows role changes, reports status and
 * readiness, and stops (gracefully or after a fatal error).
 */
import path from 'node:path';
import { ErrorCode, MooringError } from '../errors.js';
import type { DurableLogStorage } from '../raft/log-store.js';
import { openRaftLog } from '../raft/wal/open.js';
import { RaftNode } from '../raft/node/index.js';
import type { Role } from '../raft/core/types.js';
import { leaseClock } from '../raft/effects/system-clock.js';
import { TcpPeerTransport } from '../transport/tcp-transport.js';
import { boundedWarnings, type RejectPort } from '../transport/reject-log.js';
import { RpcServer } from '../transport/rpc.js';
import { MasterState } from '../statemachine/master-state.js';
import { LeaseTable } from '../statemachine/leases.js';
import { ClientExpiry, housekeepingIntervalMs } from './client-expiry.js';
import { peerAuthProblem, toRaftTunables, type MasterConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { createMasterMetrics, type MasterMetrics } from './metrics.js';
import { startHttpOps } from './http-ops.js';
import { BackupService } from './backup.js';
import { RepairScheduler, repairRoundIntervalMs, type RepairLimits } from './repair.js';
import { readIdentity } from './backup-format.js';
import { peerAddresses, peerTransportOptions, rpcServerOptions } from './endpoints.js';
import { LeaderContact } from './leader-contact.js';
import { LeaseSync, announceAheadMs, leaseWaitMs, raftLeaseView } from './lease-sync.js';
import { LeaseFile, leaseFileName } from './lease-file.js';
import { NodeLeaseFileIo } from './lease-file-io.js';
import { LeaderGate } from './leader-gate.js';
import { Demotions } from './demotions.js';
import { LeaderDuties } from './leader-duties.js';
import { MasterStateMachine } from './state-adapter.js';
import { leaseGrantingHandler } from './follower-reads.js';
import { FollowerLeaseCover, refreshCoversAhead } from './follower-lease-cover.js';
import { PendingWrites } from './pending-writes.js';
import { RpcSurface } from './rpc-surface.js';
import type { MemberInfo } from './rpc-methods.js';
import { supportedStateVersion } from '../statemachine/state-version.js';
export { maxBatchKeysPerRead } from './rpc-methods.js';

/** How often the leader looks for expired clients and abandoned PutStarts. */
export { housekeepingIntervalMs, pauseGapFactor } from './client-expiry.js';
/** How often gauges (capacity, keys, raft indexes) are refreshed for /metrics. */
export const metricsRefreshIntervalMs = 1_000;
/** A graceful stop waits at most this long for in-flight RPCs after handing leadership away. */
export const drainTimeoutMs = 5_000;
export { demotionTimeoutMs, putDemotionWaitMs } from './demotions.js';

export interface MasterNodeOptions {
  logger?: Logger;
  /** Set false to embed without the HTTP ops server. Default true. */
  http?: boolean;
  /** Re-replication limits over the config's `repair` section (for embedders; `mooring master` uses the config). */
  repair?: Partial<RepairLimits>;
}

export class MasterNode {
  readonly config: MasterConfig;
  readonly logger: Logger;
  readonly metrics: MasterMetrics;
  private raft!: RaftNode;
  private logStore!: DurableLogStorage;
  private state!: MasterState;
  private transport!: TcpPeerTransport;
  private rpc!: RpcServer;
  private http: { port: number; close(): Promise<void> } | null = null;
  private readonly leases: LeaseTable;
  /** Keys this master may serve as a follower without asking the leader to lease them again. */
  private readonly followerCover: FollowerLeaseCover;
  /** Admitted writes a lease would have refused, until they settle (pending-writes.ts). */
  private readonly pending = new PendingWrites();
  /** Client TTL expiry on the wall clock the leader stamps its entries with (client-expiry.ts). */
  private readonly expiry: ClientExpiry;
  private timers: NodeJS.Timeout[] = [];
  /**
   * The leader's eviction check (every eviction.checkIntervalMs, 10 ms by default): only while this node leads. On
   * every master it was 100 of an idle master's ~200 event-loop wakeups a second, returning at once on followers.
   */
  private evictionTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private stopped = false;
  private viewVersion = 0;
  private backup: BackupService | null = null;
  private readonly repair: RepairScheduler;
  private readonly demotions: Demotions;
  private readonly duties: LeaderDuties;
  private readonly contact = new LeaderContact();
  private leaseSync!: LeaseSync;
  private readonly leaseFileIo = new NodeLeaseFileIo();
  /** Leader policy for leader-only requests: parking on followers, answers at step-down (leader-gate.ts). */
  private readonly gate: LeaderGate;
  private readonly surface: RpcSurface;

  private constructor(config: MasterConfig, opts: MasterNodeOptions) {
    this.config = config;
    this.logger = opts.logger ?? createLogger({ level: config.log.level, name: 'mooring-master', nodeId: config.nodeId, pretty: config.log.pretty });
    this.metrics = createMasterMetrics();
    this.leases = new LeaseTable(config.leaseTtlMs);
    // Covers are kept on the object records (their slot): a follower's read finds them with its own lookup.
    this.followerCover = new FollowerLeaseCover(config.leaseTtlMs, (key) => this.state.coverSlot(key));
    this.followerCover.refreshAhead = refreshCoversAhead(config.raft.followerLeaseTicks);
    this.repair = new RepairScheduler({ ...config.repair, ...opts.repair });
    this.expiry = new ClientExpiry({ clientTtlMs: config.clientTtlMs, now: () => Date.now(), logger: this.logger });
    this.demotions = new Demotions({ state: () => this.state, leases: () => this.leases, isLeader: () => this.raft.isLeader });
    this.duties = new LeaderDuties({
      config, leases: this.leases, pending: this.pending, expiry: this.expiry, demotions: this.demotions, repair: this.repair,
      metrics: this.metrics, logger: this.logger,
      raft: () => this.raft, state: () => this.state, leaseSync: () => this.leaseSync, stopping: () => this.stopping,
      peerStateVersion: (peer) => this.transport?.peerStateVersion(peer),
    });
    this.gate = new LeaderGate({
      self: config.nodeId,
      raft: () => this.raft,
      contact: this.contact,
      electionTimeoutMs: this.electionTimeoutMs(),
      stopping: () => this.stopping,
    });
    this.surface = new RpcSurface({
      config, metrics: this.metrics, logger: this.logger, leases: this.leases, pending: this.pending, expiry: this.expiry, gate: this.gate,
      followerCover: this.followerCover,
      demotions: this.demotions, repair: this.repair, electionTimeoutMs: this.electionTimeoutMs(),
      raft: () => this.raft, state: () => this.state, leaseSync: () => this.leaseSync, backup: () => this.backup!,
      viewVersion: () => this.viewVersion, members: () => this.members(), statusReport: (o) => this.statusReport(o),
    });
  }

  /** Opens the stores, joins (or bootstraps) the cluster and starts serving. */
  static async start(config: MasterConfig, opts: MasterNodeOptions = {}): Promise<MasterNode> {
    const node = new MasterNode(config, opts);
    try {
      await node.open(opts.http ?? true);
    } catch (err) {
      await node.closeResources().catch(() => {});
      throw err;
    }
    return node;
  }

  private async open(withHttp: boolean): Promise<void> {
    const cfg = this.config;
    this.logStore = await openRaftLog({ walDir: path.join(cfg.dataDir, 'raft-wal'), legacyDir: path.join(cfg.dataDir, 'raft-log'), logger: this.logger });
    this.state = await MasterState.open(path.join(cfg.dataDir, 'state'), { placement: cfg.placement.strategy });
    const onReject = (port: RejectPort, reason: string): void => this.metrics.rejectedFrames.inc({ port, reason });
    // Peers authenticate by default, for embedders too (the CLI checks the same before it starts a node).
    const authProblem = peerAuthProblem(cfg);
    if (authProblem !== null) throw new MooringError(ErrorCode.INVALID_CONFIG, authProblem);
    if (cfg.peerToken === null && cfg.tls?.requireClientCert !== true && cfg.insecure) {
      this.logger.warn({ insecure: true }, 'INSECURE: peers are not authenticated (insecure: true); any host that reaches the peer port can take part in consensus');
    }
    this.transport = new TcpPeerTransport(peerTransportOptions(cfg, { logger: this.logger, onReject }));
    await this.transport.start();
    // No Raft state yet: a new member, which cannot have acknowledged a read lease before (LeaseSync "Restarts").
    const fresh = this.logStore.initialState().hardState.term === 0 && this.logStore.lastIndex() === 0;
    this.raft = await RaftNode.start({
      id: cfg.nodeId,
      dataDir: path.join(cfg.dataDir, 'raft'),
      storage: this.logStore,
      transport: this.contact.wrap(this.transport),
      stateMachine: new MasterStateMachine(this.state),
      peers: peerAddresses(cfg),
      ...(cfg.join ? {} : { bootstrapVoters: cfg.peers.map((p) => p.id) }),
      ...toRaftTunables(cfg),
      // One warning per bad peer frame would let a stranger fill the disk: bounded, and counted.
      logger: boundedWarnings(this.logger, 'peer', { 'dropped a bad frame from a peer': 'bad_frame' }, onReject),
    });
    this.leaseSync = new LeaseSync({
      self: cfg.nodeId,
      leases: this.leases,
      send: (to, frame) => this.transport.send(to, frame),
      ...raftLeaseView(() => this.raft),
      ackTimeoutMs: () => leaseWaitMs(this.electionTimeoutMs()),
      fresh,
      // What this member acknowledges survives a process crash on the same boot (lease-file.ts).
      store: LeaseFile.open(this.leaseFileIo, path.join(cfg.dataDir, leaseFileName), {
        longestLeaseMs: cfg.leaseTtlMs + announceAheadMs(cfg.leaseTtlMs),
        logger: this.logger,
      }),
      clock: leaseClock,
      logger: this.logger,
    });
    this.contact.intercept((from, frame) => this.leaseSync.onFrame(from, frame, leaseClock.now()));
    this.raft.on('roleChange', (role: Role) => this.onRoleChange(role));
    this.contact.onHeard((from) => {
      if (this.gate.hasParked && from === this.raft.leaderId) this.gate.wakeOnFrameFrom(from);
    });
    // Follower reads: the leader grants (and records) the leases a follower's read asks for (follower-reads.ts).
    this.raft.setForwardedReadHandler(leaseGrantingHandler(this.leases, this.pending, (keys, now) => this.leaseSync.recordGranted(keys, now), () => leaseClock.now()));
    this.raft.on('leaderChange', (leader: string | null, term: number) => {
      this.viewVersion++;
      this.gate.wake();
      this.metrics.setRaft({ term, role: this.raft.status().role, commitIndex: this.raft.commitIndex, appliedIndex: this.raft.appliedIndex, leaderId: leader });
      this.logger.info({ leader, term }, 'leader changed');
    });
    this.raft.on('snapshot', () => this.metrics.countSnapshot());
    // A single voter may have won its election inside RaftNode.start, before these listeners existed.
    if (this.raft.isLeader) this.onRoleChange('leader');
    this.raft.on('fatal', (err: Error) => {
      this.logger.fatal({ err: err.message }, 'raft node stopped after a fatal error; the master stops serving');
      void this.closeResources();
    });

    this.backup = new BackupService({
      barrier: async () => {
        this.gate.requireLeader();
        await this.raft.read();
      },
      snapshot: () => new MasterStateMachine(this.state).snapshot(),
      members: () => this.raft.members(),
      peer: (id) => {
        const a = this.raft.peerAddress(id);
        return a === undefined ? undefined : { id, host: a.host, raftPort: a.port, ...(a.rpcPort !== undefined ? { rpcPort: a.rpcPort } : {}) };
      },
      objectCount: () => this.state.objects.size,
      clusterId: cfg.clusterId,
      clusterUid: readIdentity(cfg.dataDir)?.clusterUid ?? null,
      nodeId: cfg.nodeId,
      maxFrameBytes: cfg.raft.maxFrameBytes,
    });
    this.rpc = new RpcServer(rpcServerOptions(cfg, { logger: this.logger, onReject }));
    this.surface.register(this.rpc);
    await this.rpc.start();

    if (withHttp) {
      this.http = await startHttpOps({
        host: cfg.listen.host,
        port: cfg.listen.httpPort,
        metrics: this.metrics,
        status: (o) => this.statusReport(o),
        ready: () => this.readiness(),
        logger: this.logger,
        maxConnectionsPerAddress: cfg.limits.maxConnectionsPerAddress,
        onReject,
      });
    }
    this.timers.push(setInterval(() => void this.duties.housekeeping(), housekeepingIntervalMs));
    this.timers.push(setInterval(() => this.duties.repairRound(), repairRoundIntervalMs));
    this.timers.push(setInterval(() => this.refreshGauges(), metricsRefreshIntervalMs));
    this.logger.info({ node: cfg.nodeId, raftPort: this.transport.port, rpcPort: this.rpc.port, httpPort: this.http?.port ?? null }, 'master started');
  }

  // ------------------------------------------------------------------ accessors

  get id(): string {
    return this.config.nodeId;
  }

  get isLeader(): boolean {
    return this.raft.isLeader;
  }

  get leaderId(): string | null {
    return this.raft.leaderId;
  }

  get ports(): { raft: number; rpc: number; http: number | null } {
    return { raft: this.transport.port, rpc: this.rpc.port, http: this.http?.port ?? null };
  }

  /** Clients whose last ping this leader keeps (at most the registered clients). */
  get clientLivenessEntries(): number {
    return this.expiry.liveness.size;
  }

  /** The replicated state (read-only use: queries, tests, tools). */
  get masterState(): MasterState {
    return this.state;
  }

  get raftNode(): RaftNode {
    return this.raft;
  }

  private electionTimeoutMs(): number {
    return this.config.raft.electionTimeoutTicks * this.config.raft.tickMs;
  }

  members(): MemberInfo[] {
    const cs = this.raft.members();
    const out: MemberInfo[] = [];
    const describe = (id: string, role: MemberInfo['role']): MemberInfo => {
      const a = this.raft.peerAddress(id);
      return {
        id,
        role,
        raft: a ? `${a.host}:${a.port}` : null,
        rpc: a?.rpcPort !== undefined ? `${a.host}:${a.rpcPort}` : null,
        http: a?.httpPort !== undefined ? `${a.host}:${a.httpPort}` : null,
        isLeader: id === this.raft.leaderId,
      };
    };
    for (const id of cs.voters) out.push(describe(id, 'voter'));
    for (const id of cs.votersOutgoing) if (!cs.voters.includes(id)) out.push(describe(id, 'voter (outgoing)'));
    for (const id of cs.learners) out.push(describe(id, 'learner'));
    return out;
  }

  // ------------------------------------------------------------------ leader duties

  private onRoleChange(role: Role): void {
    this.gate.onRoleChange(role);
    if (role === 'leader' && this.evictionTimer === null && !this.stopped) {
      this.evictionTimer = setInterval(() => void this.duties.evictionCheck(), Math.max(1, this.config.eviction.checkIntervalMs));
    } else if (role !== 'leader' && this.evictionTimer !== null) {
      clearInterval(this.evictionTimer);
      this.evictionTimer = null;
    }
    if (role !== 'leader') {
      this.repair.reset();
      this.metrics.setRepair(this.repair.report());
      this.leaseSync.roleChanged(role, leaseClock.now());
      this.surface.steppedDown();
    }
    if (role === 'leader') {
      // A new leader knows no pings: every client counts as alive for one TTL. It treats every object as leased
      // until a majority told it the leases they know (LeaseSync), which keeps the old leader's read leases.
      this.leaseSync.roleChanged(role, leaseClock.now());
      this.expiry.becameLeader();
      this.logger.info({ term: this.raft.status().term }, 'became leader'); // the core's term: the node's lags until persisted
    }
  }

  // ------------------------------------------------------------------ ops

  private refreshGauges(): void {
    if (this.stopped) return;
    const st = this.raft.status();
    this.metrics.setRaft({ term: st.term, role: st.role, commitIndex: st.commit, appliedIndex: this.raft.appliedIndex, leaderId: st.leader, fastPreVotes: st.fastPreVotes, clockStalls: st.clockStalls, busyRefusals: st.busyRefusals, followerLeaseReads: st.followerLease.readsServed, recovering: st.recovering === true });
    this.metrics.setFollowerReadLeases(this.followerCover.coveredKeys, this.followerCover.askedKeys, this.followerCover.refreshedKeys);
    const s = this.state.stats();
    this.metrics.setCapacity({
      allocatedBytes: s.memoryAllocatedBytes + s.diskAllocatedBytes,
      totalCapacityBytes: s.memoryCapacityBytes + s.diskCapacityBytes,
      keyCount: s.objectCount,
      activeClients: s.clientCount,
      segments: s.segmentCount,
    });
  }

  /** Ready: this node hears from a leader (so it is in a quorum's view) and has applied everything committed. */
  readiness(): { ready: boolean; reason?: string } {
    if (this.stopping) return { ready: false, reason: 'shutting down' };
    if (this.raft.leaderId === null) return { ready: false, reason: 'no leader known (not in contact with a quorum)' };
    const commit = this.raft.commitIndex;
    if (this.raft.appliedIndex < commit) return { ready: false, reason: `applied ${this.raft.appliedIndex} < commit ${commit}` };
    return { ready: true };
  }

  /**
   * The node's status. `stateHash` (a sha256 over the whole state, O(state) on the event loop: seconds for millions
   * of objects, long enough to lose leadership) only when asked: the status RPC with `stateHash: true`, HTTP /status
   * with `?stateHash=1`.
   */
  statusReport(opts: { stateHash: boolean } = { stateHash: false }): Record<string, unknown> {
    const st = this.raft.status();
    // The state machine's own index (entry × slots + command) is not comparable with commit: `applied` is.
    const { appliedIndex: _stateIndex, ...stats } = this.state.stats();
    return {
      id: this.config.nodeId,
      clusterId: this.config.clusterId,
      role: st.role,
      term: st.term,
      leader: st.leader,
      commit: st.commit,
      applied: this.raft.appliedIndex,
      lastIndex: st.lastIndex,
      members: this.members(),
      ports: this.ports,
      // The cluster's (replicated) and what this Mooring supports (src/statemachine/state-version.ts).
      stateVersion: { cluster: this.state.stateVersion, supported: supportedStateVersion },
      // Keys this master served as a follower: asked the leader to lease them, or served under a cover.
      followerReadLeases: { asked: this.followerCover.askedKeys, covered: this.followerCover.coveredKeys, refreshed: this.followerCover.refreshedKeys },
      // Follower read lease (raft.followerLeaseTicks): ticks still held, gates this node runs, reads served under it.
      followerLease: st.followerLease,
      stats,
      ...(opts.stateHash ? { stateHash: this.state.stateHash() } : {}),
      ready: this.readiness(),
    };
  }

  /**
   * Graceful stop (SIGTERM): hand leadership to the most caught-up voter, let in-flight requests finish (their
   * entries commit under the new leader and are applied here), then close everything.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // Requests parked for a leader are answered SHUTTING_DOWN now (their client retries elsewhere), not at their timer.
    this.gate.wake();
    this.logger.info({}, 'stopping: transferring leadership and draining requests');
    try {
      await this.raft.stop({ transfer: true }).catch(() => {});
    } finally {
      const deadline = Date.now() + drainTimeoutMs;
      while (this.surface.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await this.closeResources();
    }
  }

  private async closeResources(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.evictionTimer !== null) clearInterval(this.evictionTimer);
    this.evictionTimer = null;
    this.backup?.close();
    await this.raft?.stop().catch(() => {});
    await this.rpc?.close().catch(() => {});
    await this.http?.close().catch(() => {});
    await this.transport?.close().catch(() => {});
    this.leaseFileIo.close();
    await this.logStore?.close().catch(() => {});
    await this.state?.close().catch(() => {});
    this.logger.info({}, 'master stopped');
  }
}
