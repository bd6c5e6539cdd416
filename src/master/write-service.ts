/**
 * WriteService: how the leader serves a client write once the request is validated and the leader gate let it in —
 * the duplicate reply, the wait for a new leader's lease collection, admission and its hold, the applied reply after
 * a read barrier when admission refuses (and the sealed refusal a client may ask for), then the proposal, which a
 * retry of the same seq joins until it settles.
 *
 * One copy of these steps, used by the RPC surface (rpc-surface.ts) and by the full-node simulator's masters
 * (src/testing/fullnode/sim-leases.ts), so the simulator checks the code production runs rather than a retelling of
 * it. Time comes from the deps: the lease clock for admission, the entry stamp clock for the log entry's time stamp
 * (production: Date.now(); the simulator: its virtual epoch time). Nothing here reads a clock.
 */
import type { RaftNode } from '../raft/node/index.js';
import type { Command, Result } from '../statemachine/commands.js';
import type { LeaseTable } from '../statemachine/leases.js';
import type { MasterState } from '../statemachine/master-state.js';
import { admitAndHold, refusableByLease, sealFor } from './admission.js';
import { leaseWaitMs, type LeaseSync } from './lease-sync.js';
import type { LeaderGate } from './leader-gate.js';
import { holdUntilSettled, type Hold, type PendingWrites } from './pending-writes.js';
import type { ClientCommand } from './rpc-methods.js';
import { encodeMasterCommand } from './state-adapter.js';

export interface WriteServiceDeps {
  /** Read at each call: the master opens these after constructing its services. */
  raft(): RaftNode;
  state(): MasterState;
  leaseSync(): Pick<LeaseSync, 'learning' | 'learned'>;
  leases: LeaseTable;
  /** Where admission holds what a write covers until it settles (reads of those keys wait: pending-writes.ts). */
  pending: PendingWrites;
  gate: Pick<LeaderGate, 'whileLeading'>;
  electionTimeoutMs: number;
  /** The lease clock (admission compares lease expiries with it; never steps). */
  leaseNow(): number;
  /** The time stamp a new log entry carries (epoch milliseconds, wall clock in production). */
  stampNow(): number;
  /** Runs just before a write (not a seal) is proposed: the tiering's demotions make room for a put. */
  beforePropose?(command: Command): Promise<void>;
  /** Called with the proposal of an admitted write (not a seal) as it is made: for metrics. */
  proposed?(proposal: Promise<Result>): void;
}

export class WriteService {
  /** Session writes proposed by this leader and not yet settled, by `clientId#epoch#seq`: a retry joins its first attempt. */
  private readonly proposing = new Map<string, Promise<Result>>();

  constructor(private readonly d: WriteServiceDeps) {}

  /** Proposals of an earlier leadership are not joined by retries: their outcome is no longer ours to report. */
  steppedDown(): void {
    this.proposing.clear();
    this.d.pending.clear();
  }

  /**
   * Serves `command` on the leader: its result once applied (a refusal as a failed Result only when sealed; other
   * refusals throw, as do NOT_LEADER and the gate's errors). `sealRefusal`: the client asked that a refusal be
   * recorded as this seq's answer (an earlier attempt's fate is unknown).
   */
  async write(command: ClientCommand, sealRefusal = false): Promise<Result> {
    const { gate, leases } = this.d;
    const raft = this.d.raft();
    const state = this.d.state();
    const leaseSync = this.d.leaseSync();
    // The duplicate-reply table comes before any admission check: a retry (same clientId, seq) must get the first
    // attempt's reply, never a refusal of its own. Otherwise a remove retried while its first attempt is still
    // uncommitted here could be answered OBJECT_HAS_LEASE (a lease granted in between) and then apply anyway.
    const session = sessionKey(command);
    if (session !== null) {
      const dup = this.duplicateReply(command, session);
      if (dup !== undefined) return gate.whileLeading(dup);
    }
    // A new leader first learns the read leases of the previous one (one round trip): admission then refuses only
    // what is really leased, instead of everything under the blanket.
    if (leaseSync.learning && refusableByLease(command)) await gate.whileLeading(leaseSync.learned(leaseWaitMs(this.d.electionTimeoutMs)));
    // Leases on the lease clock (never steps); the entry's time stamp on the stamp clock, like every entry's.
    const stamp = this.d.stampNow();
    let hold: Hold;
    try {
      // From admission until it settles, no read may lease what this write covers: a read of it waits for it.
      hold = admitAndHold(command, state, leases, this.d.pending, this.d.leaseNow());
    } catch (err) {
      // The first attempt may have been committed under a previous leader but not yet applied here: after a read
      // barrier (which commits every entry of earlier terms) it would be in the table. A remove retried after a
      // failover was otherwise refused by the new leader's lease although it had happened.
      const prev = await this.appliedReply(command);
      if (prev !== undefined) return prev;
      const again = session === null ? undefined : this.duplicateReply(command, session);
      if (again !== undefined) return gate.whileLeading(again);
      // The client asked for a sealed answer (an earlier attempt of this write has an unknown fate): record the
      // refusal as this seq's answer, so no attempt of the write applies after it (SealRefusal).
      const seal = session === null ? null : sealFor(command, err, sealRefusal, state.stateVersion);
      if (seal === null || session === null) throw err;
      const sealing = raft.propose(encodeMasterCommand(seal, this.d.stampNow())) as Promise<Result>;
      this.joinable(session, sealing);
      return gate.whileLeading(sealing);
    }
    let proposal: Promise<Result>;
    try {
      if (this.d.beforePropose !== undefined) await this.d.beforePropose(command);
      proposal = raft.propose(encodeMasterCommand(command, stamp)) as Promise<Result>;
    } catch (err) {
      hold.release();
      throw err;
    }
    holdUntilSettled(hold, proposal, raft);
    if (session !== null) this.joinable(session, proposal);
    this.d.proposed?.(proposal);
    return gate.whileLeading(proposal);
  }

  /** A retry of the same seq joins `proposal` (the write, or its SealRefusal) until it settles. */
  private joinable(session: string, proposal: Promise<Result>): void {
    this.proposing.set(session, proposal);
    const forget = (): void => { if (this.proposing.get(session) === proposal) this.proposing.delete(session); };
    proposal.then(forget, forget);
  }

  /** The reply of an earlier attempt of this write: applied (from the session table) or still in flight here. */
  private duplicateReply(command: Command, session: string): Promise<Result> | undefined {
    const c = command as { clientId: string; seq: number; epoch?: number };
    const applied = this.d.state().sessionReply(c.clientId, c.seq, c.epoch);
    if (applied !== undefined) return Promise.resolve(applied);
    return this.proposing.get(session);
  }

  /** The stored exactly-once reply for this write, after a read barrier so every committed entry is applied. */
  private async appliedReply(command: Command): Promise<Result | undefined> {
    const c = command as { clientId?: unknown; seq?: unknown; epoch?: unknown };
    if (typeof c.clientId !== 'string' || typeof c.seq !== 'number') return undefined;
    await this.d.raft().read();
    return this.d.state().sessionReply(c.clientId, c.seq, c.epoch);
  }
}

function sessionKey(command: Command): string | null {
  const c = command as { clientId?: unknown; seq?: unknown; epoch?: unknown };
  return typeof c.clientId === 'string' && typeof c.seq === 'number' ? `${c.clientId}#${typeof c.epoch === 'number' ? c.epoch : 0}#${c.seq}` : null;
}
