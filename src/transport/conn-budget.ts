/**
 * Connection budgets for a listening port, so strangers cannot starve it: a cap per remote address, a total cap,
 * a cap on connections still in their handshake, and an idle timeout once authenticated. When the handshake share
 * or the total is full, a new connection displaces the OLDEST connection still in its handshake (a silent stranger
 * has had the longest to speak), never an authenticated one: on the peer port a member can always get in however
 * many strangers hold connections, and its own handshake takes one round trip. The handshake deadline itself is
 * enforced by the handshake (handshakeTimeoutMs).
 */
import type net from 'node:net';

/** Connections one remote IP address may hold on one port (accepted beyond this are closed at once). */
export const defaultMaxConnectionsPerAddress = 64;
/** Connections one port holds in all. */
export const defaultMaxInboundConnections = 1024;
/** An authenticated connection with no traffic for this long is closed (peers send heartbeats every tick). */
export const defaultIdleTimeoutMs = 300_000;
/** Peer port: slots of maxInboundConnections that connections still in their handshake may never take. */
export const peerSlotsReservedForMembers = 64;

export interface ConnectionLimits {
  maxConnectionsPerAddress: number;
  maxInboundConnections: number;
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
}

export type BudgetRefusal = 'per_address_limit' | 'connection_limit';

export class ConnectionBudget {
  private readonly perAddress = new Map<string, number>();
  private total = 0;
  /** Connections still in their handshake, oldest first (a Set keeps insertion order). */
  private readonly pending = new Set<net.Socket>();
  private readonly maxPending: number;
  /** Called for each pending connection displaced by a newer one. */
  onEvict: (socket: net.Socket) => void = () => {};

  constructor(
    readonly limits: Pick<ConnectionLimits, 'maxConnectionsPerAddress' | 'maxInboundConnections' | 'idleTimeoutMs'>,
    reservedForAuthenticated = 0,
  ) {
    this.maxPending = Math.max(1, limits.maxInboundConnections - reservedForAuthenticated);
  }

  get connections(): number {
    return this.total;
  }

  /**
   * Admits a freshly accepted socket (an Admission) or says why not (a refusal reason). An admitted socket counts
   * as pending until its Admission's authenticated() and is released automatically when it closes.
   */
  admit(socket: net.Socket): Admission | BudgetRefusal {
    const addr = socket.remoteAddress ?? '?';
    const mine = this.perAddress.get(addr) ?? 0;
    if (mine >= this.limits.maxConnectionsPerAddress) return 'per_address_limit';
    if (this.total >= this.limits.maxInboundConnections && this.pending.size === 0) return 'connection_limit';
    if (this.total >= this.limits.maxInboundConnections || this.pending.size >= this.maxPending) this.evictOldestPending();
    this.perAddress.set(addr, mine + 1);
    this.total++;
    this.pending.add(socket);
    socket.once('close', () => {
      this.pending.delete(socket);
      this.total--;
      const n = (this.perAddress.get(addr) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(addr);
      else this.perAddress.set(addr, n);
    });
    return {
      authenticated: () => {
        if (!this.pending.delete(socket)) return;
        // Idle authenticated connections give their slot back (a silent client, a dead peer behind a NAT).
        socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
      },
    };
  }

  private evictOldestPending(): void {
    const oldest = this.pending.values().next().value as net.Socket | undefined;
    if (oldest === undefined) return;
    // Counted out now: its 'close' event comes later, and the new connection takes the slot at once.
    this.pending.delete(oldest);
    this.onEvict(oldest);
    oldest.destroy();
  }
}

export interface Admission {
  /** The handshake completed: the connection leaves the pending share and the idle timeout starts. */
  authenticated(): void;
}
