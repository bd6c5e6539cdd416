/**
 * Proposal batching: commands proposed in the same event-loop turn are buffered and become log entries at the
 * next Ready round (up to maxCommandsPerEntry commands / maxBatchEntryBytes each); their callers wait here until
 * the command is applied, superseded (PROPOSAL_DROPPED) or timed out (TIMEOUT: outcome unknown).
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
  timer: Timer | null;
  settled: boolean;
}

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

  constructor(private readonly ctx: NodeContext) {}

  get hasBuffered(): boolean {
    return this.buffer.length > 0;
  }

  propose(command: Uint8Array): Promise<unknown> {
    const ctx = this.ctx;
    ctx.checkRunning();
    if (ctx.role !== 'leader') return Promise.reject(ctx.notLeader());
    const max = ctx.settings.maxPendingProposals;
    if (this.unsettled >= max) {
      return Promise.reject(new MooringError(ErrorCode.QUEUE_FULL, `more than ${max} proposals pending`));
    }
    const timeoutMs = ctx.settings.proposalTimeoutMs;
    return new Promise((resolve, reject) => {
      const waiter: ProposalWaiter = { resolve, reject, timer: null, settled: false };
      waiter.timer = ctx.clock.setTimeout(() => {
        this.settle(waiter, undefined, new MooringError(ErrorCode.TIMEOUT, `proposal not applied within ${timeoutMs} ms; its outcome is unknown`));
      }, timeoutMs);
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

  failAll(err: MooringError): void {
    for (const p of this.pending.values()) for (const w of p.waiters) this.settle(w, undefined, err);
    this.pending.clear();
    for (const b of this.buffer) this.settle(b.waiter, undefined, err);
    this.buffer = [];
  }

  private settle(w: ProposalWaiter, value: unknown, err?: Error): void {
    if (w.settled) return;
    w.settled = true;
    if (w.timer !== null) w.timer.cancel();
    this.unsettled--;
    if (err !== undefined) w.reject(err);
    else w.resolve(value);
  }
}
