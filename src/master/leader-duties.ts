/**
 * The leader's duties: housekeeping (expire silent clients, reclaim abandoned puts, drain segments), eviction above
 * the watermark (demotion first, see demotions.ts), and re-replication rounds (repair.ts). Everything they change
 * goes through the log as a leader-proposed command; what they keep is leader soft state.
 */
import type { RaftNode } from '../raft/node/index.js';
import type { Command, Result } from '../statemachine/commands.js';
import type { ClientExpiry } from './client-expiry.js';
import { planEviction } from '../statemachine/eviction.js';
import type { LeaseTable } from '../statemachine/leases.js';
import type { MasterState } from '../statemachine/master-state.js';
import { maxDrainObjectsPerCommand } from '../statemachine/limits.js';
import { drainedKeys, planDrain, planReclaim, planStateVersion } from '../statemachine/planners.js';
import { holdUntilSettled, type Hold, type PendingWrites } from './pending-writes.js';
import type { MasterConfig } from './config.js';
import type { Demotions } from './demotions.js';
import type { LeaseSync } from './lease-sync.js';
import type { Logger } from './logger.js';
import type { MasterMetrics } from './metrics.js';
import type { RepairScheduler } from './repair.js';
import { encodeMasterCommand } from './state-adapter.js';
import { leaseClock } from '../raft/effects/system-clock.js';

/**
 * Expired leases forgotten per event-loop turn (each of the lease table and LeaseSync's knowledge): a second of
 * expiries on a busy leader is 100k+ entries, ~24 ms at once; in slices of this many (~1–2 ms) the writes and reads
 * waiting behind it go on between slices.
 */
export const maxLeasePrunesPerTurn = 4_096;
/**
 * Bounded DrainSegments (state version 2) one housekeeping round proposes at most, one after the other: up to
 * 64 × maxDrainObjectsPerCommand (262,144) objects dropped per second, in commands of ~10 ms of apply each.
 */
export const maxDrainCommandsPerRound = 64;

export interface LeaderDutiesDeps {
  config: MasterConfig;
  leases: LeaseTable;
  /** Keys of leader-proposed writes that free replicas (DrainSegments), held until they settle. */
  pending: PendingWrites;
  /** Client TTL expiry (client-expiry.ts): its clock is the one entries are stamped with. */
  expiry: ClientExpiry;
  demotions: Demotions;
  repair: RepairScheduler;
  metrics: MasterMetrics;
  logger: Logger;
  /** Read at each call: the master opens these after constructing its duties. */
  raft(): RaftNode;
  state(): MasterState;
  leaseSync(): LeaseSync;
  /** The state version a peer announced in its handshake (TcpPeerTransport.peerStateVersion). */
  peerStateVersion(peer: string): number | undefined;
  stopping(): boolean;
}

export class LeaderDuties {
  private housekeepingBusy = false;
  private evictionBusy = false;
  private pruning = false;

  constructor(private readonly d: LeaderDutiesDeps) {}

