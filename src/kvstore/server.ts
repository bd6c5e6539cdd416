/**
 * KvServer: one member of a replicated KV cluster, i.e. the durable RaftNode wired to real disks and sockets —
 * the WAL (dataDir/wal; a 0.1 LevelDB log in dataDir/log is converted once), KvStateMachine (dataDir/kv), TcpPeerTransport (Raft port) and an RpcServer (client port).
 * Used by the real-process tests and the benchmarks; `server-main.ts` is the process edge (argv, signals, stdout).
 *
 * RPC methods (args → result):
 *   put {key, value, clientId?, seq?, prev?} → {prev?}    (exactly-once per (clientId, seq); the previous value
 *                                                          only with prev: true, etcd's prevKv, which costs a read)
 *   get {key}                          → {value|null}      (linearizable: node.read() first; leader only)
 *   status {stateHash?}                → KvStatus          (the rpc address of every member; the whole-state hash and
 *                                                          the key count only when asked: they walk every key)
 *   transferLeader {to}                → {leader}
 *   addMember {id, host, raftPort, rpcPort} → {confState}  (learner first, promoted once caught up)
 *   removeMember {id}                  → {confState}
 *
 * Leader hints: a NOT_LEADER error carries `leaderHint = "<nodeId>@<host>:<rpcPort>"` when this node knows the
 * leader's client address (from the replicated address book), else just "<nodeId>" (same format as the master's
 * hints, see master/rpc-methods.ts parseLeaderHint). `status` also returns `leaderRpc` and every member's address.
 */
import path from 'node:path';
import { ErrorCode, MooringError } from '../errors.js';
import type { DurableLogStorage } from '../raft/log-store.js';
import { openRaftLog } from '../raft/wal/open.js';
import { RaftNode, raftDefaults } from '../raft/node/index.js';
import type { ConfState, NodeId } from '../raft/core/types.js';
import { RpcServer } from '../transport/rpc.js';
import { TcpPeerTransport } from '../transport/tcp-transport.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';
import type { PeerAddress } from '../transport/types.js';
import { KvStateMachine, encodeKvCommand, maxKvKeyBytes, type KvResult } from './kv-state-machine.js';

export const maxClientIdChars = 256;
/** A request that finds no usable leader waits at most this many (maximum) election timeouts for one. */
export const leaderWaitElectionTimeouts = 2;
/** Requests waiting for a leader at once; beyond it a request fails NOT_LEADER at once (the client backs off). */
export const maxLeaderWaiters = 4_096;

export interface KvPeerConfig {
  id: string;
  host: string;
  raftPort: number;
  rpcPort: number;
}

export interface KvServerConfig {
  id: string;
  clusterId: string;
  dataDir: string;
  raft: { host: string; port: number };
  rpc: { host: string; port: number };
  /** Every known member, this node included. */
  peers: KvPeerConfig[];
  /** True on the founding members of a brand-new cluster (voters = peers); false to join through addMember. */
  bootstrap: boolean;
  tickMs?: number;
  electionTimeoutTicks?: number;
  heartbeatIntervalTicks?: number;
  snapshotEveryEntries?: number;
  snapshotKeepEntries?: number;
  proposalTimeoutMs?: number;
  /** Backpressure (raftDefaults.maxProposalWaitMs): writes are refused with BUSY past this queue wait. */
  maxProposalWaitMs?: number;
  readMode?: 'lease' | 'readIndex';
  /** Pre-vote at once when the leader's connection resets (docs/raft.md, fast failover). Default true. */
  fastFailover?: boolean;
  maxEntriesPerAppend?: number;
  maxInflightAppends?: number;
  maxInflightBytes?: number;
  /** pino level for the process logger (server-main only). */
  logLevel?: string;
}

export interface KvStatus {
  id: string;
  role: string;
  leader: string | null;
  /** `host:port` of the leader's RPC server, when known. */
  leaderRpc: string | null;
  term: number;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  snapshotIndex: number;
  /** Only when asked (`status {stateHash: true}`): the key count and the whole-state hash come from one scan. */
  keys?: number;
  stateHash?: string;
  confState: ConfState;
  members: { id: string; raft: string; rpc: string | null }[];
  pid: number;
  /** Pre-votes this node started because its leader's connection reset (fast failover). */
  fastPreVotes: number;
  /** Leader changes (another node, or the same one in a new term) this node saw since it started. */
  leaderChanges: number;
  /** Raft ticks that ran at least half an election timeout late (this process stalled), and the longest delay. */
  clockStalls: number;
  longestClockStallMs: number;
}

