/**
 * LeaderGate: what a master answers when a request needs the leader (leader policy, separate from the RPC surface).
 *
 * - On the leader, requests pass. A write in flight when this node stops leading is answered at once with
 *   NOT_LEADER (`definite: false`: it may still commit under the new leader) instead of at its proposal timeout —
 *   e.g. a paused leader that resumes and learns of a higher term (`whileLeading`).
 * - On a follower, NOT_LEADER names the leader (`id@host:port` and its term) only if it was heard from within an
 *   election timeout (LeaderContact) and is not the endpoint the client could not reach (`avoidLeader`); otherwise
 *   the request is parked until a leader is elected or heard again (at most parkElectionTimeouts election timeouts),
 *   then served here if this node won, or answered with the new leader. A client is never sent back to a paused or
 *   dead leader, and learns of the new one when it is elected.
 */
import { ErrorCode, MooringError } from '../errors.js';
import type { RaftNode } from '../raft/node/index.js';
import type { Role } from '../raft/core/types.js';
import type { Clock } from '../raft/node/clock.js';
import { systemClock } from '../raft/effects/system-clock.js';
import type { LeaderContact } from './leader-contact.js';
import { formatLeaderHint } from './rpc-methods.js';

/** A follower parks a leader-only request at most this many election timeouts while no live leader is known. */
export const parkElectionTimeouts = 4;
/** Requests parked at once; beyond it a follower answers "no leader known" at once. */
export const maxParkedRequests = 4_096;

export interface LeaderGateOptions {
  self: string;
  raft: () => RaftNode;
  contact: LeaderContact;
  electionTimeoutMs: number;
  /** The parking timer's clock (default: the process's; the full-node simulator passes the node's NodeClock). */
  clock?: Pick<Clock, 'setTimeout'>;
  stopping: () => boolean;
}

export class LeaderGate {
  /** Parked requests: each one's wake-up, and the endpoint it avoids (null: none). */
  private readonly parked = new Map<() => void, string | null>();
  /**
   * While this node leads: the whileLeading calls still waiting, each told when leadership is lost. A call leaves
   * the set when its promise settles, so the set holds only what is in flight. (Not `Promise.race([p, lost])` on
   * one promise pending for the whole term: every race adds a reaction to it that is released only when it settles,
   * about 0.5 KB per request kept for the term — issue 11's soak.)
   */
  private leadership: { waiting: Set<(e: MooringError) => void> } | null = null;

  constructor(private readonly o: LeaderGateOptions) {}

  /** Called on every role change (and once at start if already leader). */
  onRoleChange(role: Role): void {
    this.wake();
    if (role !== 'leader' && this.leadership !== null) {
      const waiting = [...this.leadership.waiting];
      this.leadership = null;
      const lost = new MooringError(ErrorCode.NOT_LEADER, 'stopped leading');
      for (const w of waiting) w(lost);
    }
    if (role === 'leader' && this.leadership === null) this.leadership = { waiting: new Set() };
  }

  /** Something that may make a leader known happened (a leader change, a frame from the leader). */
  wake(): void {
    if (this.parked.size === 0) return;
    for (const w of [...this.parked.keys()]) w();
  }

  /**
   * A frame from `leader` (the current leader) arrived: it may make that leader live again for parked requests,
   * except for those that avoid its endpoint, which only a leader change (wake) or their timer releases. A follower
   * holding requests hedged away from a live leader re-checked each of them on every frame from it before.
   */
  wakeOnFrameFrom(leader: string): void {
    if (this.parked.size === 0) return;
    const avoided = this.endpointOf(leader);
    // A wake-up that releases its request deletes it from the map: a Map iterator goes on past deleted entries.
    for (const [w, avoid] of this.parked) if (avoided === null || avoid !== avoided) w();
  }

  get hasParked(): boolean {
    return this.parked.size > 0;
  }

  /** Throws unless this node leads (no parking: admin operations). */
  requireLeader(avoid: string | null = null): void {
    this.requireNotStopping();
    if (this.o.raft().isLeader) return;
    throw this.notLeaderError(avoid, true);
  }

