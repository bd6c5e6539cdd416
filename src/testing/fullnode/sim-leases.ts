/**
 * Read leases in the full-node simulator (issues 16 and 17). Each simulated master runs production's lease
 * machinery, composed as MasterNode composes it, on its own NodeClock:
 *
 * - a LeaseTable and a LeaseSync whose 'ls'/'la'/'lq'/'lr' frames travel over the simulated wire (drops,
 *   partitions, delays, duplicates), taken out by LeaderContact before RaftNode sees them;
 * - role changes through `LeaseSync.roleChanged` (the same call MasterNode makes), so a new leader keeps the
 *   blanket until a majority told it the leases they know;
 * - follower reads: the leader grants and records in `leaseGrantingHandler`, the follower `recordServed`s;
 * - getReplicaList through `replicaRead` (follower-reads.ts; every other read of a node in a compact form,
 *   `replicaReadCompact`, expanded as the client expands it: versions 1 and 2 by turns, 2 being what
 *   MasterClient.batchGetReplicaList asks for), and every
 *   client write (Remove, the workload's puts) through `WriteService` (write-service.ts): both the RPC surface's own code. A write: duplicate reply, wait for the
 *   lease collection, `admitAndHold` (OBJECT_HAS_LEASE: a definite refusal; else the key is held in PendingWrites
 *   until the remove settles, so reads of it wait), the applied reply after a read barrier, then the proposal.
 *
 * The LeaseLedger records, in virtual time, every lease a client was given (the leader's grant; for a follower read
 * the leader's forwarded grant) and the admission time of every Remove that applied (the entry's own time stamp,
 * written at admission), for the check in `LeaseLedger.check`. Nothing here reads a real clock or draws randomness.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { ClientCommand } from '../../master/rpc-methods.js';
import { decodeKeys, leaseGrantingHandler, maxFollowerLeaseVoters, replicaRead, replicaReadCompact, type ReplicaReadDeps } from '../../master/follower-reads.js';
import { expandReplicaLists } from '../../master/replica-lists-wire.js';
import { FollowerLeaseCover } from '../../master/follower-lease-cover.js';
import type { LeaderContact } from '../../master/leader-contact.js';
import { LeaderGate } from '../../master/leader-gate.js';
import { LeaseSync, leaseWaitMs, raftLeaseView } from '../../master/lease-sync.js';
import { PendingWrites } from '../../master/pending-writes.js';
import { WriteService } from '../../master/write-service.js';
import { decodeMasterCommand } from '../../master/state-adapter.js';
import type { NodeId, Role } from '../../raft/core/types.js';
import type { ForwardedReadHandler, RaftNode } from '../../raft/node/index.js';
import type { AppliedCommand } from '../../raft/state-machine.js';
import type { Command, Result } from '../../statemachine/commands.js';
import { LeaseTable } from '../../statemachine/leases.js';
import type { MasterState } from '../../statemachine/master-state.js';
import type { LeaseFile } from '../../master/lease-file.js';
import { silentLogger } from '../../transport/logger.js';
import type { NodeClock, SimScheduler } from './scheduler.js';

/**
 * The fastest a simulated node's clock runs relative to virtual time: the schedules' drift faults (full-schedule.ts)
 * stay within [0.9, 1.1].
 */
export const simMaxClockRate = 1.1;

/**
 * Control faults that break the design (tests only, like ApplyFault): the lease check must then find violations.
 * - 'no-collection': a new leader neither asks a majority nor keeps the blanket; it knows no lease of the old leader.
 * - 'no-announce': the leader answers its own reads without announcing their leases (members never learn them).
 * - 'no-hold': the leader does not hold what an admitted Remove covers (PendingWrites): a read of the key leases and
 *   answers before the remove applies (the race of seeds 326, 377, 978, 1248).
 *   (Answering before the majority's acknowledgement, but still announcing, was tried first: 0 of 300 seeds failed,
 *   as the announcement nearly always arrives anyway.)
 * - 'stale-cover': a follower's lease covers (follower-lease-cover.ts) never end: it serves a key it was granted once
 *   without asking the leader again, long after the leader's grant ran out.
 */
export type LeaseFault = 'no-collection' | 'no-announce' | 'no-hold' | 'stale-cover';