export class KvServer {
  private stopping: Promise<void> | null = null;
  private lastLeader: string | null = null;
  private lastLeaderTerm = -1;
  private leaderChanges = 0;
  /** Requests waiting for a usable leader: one leaderChange listener wakes them all (not one listener each). */
  private readonly leaderWaiters = new Set<() => void>();

  private constructor(
    readonly config: KvServerConfig,
    readonly node: RaftNode,
    readonly sm: KvStateMachine,
    private readonly logStore: DurableLogStorage,
    private readonly transport: TcpPeerTransport,
    private readonly rpc: RpcServer,
    private readonly log: LoggerLike,
  ) {}

  static async start(config: KvServerConfig, logger: LoggerLike = silentLogger): Promise<KvServer> {
    validateConfig(config);
    const peers: PeerAddress[] = config.peers.map((p) => ({ id: p.id, host: p.host, port: p.raftPort, rpcPort: p.rpcPort }));
    const logStore = await openRaftLog({ walDir: path.join(config.dataDir, 'wal'), legacyDir: path.join(config.dataDir, 'log'), logger });
    const sm = await KvStateMachine.open(path.join(config.dataDir, 'kv'));
    const transport = new TcpPeerTransport({
      nodeId: config.id,
      clusterId: config.clusterId,
      listen: config.raft,
      peers: peers.filter((p) => p.id !== config.id),
      logger,
    });
    await transport.start();
    const node = await RaftNode.start({
      id: config.id,
      dataDir: config.dataDir,
      storage: logStore,
      transport,
      stateMachine: sm,
      peers,
      ...(config.bootstrap ? { bootstrapVoters: config.peers.map((p) => p.id) } : {}),
      // Tunables not given take their one default from raftDefaults.
      tickMs: config.tickMs,
      electionTimeoutTicks: config.electionTimeoutTicks,
      heartbeatIntervalTicks: config.heartbeatIntervalTicks,
      ...(config.snapshotEveryEntries !== undefined ? { snapshotEveryEntries: config.snapshotEveryEntries } : {}),
      ...(config.snapshotKeepEntries !== undefined ? { snapshotKeepEntries: config.snapshotKeepEntries } : {}),
      ...(config.proposalTimeoutMs !== undefined ? { proposalTimeoutMs: config.proposalTimeoutMs } : {}),
      ...(config.maxProposalWaitMs !== undefined ? { maxProposalWaitMs: config.maxProposalWaitMs } : {}),
      ...(config.readMode !== undefined ? { readMode: config.readMode } : {}),
      ...(config.fastFailover !== undefined ? { fastFailover: config.fastFailover } : {}),
      ...(config.maxEntriesPerAppend !== undefined ? { maxEntriesPerAppend: config.maxEntriesPerAppend } : {}),
      ...(config.maxInflightAppends !== undefined ? { maxInflightAppends: config.maxInflightAppends } : {}),
      ...(config.maxInflightBytes !== undefined ? { maxInflightBytes: config.maxInflightBytes } : {}),
      logger,
    });
    const rpc = new RpcServer({ clusterId: config.clusterId, nodeId: config.id, listen: config.rpc, logger });
    const server = new KvServer(config, node, sm, logStore, transport, rpc, logger);
    server.registerMethods();
    node.on('leaderChange', (leader: string | null, term: number) => {
      server.countLeaderChange(leader, term);
      for (const w of [...server.leaderWaiters]) w();
    });
    await rpc.start();
    return server;
  }

  /** A new leader or a new term of leadership (the same node re-elected after an election counts too). */
  private countLeaderChange(leader: string | null, term: number): void {
    this.log.info({ leader, term }, 'leader changed');
    if (leader === null) return;
    if (this.lastLeader !== null && (leader !== this.lastLeader || term !== this.lastLeaderTerm)) this.leaderChanges++;
    this.lastLeader = leader;
    this.lastLeaderTerm = term;
  }

  get rpcPort(): number {
    return this.rpc.port;
  }

  get raftPort(): number {
    return this.transport.port;
  }

