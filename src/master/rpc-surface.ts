/**
 * The master's client RPC surface: every request is validated against the contract (rpc-methods.ts), timed and
 * counted, then served here. Leader policy (parking, NOT_LEADER hints, admission, demotions) lives in its own files;
 * this file decides only which of it a request goes through.
 *
 * Writes go through the log and are answered once applied. Reads are linearizable by default and served by every
 * member (the leader by lease or ReadIndex, a follower by ReadIndex through the leader: follower-reads.ts);
 * `stale: true` lets any member answer from its own state at once. Followers answer writes with NOT_LEADER and a
 * hint `nodeId@host:rpcPort` that MasterClient follows: we chose hints over forwarding because forwarding doubles
 * the hops of every misdirected request and hides the leader from clients that could talk to it directly.
 */
import { timingSafeEqual } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import type { RaftNode } from '../raft/node/index.js';
import type { RpcContext, RpcServer } from '../transport/rpc.js';
import type { Result } from '../statemachine/commands.js';
import type { ClientExpiry } from './client-expiry.js';
import type { LeaseTable } from '../statemachine/leases.js';
import type { MasterState } from '../statemachine/master-state.js';
import type { MasterConfig } from './config.js';
import type { Logger } from './logger.js';
import type { MasterMetrics } from './metrics.js';
import type { BackupService } from './backup.js';
import type { RepairScheduler } from './repair.js';
import { WriteService } from './write-service.js';
import type { LeaseSync } from './lease-sync.js';
import type { LeaderGate } from './leader-gate.js';
import type { Demotions } from './demotions.js';
import type { PendingWrites } from './pending-writes.js';
import { leaseClock, systemClock } from '../raft/effects/system-clock.js';
import { linearizableRead, replicaRead, replicaReadCompact } from './follower-reads.js';
import { sessionEpochStateVersion } from '../statemachine/state-version.js';
import type { FollowerLeaseCover } from './follower-lease-cover.js';
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

/** What the RPC surface needs from its master node. */
export interface RpcSurfaceDeps {
  config: MasterConfig;
  metrics: MasterMetrics;
  logger: Logger;
  leases: LeaseTable;
  /** Admitted writes a lease would have refused, until they settle: reads of their keys wait (pending-writes.ts). */
  pending: PendingWrites;
  /** This master's follower lease covers (follower-lease-cover.ts). */
  followerCover: FollowerLeaseCover;
  /** Pings refresh a client here (client-expiry.ts). */
  expiry: ClientExpiry;
  gate: LeaderGate;
  demotions: Demotions;
  repair: RepairScheduler;
  electionTimeoutMs: number;
  /** Read at each call: the node opens these after constructing its surface. */
  raft(): RaftNode;
  state(): MasterState;
  leaseSync(): LeaseSync;
  backup(): BackupService;
  /** Bumped by the node on every leader change; ping replies carry it. */
  viewVersion(): number;
  members(): MemberInfo[];
  statusReport(opts: { stateHash: boolean }): Record<string, unknown>;
}

export class RpcSurface {
  private inFlightRpcs = 0;
  /** The leader's steps for a client write (write-service.ts; the full-node simulator runs the same). */
  private readonly writes: WriteService;

  constructor(private readonly d: RpcSurfaceDeps) {
    this.writes = new WriteService({
      raft: d.raft, state: d.state, leaseSync: d.leaseSync, leases: d.leases, pending: d.pending, gate: d.gate,
      electionTimeoutMs: d.electionTimeoutMs,
      // Leases on the lease clock (never steps); entry time stamps on the wall clock, like every entry's.
      leaseNow: () => leaseClock.now(),
      stampNow: () => Date.now(),
      beforePropose: (command) => d.demotions.beforePut(command),
      proposed: (proposal) => {
        const started = process.hrtime.bigint();
        proposal.then(() => d.metrics.observeProposal(Number(process.hrtime.bigint() - started) / 1e9), () => {});
      },
    });
  }

  /** Requests being served now (a graceful stop drains them). */
  get inFlight(): number {
    return this.inFlightRpcs;
  }