/** A getReplicaList that returned ok to its client: the lease it was promised, in virtual time. */
export interface ReturnedRead {
  key: string;
  node: NodeId;
  /** Virtual time of the leader's grant (for a follower read: the leader's forwarded grant). */
  grantedAt: number;
  /** grantedAt + TTL / maxClockRate: the least a client may count on (see LeaseLedger). */
  endsAt: number;
  viaFollower: boolean;
}

interface AppliedRemove {
  key: string;
  index: number;
  admittedAt: number;
  /** Virtual time it first applied on any node (its replicas are freed from then on). */
  appliedAt: number;
}

export class LeaseLedger {
  readonly reads: ReturnedRead[] = [];
  fault: LeaseFault | null = null;
  /** Per applied remove session: its first entry in the log (the one that executed; later copies are duplicates). */
  private readonly applied = new Map<string, AppliedRemove>();
  /** Forwarded grants for follower reads: follower + key → virtual times, ascending. */
  private readonly forwarded = new Map<string, number[]>();
  private readonly anomalies: string[] = [];

  /**
   * `maxClockRate`: the fastest a node's clock runs relative to virtual time (the schedules' drift faults). A lease
   * of TTL ms on the leader's clock lasts at least TTL / maxClockRate of virtual time: that is what the check holds
   * the cluster to (leases assume bounded clock drift; a client has to count the same margin).
   */
  constructor(private readonly sched: SimScheduler, readonly ttlMs: number, readonly maxClockRate: number) {}

  get now(): number {
    return this.sched.now;
  }

  noteForwardedGrant(follower: NodeId, keys: readonly string[]): void {
    for (const k of keys) {
      const id = `${follower}\u0000${k}`;
      const at = this.forwarded.get(id) ?? [];
      at.push(this.sched.now);
      this.forwarded.set(id, at);
    }
  }

  /**
   * A read returned ok to its client; `grantedAt` null: a follower read, granted by the leader after `since`, or
   * (`covered`) served under an earlier grant of the key to this follower (follower-lease-cover.ts): then the lease
   * the client counts on runs from `since`, when it asked.
   */
  noteRead(key: string, node: NodeId, grantedAt: number | null, since: number, covered = false): void {
    let at = grantedAt;
    if (at === null) {
      const grants = this.forwarded.get(`${node}\u0000${key}`) ?? [];
      // The earliest grant the leader made for this follower and key since the read began: the shortest lease.
      at = grants.find((t) => t >= since) ?? null;
      if (at === null && covered && grants.length > 0 && grants[0]! < since) at = since;
      if (at === null) {
        this.anomalies.push(`follower ${node} answered a read of ${key} (begun at ${since.toFixed(1)}) without a lease granted by a leader`);
        return;
      }
    }
    this.reads.push({ key, node, grantedAt: at, endsAt: at + this.ttlMs / this.maxClockRate, viaFollower: grantedAt === null });
  }

  /** Every node's applied commands and results (sim-master.ts): applied Removes that deleted an object. */
  noteApplied(commands: readonly AppliedCommand[], results: readonly unknown[], epochMs: number): void {
    commands.forEach((c, i) => {
      const d = decodeMasterCommand(c.data);
      if (d === null || d.command.type !== 'Remove') return;
      const session = `${d.command.clientId}#${d.command.seq}`;
      const prev = this.applied.get(session);
      if (prev !== undefined && prev.index === c.index) {
        prev.appliedAt = Math.min(prev.appliedAt, this.sched.now);
        return;
      }
      if (prev !== undefined && prev.index < c.index) return;
      // The first copy in the log executed; a node restored from a snapshot may only see a later copy (a duplicate).
      if ((results[i] as Result | undefined)?.ok !== true) {
        if (prev !== undefined) this.applied.delete(session);
        return;
      }
      this.applied.set(session, { key: d.command.key, index: c.index, admittedAt: d.timeMs - epochMs, appliedAt: this.sched.now });
    });
  }

  get removesApplied(): number {
    return this.applied.size;
  }