  async status(opts: { stateHash?: boolean } = {}): Promise<KvStatus> {
    // The hash's LevelDB iterator (its snapshot) is opened now, in the same turn as the indexes below are read.
    const hash = opts.stateHash === true ? this.sm.summary() : null;
    const st = this.node.status();
    const leader = st.leader;
    return {
      id: this.config.id,
      role: st.role,
      leader,
      leaderRpc: leader !== null ? this.rpcAddress(leader) : null,
      term: st.term,
      commit: st.commit,
      applied: this.node.appliedIndex,
      lastIndex: st.lastIndex,
      firstIndex: this.logStore.firstIndex(),
      snapshotIndex: this.logStore.snapshot().metadata.index,
      ...(hash !== null ? await hash.then((h) => ({ keys: h.keys, stateHash: h.hash })) : {}),
      confState: st.confState,
      members: st.peers.map((p) => ({ id: p.id, raft: `${p.host}:${p.port}`, rpc: p.rpcPort !== undefined ? `${p.host}:${p.rpcPort}` : null })),
      pid: process.pid,
      fastPreVotes: st.fastPreVotes,
      leaderChanges: this.leaderChanges,
      clockStalls: st.clockStalls,
      longestClockStallMs: st.longestClockStallMs,
    };
  }

  /**
   * Stops serving: with `transfer`, a leader hands leadership over first (no election timeout for the others);
   * then the RPC server, the node, the transport and both databases close, in that order.
   */
  stop(opts: { transfer?: boolean } = {}): Promise<void> {
    if (this.stopping !== null) return this.stopping;
    this.stopping = (async () => {
      await this.node.stop({ transfer: opts.transfer ?? false });
      await this.rpc.close();
      await this.transport.close();
      await this.logStore.close();
      await this.sm.close();
    })();
    return this.stopping;
  }

  /** Proposes one command. RaftNode batches the commands of one loop round into shared log entries. */
  private enqueue(cmd: Uint8Array): Promise<KvResult> {
    return this.node.propose(cmd).then((r) => r as KvResult);
  }

  private rpcAddress(id: NodeId): string | null {
    const p = this.node.peerAddress(id);
    return p?.rpcPort !== undefined ? `${p.host}:${p.rpcPort}` : null;
  }

  /**
   * Runs a leader-only operation. On NOT_LEADER while no usable leader is known — none at all, or only the one the
   * client says it could not reach (`avoidLeader: "host:port"`, typically a leader that just died) — the request is
   * held until a leader appears (at most leaderWaitMs) instead of bouncing: then it runs here if this node won, or
   * fails NOT_LEADER with the new leader's address. The client learns of the new leader when it is elected, not
   * one backoff later.
   */
  private async leaderOnly<T>(args: Record<string, unknown>, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof MooringError) || err.code !== ErrorCode.NOT_LEADER) throw err;
      const avoid = typeof args.avoidLeader === 'string' ? args.avoidLeader : null;
      if (this.usableLeader(avoid) || !(await this.waitForLeader(avoid))) throw this.withHint(err);
      if (!this.node.isLeader) throw this.withHint(err);
      return await op().catch((e: unknown) => {
        throw this.withHint(e);
      });
    }
  }

  /** A leader is known and it is not the one the client could not reach. */
  private usableLeader(avoid: string | null): boolean {
    const leader = this.node.leaderId;
    return leader !== null && (avoid === null || this.rpcAddress(leader) !== avoid);
  }

  private waitForLeader(avoid: string | null): Promise<boolean> {
    const cfg = this.config;
    const waitMs = leaderWaitElectionTimeouts * (cfg.electionTimeoutTicks ?? raftDefaults.electionTimeoutTicks) * (cfg.tickMs ?? raftDefaults.tickMs);
    if (this.leaderWaiters.size >= maxLeaderWaiters) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.leaderWaiters.delete(onChange);
        resolve(ok);
      };
      const onChange = (): void => {
        if (this.usableLeader(avoid)) done(true);
      };
      const timer = setTimeout(() => done(false), waitMs);
      this.leaderWaiters.add(onChange);
    });
  }

  /** NOT_LEADER errors get the leader's client address so a client can go there directly. */
  private withHint(err: unknown): unknown {
    if (!(err instanceof MooringError) || err.code !== ErrorCode.NOT_LEADER) return err;
    const leader = this.node.leaderId;
    if (leader === null || leader === this.config.id) return err;
    const rpc = this.rpcAddress(leader);
    const hint = rpc !== null ? `${leader}@${rpc}` : leader;
    return new MooringError(ErrorCode.NOT_LEADER, `not the leader; the leader is ${hint}`, { leaderHint: hint, leaderTerm: this.node.currentTerm });
  }

  private registerMethods(): void {
    const rethrow = (err: unknown): never => {
      throw this.withHint(err);
    };
    this.rpc.handle('put', async (args) => {
      const a = argsObject(args);
      const key = stringArg(a, 'key', maxKvKeyBytes);
      if (typeof a.value !== 'string') throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'value must be a string');
      const session = sessionArgs(a);
      // encodeKvCommand checks key and value sizes.
      if (a.prev !== undefined && typeof a.prev !== 'boolean') throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'prev must be a boolean');
      const cmd = encodeKvCommand({ op: 'put', key, value: a.value, ...session, ...(a.prev === true ? { prev: true } : {}) });
      const res = await this.leaderOnly(a, () => this.enqueue(cmd));
      if (!res.ok) throw new MooringError(isCode(res.code) ? res.code : ErrorCode.INTERNAL, res.message);
      return res.prev !== undefined ? { prev: res.prev } : {};
    });
    this.rpc.handle('get', async (args) => {
      const a = argsObject(args);
      const key = stringArg(a, 'key', maxKvKeyBytes);
      return this.leaderOnly(a, async () => {
        await this.node.read();
        return { value: (await this.sm.get(key)) ?? null };
      });
    });
    this.rpc.handle('status', (raw) => this.status({ stateHash: typeof raw === 'object' && raw !== null && (raw as { stateHash?: unknown }).stateHash === true }));
    this.rpc.handle('transferLeader', async (args) => {
      const to = stringArg(argsObject(args), 'to', 256);
      await this.node.transferLeadership(to).catch(rethrow);
      return { leader: this.node.leaderId };
    });
    this.rpc.handle('addMember', async (args) => {
      const a = argsObject(args);
      const id = stringArg(a, 'id', 256);
      const host = stringArg(a, 'host', 256);
      const raftPort = portArg(a, 'raftPort');
      const rpcPort = portArg(a, 'rpcPort');
      const cs = await this.node.addMember({ id, host, port: raftPort, rpcPort }).catch(rethrow);
      return { confState: cs };
    });
    this.rpc.handle('removeMember', async (args) => {
      const id = stringArg(argsObject(args), 'id', 256);
      const cs = await this.node.removeMember(id).catch(rethrow);
      return { confState: cs };
    });
  }
}

