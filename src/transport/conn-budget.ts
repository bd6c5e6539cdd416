/**
 * Connection budgets for a listening port, so strangers cannot starve it: a cap per remote address, a total cap,
 * a share of the total reserved for connections that have authenticated (on the peer port: members, who can then
 * always connect however many strangers are waiting in their handshakes), and an idle timeout once
 * authenticated. The handshake deadline itself is enforced by the handshake (handshakeTimeoutMs).
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

export type BudgetRefusal = 'per_address_limit' | 'connection_limit' | 'handshake_slots_full';

export class ConnectionBudget {
  private readonly perAddress = new Map<string, number>();
  private total = 0;
  private pending = 0;
  private readonly maxPending: number;

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
    if (this.total >= this.limits.maxInboundConnections) return 'connection_limit';
    if (this.pending >= this.maxPending) return 'handshake_slots_full';
    this.perAddress.set(addr, mine + 1);
    this.total++;
    this.pending++;
    let isPending = true;
    socket.once('close', () => {
      if (isPending) this.pending--;
      isPending = false;
      this.total--;
      const n = (this.perAddress.get(addr) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(addr);
      else this.perAddress.set(addr, n);
    });
    return {
      authenticated: () => {
        if (!isPending) return;
        isPending = false;
        this.pending--;
        // Idle authenticated connections give their slot back (a silent client, a dead peer behind a NAT).
        socket.setTimeout(this.limits.idleTimeoutMs, () => socket.destroy());
      },
    };
  }
}

export interface Admission {
  /** The handshake completed: the connection leaves the pending share and the idle timeout starts. */
  authenticated(): void;
}