  /** The members other than this one (voters, outgoing voters, learners). */
  private otherMembers(): string[] {
    const cs = this.d.raft().members();
    const self = this.d.raft().id;
    return [...new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners])].filter((m) => m !== self);
  }

  /** Re-replication (repair.ts): leader soft state, dropped when leadership is lost. */
  repairRound(): void {
    if (!this.d.raft().isLeader || this.d.stopping()) return;
    this.d.repair.plan(this.d.state(), Date.now());
    this.d.metrics.setRepair(this.d.repair.report());
  }

  /**
   * Proposes a command that frees replicas of keys no lease protected when it was planned, holding them (`hold`,
   * taken in the same turn as the plan) until it settles: a read of one of them meanwhile would otherwise be leased
   * and then lose its replica inside the lease (the remove/read race of PendingWrites, for leader-planned writes).
   */
  private async proposeHeld(command: Command, hold: Hold): Promise<void> {
    const raft = this.d.raft();
    let proposal: Promise<Result>;
    try {
      proposal = raft.propose(encodeMasterCommand(command, Date.now()), { housekeeping: true }) as Promise<Result>;
    } catch (err) {
      hold.release();
      throw err;
    }
    holdUntilSettled(hold, proposal, raft);
    const result = await proposal;
    if (!result.ok) this.d.logger.warn({ type: command.type, error: result.error }, 'leader housekeeping command refused by the state machine');
  }

  private async proposeInternal(command: Command): Promise<void> {
    const result = (await this.d.raft().propose(encodeMasterCommand(command, Date.now()), { housekeeping: true })) as Result;
    if (!result.ok) this.d.logger.warn({ type: command.type, error: result.error }, 'leader housekeeping command refused by the state machine');
  }

  async housekeeping(): Promise<void> {
    // A leader that was paused heard no pings while it was not running: every client gets a fresh TTL (client-expiry.ts).
    if (this.d.expiry.resumedFromPause(this.d.raft().isLeader)) return;
    this.pruneLeases();
    if (!this.d.raft().isLeader || this.housekeepingBusy || this.d.stopping()) return;
    this.housekeepingBusy = true;
    try {
      const now = Date.now();
      const expire = this.d.expiry.plan(this.d.state());
      if (expire !== null) {
        this.d.logger.info({ clients: expire.clientIds }, 'expiring silent clients');
        await this.proposeInternal(expire);
        this.d.expiry.expired(expire.clientIds);
      }
      const reclaim = planReclaim(this.d.state(), now, this.d.config.putStartReclaimMs);
      if (reclaim !== null) await this.proposeInternal(reclaim);
      const version = planStateVersion(this.d.state(), this.otherMembers(), (m) => this.d.peerStateVersion(m));
      if (version !== null) {
        this.d.logger.info({ from: this.d.state().stateVersion, to: version.version }, 'every master supports a newer state version: raising it (an older Mooring can no longer join)');
        await this.proposeInternal(version);
      }
      for (let n = 0; n < maxDrainCommandsPerRound && this.d.raft().isLeader && !this.d.stopping(); n++) {
        const drain = planDrain(this.d.state(), this.d.leases, leaseClock.now(), this.d.repair.awaitingRepair());
        // Not before the repair scheduler has looked at every object with these segments DRAINING (see coversDrain).
        if (drain === null || !this.d.repair.coversDrain(drain.segmentIds)) break;
        await this.proposeHeld(drain, this.d.pending.hold({ kind: 'keys', keys: drainedKeys(this.d.state(), drain) }));
        // An unbounded drain (state version 1) did everything at once; a bounded one that was not full did the rest.
        if (drain.keys === undefined || drain.keys.length < maxDrainObjectsPerCommand) break;
      }
    } catch (err) {
      this.d.logger.debug({ err: String(err) }, 'housekeeping round failed; retried next round');
    } finally {
      this.housekeepingBusy = false;
    }
  }

  /**
   * Forgets expired leases (this member's LeaseSync knowledge; the leader's lease table too), maxLeasePrunesPerTurn
   * at a time, continuing on the next turns until none is left. Only what already expired goes: nothing any check
   * reads changes (isLeased and friends compare expiries exactly), only memory.
   */
  pruneLeases(): void {
    if (this.pruning) return;
    this.pruning = true;
    const slice = (): void => {
      let more = false;
      try {
        const now = leaseClock.now();
        more = this.d.leaseSync().prune(now, maxLeasePrunesPerTurn);
        if (this.d.raft().isLeader && this.d.leases.prune(now, maxLeasePrunesPerTurn) >= maxLeasePrunesPerTurn) more = true;
      } catch (err) {
        this.d.logger.warn({ err: String(err) }, 'lease pruning failed; retried next housekeeping round');
      }
      if (more && !this.d.stopping()) setImmediate(slice);
      else this.pruning = false;
    };
    slice();
  }

  async evictionCheck(): Promise<void> {
    if (!this.d.raft().isLeader || this.evictionBusy || this.d.stopping()) return;
    this.evictionBusy = true;
    try {
      // The lease clock: leases are what this plan must respect (soft pins and ages, stamped on the wall clock, differ
      // from it only by the steps the wall clock took since this process started).
      const evict = planEviction(this.d.state(), this.d.leases, leaseClock.now(), {
        highWatermarkRatio: this.d.config.eviction.highWatermark,
        targetRatio: this.d.config.eviction.target,
      });
      // ---- BEGIN tiering (store): demote to a DISK tier instead of dropping, drop after a timeout ----
      const drop = evict === null ? null : this.d.demotions.plan(evict, Date.now());
      // ---- END tiering ----
      if (drop !== null) {
        // No lease may be granted on memory that is about to be freed.
        // Until it settles: a timed-out Evict may still apply (holdUntilSettled), so the reservation outlives it.
        await this.proposeHeld(drop, this.d.leases.reserve(drop.items.map((i) => i.key)));
        this.d.metrics.countEvictions(drop.items.length);
      }
    } catch (err) {
      this.d.logger.debug({ err: String(err) }, 'eviction round failed; retried next round');
    } finally {
      this.evictionBusy = false;
    }
  }
}