  /**
   * No Remove that applied was admitted, or applied, while a lease a client was given on its key still ran (the
   * second: a lease granted between the remove's admission and its apply, the race PendingWrites closes).
   */
  check(): string[] {
    const out = [...this.anomalies];
    const byKey = new Map<string, ReturnedRead[]>();
    for (const r of this.reads) byKey.set(r.key, [...(byKey.get(r.key) ?? []), r]);
    for (const [session, rm] of this.applied) {
      const inside = (r: ReturnedRead, t: number): boolean => r.grantedAt < t && t < r.endsAt;
      const hit = (byKey.get(rm.key) ?? []).find((r) => inside(r, rm.admittedAt) || inside(r, rm.appliedAt));
      if (hit !== undefined) {
        out.push(`lease: remove ${session} of ${rm.key} (entry ${rm.index}) was admitted at ${rm.admittedAt.toFixed(1)} ms and applied at ${rm.appliedAt.toFixed(1)} ms while a read's lease ` +
          `(${hit.viaFollower ? 'follower' : 'leader'} read on ${hit.node}, granted at ${hit.grantedAt.toFixed(1)}) ran until ${hit.endsAt.toFixed(1)}`);
      }
    }
    return out;
  }
}

/** One incarnation's lease machinery (a crash loses it: leases are soft state). */
export class SimLeaseNode {
  readonly leases: LeaseTable;
  readonly sync: LeaseSync;
  readonly gate: LeaderGate;
  readonly pending = new PendingWrites();
  /** This incarnation's follower lease covers (a crash loses them, as it loses a process's). */
  readonly cover: FollowerLeaseCover;
  /** Production's write steps (write-service.ts) on this node's clocks. */
  private readonly writes: WriteService;
  /**
   * Reads served so far: odd ones answer in a compact form, version 1 and 2 by turns (no randomness drawn, and the
   * form of the rows changes nothing the schedule sees: seeds replay as before).
   */
  private reads = 0;

  constructor(
    id: NodeId,
    private readonly clock: NodeClock,
    private readonly raft: RaftNode,
    private readonly state: MasterState,
    contact: LeaderContact,
    send: (to: NodeId, frame: unknown) => boolean,
    private readonly ledger: LeaseLedger,
    electionTimeoutMs: number,
    epochMs: number,
    fresh: boolean,
    store?: LeaseFile,
  ) {
    this.leases = new LeaseTable(ledger.ttlMs);
    this.cover = new FollowerLeaseCover(ledger.ttlMs, (key) => state.coverSlot(key), undefined, ledger.fault === 'stale-cover' ? Number.POSITIVE_INFINITY : undefined);
    this.sync = new LeaseSync({
      self: id, leases: this.leases, send, ...raftLeaseView(() => raft), fresh, ...(store !== undefined ? { store } : {}),
      ackTimeoutMs: () => leaseWaitMs(electionTimeoutMs), clock, logger: silentLogger,
    });
    this.gate = new LeaderGate({ self: id, raft: () => raft, contact, electionTimeoutMs, clock, stopping: () => false });
    const sync = this.sync;
    this.writes = new WriteService({
      raft: () => raft, state: () => state, leases: this.leases, gate: this.gate, electionTimeoutMs,
      // The controls: a new leader that skips the collection never waits for it; 'no-hold' holds in a table nobody reads.
      leaseSync: () => (ledger.fault === 'no-collection' ? { learning: false, learned: () => Promise.resolve() } : sync),
      pending: ledger.fault === 'no-hold' ? new PendingWrites() : this.pending,
      leaseNow: () => clock.now(),
      // The entry's time stamp is the admission's virtual time (the ledger reads it back when the entry applies).
      stampNow: () => epochMs + ledger.now,
    });
    contact.intercept((from, frame) => {
      // The control: a new leader that skips the collection ignores the answers.
      if (ledger.fault === 'no-collection' && (frame as { k?: unknown } | null)?.k === 'lr') return true;
      return this.sync.onFrame(from, frame, clock.now());
    });
    raft.on('roleChange', (role: Role) => this.roleChanged(role));
    // Follower reads: the leader grants (and records) the leases a follower's read asks for; noted for the check.
    const grant = leaseGrantingHandler(this.leases, this.pending, (keys, now) => this.sync.recordGranted(keys, now), () => clock.now());
    const handler: ForwardedReadHandler = (from, payloads) => {
      const replies = grant(from, payloads);
      payloads.forEach((p, i) => {
        if (replies[i] === null) return; // not recorded: the follower answers NOT_LEADER
        const refused = new Set(decodeKeys(replies[i]));
        ledger.noteForwardedGrant(from, decodeKeys(p).filter((k) => !refused.has(k)));
      });
      return replies;
    };
    raft.setForwardedReadHandler(handler);
    // A single voter may have won its election inside RaftNode.start (as in MasterNode).
    if (raft.isLeader) this.roleChanged('leader');
  }

