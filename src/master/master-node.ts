/**
 * MasterNode: one member of a Mooring master cluster, embeddable in any Node.js process.
 *
 *   RaftNode (LogStore + TcpPeerTransport)  ←→  MasterState (its own LevelDB)
 *   + a client RPC server (msgpackr frames over TCP/TLS, its own port)
 *   + an HTTP ops server (/health, /ready, /metrics, /status)
 *   + leader duties: client TTL expiry, reclaim of abandoned PutStarts, eviction, read leases (soft state).
 *
 * Writes go through the log and are answered once applied. Reads are linearizable by default (lease read on the
 * leader, ReadIndex when configured); `stale: true` lets any member answer from its own state. Followers answer
 * writes and linearizable reads with NOT_LEADER and a hint `nodeId@host:rpcPort` that MasterClient follows: we
 * chose hints over forwarding because forwarding doubles the hops of every misdirected request and hides the
 * leader from clients that could talk to it directly.
 */
import path from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { LogStore } from '../raft/log-store.js';
import { RaftNode } from '../raft/node.js';
import type { Role } from '../raft/types.js';
import { TcpPeerTransport } from '../transport/tcp-transport.js';
import { RpcServer, type RpcContext } from '../transport/rpc.js';
import type { TlsConfig as TransportTls } from '../transport/net-util.js';
import type { PeerAddress } from '../transport/types.js';
import { MasterState } from '../statemachine/master-state.js';
import { validateCommand, type Command, type Result } from '../statemachine/commands.js';
import { LeaseTable } from '../statemachine/leases.js';
import { ClientLiveness, planClientExpiry } from '../statemachine/clients.js';
import { planEviction, planEvictionForPut } from '../statemachine/eviction.js';
// ---- BEGIN tiering (store) imports ----
import type { BatchPutStart, Evict, EvictItem, PutStart, UpsertStart } from '../statemachine/commands.js';
import type { ObjectRecord } from '../statemachine/objects.js';
import type { StateView } from '../statemachine/state-view.js';
// ---- END tiering ----
import { planDrain, planReclaim } from '../statemachine/planners.js';
import type { MasterConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { createMasterMetrics, type MasterMetrics } from './metrics.js';
import { startHttpOps } from './http-ops.js';
import { BackupService } from './backup.js';
import { RepairScheduler, repairRoundIntervalMs, type RepairLimits } from './repair.js';
import { peerClusterId, readIdentity } from './backup-format.js';
import { MasterStateMachine, encodeMasterCommand } from './state-adapter.js';
import {
  adminMethods,
  adminWriteMethods,
  formatLeaderHint,
  readMethods,
  writeMethods,
  type MemberInfo,
  type WriteMethod,
} from './rpc-methods.js';

/** How often the leader looks for expired clients and abandoned PutStarts. */
export const housekeepingIntervalMs = 1_000;
/** A housekeeping tick later than this many intervals means the process was paused (see housekeeping()). */
export const pauseGapFactor = 2.5;
/** How often gauges (capacity, keys, raft indexes) are refreshed for /metrics. */
export const metricsRefreshIntervalMs = 1_000;
/** A graceful stop waits at most this long for in-flight RPCs after handing leadership away. */
export const drainTimeoutMs = 5_000;
export const maxBatchKeysPerRead = 4_096;
// ---- BEGIN tiering (store) limits ----
/** A demotion task not finished within this long falls back to dropping the object. */
export const demotionTimeoutMs = 5_000;
/** A task is sent again in a later ping reply after this long (the reply may have been lost). */
export const demotionResendMs = 2_000;
export const maxPendingDemotions = 1_024;
export const maxTierTasksPerPing = 64;
/**
 * A put that needs room (eviction candidates attached) while a DISK tier can take them waits up to this long for
 * their demotion before anything is dropped (longer, up to demotionTimeoutMs, while one is mid-copy); then it
 * proceeds with what still has to go.
 */
export const putDemotionWaitMs = 1_500;
export const putDemotionPollMs = 25;
// ---- END tiering ----

export interface MasterNodeOptions {
  logger?: Logger;
  /** Set false to embed without the HTTP ops server. Default true. */
  http?: boolean;
  /** Re-replication limits (repair.ts defaults otherwise). */
  repair?: Partial<RepairLimits>;
}

type WireArgs = Record<string, unknown>;

export class MasterNode {
  readonly config: MasterConfig;
  readonly logger: Logger;
  readonly metrics: MasterMetrics;
  private raft!: RaftNode;
  private logStore!: LogStore;
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
  private housekeepingBusy = false;
  private lastHousekeepingTickMs = Date.now();
  private evictionBusy = false;
  private backup: BackupService | null = null;
  private readonly repair: RepairScheduler;

  private constructor(config: MasterConfig, opts: MasterNodeOptions) {
    this.config = config;
    this.logger = opts.logger ?? createLogger({ level: config.log.level, name: 'mooring-master', nodeId: config.nodeId, pretty: config.log.pretty });
    this.metrics = createMasterMetrics();
    this.leases = new LeaseTable(config.leaseTtlMs);
    this.repair = new RepairScheduler(opts.repair);
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
    this.logStore = await LogStore.open(path.join(cfg.dataDir, 'raft-log'), { logger: this.logger });
    this.state = await MasterState.open(path.join(cfg.dataDir, 'state'), { placement: cfg.placement.strategy });
    const peers: PeerAddress[] = cfg.peers.map((p) => ({ id: p.id, host: p.host, port: p.raftPort, rpcPort: p.rpcPort, ...(p.httpPort !== null ? { httpPort: p.httpPort } : {}) }));
    this.transport = new TcpPeerTransport({
      nodeId: cfg.nodeId,
      // A restored data dir carries a new cluster identity: old members are refused at the handshake.
      clusterId: peerClusterId(cfg.dataDir, cfg.clusterId),
      listen: { host: cfg.listen.host, port: cfg.listen.raftPort },
      peers: peers.filter((p) => p.id !== cfg.nodeId),
      ...(tls !== undefined ? { tls } : {}),
      maxFrameBytes: cfg.raft.maxFrameBytes,
      logger: this.logger,
    });
    await this.transport.start();
    this.raft = await RaftNode.start({
      id: cfg.nodeId,
      dataDir: path.join(cfg.dataDir, 'raft'),
      storage: this.logStore,
      transport: this.transport,
      stateMachine: new MasterStateMachine(this.state),
      peers,
      ...(cfg.join ? {} : { bootstrapVoters: cfg.peers.map((p) => p.id) }),
      tickMs: cfg.raft.tickMs,
      electionTimeoutTicks: cfg.raft.electionTimeoutTicks,
      heartbeatIntervalTicks: cfg.raft.heartbeatIntervalTicks,
      preVote: cfg.raft.preVote,
      checkQuorum: cfg.raft.checkQuorum,
      readMode: cfg.raft.readMode === 'lease' ? 'lease' : 'readIndex',
      maxEntriesPerAppend: cfg.raft.maxEntriesPerAppend,
      maxBytesPerAppend: cfg.raft.maxBytesPerAppend,
      maxInflightAppends: cfg.raft.maxInflightAppends,
      proposalTimeoutMs: cfg.raft.proposalTimeoutMs,
      snapshotEveryEntries: cfg.raft.snapshotEveryEntries,
      logger: this.logger,
    });
    this.raft.on('roleChange', (role: Role) => this.onRoleChange(role));
    this.raft.on('leaderChange', (leader: string | null, term: number) => {
      this.viewVersion++;
      this.metrics.setRaft({ term, role: this.raft.status().role, commitIndex: this.raft.commitIndex, appliedIndex: this.raft.appliedIndex, leaderId: leader });
      this.logger.info({ leader, term }, 'leader changed');
    });
    this.raft.on('fatal', (err: Error) => {
      this.logger.fatal({ err: err.message }, 'raft node stopped after a fatal error; the master stops serving');
      void this.closeResources();
    });

    this.backup = new BackupService({
      barrier: async () => {
        this.requireLeader();
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
      logger: this.logger,
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
      });
    }
    this.timers.push(setInterval(() => void this.housekeeping(), housekeepingIntervalMs));
    this.timers.push(setInterval(() => void this.evictionCheck(), Math.max(1, cfg.eviction.checkIntervalMs)));
    this.timers.push(setInterval(() => this.repairRound(), repairRoundIntervalMs));
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
    for (const method of Object.keys(writeMethods) as WriteMethod[]) {
      this.rpc.handle(method, (args, ctx) => this.serve(method, ctx, () => this.handleWrite(method, asArgs(args))));
    }
    for (const method of readMethods) {
      this.rpc.handle(method, (args, ctx) => this.serve(method, ctx, () => this.handleRead(method, asArgs(args))));
    }
    for (const method of adminMethods) {
      this.rpc.handle(method, (args, ctx) => this.serve(method, ctx, () => this.handleAdmin(method, asArgs(args))));
    }
    this.rpc.handle('status', (_args, ctx) => this.serve('status', ctx, async () => this.statusReport()));
    this.rpc.handle('backupBegin', (args, ctx) => this.serve('backupBegin', ctx, () => (this.checkAdmin(asArgs(args)), this.backup!.begin())));
    this.rpc.handle('backupNext', (args, ctx) => this.serve('backupNext', ctx, () => (this.checkAdmin(asArgs(args)), this.backup!.next(requireString(asArgs(args).backupId, 'backupId')))));
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

  private checkAdmin(args: WireArgs): void {
    const want = this.config.adminToken;
    if (want === null) return;
    const got = typeof args.adminToken === 'string' ? args.adminToken : '';
    const a = Buffer.from(got);
    const b = Buffer.from(want);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new MooringError(ErrorCode.UNAUTHORIZED, 'this admin operation needs the admin token (adminToken)');
    }
  }

  private async handleWrite(method: WriteMethod, args: WireArgs): Promise<unknown> {
    if (adminWriteMethods.includes(method)) this.checkAdmin(args);
    // Fields only the leader may set (eviction candidates, lease skips) never come from a client.
    const { adminToken: _token, evictable: _evictable, skipKeys: _skipKeys, ...fields } = args;
    const command = { ...fields, type: writeMethods[method] } as unknown as Command;
    validateCommand(command); // INVALID_ARGUMENT before anything reaches the log
    this.requireLeader();
    const now = Date.now();
    try {
      this.admit(command, now);
    } catch (err) {
      // A retry (same clientId, seq) of a write already applied, maybe under the previous leader, must get its
      // first reply, not an admission refusal: a remove retried after a failover was otherwise refused by the new
      // leader's blanket lease although it had happened (the client then believed the object still existed).
      const prev = await this.appliedReply(command);
      if (prev === undefined) throw err;
      return unwrap(prev);
    }
    await this.demoteBeforePut(command);
    const started = process.hrtime.bigint();
    const result = (await this.raft.propose(encodeMasterCommand(command, now))) as Result;
    this.metrics.observeProposal(Number(process.hrtime.bigint() - started) / 1e9);
    return unwrap(result);
  }

  /** The stored exactly-once reply for this write, after a read barrier so every committed entry is applied. */
  private async appliedReply(command: Command): Promise<Result | undefined> {
    const c = command as { clientId?: unknown; seq?: unknown };
    if (typeof c.clientId !== 'string' || typeof c.seq !== 'number') return undefined;
    await this.raft.read();
    return this.state.sessionReply(c.clientId, c.seq);
  }

  /** Leader-side admission: rules that depend on leases (soft state) are checked here, not in the log. */
  private admit(command: Command, now: number): void {
    switch (command.type) {
      case 'Remove':
        if (command.force !== true && this.leases.isLeased(command.key, now)) {
          throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, `${command.key} is under a read lease; retry after it expires or use force`);
        }
        break;
      case 'RemoveAll':
      case 'RemoveByPrefix':
        if (command.force !== true) command.skipKeys = this.leases.leasedKeys(now);
        break;
      case 'UpsertEnd':
      case 'OffloadEnd':
        if (this.leases.isLeased(command.key, now)) {
          throw new MooringError(ErrorCode.OBJECT_HAS_LEASE, `${command.key} is under a read lease; its old replicas cannot be freed yet`);
        }
        break;
      case 'PutStart':
      case 'UpsertStart':
      case 'BatchPutStart': {
        const evictable = this.evictableFor(command, now);
        if (evictable.length > 0) command.evictable = evictable;
        break;
      }
      default:
        break;
    }
  }

  /** Eviction candidates a put needs (planEvictionForPut), [] when it fits now. */
  private evictableFor(command: PutStart | UpsertStart | BatchPutStart, now: number): EvictItem[] {
    if (command.type !== 'BatchPutStart') return planEvictionForPut(this.state, this.leases, now, command.size, command.replicaNum, command.tier ?? 'DRAM');
    let total = 0;
    let replicas = 1;
    for (const it of command.items) {
      total += it.size * it.replicaNum;
      replicas = Math.max(replicas, it.replicaNum);
    }
    return planEvictionForPut(this.state, this.leases, now, Math.ceil(total / replicas), replicas);
  }

  /**
   * Demotion instead of drops for a put that needs room: candidates a DISK segment can take become demotion tasks
   * (the same as the watermark's), and the put waits up to putDemotionWaitMs for the space they free. Whatever it
   * still needs then is dropped as before (the candidates are planned again from the current state).
   */
  private async demoteBeforePut(command: Command): Promise<void> {
    if (command.type !== 'PutStart' && command.type !== 'UpsertStart' && command.type !== 'BatchPutStart') return;
    const wanted = command.evictable;
    if (wanted === undefined || wanted.length === 0) return;
    const start = Date.now();
    const drop = this.planDemotions({ type: 'Evict', items: wanted }, start);
    if (drop !== null && drop.items.length === wanted.length) return; // nothing demotable: drop as before
    const st = this.state as unknown as StateView;
    // A candidate mid-copy cannot be evicted either: past the soft wait, keep waiting while one is (up to the
    // demotion timeout), so the put does not end with NO_SPACE where it used to evict.
    const copying = (): boolean => wanted.some((it) => {
      const o = st.objects.get(it.key);
      if (o === undefined) return false;
      return o.offload !== null || (this.demotions.has(it.key) && o.replicas.some((r) => r.tier !== 'DISK'));
    });
    for (;;) {
      await new Promise((r) => setTimeout(r, putDemotionPollMs));
      const now = Date.now();
      const evictable = this.evictableFor(command, now);
      const waited = now - start;
      if (evictable.length === 0 || waited >= demotionTimeoutMs || (waited >= putDemotionWaitMs && !copying()) || !this.raft.isLeader) {
        if (evictable.length > 0) command.evictable = evictable;
        else delete command.evictable;
        return;
      }
    }
  }

  private async handleRead(method: (typeof readMethods)[number], args: WireArgs): Promise<unknown> {
    const stale = args.stale === true;
    if (method === 'ping') {
      const clientId = requireString(args.clientId, 'clientId');
      this.requireLeader();
      this.liveness.touch(clientId, Date.now());
      const reply = this.state.ping(clientId);
      // ---- BEGIN tiering (store): the ping reply carries this client's tier tasks ----
      const tierTasks = [...this.tierTasksFor(clientId, Date.now()), ...this.repair.tasksFor(clientId, Date.now())];
      if (tierTasks.length > 0) return { status: reply.status, viewVersion: this.viewVersion, tierTasks };
      // ---- END tiering ----
      return { status: reply.status, viewVersion: this.viewVersion };
    }
    if (!stale) await this.raft.read();
    const now = Date.now();
    // Leases are granted only by the leader (stale reads on followers grant none).
    const leases = this.raft.isLeader ? this.leases : undefined;
    switch (method) {
      case 'getReplicaList':
        return unwrap(this.state.getReplicaList(requireString(args.key, 'key'), now, leases));
      case 'batchGetReplicaList':
        return this.state.batchGetReplicaList(requireKeys(args.keys), now, leases);
      case 'existKey':
        return this.state.existKey(requireString(args.key, 'key'));
      case 'batchExistKey':
        return this.state.batchExistKey(requireKeys(args.keys));
      case 'listSegments':
        return this.state.listSegments();
      case 'stats':
        return this.state.stats();
    }
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `unknown read method ${method as string}`);
  }

  private async handleAdmin(method: (typeof adminMethods)[number], args: WireArgs): Promise<unknown> {
    this.checkAdmin(args);
    switch (method) {
      case 'members':
        return this.members();
      case 'transferLeader': {
        const to = requireString(args.to, 'to');
        this.requireLeader();
        await this.raft.transferLeadership(to);
        return { leader: to };
      }
      case 'addMember': {
        const id = requireString(args.id, 'id');
        const host = requireString(args.host, 'host');
        const raftPort = requirePort(args.raftPort, 'raftPort');
        const rpcPort = requirePort(args.rpcPort, 'rpcPort');
        const httpPort = args.httpPort === undefined ? undefined : requirePort(args.httpPort, 'httpPort');
        this.requireLeader();
        const cs = await this.raft.addMember({ id, host, port: raftPort, rpcPort, ...(httpPort !== undefined ? { httpPort } : {}) });
        return cs;
      }
      case 'removeMember': {
        const id = requireString(args.id, 'id');
        this.requireLeader();
        return this.raft.removeMember(id);
      }
      case 'snapshot':
        return { index: await this.raft.snapshotNow() };
    }
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `unknown admin method ${method as string}`);
  }

  private requireLeader(): void {
    if (this.stopping) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'this master is shutting down; retry on another');
    if (this.raft.isLeader) return;
    const leader = this.raft.leaderId;
    if (leader === null) throw new MooringError(ErrorCode.NOT_LEADER, 'no leader is known yet; retry shortly');
    const addr = this.raft.peerAddress(leader);
    const hint = formatLeaderHint(leader, addr?.rpcPort !== undefined ? { host: addr.host, port: addr.rpcPort } : undefined);
    throw new MooringError(ErrorCode.NOT_LEADER, `not the leader; the leader is ${hint}`, { leaderHint: hint });
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

  /** Re-replication (repair.ts): leader soft state, dropped when leadership is lost. */
  private repairRound(): void {
    if (!this.raft.isLeader || this.stopping) return;
    this.repair.plan(this.state, Date.now());
    this.metrics.setRepair(this.repair.report());
  }

  private onRoleChange(role: Role): void {
    if (role !== 'leader') {
      this.repair.reset();
      this.metrics.setRepair(this.repair.report());
    }
    if (role === 'leader') {
      const now = Date.now();
      // A new leader knows no leases and no pings: it treats every object as leased and every client as alive
      // for one TTL, which keeps the promises of the old leader without replicating soft state.
      this.leases.resetForNewLeader(now);
      this.liveness.resetForNewLeader(now);
      this.logger.info({ term: this.raft.currentTerm }, 'became leader');
    }
  }

  private async proposeInternal(command: Command): Promise<void> {
    const result = (await this.raft.propose(encodeMasterCommand(command, Date.now()))) as Result;
    if (!result.ok) this.logger.warn({ type: command.type, error: result.error }, 'leader housekeeping command refused by the state machine');
  }

  private async housekeeping(): Promise<void> {
    // A leader that was paused (SIGSTOP, a long GC, a VM freeze) heard no pings while it was not running: that
    // silence is its own, not its clients'. Like a new leader, it gives every client a fresh TTL.
    const tickAt = Date.now();
    const gap = tickAt - this.lastHousekeepingTickMs;
    this.lastHousekeepingTickMs = tickAt;
    if (this.raft.isLeader && gap > Math.min(housekeepingIntervalMs * pauseGapFactor, housekeepingIntervalMs + this.config.clientTtlMs / 2)) {
      this.liveness.resetForNewLeader(tickAt);
      this.logger.info({ gapMs: gap }, 'resumed after a pause: every client gets a fresh TTL');
      return;
    }
    if (!this.raft.isLeader || this.housekeepingBusy || this.stopping) return;
    this.housekeepingBusy = true;
    try {
      const now = Date.now();
      this.leases.prune(now);
      const expire = planClientExpiry(this.state, this.liveness, now, this.config.clientTtlMs);
      if (expire !== null) {
        this.logger.info({ clients: expire.clientIds }, 'expiring silent clients');
        await this.proposeInternal(expire);
        for (const id of expire.clientIds) this.liveness.forget(id);
      }
      const reclaim = planReclaim(this.state, now, this.config.putStartReclaimMs);
      if (reclaim !== null) await this.proposeInternal(reclaim);
      const drain = planDrain(this.state, this.leases, now, this.repair.awaitingRepair());
      if (drain !== null) await this.proposeInternal(drain);
    } catch (err) {
      this.logger.debug({ err: String(err) }, 'housekeeping round failed; retried next round');
    } finally {
      this.housekeepingBusy = false;
    }
  }

  private async evictionCheck(): Promise<void> {
    if (!this.raft.isLeader || this.evictionBusy || this.stopping) return;
    this.evictionBusy = true;
    try {
      const evict = planEviction(this.state, this.leases, Date.now(), {
        highWatermarkRatio: this.config.eviction.highWatermark,
        targetRatio: this.config.eviction.target,
      });
      // ---- BEGIN tiering (store): demote to a DISK tier instead of dropping, drop after a timeout ----
      const drop = evict === null ? null : this.planDemotions(evict, Date.now());
      // ---- END tiering ----
      if (drop !== null) {
        // No lease may be granted on memory that is about to be freed.
        const keys = drop.items.map((i) => i.key);
        this.leases.reserve(keys);
        try {
          await this.proposeInternal(drop);
        } finally {
          this.leases.release(keys);
        }
        this.metrics.countEvictions(drop.items.length);
      }
    } catch (err) {
      this.logger.debug({ err: String(err) }, 'eviction round failed; retried next round');
    } finally {
      this.evictionBusy = false;
    }
  }

  // ---- BEGIN tiering (store): demotion tasks (leader soft state; every metadata change still goes through the
  // log: the client runs OffloadStart → copy → OffloadEnd). A task is handed to the client owning the object's
  // first memory replica (it reads its own memory); if it is not done within demotionTimeoutMs the object is
  // dropped as before. A new leader starts with no tasks and plans again.
  private readonly demotions = new Map<string, { clientId: string; createdIndex: number; deadlineMs: number; sentAtMs: number }>();

  private planDemotions(evict: Evict, now: number): Evict | null {
    if (!this.raft.isLeader) {
      this.demotions.clear();
      return evict;
    }
    const st = this.state as unknown as StateView;
    for (const [key, d] of this.demotions) {
      const o = st.objects.get(key);
      if (o === undefined || o.createdIndex !== d.createdIndex || !o.replicas.some((r) => r.tier !== 'DISK')) this.demotions.delete(key);
    }
    const drop: EvictItem[] = [];
    for (const it of evict.items) {
      const d = this.demotions.get(it.key);
      if (d !== undefined) {
        if (d.deadlineMs > now) continue; // still demoting
        this.demotions.delete(it.key);
        drop.push(it); // timed out: fall back to dropping
        continue;
      }
      const o = st.objects.get(it.key);
      const owner = o === undefined ? undefined : this.demotionOwner(st, o);
      if (o !== undefined && owner !== undefined && this.demotions.size < maxPendingDemotions) {
        this.demotions.set(it.key, { clientId: owner, createdIndex: it.createdIndex, deadlineMs: now + demotionTimeoutMs, sentAtMs: 0 });
      } else {
        drop.push(it);
      }
    }
    return drop.length === 0 ? null : { type: 'Evict', items: drop };
  }

  /** The client to demote `o`: the owner of its first memory replica, when some DISK segment can take it. */
  private demotionOwner(st: StateView, o: ObjectRecord): string | undefined {
    const mem = o.replicas.find((r) => r.tier !== 'DISK');
    if (mem === undefined) return undefined;
    const owner = st.segments.get(mem.segmentId)?.rec.clientId;
    if (owner === undefined || !st.clients.has(owner)) return undefined;
    const used = new Set(o.replicas.map((r) => r.segmentId));
    for (const s of st.ordered) {
      if (s.rec.tier === 'DISK' && s.rec.status === 'OK' && !used.has(s.rec.id) && s.alloc.canFit(o.size)) return owner;
    }
    return undefined;
  }

  private tierTasksFor(clientId: string, now: number): Array<{ kind: 'demote'; key: string }> {
    const out: Array<{ kind: 'demote'; key: string }> = [];
    for (const [key, d] of this.demotions) {
      if (d.clientId !== clientId || now - d.sentAtMs < demotionResendMs) continue;
      d.sentAtMs = now;
      out.push({ kind: 'demote', key });
      if (out.length >= maxTierTasksPerPing) break;
    }
    return out;
  }
  // ---- END tiering ----

  // ------------------------------------------------------------------ ops

  private refreshGauges(): void {
    if (this.stopped) return;
    const st = this.raft.status();
    this.metrics.setRaft({ term: st.term, role: st.role, commitIndex: st.commit, appliedIndex: this.raft.appliedIndex, leaderId: st.leader });
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
      stats: this.state.stats(),
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

function transportTls(cfg: MasterConfig): TransportTls | undefined {
  if (cfg.tls === null) return undefined;
  return { cert: cfg.tls.cert, key: cfg.tls.key, ca: cfg.tls.ca ?? cfg.tls.cert, requireClientCert: cfg.tls.requireClientCert };
}

function asArgs(v: unknown): WireArgs {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'arguments must be an object');
  }
  return v as WireArgs;
}

function requireString(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be a non-empty string`);
  return v;
}

function requirePort(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be a port number (1..65535)`);
  return v;
}

function requireKeys(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > maxBatchKeysPerRead) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `keys must be a list of 1..${maxBatchKeysPerRead} keys`);
  }
  return v.map((k, i) => requireString(k, `keys[${i}]`));
}

function unwrap(result: Result): unknown {
  if (result.ok) return result.value;
  throw MooringError.fromWire(result.error);
}

function toMooringError(err: unknown, logger: Logger, method: string): MooringError {
  if (err instanceof MooringError) return err;
  logger.error({ method, err: err instanceof Error ? err.stack : String(err) }, 'internal error while serving an RPC');
  return new MooringError(ErrorCode.INTERNAL, `internal error in ${method}`);
}
