/**
 * ClientExpiry: the leader's duty of expiring silent clients, on an injected clock (production: the wall clock the
 * leader also stamps its entries with, Date.now; the full-node simulator: a node's virtual clock).
 *
 * - A registered client's ping that reaches the leader refreshes it (`pinged`: ClientLiveness, leader soft state).
 * - A new leader knows no pings: every client counts as seen at its election (`becameLeader`).
 * - A housekeeping tick much later than the last one means this process was paused (SIGSTOP, a long GC, a VM
 *   freeze) or its clock jumped forward: the silence is its own, not its clients', so every client gets a fresh TTL
 *   and nothing is expired in that tick (`resumedFromPause`). A shorter delay (a tick more than half an interval
 *   late) is credited to every client instead: the tick that runs at resume comes before the pings that waited in
 *   the sockets meanwhile, and with a short TTL (3 s, 1 s pings) a 2.49 s pause would otherwise expire a live client.
 * - Otherwise the leader proposes ExpireClients for clients silent, in pings and in writes, for `clientTtlMs`
 *   (`plan`); apply re-checks the writes' time stamps, so a client that wrote meanwhile is not expired.
 * MasterNode (through LeaderDuties and the RPC surface) and the simulator's masters (sim-liveness.ts) both run this.
 */
import { ClientLiveness, planClientExpiry, type ClientRegistryView } from '../statemachine/clients.js';
import type { ExpireClients } from '../statemachine/commands.js';
import type { PingValue } from '../statemachine/state-core.js';
import type { LoggerLike } from '../transport/logger.js';

/** Housekeeping (client expiry, reclaim, drains) runs this often on every master; it acts on the leader only. */
export const housekeepingIntervalMs = 1_000;
/** A housekeeping tick later than this many intervals means the process was paused (see resumedFromPause). */
export const pauseGapFactor = 2.5;

export interface ClientExpiryOptions {
  clientTtlMs: number;
  /** The leader's clock in ms: the time base of pings, of the TTL and of the entries' time stamps. */
  now(): number;
  logger: LoggerLike;
  /** Tests and the simulator: their own table (default: a new one). */
  liveness?: ClientLiveness;
  /** How often `resumedFromPause` is called (default housekeepingIntervalMs; the simulator runs a shorter one). */
  tickIntervalMs?: number;
}

export class ClientExpiry {
  readonly liveness: ClientLiveness;
  private readonly tickIntervalMs: number;
  private lastTickMs: number;

  constructor(private readonly o: ClientExpiryOptions) {
    if (!(o.clientTtlMs > 0)) throw new RangeError(`clientTtlMs must be > 0, got ${o.clientTtlMs}`);
    this.liveness = o.liveness ?? new ClientLiveness();
    this.lastTickMs = o.now();
    this.tickIntervalMs = o.tickIntervalMs ?? housekeepingIntervalMs;
  }

  /** A registered client's ping reached this leader (an unknown id is not kept: strangers must not grow the table). */
  pinged(clientId: string): void {
    this.liveness.touch(clientId, this.o.now());
  }

  /**
   * The leader's answer to a ping (the RPC surface's and the simulator's): OK refreshes the client; NEED_REMOUNT
   * (an id the state does not know) is not kept, so ids made up by a stranger do not grow the table.
   */
  answerPing(state: { ping(clientId: string): PingValue }, clientId: string): PingValue {
    const reply = state.ping(clientId);
    if (reply.status === 'OK') this.pinged(clientId);
    return reply;
  }

  /** This node became leader: it has heard no pings yet, so every client counts as seen now. */
  becameLeader(): void {
    this.liveness.resetForNewLeader(this.o.now());
  }

  /**
   * Called at every housekeeping tick, on any role. True when the tick came much later than the last one (a pause
   * of this process): a leader then gives every client a fresh TTL and must not expire anyone in this tick.
   */
  resumedFromPause(isLeader: boolean): boolean {
    const at = this.o.now();
    const gap = at - this.lastTickMs;
    this.lastTickMs = at;
    // Late by more than half an interval: this process did not run for that long (timer jitter stays below it).
    if (gap > this.tickIntervalMs * 1.5) this.liveness.credit(gap - this.tickIntervalMs);
    if (!isLeader || gap <= Math.min(this.tickIntervalMs * pauseGapFactor, this.tickIntervalMs + this.o.clientTtlMs / 2)) return false;
    this.liveness.resetForNewLeader(at);
    this.o.logger.info({ gapMs: gap }, 'resumed after a pause: every client gets a fresh TTL');
    return true;
  }

  /** The clients to expire now (leader), as one command, or null. Drops pings of clients no longer registered. */
  plan(state: ClientRegistryView): ExpireClients | null {
    this.liveness.retainRegistered(state.clients);
    return planClientExpiry(state, this.liveness, this.o.now(), this.o.clientTtlMs);
  }

  /** The proposed ExpireClients went through: forget their pings. */
  expired(clientIds: readonly string[]): void {
    for (const id of clientIds) this.liveness.forget(id);
  }
}
