/**
 * Proposal batching: commands proposed in the same event-loop turn are buffered and become log entries at the
 * next Ready round (up to maxCommandsPerEntry commands / maxBatchEntryBytes each); their callers wait here until
 * the command is applied, superseded (PROPOSAL_DROPPED) or timed out (TIMEOUT: outcome unknown).
 *
 * Admission (backpressure): while the oldest unsettled proposal has waited longer than maxProposalWaitMs, or
 * maxPendingProposals are unsettled, new proposals are refused at once with BUSY (definite: never proposed) and a
 * retryAfterMs, instead of joining a queue that only grows. The queue's head-of-line wait is what a new proposal
 * would wait behind, so this bounds the queueing a client sees without knowing the node's throughput.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { Entry } from '../core/types.js';
import type { AppliedCommand } from '../state-machine.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';
import { encodeCommands, maxBatchEntryBytes, maxCommandsPerEntry } from './envelope.js';

interface ProposalWaiter {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  settled: boolean;
  /** ctx.clock.now() at propose. */
  at: number;
}

/** Bounds of the retryAfterMs a BUSY refusal carries, in milliseconds. */
const minRetryAfterMs = 5;
const maxBusyRetryAfterMs = 1_000;

/** The waiters of one proposed entry, by position of their command in it. */
interface PendingEntry {
  term: number;
  waiters: ProposalWaiter[];
}

export class Proposals {
  private readonly pending = new Map<number, PendingEntry>();
  /** Commands proposed since the Ready loop last ran; they become log entries at its next round. */
  private buffer: Array<{ data: Uint8Array; waiter: ProposalWaiter }> = [];
  private unsettled = 0;
  /** Unsettled waiters in propose order (settled ones are skipped lazily at the head): the queue's age. */
  private fifo: ProposalWaiter[] = [];
  private fifoHead = 0;
  /** Proposals refused with BUSY since start. */
  refusedBusy = 0;
  /**
   * One timer for every proposal's timeout, armed for the oldest unsettled one: every proposal waits the same
   * proposalTimeoutMs, so propose order is deadline order (a timer per proposal, its closures and its cancel were
   * ~1 KB of garbage per write on a busy leader).
   */
  private sweep: Timer | null = null;

  constructor(private readonly ctx: NodeContext) {}

  /** How long the oldest unsettled proposal has waited, in ms (0 when none). */
  oldestWaitMs(now: number): number {
    while (this.fifoHead < this.fifo.length && this.fifo[this.fifoHead]!.settled) this.fifoHead++;
    if (this.fifoHead >= this.fifo.length) {
      this.fifo = [];
      this.fifoHead = 0;
      return 0;
    }
    if (this.fifoHead > 1024 && this.fifoHead * 2 > this.fifo.length) {
      this.fifo = this.fifo.slice(this.fifoHead);
      this.fifoHead = 0;
    }
    return Math.max(0, now - this.fifo[this.fifoHead]!.at);
  }

  get hasBuffered(): boolean {
    return this.buffer.length > 0;
  }

  /** `housekeeping`: the leader's own paced commands, exempt from the wait rule (raft-node.ts, propose). */
  propose(command: Uint8Array, housekeeping = false): Promise<unknown> {
    const ctx = this.ctx;
    ctx.checkRunning();
    if (ctx.role !== 'leader') return Promise.reject(ctx.notLeader());
    const now = ctx.clock.now();
    const waited = this.oldestWaitMs(now);
    const maxWait = ctx.settings.maxProposalWaitMs;
    const max = ctx.settings.maxPendingProposals;
    if ((waited > maxWait && !housekeeping) || this.unsettled >= max) {
      this.refusedBusy++;
      // The queue ahead drains in about the head's wait; half of it is when a retry has a fair chance.
      const retryAfterMs = Math.min(maxBusyRetryAfterMs, Math.max(minRetryAfterMs, Math.round(waited / 2)));
      const why = this.unsettled >= max ? `${this.unsettled} proposals pending (maxPendingProposals ${max})` : `the oldest pending proposal has waited ${Math.round(waited)} ms (maxProposalWaitMs ${maxWait})`;
      return Promise.reject(new MooringError(ErrorCode.BUSY, `leader saturated: ${why}; not proposed, retry after ${retryAfterMs} ms`, { retryAfterMs }));
    }
    return new Promise((resolve, reject) => {
      const waiter: ProposalWaiter = { resolve, reject, settled: false, at: now };
      this.fifo.push(waiter);
      if (this.sweep === null) this.sweep = ctx.clock.setTimeout(() => this.expire(), ctx.settings.proposalTimeoutMs);
      this.unsettled++;
      this.buffer.push({ data: command, waiter });
      ctx.kick();
    });
  }

