/**
 * Client expiry in the full-node simulator (opt-in: FullSimOptions.clientExpiry; it needs the lease machinery's leader
 * gate). Each simulated master runs production's ClientExpiry (src/master/client-expiry.ts) on its own NodeClock:
 * pings served as the RPC surface serves them (the leader gate, then `answerPing`), a housekeeping tick every
 * `tickMs` of its clock (held while the node is paused, run late at resume, like a process's timer), in which the
 * leader that did not just resume from a pause plans and proposes ExpireClients, and a fresh TTL at every election.
 * The clients — the workload's, the probe, and the storage node whose segment holds every object — ping through
 * production's client (callWithRetry) every `pingMs`, skipping a tick while their last ping is out, as StoreClient
 * does.
 *
 * The timers are production's shape scaled down (a run's fault phase lasts 1.5–3 s): production has a 1 s tick, 1 s
 * pings and a 10 s TTL (jepsen 4 s); the simulator a 250 ms tick, 250 ms pings and a TTL of 2–4 s — still many
 * election timeouts (Raft's timers are production's), so a client that keeps pinging over reliable links always
 * reaches a leader in time. Hence the check (LivenessLedger): no pinging client is ever expired. The masters' peer
 * book carries their client addresses (`n2` at `n2:1`), so NOT_LEADER hints name an endpoint, as in production.
 * Nothing here reads a real clock.
 */
import { ClientExpiry } from '../../master/client-expiry.js';
import { decodeMasterCommand, encodeMasterCommand } from '../../master/state-adapter.js';
import type { Role } from '../../raft/core/types.js';
import type { RaftNode } from '../../raft/node/index.js';
import type { AppliedCommand } from '../../raft/state-machine.js';
import type { Result } from '../../statemachine/commands.js';
import type { MasterState } from '../../statemachine/master-state.js';
import type { PingValue } from '../../statemachine/state-core.js';
import { silentLogger } from '../../transport/logger.js';
import type { NodeClock, SimScheduler } from './scheduler.js';

export interface SimClientExpiryOptions {
  /** The masters' clientTtlMs (ms of their own clocks). */
  ttlMs: number;
  /** Their housekeeping tick (production: housekeepingIntervalMs, 1 s). */
  tickMs: number;
  /** Each client pings this often (virtual ms; production's StoreClient: 1 s). */
  pingMs: number;
}

export const defaultSimClientExpiry: SimClientExpiryOptions = { ttlMs: 3_000, tickMs: 250, pingMs: 250 };

interface AppliedExpiry {
  index: number;
  /** Virtual time the leader planned it (the entry's time stamp). */
  plannedAt: number;
  clientIds: string[];
}

export class LivenessLedger {
  /** Per client: virtual times its pings were answered OK (as the client got them). */
  private readonly okPings = new Map<string, number[]>();
  /** Applied ExpireClients that expired someone, by entry index (the first node to apply one records it). */
  private readonly expiries = new Map<number, AppliedExpiry>();

  constructor(private readonly sched: SimScheduler, readonly o: SimClientExpiryOptions) {}

  get now(): number {
    return this.sched.now;
  }

  notePing(clientId: string): void {
    const at = this.okPings.get(clientId);
    if (at === undefined) this.okPings.set(clientId, [this.sched.now]);
    else at.push(this.sched.now);
  }

  /** Every node's applied commands and results: ExpireClients that expired a client. */
  noteApplied(commands: readonly AppliedCommand[], results: readonly unknown[], epochMs: number): void {
    commands.forEach((c, i) => {
      if (this.expiries.has(c.index)) return;
      const d = decodeMasterCommand(c.data);
      if (d === null || d.command.type !== 'ExpireClients') return;
      const r = results[i] as Result | undefined;
      const expired = r?.ok === true ? (r.value as { expired?: unknown }).expired : undefined;
      if (!Array.isArray(expired) || expired.length === 0) return;
      this.expiries.set(c.index, { index: c.index, plannedAt: d.timeMs - epochMs, clientIds: expired as string[] });
    });
  }

  /** Clients expired in the run (entries that applied). */
  get expired(): number {
    let n = 0;
    for (const e of this.expiries.values()) n += e.clientIds.length;
    return n;
  }

  /** Clients that ping (every client of the run does, from its first write: Workload.pingAs). */
  readonly pinging = new Set<string>();

  /** Every expiry of a pinging client is a violation: it kept pinging, over reliable links, well within its TTL. */
  check(): string[] {
    const out: string[] = [];
    for (const e of this.expiries.values()) {
      for (const id of e.clientIds) {
        if (!this.pinging.has(id)) continue;
        const last = (this.okPings.get(id) ?? []).filter((t) => t <= e.plannedAt).pop();
        out.push(`client expiry: ${id} (pinging every ${this.o.pingMs} ms) expired by entry ${e.index} planned at ${e.plannedAt.toFixed(1)} ms; ` +
          `its last ping answered OK before that: ${last === undefined ? 'none' : `${(e.plannedAt - last).toFixed(1)} ms earlier`} (TTL ${this.o.ttlMs} ms)`);
      }
    }
    return out;
  }
}

/** One master incarnation's client expiry (a crash loses it: liveness is leader soft state). */
export class SimExpiryNode {
  readonly expiry: ClientExpiry;
  private busy = false;

  constructor(clock: NodeClock, private readonly raft: RaftNode, private readonly state: MasterState, private readonly ledger: LivenessLedger, private readonly epochMs: number) {
    const o = ledger.o;
    // The leader's clock, as production's Date.now: this node's (drifting, offset) clock on the simulator's epoch.
    this.expiry = new ClientExpiry({ clientTtlMs: o.ttlMs, now: () => epochMs + clock.now(), logger: silentLogger, tickIntervalMs: o.tickMs });
    raft.on('roleChange', (role: Role) => { if (role === 'leader') this.expiry.becameLeader(); });
    if (raft.isLeader) this.expiry.becameLeader();
    clock.setInterval(() => this.tick(), o.tickMs);
  }

  /** LeaderDuties.housekeeping's client part. */
  private tick(): void {
    if (this.expiry.resumedFromPause(this.raft.isLeader)) return;
    if (!this.raft.isLeader || this.busy) return;
    const cmd = this.expiry.plan(this.state);
    if (cmd === null) return;
    this.busy = true;
    // Stamped with the planning's virtual time, as the simulator's other entries (the ledger reads it back).
    void (this.raft.propose(encodeMasterCommand(cmd, this.epochMs + this.ledger.now), { housekeeping: true }) as Promise<Result>)
      .then(() => this.expiry.expired(cmd.clientIds), () => {})
      .finally(() => { this.busy = false; });
  }

  ping(clientId: string): PingValue {
    return this.expiry.answerPing(this.state, clientId);
  }
}
