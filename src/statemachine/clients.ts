/**
 * The client registry (replicated) and client liveness (leader soft state).
 *
 * Every client write registers its client and refreshes `lastSeenMs` with the ENTRY time. Pings are not logged
 * (one per client per second would flood the log): the leader records them in a `ClientLiveness` table, and
 * `planClientExpiry` proposes ExpireClients for clients silent in both for `clientTtlMs`. Apply re-checks the
 * replicated `lastSeenMs` against the entry time, so a client that wrote after planning is not expired.
 * A new leader gives every client a fresh TTL (`resetForNewLeader`).
 */
import type { ExpireClients, NodeStatus } from './commands.js';
import { maxClientsPerCommand } from './limits.js';

/**
 * Client ids the admin CLI uses for its own sessions. An admin session holding no segment is not a storage client:
 * it is left out of clientCount (CLIENTS in `admin status`, mooring_active_clients).
 */
export const adminClientPrefix = 'admin-';

export function isStorageClient(c: ClientRecord): boolean {
  return !c.clientId.startsWith(adminClientPrefix) || c.segmentIds.length > 0;
}

export interface ClientRecord {
  clientId: string;
  nodeStatus: NodeStatus;
  lastSeenMs: number;
  /** Segment ids it mounted, sorted. */
  segmentIds: string[];
  /** Exactly-once: highest seq whose reply was dropped from the window; older seqs are refused. */
  retiredSeq: number;
  /**
   * The open session (state version ≥ 3): the index of the OpenSession entry that opened it (absent or 0: none, the
   * client writes without epochs) and the nonce it was opened with (a retried OpenSession gets the same epoch).
   */
  epoch?: number;
  sessionNonce?: string;
}

export class ClientLiveness {
  private readonly lastPing = new Map<string, number>();
  private freshUntilMs = 0;

  touch(clientId: string, nowMs: number): void {
    this.lastPing.set(clientId, nowMs);
  }

  lastSeenMs(clientId: string): number | undefined {
    return this.lastPing.get(clientId);
  }

  /** A new leader has seen no pings yet: every client counts as seen at `nowMs`. */
  resetForNewLeader(nowMs: number): void {
    this.lastPing.clear();
    this.freshUntilMs = nowMs;
  }

  get freshSinceMs(): number {
    return this.freshUntilMs;
  }

  /**
   * The leader did not run for `ms` (a late housekeeping tick): that time is not its clients' silence, so every
   * ping it knows of, and the fresh start of a new leader, count as `ms` later.
   */
  credit(ms: number): void {
    if (!(ms > 0)) return;
    for (const [id, at] of this.lastPing) this.lastPing.set(id, at + ms);
    if (this.freshUntilMs > 0) this.freshUntilMs += ms;
  }

  forget(clientId: string): void {
    this.lastPing.delete(clientId);
  }

  /**
   * Drops the pings of clients that are not registered (expired, or never registered). Pings come from the
   * network with any client id; only registered clients' are worth keeping (planClientExpiry reads nothing else),
   * so the table stays as large as the client registry, however many ids strangers make up.
   */
  retainRegistered(registered: ReadonlyMap<string, unknown>): void {
    if (this.lastPing.size === 0) return;
    for (const id of this.lastPing.keys()) if (!registered.has(id)) this.lastPing.delete(id);
  }

  /** Clients whose last ping is recorded. */
  get size(): number {
    return this.lastPing.size;
  }
}

export interface ClientRegistryView {
  readonly clients: ReadonlyMap<string, ClientRecord>;
}

/** Clients silent (no write, no ping) for `clientTtlMs` at `nowMs`, as one ExpireClients command, or null. */
export function planClientExpiry(
  state: ClientRegistryView,
  liveness: ClientLiveness | undefined,
  nowMs: number,
  clientTtlMs: number,
): ExpireClients | null {
  const ids: string[] = [];
  for (const c of state.clients.values()) {
    const seen = Math.max(c.lastSeenMs, liveness?.lastSeenMs(c.clientId) ?? 0, liveness?.freshSinceMs ?? 0);
    if (seen + clientTtlMs <= nowMs) {
      ids.push(c.clientId);
      if (ids.length >= maxClientsPerCommand) break;
    }
  }
  if (ids.length === 0) return null;
  ids.sort();
  return { type: 'ExpireClients', clientIds: ids, clientTtlMs };
}