  private roleChanged(role: Role): void {
    this.gate.onRoleChange(role);
    if (role !== 'leader') {
      this.writes.steppedDown(); // as RpcSurface.steppedDown
      this.pending.clear();
    }
    this.sync.roleChanged(role, this.clock.now());
    if (role === 'leader' && this.ledger.fault === 'no-collection') {
      this.leases.resetForNewLeader(this.clock.now()); // forgets what it knew as a member
      this.leases.endBlanket();
    }
  }

  /**
   * getReplicaList as the RPC surface serves it, in any form (`compact`; `binaryRows`: compact version 2; a compact
   * read also asks for `extra`, as a batch of two keys: production's batchGetReplicaList path). Per key read: its
   * result and whether this follower served it under a cover (`result` and `covered`: the first key's). Returns the
   * virtual time of the leader's grant when this node granted it (null for a follower read: the leader's forwarded
   * grant, LeaseLedger.noteRead finds it) and when the read began.
   */
  async read(key: string, extra?: string): Promise<{ result: Result; covered: boolean; keys: string[]; results: Result[]; coveredKeys: boolean[]; grantedAt: number | null; since: number; compact: boolean; binaryRows: boolean }> {
    const since = this.ledger.now;
    let grantedAt: number | null = null;
    const raft = this.raft;
    // The forms production serves: the plain results (getReplicaList) and the compact rows built straight from the
    // replica records (batchGetReplicaList: version 2 from MasterClient, version 1 from an older one), read back as the
    // client reads them.
    const n = this.reads++;
    const compact = (n & 1) === 1;
    const binaryRows = (n & 3) === 3;
    const keys = compact && extra !== undefined && extra !== key ? [key, extra] : [key];
    // What replicaRead decides below, in the same instant: whether this follower serves each key under a cover.
    const coveredKeys = keys.map((k) => !raft.isLeader && raft.members().voters.length <= maxFollowerLeaseVoters && this.cover.covers(k, this.clock.now(), raft.currentTerm));
    const leaseSync = this.ledger.fault === 'no-announce'
      ? { announce: () => Promise.resolve(), recordServed: (k: readonly string[], now: number, term: number) => this.sync.recordServed(k, now, term) }
      : this.sync;
    const deps: ReplicaReadDeps = {
      raft, state: this.state, leases: this.leases, pending: this.pending, leaseSync, whileLeading: (p) => this.gate.whileLeading(p),
      // The grant's time is replicaRead's last now() on the leader.
      now: () => { grantedAt = raft.isLeader ? this.ledger.now : null; return this.clock.now(); },
      clock: this.clock, leaseTtlMs: this.ledger.ttlMs, cover: this.cover,
    };
    const results = compact ? expandReplicaLists(await replicaReadCompact(deps, keys, false, binaryRows ? 'binary' : 'arrays'), keys.length) : await replicaRead(deps, keys);
    return { result: results[0]!, covered: coveredKeys[0]!, keys, results, coveredKeys, grantedAt, since, compact, binaryRows };
  }

  /** Remove as the RPC surface admits it (rpc-surface.ts handleWrite); throws to be retried, or OBJECT_HAS_LEASE. */
  remove(command: Extract<Command, { type: 'Remove' }> & { seq: number }): Promise<Result> {
    return this.write(command);
  }

  /**
   * A client write as the RPC surface serves it once the leader gate let it in: production's WriteService
   * (write-service.ts: duplicate reply, the wait for the lease collection, admission and its hold, the applied reply
   * after a read barrier when admission refuses, the proposal). Throws NOT_LEADER (retry elsewhere) or the
   * admission's refusal.
   */
  write(command: ClientCommand & { seq: number }, sealRefusal = false): Promise<Result> {
    if (!this.raft.isLeader) return Promise.reject(new MooringError(ErrorCode.NOT_LEADER, 'not the leader'));
    return this.writes.write(command, sealRefusal);
  }
}