  /** Proposals of an earlier leadership are not joined by retries: their outcome is no longer ours to report. */
  steppedDown(): void {
    this.writes.steppedDown();
  }

  register(rpc: RpcServer): void {
    // Every request is validated against the contract (rpc-methods.ts) before anything else looks at it.
    for (const method of Object.keys(writeMethods) as WriteMethod[]) {
      rpc.handle(method, (raw, ctx) => this.serve(method, ctx, () => this.handleWrite(method, raw)));
    }
    for (const method of readMethods) {
      rpc.handle(method, (raw, ctx) => this.serve(method, ctx, () => this.handleRead(method, raw)));
    }
    for (const method of adminMethods) {
      rpc.handle(method, (raw, ctx) => this.serve(method, ctx, () => this.handleAdmin(method, raw)));
    }
    rpc.handle('status', (raw, ctx) => this.serve('status', ctx, async () => {
      const a = parseArgs('status', raw);
      return this.d.statusReport({ stateHash: a.stateHash === true });
    }));
    rpc.handle('backupBegin', (raw, ctx) => this.serve('backupBegin', ctx, () => (this.checkAdmin(parseBackupArgs(raw)), this.d.backup().begin())));
    rpc.handle('backupNext', (raw, ctx) => this.serve('backupNext', ctx, () => {
      const a = parseBackupArgs(raw);
      this.checkAdmin(a);
      if (typeof a.backupId !== 'string') throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'backupId must be a string');
      return this.d.backup().next(a.backupId);
    }));
  }

  private async serve<T>(method: string, _ctx: RpcContext, fn: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint();
    this.inFlightRpcs++;
    try {
      const result = await fn();
      this.d.metrics.observeRpc(method, Number(process.hrtime.bigint() - started) / 1e9);
      return result;
    } catch (err) {
      const e = toMooringError(err, this.d.logger, method);
      this.d.metrics.observeRpc(method, Number(process.hrtime.bigint() - started) / 1e9, e.code);
      throw e;
    } finally {
      this.inFlightRpcs--;
    }
  }

  private checkAdmin(args: { adminToken?: unknown }): void {
    const want = this.d.config.adminToken;
    if (want === null) return;
    const got = typeof args.adminToken === 'string' ? args.adminToken : '';
    const a = Buffer.from(got);
    const b = Buffer.from(want);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new MooringError(ErrorCode.UNAUTHORIZED, 'this admin operation needs the admin token (adminToken)');
    }
  }

  private async handleWrite(method: WriteMethod, raw: unknown): Promise<unknown> {
    const edge = typeof raw === 'object' && raw !== null ? (raw as { adminToken?: unknown; avoidLeader?: unknown; sealRefusal?: unknown }) : {};
    if (adminWriteMethods.includes(method)) this.checkAdmin(edge);
    // Validated by the state machine's rules; fields only the leader may set (eviction candidates, lease skips)
    // never come from a client.
    const command = commandFor(method, raw);
    await this.d.gate.leaderOrPark(typeof edge.avoidLeader === 'string' ? edge.avoidLeader : null);
    // Sessions once every master has them (the state version): until then a client writes without an epoch.
    const state = this.d.state();
    if (command.type === 'OpenSession' && state.stateVersion < sessionEpochStateVersion) {
      throw new MooringError(ErrorCode.INVALID_ARGUMENT, `sessions need state version ${sessionEpochStateVersion} (the cluster is at ${state.stateVersion}; it is raised once every master runs a Mooring that supports it)`);
    }
    return unwrap(await this.writes.write(command, edge.sealRefusal === true));
  }

  private async handleRead(method: ReadMethod, raw: unknown): Promise<ResultOf<ReadMethod>> {
    const { gate, config } = this.d;
    const raft = this.d.raft();
    const state = this.d.state();
    if (method === 'ping') {
      const { clientId, avoidLeader } = parseArgs('ping', raw);
      await gate.leaderOrPark(avoidLeader ?? null);
      // Only a registered client's ping counts (an unknown id gets NEED_REMOUNT and registers by writing).
      const reply = this.d.expiry.answerPing(state, clientId);
      // ---- BEGIN tiering (store): the ping reply carries this client's tier tasks ----
      const tierTasks = [...this.d.demotions.tasksFor(clientId, Date.now()), ...this.d.repair.tasksFor(clientId, Date.now())];
      if (tierTasks.length > 0) return { status: reply.status, viewVersion: this.d.viewVersion(), tierTasks };
      // ---- END tiering ----
      return { status: reply.status, viewVersion: this.d.viewVersion() };
    }
    const args = parseArgs(method, raw);
    const stale = args.stale === true;
    // MasterClient readFrom: 'leader', or no live leader known (a follower cannot confirm a read): park until one is
    // elected, then serve here or answer NOT_LEADER with it.
    if (!stale && !raft.isLeader && (args.readFrom === 'leader' || gate.liveLeader(null) === null)) await gate.leaderOrPark(args.avoidLeader ?? null);
    if (method === 'getReplicaList' || method === 'batchGetReplicaList') {
      // Every master serves linearizable reads (follower-reads.ts); a follower's leases are granted by the leader.
      const leaseKeys = method === 'getReplicaList' ? [(args as { key: string }).key] : (args as { keys: string[] }).keys;
      const deps = {
        raft, state, leases: this.d.leases, pending: this.d.pending, leaseSync: this.d.leaseSync(), whileLeading: <T>(p: Promise<T>) => gate.whileLeading(p),
        now: () => leaseClock.now(), clock: systemClock, leaseTtlMs: config.leaseTtlMs, cover: this.d.followerCover,
        logger: this.d.logger,
      };
      // The compact reply is built straight from the state (no descriptor objects per key).
      if (method === 'batchGetReplicaList' && (args as { compact?: boolean }).compact === true) {
        return replicaReadCompact(deps, leaseKeys, stale, (args as { rows?: 'binary' }).rows === 'binary' ? 'binary' : 'arrays');
      }
      const rs = await replicaRead(deps, leaseKeys, stale);
      return method === 'getReplicaList' ? unwrap(rs[0]!) : rs;
    }
    if (!stale) await gate.whileLeading(linearizableRead(raft, null));
    switch (method) {
      case 'existKey':
        return state.existKey(parseArgs(method, raw).key);
      case 'batchExistKey':
        return state.batchExistKey(parseArgs(method, raw).keys);
      case 'listSegments':
        return state.listSegments();
      case 'stats':
        return state.stats();
    }
  }

  private async handleAdmin(method: AdminMethod, raw: unknown): Promise<ResultOf<AdminMethod>> {
    this.checkAdmin(parseArgs(method, raw));
    try {
      return await this.runAdmin(method, raw);
    } catch (err) {
      // RaftNode names the leader by node id (e.g. removeMember of the leader hands over first); clients need its
      // address and term.
      if (err instanceof MooringError && err.code === ErrorCode.NOT_LEADER) throw this.d.gate.notLeaderError(null, err.definite);
      throw err;
    }
  }

  private async runAdmin(method: AdminMethod, raw: unknown): Promise<ResultOf<AdminMethod>> {
    const raft = this.d.raft();
    switch (method) {
      case 'members':
        return this.d.members();
      case 'transferLeader': {
        const { to } = parseArgs(method, raw);
        this.d.gate.requireLeader();
        await raft.transferLeadership(to);
        return { leader: to };
      }
      case 'addMember': {
        const { id, host, raftPort, rpcPort, httpPort } = parseArgs(method, raw);
        this.d.gate.requireLeader();
        return raft.addMember({ id, host, port: raftPort, rpcPort, ...(httpPort !== undefined ? { httpPort } : {}) });
      }
      case 'removeMember': {
        const { id } = parseArgs(method, raw);
        this.d.gate.requireLeader();
        return raft.removeMember(id);
      }
      case 'snapshot':
        return { index: await raft.snapshotNow() };
    }
  }
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