  /** Resolves on the leader; parks on a follower that knows no live leader (see the file comment). */
  async leaderOrPark(avoid: string | null): Promise<void> {
    this.requireNotStopping();
    const raft = this.o.raft();
    if (raft.isLeader) return;
    if (this.liveLeader(avoid) !== null || this.parked.size >= maxParkedRequests) throw this.notLeaderError(avoid, true);
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        if (!raft.isLeader && this.liveLeader(avoid) === null && !this.o.stopping()) return;
        timer.cancel();
        this.parked.delete(wake);
        resolve();
      };
      const timer = (this.o.clock ?? systemClock).setTimeout(() => { this.parked.delete(wake); resolve(); }, parkElectionTimeouts * this.o.electionTimeoutMs);
      this.parked.set(wake, avoid);
    });
    this.requireNotStopping();
    if (!raft.isLeader) throw this.notLeaderError(avoid, true);
  }

  /**
   * Settles with `p`, or rejects NOT_LEADER (`definite: false`) as soon as this node stops leading. The client's
   * retry (same seq) finds the outcome.
   */
  whileLeading<T>(p: Promise<T>): Promise<T> {
    const l = this.leadership;
    if (l === null) return p;
    const fail = (err: unknown): unknown => (err instanceof MooringError && err.code === ErrorCode.NOT_LEADER ? this.notLeaderError(null, false) : err);
    return new Promise<T>((resolve, reject) => {
      const lost = (e: MooringError): void => reject(fail(e));
      l.waiting.add(lost);
      p.then(
        (v) => {
          l.waiting.delete(lost);
          resolve(v);
        },
        (err: unknown) => {
          l.waiting.delete(lost);
          reject(fail(err));
        },
      );
    });
  }

  /** whileLeading calls waiting for their promise (0 on a follower): bounded by the requests in flight. */
  get waitingWhileLeading(): number {
    return this.leadership?.waiting.size ?? 0;
  }

  /**
   * NOT_LEADER with the leader's client address and term — only for a live leader that is not `avoid`; otherwise
   * "no live leader is known".
   */
  notLeaderError(avoid: string | null, definite: boolean): MooringError {
    const leader = this.liveLeader(avoid);
    const tail = definite ? '' : '; the write may still apply: retry with the same seq to learn its outcome';
    // Built for the reply only (no stack): a leader change answers every parked request with one.
    if (leader === null) return MooringError.replyOnly(ErrorCode.NOT_LEADER, `no live leader is known yet; retry shortly${tail}`, { definite });
    const raft = this.o.raft();
    const addr = raft.peerAddress(leader);
    const hint = formatLeaderHint(leader, addr?.rpcPort !== undefined ? { host: addr.host, port: addr.rpcPort } : undefined);
    // coreTerm: the role change is announced before RaftNode records the new term.
    return MooringError.replyOnly(ErrorCode.NOT_LEADER, `not the leader; the leader is ${hint}${tail}`, { leaderHint: hint, leaderTerm: raft.coreTerm, definite });
  }

  /** The leader this follower may name: known, heard from within an election timeout, and not `avoid`; else null. */
  liveLeader(avoid: string | null): string | null {
    const raft = this.o.raft();
    const leader = raft.leaderId;
    if (leader === null || leader === this.o.self) return null;
    if (!this.o.contact.heardWithin(leader, this.o.electionTimeoutMs)) return null;
    if (avoid !== null && this.endpointOf(leader) === avoid) return null;
    return leader;
  }

  /** A member's client endpoint as clients name it in `avoidLeader` (`host:rpcPort`), or null if unknown. */
  private endpointOf(id: string): string | null {
    const addr = this.o.raft().peerAddress(id);
    return addr?.rpcPort !== undefined ? `${addr.host}:${addr.rpcPort}` : null;
  }

  private requireNotStopping(): void {
    if (this.o.stopping()) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'this master is shutting down; retry on another');
  }
}