function isCode(c: string): c is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ErrorCode, c);
}

function argsObject(args: unknown): Record<string, unknown> {
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'arguments must be an object');
  return args as Record<string, unknown>;
}

function stringArg(a: Record<string, unknown>, name: string, maxBytes: number): string {
  const v = a[name];
  if (typeof v !== 'string' || v.length === 0 || Buffer.byteLength(v) > maxBytes) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be a non-empty string of at most ${maxBytes} bytes`);
  }
  return v;
}

function portArg(a: Record<string, unknown>, name: string): number {
  const v = a[name];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw new MooringError(ErrorCode.INVALID_ARGUMENT, `${name} must be a port number`);
  return v;
}

function sessionArgs(a: Record<string, unknown>): { clientId?: string; seq?: number } {
  if (a.clientId === undefined && a.seq === undefined) return {};
  const clientId = stringArg(a, 'clientId', maxClientIdChars);
  if (typeof a.seq !== 'number' || !Number.isSafeInteger(a.seq) || a.seq < 1) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'seq must be a positive integer');
  return { clientId, seq: a.seq };
}

export function validateConfig(c: KvServerConfig): void {
  const bad = (msg: string): never => {
    throw new MooringError(ErrorCode.INVALID_CONFIG, msg);
  };
  if (typeof c !== 'object' || c === null) bad('config must be an object');
  if (typeof c.id !== 'string' || c.id.length === 0) bad('id must be a non-empty string');
  if (typeof c.clusterId !== 'string' || c.clusterId.length === 0) bad('clusterId must be a non-empty string');
  if (typeof c.dataDir !== 'string' || c.dataDir.length === 0) bad('dataDir must be a path');
  for (const k of ['raft', 'rpc'] as const) {
    const l = c[k];
    if (typeof l !== 'object' || l === null || typeof l.host !== 'string' || !Number.isInteger(l.port) || l.port < 0 || l.port > 65535) {
      bad(`${k} must be {host, port}`);
    }
  }
  if (!Array.isArray(c.peers) || c.peers.length === 0) bad('peers must list the members (this node included)');
  for (const p of c.peers) {
    if (typeof p?.id !== 'string' || typeof p.host !== 'string' || !Number.isInteger(p.raftPort) || !Number.isInteger(p.rpcPort)) {
      bad(`peer ${JSON.stringify(p)} must be {id, host, raftPort, rpcPort}`);
    }
  }
  if (new Set(c.peers.map((p) => p.id)).size !== c.peers.length) bad('peer ids must be unique');
  if (typeof c.bootstrap !== 'boolean') bad('bootstrap must be true or false');
  if (c.fastFailover !== undefined && typeof c.fastFailover !== 'boolean') bad('fastFailover must be true or false');
  if (c.bootstrap && !c.peers.some((p) => p.id === c.id)) bad('a bootstrapping node must be one of the peers');
}