  /** Turns buffered proposals into log entries: up to maxCommandsPerEntry commands (maxBatchEntryBytes) each. */
  flush(): void {
    if (this.buffer.length === 0) return;
    const items = this.buffer;
    this.buffer = [];
    let i = 0;
    while (i < items.length) {
      let j = i + 1;
      let bytes = items[i]!.data.byteLength;
      while (j < items.length && j - i < maxCommandsPerEntry && bytes + items[j]!.data.byteLength <= maxBatchEntryBytes) {
        bytes += items[j]!.data.byteLength;
        j++;
      }
      const group = items.slice(i, j);
      i = j;
      const data = encodeCommands(group.map((g) => g.data));
      try {
        const at = this.ctx.core.propose(data);
        this.pending.set(at.index, { term: at.term, waiters: group.map((g) => g.waiter) });
      } catch (err) {
        const e = this.ctx.withLeaderAddress(err);
        for (const g of group) this.settle(g.waiter, undefined, e);
      }
    }
  }

  /** A committed entry: a proposal whose index was taken by another leader's entry can never be applied. */
  onCommitted(e: Entry): void {
    const p = this.pending.get(e.index);
    if (p !== undefined && p.term !== e.term) {
      this.pending.delete(e.index);
      const dropped = new MooringError(ErrorCode.PROPOSAL_DROPPED, `proposal at index ${e.index} was superseded by another leader; it was not applied`);
      for (const w of p.waiters) this.settle(w, undefined, dropped);
    }
  }

  onApplied(c: AppliedCommand, result: unknown): void {
    const p = this.pending.get(c.index);
    if (p === undefined) return;
    const w = p.waiters[c.position ?? 0];
    if (w !== undefined) this.settle(w, result);
    if ((c.position ?? 0) >= p.waiters.length - 1) this.pending.delete(c.index);
  }

  /** Fails the proposals older than proposalTimeoutMs (TIMEOUT: outcome unknown), then re-arms for the next one. */
  private expire(): void {
    this.sweep = null;
    const ctx = this.ctx;
    const timeoutMs = ctx.settings.proposalTimeoutMs;
    const now = ctx.clock.now();
    let i = this.fifoHead;
    for (; i < this.fifo.length; i++) {
      const w = this.fifo[i]!;
      if (w.settled) continue;
      if (now - w.at < timeoutMs) break;
      this.settle(w, undefined, new MooringError(ErrorCode.TIMEOUT, `proposal not applied within ${timeoutMs} ms; its outcome is unknown`));
    }
    this.fifoHead = i;
    if (i >= this.fifo.length) {
      this.fifo = [];
      this.fifoHead = 0;
      return;
    }
    // At least 1 ms: a timer that fires a little early (a clock of its own) must not spin.
    this.sweep = ctx.clock.setTimeout(() => this.expire(), Math.max(1, this.fifo[i]!.at + timeoutMs - now));
  }

  failAll(err: MooringError): void {
    for (const p of this.pending.values()) for (const w of p.waiters) this.settle(w, undefined, err);
    this.pending.clear();
    for (const b of this.buffer) this.settle(b.waiter, undefined, err);
    this.buffer = [];
    this.fifo = [];
    this.fifoHead = 0;
    this.sweep?.cancel();
    this.sweep = null;
  }

  private settle(w: ProposalWaiter, value: unknown, err?: Error): void {
    if (w.settled) return;
    w.settled = true;
    this.unsettled--;
    if (err !== undefined) w.reject(err);
    else w.resolve(value);
  }
}
