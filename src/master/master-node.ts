/**
 * MasterNode: one member of a Mooring master cluster, embeddable in any Node.js process.
 *
 *   RaftNode (WAL + TcpPeerTransport)  ←→  MasterState (its own LevelDB)
 *   + a client RPC server (msgpackr frames over TCP/TLS, its own port)
 *   + an HTTP ops server (/health, /ready, /metrics, /status)
 *   + leader duties: client TTL expiry, reclaim of abandoned PutStarts, eviction, read leases (soft state).
 *
 * Writes go through the log and are answered once applied. Reads are linearizable by default and served by every
 * member (the leader by lease or ReadIndex, a follower by ReadIndex through the leader: follower-reads.ts);
 * `stale: true` lets any member answer from its own state at once. Followers answer
 * writes with NOT_LEADER and a hint `nodeId@host:rpcPort` that MasterClient follows: we
 * chose hints over forwarding because forwarding doubles the hops of every misdirected request and hides the
 * leader from clients that could talk to it directly.
 */
import path from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import type { DurableLogStorage } from '../raft/log-store.js';
import { openRaftLog } from '../raft/wal/open.js';
import { RaftNode } from '../raft/node/index.js';
import type { Role } from '../raft/core/types.js';
import { TcpPeerTransport } from '../transport/tcp-transport.js';
import { boundedWarnings, type RejectPort } from '../transport/reject-log.js';
import { RpcServer, type RpcContext } from '../transport/rpc.js';
import type { TlsConfig as TransportTls } from '../transport/net-util.js';
import type { PeerAddress } from '../transport/types.js';
import { MasterState } from '../statemachine/master-state.js';
import type { Command, Result } from '../statemachine/commands.js';
import { LeaseTable } from '../statemachine/leases.js';
import { ClientLiveness } from '../statemachine/clients.js';
import { peerAuthProblem, toRaftTunables, type MasterConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { createMasterMetrics, type MasterMetrics } from './metrics.js';
import { startHttpOps } from './http-ops.js';
import { BackupService } from './backup.js';
import { RepairScheduler, repairRoundIntervalMs, type RepairLimits } from './repair.js';
import { peerClusterId, readIdentity } from './backup-format.js';
import { LeaderContact } from './leader-contact.js';
import { LeaseSync } from './lease-sync.js';
import { LeaderGate } from './leader-gate.js';
import { admit } from './admission.js';
import { Demotions } from './demotions.js';
import { LeaderDuties, housekeepingIntervalMs } from './leader-duties.js';
import { MasterStateMachine, encodeMasterCommand } from './state-adapter.js';
import { decodeKeys, followerReplicaResult, leaseGrantingHandler, linearizableRead } from './follower-reads.js';
import {
  adminMethods,
  adminWriteMethods,
  commandFor,
  parseArgs,
  readMethods,
  writeMethods,
  type AdminMethod,
  type MemberInfo,
  type ReadMethod,
  type ResultOf,
  type WriteMethod,
} from './rpc-methods.js';
export { maxBatchKeysPerRead } from './rpc-methods.js';

/** How often the leader looks for expired clients and abandoned PutStarts. */
export { housekeepingIntervalMs, pauseGapFactor } from './leader-duties.js';
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
  private readonly liveness = new ClientLiveness();
  private timers: NodeJS.Timeout[] = [];
  private inFlightRpcs = 0;
  private stopping = false;
  private stopped = false;
  private viewVersion = 0;
  private backup: BackupService | null = null;
  private readonly repair: RepairScheduler;
  private readonly demotions: Demotions;
  private readonly duties: LeaderDuties;
  /** Session writes proposed by this leader and not yet settled, by `clientId#seq`: a retry joins its first attempt. */
  private readonly proposing = new Map<string, Promise<Result>>();
  private readonly contact = new LeaderContact();
  private leaseSync!: LeaseSync;
  /** Leader policy for leader-only requests: parking on followers, answers at step-down (leader-gate.ts). */
  private readonly gate: LeaderGate;

  private constructor(config: MasterConfig, opts: MasterNodeOptions) {
    this.config = config;
    this.logger = opts.logger ?? createLogger({ level: config.log.level, name: 'mooring-master', nodeId: config.nodeId, pretty: config.log.pretty });
    this.metrics = createMasterMetrics();
    this.leases = new LeaseTable(config.leaseTtlMs);
    this.repair = new RepairScheduler({ ...config.repair, ...opts.repair });
    this.demotions = new Demotions({ state: () => this.state, leases: () => this.leases, isLeader: () => this.raft.isLeader });
    this.duties = new LeaderDuties({
      config, leases: this.leases, liveness: this.liveness, demotions: this.demotions, repair: this.repair,
      metrics: this.metrics, logger: this.logger,
      raft: () => this.raft, state: () => this.state, leaseSync: () => this.leaseSync, stopping: () => this.stopping,
    });
    this.gate = new LeaderGate({
      self: config.nodeId,
      raft: () => this.raft,
      contact: this.contact,
      electionTimeoutMs: this.electionTimeoutMs(),
      stopping: () => this.stopping,
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
    const tls = transportTls(cfg);
    this.logStore = await openRaftLog({ walDir: path.join(cfg.dataDir, 'raft-wal'), legacyDir: path.join(cfg.dataDir, 'raft-log'), logger: this.logger });
    this.state = await MasterState.open(path.join(cfg.dataDir, 'state'), { placement: cfg.placement.strategy });
    const peers: PeerAddress[] = cfg.peers.map((p) => ({ id: p.id, host: p.host, port: p.raftPort, rpcPort: p.rpcPort, ...(p.httpPort !== null ? { httpPort: p.httpPort } : {}) }));
    const onReject = (port: RejectPort, reason: string): void => this.metrics.rejectedFrames.inc({ port, reason });
    const limits = cfg.limits;
    // Peers authenticate by default, for embedders too (the CLI checks the same before it starts a node).
    const authProblem = peerAuthProblem(cfg);
    if (authProblem !== null) throw new MooringError(ErrorCode.INVALID_CONFIG, authProblem);
    if (cfg.peerToken === null && cfg.tls?.requireClientCert !== true && cfg.insecure) {
      this.logger.warn({ insecure: true }, 'INSECURE: peers are not authenticated (insecure: true); any host that reaches the peer port can take part in consensus');
    }
    this.transport = new TcpPeerTransport({
      nodeId: cfg.nodeId,
      // A restored data dir carries a new cluster identity: old members are refused at the handshake.
      clusterId: peerClusterId(cfg.dataDir, cfg.clusterId),
      listen: { host: cfg.listen.host, port: cfg.listen.raftPort },
      peers: peers.filter((p) => p.id !== cfg.nodeId),
      // Under mTLS a peer's certificate must name the node id it announces.
      ...(tls !== undefined ? { tls: { ...tls, verifyPeerIdentity: tls.requireClientCert === true } } : {}),
      ...(cfg.peerToken !== null ? { token: cfg.peerToken } : {}),
      maxFrameBytes: cfg.raft.maxFrameBytes,
      maxInboundConnections: limits.maxInboundConnections,
      maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      idleTimeoutMs: limits.idleTimeoutMs,
      logger: this.logger,
      onReject,
    });
    await this.transport.start();
    this.raft = await RaftNode.start({
      id: cfg.nodeId,
      dataDir: path.join(cfg.dataDir, 'raft'),
      storage: this.logStore,
      transport: this.contact.wrap(this.transport),
      stateMachine: new MasterStateMachine(this.state),
      peers,
      ...(cfg.join ? {} : { bootstrapVoters: cfg.peers.map((p) => p.id) }),
      ...toRaftTunables(cfg),
      // One warning per bad peer frame would let a stranger fill the disk: bounded, and counted.
      logger: boundedWarnings(this.logger, 'peer', { 'dropped a bad frame from a peer': 'bad_frame' }, onReject),
    });
    this.leaseSync = new LeaseSync({
      self: cfg.nodeId,
      leases: this.leases,
      send: (to, frame) => this.transport.send(to, frame),
      voters: () => this.raft.members().voters,
      peers: () => { const cs = this.raft.members(); return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners])]; },
      // status(), not currentTerm: the role change is announced before the node records the new term.
      term: () => this.raft.status().term,
      ackTimeoutMs: () => Math.max(1_000, 4 * this.electionTimeoutMs()),
      logger: this.logger,
    });
    this.contact.intercept((from, frame) => this.leaseSync.onFrame(from, frame, Date.now()));
    this.raft.on('roleChange', (role: Role) => this.onRoleChange(role));
    this.contact.onHeard((from) => {
      if (this.gate.hasParked && from === this.raft.leaderId) this.gate.wake();
    });
    // Follower reads: the leader grants the leases a follower's read asks for before its ReadIndex answer leaves,
    // and announces them to the members (LeaseSync) like its own reads' leases.
    const grant = leaseGrantingHandler(this.leases, () => Date.now());
    this.raft.setForwardedReadHandler((from, payloads) => {
      const replies = grant(from, payloads);
      const granted = payloads.flatMap((p, i) => {
        const refused = new Set(decodeKeys(replies[i]));
        return decodeKeys(p).filter((k) => !refused.has(k));
      });
      if (granted.length > 0) this.leaseSync.announce(granted, Date.now()).catch(() => {});
      return replies;
    });
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
    this.rpc = new RpcServer({
      clusterId: cfg.clusterId,
      nodeId: cfg.nodeId,
      listen: { host: cfg.listen.host, port: cfg.listen.rpcPort },
      ...(tls !== undefined ? { tls } : {}),
      maxFrameBytes: cfg.raft.maxFrameBytes,
      maxConnections: limits.maxInboundConnections,
      maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
      handshakeTimeoutMs: limits.handshakeTimeoutMs,
      idleTimeoutMs: limits.idleTimeoutMs,
      logger: this.logger,
      onReject,
    });
    this.registerRpcs();
    await this.rpc.start();

    if (withHttp) {
      this.http = await startHttpOps({
        host: cfg.listen.host,
        port: cfg.listen.httpPort,
        metrics: this.metrics,
        status: () => this.statusReport(),
        ready: () => this.readiness(),
        logger: this.logger,
        maxConnectionsPerAddress: limits.maxConnectionsPerAddress,
        onReject,
      });
    }
    this.timers.push(setInterval(() => void this.duties.housekeeping(), housekeepingIntervalMs));
    this.timers.push(setInterval(() => void this.duties.evictionCheck(), Math.max(1, cfg.eviction.checkIntervalMs)));
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

  /** The replicated state (read-only use: queries, tests, tools). */
  get masterState(): MasterState {
    return this.state;
  }

  get raftNode(): RaftNode {
    return this.raft;
  }

  // ------------------------------------------------------------------ RPC surface

  private registerRpcs(): void {
    // Every request is validated against the contract (rpc-methods.ts) before anything else looks at it.
    for (const method of Object.keys(writeMethods) as WriteMethod[]) {
      this.rpc.handle(method, (raw, ctx) => this.serve(method, ctx, () => this.handleWrite(method, raw)));
    }
    for (const method of readMethods) {
      this.rpc.handle(method, (raw, ctx) => this.serve(method, ctx, () => this.handleRead(method, raw)));
    }
    for (const method of adminMethods) {
      this.rpc.handle(method, (raw, ctx) => this.serve(method, ctx, () => this.handleAdmin(method, raw)));
    }
    this.rpc.handle('status', (raw, ctx) => this.serve('status', ctx, async () => {
      parseArgs('status', raw);
      return this.statusReport();
    }));
    this.rpc.handle('backupBegin', (raw, ctx) => this.serve('backupBegin', ctx, () => (this.checkAdmin(parseBackupArgs(raw)), this.backup!.begin())));
    this.rpc.handle('backupNext', (raw, ctx) => this.serve('backupNext', ctx, () => {
      const a = parseBackupArgs(raw);
      this.checkAdmin(a);
      if (typeof a.backupId !== 'string') throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'backupId must be a string');
      return this.backup!.next(a.backupId);
    }));
  }

  private async serve<T>(method: string, _ctx: RpcContext, fn: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    this.inFlightRpcs++;
    try {
      const result = await fn();
      this.metrics.observeRpc(method, Number(process.hrtime.bigint() - started) / 1e9);
      return result;
    } catch (err) {
      const e = toMooringError(err, this.logger, method);
      this.metrics.observeRpc(method, Number(process.hrtime.bigint() - started) / 1e9, e.code);
      throw e;
    } finally {
      this.inFlightRpcs--;
    }
  }

  private checkAdmin(args: { adminToken?: unknown }): void {
    const want = this.config.adminToken;
    if (want === null) return;
    const got = typeof args.adminToken === 'string' ? args.adminToken : '';
    const a = Buffer.from(got);
    const b = Buffer.from(want);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new MooringError(ErrorCode.UNAUTHORIZED, 'this admin operation needs the admin token (adminToken)');
    }
  }

  private async handleWrite(method: WriteMethod, raw: unknown): Promise<unknown> {
    const edge = typeof raw === 'object' && raw !== null ? (raw as { adminToken?: unknown; avoidLeader?: unknown }) : {};
    if (adminWriteMethods.includes(method)) this.checkAdmin(edge);
    // Validated by the state machine's rules; fields only the leader may set (eviction candidates, lease skips)
    // never come from a client.
    const command = commandFor(method, raw);
    await this.gate.leaderOrPark(typeof edge.avoidLeader === 'string' ? edge.avoidLeader : null);
    // The duplicate-reply table comes before any admission check: a retry (same clientId, seq) must get the first
    // attempt's reply, never a refusal of its own. Otherwise a remove retried while its first attempt is still
    // uncommitted here could be answered OBJECT_HAS_LEASE (a lease granted in between) and then apply anyway.
    const session = sessionKey(command);
    if (session !== null) {
      const dup = this.duplicateReply(command, session);
      if (dup !== undefined) return unwrap(await this.gate.whileLeading(dup));
    }
    // A new leader first learns the read leases of the previous one (one round trip): admission then refuses only
    // what is really leased, instead of everything under the blanket.
    if (this.leaseSync.learning) await this.gate.whileLeading(this.leaseSync.learned(Math.max(1_000, 4 * this.electionTimeoutMs())));
    const now = Date.now();
    try {
      admit(command, this.state, this.leases, now);
    } catch (err) {
      // The first attempt may have been committed under a previous leader but not yet applied here: after a read
      // barrier (which commits every entry of earlier terms) it would be in the table. A remove retried after a
      // failover was otherwise refused by the new leader's lease although it had happened.
      const prev = await this.appliedReply(command);
      if (prev !== undefined) return unwrap(prev);
      const again = session === null ? undefined : this.duplicateReply(command, session);
      if (again === undefined) throw err;
      return unwrap(await this.gate.whileLeading(again));
    }
    await this.demotions.beforePut(command);
    const started = process.hrtime.bigint();
    const proposal = this.raft.propose(encodeMasterCommand(command, now)) as Promise<Result>;
    if (session !== null) {
      this.proposing.set(session, proposal);
      const forget = (): void => { if (this.proposing.get(session) === proposal) this.proposing.delete(session); };
      proposal.then(forget, forget);
    }
    const result = await this.gate.whileLeading(proposal);
    this.metrics.observeProposal(Number(process.hrtime.bigint() - started) / 1e9);
    return unwrap(result);
  }

  /** The reply of an earlier attempt of this write: applied (from the session table) or still in flight here. */
  private duplicateReply(command: Command, session: string): Promise<Result> | undefined {
    const c = command as { clientId: string; seq: number };
    const applied = this.state.sessionReply(c.clientId, c.seq);
    if (applied !== undefined) return Promise.resolve(applied);
    return this.proposing.get(session);
  }

  /** The stored exactly-once reply for this write, after a read barrier so every committed entry is applied. */
  private async appliedReply(command: Command): Promise<Result | undefined> {
    const c = command as { clientId?: unknown; seq?: unknown };
    if (typeof c.clientId !== 'string' || typeof c.seq !== 'number') return undefined;
    await this.raft.read();
    return this.state.sessionReply(c.clientId, c.seq);
  }

  private async handleRead(method: ReadMethod, raw: unknown): Promise<ResultOf<ReadMethod>> {
    if (method === 'ping') {
      const { clientId, avoidLeader } = parseArgs('ping', raw);
      await this.gate.leaderOrPark(avoidLeader ?? null);
      this.liveness.touch(clientId, Date.now());
      const reply = this.state.ping(clientId);
      // ---- BEGIN tiering (store): the ping reply carries this client's tier tasks ----
      const tierTasks = [...this.demotions.tasksFor(clientId, Date.now()), ...this.repair.tasksFor(clientId, Date.now())];
      if (tierTasks.length > 0) return { status: reply.status, viewVersion: this.viewVersion, tierTasks };
      // ---- END tiering ----
      return { status: reply.status, viewVersion: this.viewVersion };
    }
    const args = parseArgs(method, raw);
    const stale = args.stale === true;
    // Every master serves linearizable reads (follower-reads.ts); a follower's leases are granted by the leader.
    const leaseKeys = method === 'getReplicaList' ? [(args as { key: string }).key] : method === 'batchGetReplicaList' ? (args as { keys: string[] }).keys : null;
    // MasterClient readFrom: 'leader', or no live leader known (a follower cannot confirm a read): park until one is
    // elected, then serve here or answer NOT_LEADER with it.
    if (!stale && !this.raft.isLeader && (args.readFrom === 'leader' || this.gate.liveLeader(null) === null)) await this.gate.leaderOrPark(args.avoidLeader ?? null);
    const refused = stale ? new Set<string>() : await this.gate.whileLeading(linearizableRead(this.raft, leaseKeys));
    if (!stale && !this.raft.isLeader && leaseKeys !== null) {
      // The follower keeps the leases it serves too: with the leader that records them it makes a majority of
      // three, so a new leader's lease collection (LeaseSync) meets one of them (larger clusters read leased keys
      // from the leader: linearizableRead refuses them on followers there).
      this.leaseSync.recordServed(leaseKeys.filter((k) => !refused.has(k)), Date.now());
    }
    const now = Date.now();
    // Leases are granted only by the leader (stale reads on followers grant none).
    const leases = this.raft.isLeader ? this.leases : undefined;
    const viaLeader = leases !== undefined || stale;
    switch (method) {
      case 'getReplicaList': {
        const key = leaseKeys![0]!;
        const r = this.state.getReplicaList(key, now, leases);
        if (r.ok && leases !== undefined) await this.gate.whileLeading(this.leaseSync.announce([key], now));
        return unwrap(viaLeader ? r : followerReplicaResult(r, key, refused, this.config.leaseTtlMs));
      }
      case 'batchGetReplicaList': {
        const rs = this.state.batchGetReplicaList(leaseKeys!, now, leases);
        if (leases !== undefined) await this.gate.whileLeading(this.leaseSync.announce(leaseKeys!.filter((_, i) => rs[i]!.ok), now));
        return viaLeader ? rs : rs.map((r, i) => followerReplicaResult(r, leaseKeys![i]!, refused, this.config.leaseTtlMs));
      }
      case 'existKey':
        return this.state.existKey(parseArgs(method, raw).key);
      case 'batchExistKey':
        return this.state.batchExistKey(parseArgs(method, raw).keys);
      case 'listSegments':
        return this.state.listSegments();
      case 'stats':
        return this.state.stats();
    }
  }

  private async handleAdmin(method: AdminMethod, raw: unknown): Promise<ResultOf<AdminMethod>> {
    this.checkAdmin(parseArgs(method, raw));
    switch (method) {
      case 'members':
        return this.members();
      case 'transferLeader': {
        const { to } = parseArgs(method, raw);
        this.gate.requireLeader();
        await this.raft.transferLeadership(to);
        return { leader: to };
      }
      case 'addMember': {
        const { id, host, raftPort, rpcPort, httpPort } = parseArgs(method, raw);
        this.gate.requireLeader();
        return this.raft.addMember({ id, host, port: raftPort, rpcPort, ...(httpPort !== undefined ? { httpPort } : {}) });
      }
      case 'removeMember': {
        const { id } = parseArgs(method, raw);
        this.gate.requireLeader();
        return this.raft.removeMember(id);
      }
      case 'snapshot':
        return { index: await this.raft.snapshotNow() };
    }
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
    if (role !== 'leader') {
      this.repair.reset();
      this.metrics.setRepair(this.repair.report());
      this.leaseSync.steppedDown();
      this.proposing.clear();
    }
    if (role === 'leader') {
      const now = Date.now();
      // A new leader knows no pings: every client counts as alive for one TTL. It treats every object as leased
      // until a majority told it the leases they know (LeaseSync), which keeps the old leader's read leases.
      this.leases.resetForNewLeader(now);
      this.leaseSync.becameLeader(now);
      this.liveness.resetForNewLeader(now);
      this.logger.info({ term: this.raft.status().term }, 'became leader'); // the core's term: the node's lags until persisted
    }
  }

  // ------------------------------------------------------------------ ops

  private refreshGauges(): void {
    if (this.stopped) return;
    const st = this.raft.status();
    this.metrics.setRaft({ term: st.term, role: st.role, commitIndex: st.commit, appliedIndex: this.raft.appliedIndex, leaderId: st.leader, fastPreVotes: st.fastPreVotes });
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

  statusReport(): Record<string, unknown> {
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
      stats,
      stateHash: this.state.stateHash(),
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
    this.logger.info({}, 'stopping: transferring leadership and draining requests');
    try {
      await this.raft.stop({ transfer: true }).catch(() => {});
    } finally {
      const deadline = Date.now() + drainTimeoutMs;
      while (this.inFlightRpcs > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await this.closeResources();
    }
  }

  private async closeResources(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.backup?.close();
    await this.raft?.stop().catch(() => {});
    await this.rpc?.close().catch(() => {});
    await this.http?.close().catch(() => {});
    await this.transport?.close().catch(() => {});
    await this.logStore?.close().catch(() => {});
    await this.state?.close().catch(() => {});
    this.logger.info({}, 'master stopped');
  }
}

function sessionKey(command: Command): string | null {
  const c = command as { clientId?: unknown; seq?: unknown };
  return typeof c.clientId === 'string' && typeof c.seq === 'number' ? `${c.clientId}#${c.seq}` : null;
}

function transportTls(cfg: MasterConfig): TransportTls | undefined {
  if (cfg.tls === null) return undefined;
  return { cert: cfg.tls.cert, key: cfg.tls.key, ca: cfg.tls.ca ?? cfg.tls.cert, requireClientCert: cfg.tls.requireClientCert };
}

function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw MooringError.fromWire(result.error);
}

function toMooringError(err: unknown, logger: Logger, method: string): MooringError {
  if (err instanceof MooringError) return err;
  logger.error({ method, err: err instanceof Error ? err.stack : String(err) }, 'internal error while serving an RPC');
  return new MooringError(ErrorCode.INTERNAL, `internal error in ${method}`);
}

/** Backup RPC arguments (admin token, backup session id): an object, or a clear INVALID_ARGUMENT. */
function parseBackupArgs(raw: unknown): { adminToken?: unknown; backupId?: unknown } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'arguments must be an object');
  return raw as { adminToken?: unknown; backupId?: unknown };
}
