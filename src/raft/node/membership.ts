/**
 * Membership helpers: the current configuration and its history (a snapshot taken at any applied index records
 * the membership of that index), proposing changes and waiting for them, safe voter addition (learner first,
 * promoted once caught up), and leadership transfer.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { PeerAddress } from '../../transport/types.js';
import { decodeConfChange } from '../core/confchange.js';
import type { ConfChange, ConfState, Entry, NodeId } from '../core/types.js';
import { cloneConfState as cloneConf } from '../core/util.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';

/** A learner counts as caught up for promotion when its match index is within this many entries of the commit. */
export const learnerCatchUpEntries = 64;
export const learnerCatchUpTimeoutMs = 30_000;

export class Membership {
  confState: ConfState;
  /** Membership after each applied change, so a snapshot taken at any applied index records the right one. */
  private history: Array<{ index: number; confState: ConfState }> = [];
  private readonly pendingConf = new Map<number, { resolve: (cs: ConfState) => void; reject: (e: Error) => void; timer: Timer }>();
  /** Membership waiters settle only after core.onApplied(): the core counts a conf entry as applied there. */
  private readonly afterAdvance: Array<() => void> = [];

  constructor(private readonly ctx: NodeContext, confState: ConfState, snapshotIndex: number) {
    this.confState = confState;
    this.history.push({ index: snapshotIndex, confState: cloneConf(confState) });
  }

  confStateAt(index: number): ConfState {
    for (let i = this.history.length - 1; i >= 0; i--) {
      if (this.history[i]!.index <= index) return cloneConf(this.history[i]!.confState);
    }
    return cloneConf(this.history[0]!.confState);
  }

  /** Keeps the history from the snapshot point on (older points can no longer be asked for). */
  trimHistory(snapshotIndex: number): void {
    const keepFrom = this.history.findLastIndex((h) => h.index <= snapshotIndex);
    if (keepFrom > 0) this.history = this.history.slice(keepFrom);
  }

  /** A snapshot was installed: its membership replaces everything known. */
  resetTo(index: number, confState: ConfState): void {
    this.confState = cloneConf(confState);
    this.history = [{ index, confState: cloneConf(confState) }];
  }

  applyConfEntry(e: Entry): void {
    const ctx = this.ctx;
    let cc: ConfChange;
    try {
      cc = decodeConfChange(e.data);
    } catch (err) {
      // A committed entry that does not decode is a bug or corruption that passed the checksum: stop.
      throw new MooringError(ErrorCode.CORRUPT_LOG, `committed membership change at ${e.index} does not decode`, { cause: err });
    }
    const before = memberIds(this.confState);
    this.confState = ctx.core.applyConfChange(cc);
    this.history.push({ index: e.index, confState: cloneConf(this.confState) });
    ctx.parts.peers.connect([...this.confState.voters, ...this.confState.learners, ...this.confState.votersOutgoing], true);
    // A removed member leaves the transport's allowlist: its connections close and it can no longer send us frames.
    const after = memberIds(this.confState);
    for (const id of before) if (!after.has(id) && id !== ctx.id) ctx.transport.removePeer(id);
    const w = this.pendingConf.get(e.index);
    if (w !== undefined) {
      this.pendingConf.delete(e.index);
      w.timer.cancel();
      const cs = cloneConf(this.confState);
      this.afterAdvance.push(() => w.resolve(cs));
    }
    ctx.log.info({ index: e.index, confState: this.confState }, 'membership changed');
  }

  settleAfterAdvance(): void {
    for (const settle of this.afterAdvance.splice(0)) settle();
  }

  /** Proposes a membership change and resolves with the resulting configuration once it is applied. */
  change(cc: ConfChange): Promise<ConfState> {
    const ctx = this.ctx;
    ctx.checkRunning();
    let at: { index: number; term: number };
    try {
      at = ctx.core.proposeConfChange(cc);
    } catch (err) {
      return Promise.reject(ctx.withLeaderAddress(err));
    }
    ctx.kick();
    return new Promise((resolve, reject) => {
      const timer = ctx.clock.setTimeout(() => {
        this.pendingConf.delete(at.index);
        reject(new MooringError(ErrorCode.TIMEOUT, `membership change at index ${at.index} not applied in time`));
      }, ctx.settings.proposalTimeoutMs * 2);
      this.pendingConf.set(at.index, { resolve, reject, timer });
    });
  }

  async addLearner(peer: PeerAddress): Promise<ConfState> {
    await this.ctx.parts.peers.publishAddress(peer);
    return this.change({ changes: [{ type: 'addLearner', node: peer.id }] });
  }

  async addMember(peer: PeerAddress, timeoutMs: number): Promise<ConfState> {
    if (!this.confState.learners.includes(peer.id) && !this.confState.voters.includes(peer.id)) await this.addLearner(peer);
    await this.ctx.waitFor(() => {
      const st = this.ctx.core.status();
      const pr = st.progress?.[peer.id];
      return pr !== undefined && pr.match + learnerCatchUpEntries >= st.commit;
    }, timeoutMs, `learner ${peer.id} did not catch up within ${timeoutMs} ms`);
    return this.change({ changes: [{ type: 'addVoter', node: peer.id }] });
  }

  async transferLeadership(to: NodeId, timeoutMs: number): Promise<void> {
    const ctx = this.ctx;
    ctx.checkRunning();
    if (ctx.role !== 'leader') throw ctx.notLeader();
    if (to === ctx.id) return;
    ctx.core.transferLeadership(to);
    ctx.kick();
    await ctx.waitFor(() => ctx.leader === to, timeoutMs, `leadership did not move to ${to} within ${timeoutMs} ms`);
  }

  bestTransferTarget(): NodeId | null {
    const st = this.ctx.core.status();
    // Prefer a voter heard from recently. Check-quorum clears every recentActive flag once per election timeout
    // and heartbeat responses set them again, so right after a reset no voter is flagged: then fall back to the
    // most caught-up voter rather than skip the transfer (a failed transfer costs no more than no transfer).
    let best: NodeId | null = null;
    let bestMatch = -1;
    let fallback: NodeId | null = null;
    let fallbackMatch = -1;
    for (const id of this.confState.voters) {
      if (id === this.ctx.id) continue;
      const pr = st.progress?.[id];
      if (pr === undefined) continue;
      if (pr.recentActive && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
      if (pr.match > fallbackMatch) {
        fallback = id;
        fallbackMatch = pr.match;
      }
    }
    return best ?? fallback;
  }

  failAll(err: MooringError): void {
    for (const p of this.pendingConf.values()) { p.timer.cancel(); p.reject(err); }
    this.pendingConf.clear();
  }
}

function memberIds(cs: ConfState): Set<NodeId> {
  return new Set([...cs.voters, ...cs.learners, ...cs.votersOutgoing, ...cs.learnersNext]);
}
