/**
 * Linearizable reads: concurrent callers share one ReadIndex (or lease) round; a read is served once the state
 * machine has applied up to the index the round confirmed.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { ReadState } from '../core/types.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';

interface ReadWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: Timer;
}

interface ReadBatch {
  waiters: ReadWaiter[];
  index: number | null;
}

export class ReadQueue {
  private next: ReadWaiter[] = [];
  private readonly batches = new Map<string, ReadBatch>();
  private readonly awaitingApply: ReadBatch[] = [];
  private pendingCount = 0;
  private roundSeq = 0;

  constructor(private readonly ctx: NodeContext) {}

  get hasNext(): boolean {
    return this.next.length > 0;
  }

  read(): Promise<void> {
    const ctx = this.ctx;
    ctx.checkRunning();
    if (ctx.role !== 'leader') return Promise.reject(ctx.notLeader());
    const max = ctx.settings.maxPendingReads;
    if (this.pendingCount >= max) {
      return Promise.reject(new MooringError(ErrorCode.QUEUE_FULL, `more than ${max} reads pending`));
    }
    const timeoutMs = ctx.settings.readTimeoutMs;
    this.pendingCount++;
    return new Promise<void>((resolve, reject) => {
      const waiter: ReadWaiter = {
        resolve: () => { waiter.timer.cancel(); this.pendingCount--; resolve(); },
        reject: (e) => { waiter.timer.cancel(); this.pendingCount--; reject(e); },
        timer: ctx.clock.setTimeout(() => {
          waiter.resolve = () => {};
          waiter.reject = () => {};
          this.pendingCount--;
          reject(new MooringError(ErrorCode.TIMEOUT, `read not confirmed within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.next.push(waiter);
      ctx.kick();
    });
  }

  /** Starts one ReadIndex round for every read that arrived since the last one. */
  startRound(): void {
    if (this.next.length === 0) return;
    const ctx = this.ctx;
    ctx.parts.loop.catchUpTicks(); // a lease is judged on the time that really passed
    const waiters = this.next;
    this.next = [];
    if (ctx.role !== 'leader') {
      for (const w of waiters) w.reject(ctx.notLeader());
      return;
    }
    const rctx = new Uint8Array(8);
    new DataView(rctx.buffer).setFloat64(0, ++this.roundSeq);
    try {
      ctx.core.readIndex(rctx);
    } catch (err) {
      // The core refuses reads it cannot confirm (leader leaving, too many pending): the callers get the reason.
      const e = err instanceof MooringError ? (err.code === ErrorCode.NOT_LEADER ? ctx.notLeader() : err) : new MooringError(ErrorCode.UNAVAILABLE, String(err));
      for (const w of waiters) w.reject(e);
      return;
    }
    this.batches.set(bytesKey(rctx), { waiters, index: null });
  }

  onReadStates(states: ReadState[]): void {
    for (const rs of states) {
      const key = bytesKey(rs.context);
      const batch = this.batches.get(key);
      if (batch === undefined) continue;
      this.batches.delete(key);
      batch.index = rs.index;
      this.awaitingApply.push(batch);
    }
  }

  /** Serves every confirmed read whose index the state machine has reached. */
  serve(smApplied: number): void {
    if (this.awaitingApply.length === 0) return;
    let kept = 0;
    for (const batch of this.awaitingApply) {
      if (batch.index !== null && batch.index <= smApplied) {
        for (const w of batch.waiters) w.resolve();
      } else {
        this.awaitingApply[kept++] = batch;
      }
    }
    this.awaitingApply.length = kept;
  }

  /** Reads not yet confirmed cannot be confirmed by a node that is no longer leader. */
  onLostLeadership(): void {
    for (const w of this.next) w.reject(this.ctx.notLeader());
    this.next = [];
    for (const b of this.batches.values()) for (const w of b.waiters) w.reject(this.ctx.notLeader());
    this.batches.clear();
  }

  failAll(err: MooringError): void {
    for (const w of this.next) w.reject(err);
    this.next = [];
    for (const b of this.batches.values()) for (const w of b.waiters) w.reject(err);
    this.batches.clear();
    for (const b of this.awaitingApply) for (const w of b.waiters) w.reject(err);
    this.awaitingApply.length = 0;
  }
}

function bytesKey(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
