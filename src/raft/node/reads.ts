/**
 * Linearizable reads: concurrent callers share one ReadIndex (or lease) round; a read is served once the state
 * machine has applied up to the index the round confirmed.
 */
import { ErrorCode, MooringError } from '../../errors.js';
import type { Message, NodeId, ReadState } from '../core/types.js';
import type { Timer } from './clock.js';
import type { NodeContext } from './context.js';
import { answerReadContext, encodeReadContext, maxReadPayloadBytesPerRound, readPayloads, readReplies, readRoundKey } from './read-context.js';

interface ReadWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: Timer;
  /** Follower reads: sent to the leader with the ReadIndex request; `reply` is the leader's answer to it. */
  payload: Uint8Array | null;
  allowFollower: boolean;
  reply?: Uint8Array | null;
}

export interface ReadOptions {
  /**
   * Serve the read on a follower too (linearizable ReadIndex: the follower asks the leader for its commit index
   * and resolves once it has applied it). Default false: NOT_LEADER on a follower.
   */
  allowFollower?: boolean;
  /** Bytes for the leader's forwarded-read handler (setForwardedReadHandler); its answer is what read() resolves with. */
  payload?: Uint8Array;
}

/** On the leader: answers the payloads of a follower's ReadIndex round, synchronously, before the answer is sent. */
export type ForwardedReadHandler = (from: NodeId, payloads: Array<Uint8Array | null>) => Array<Uint8Array | null>;

interface ReadBatch {
  waiters: ReadWaiter[];
  index: number | null;
}

/** When a client refused for a full read queue should come back: reads settle within a heartbeat round or two. */
const readBusyRetryAfterMs = 10;

export class ReadQueue {
  private next: ReadWaiter[] = [];
  private readonly batches = new Map<string, ReadBatch>();
  private readonly awaitingApply: ReadBatch[] = [];
  private pendingCount = 0;
  private roundSeq = 0;
  /** Reads refused with BUSY since start. */
  refusedBusy = 0;
  /** Follower reads served under this node's follower read lease (no round to the leader) since start. */
  followerLeaseReads = 0;
  private forwardedReadHandler: ForwardedReadHandler | null = null;

  /** `incarnation`: this process's nonce in every round id (read-context.ts). */
  constructor(private readonly ctx: NodeContext, private readonly incarnation: number) {}

  get hasNext(): boolean {
    return this.next.length > 0;
  }

  read(opts: ReadOptions = {}): Promise<Uint8Array | null | undefined> {
    const ctx = this.ctx;
    ctx.checkRunning();
    if (ctx.role !== 'leader' && !(opts.allowFollower === true && ctx.leader !== null)) return Promise.reject(ctx.notLeader());
    const max = ctx.settings.maxPendingReads;
    if (this.pendingCount >= max) {
      this.refusedBusy++;
      return Promise.reject(new MooringError(ErrorCode.BUSY, `more than ${max} reads pending (maxPendingReads); retry shortly`, { retryAfterMs: readBusyRetryAfterMs }));
    }
    const timeoutMs = ctx.settings.readTimeoutMs;
    this.pendingCount++;
    return new Promise<Uint8Array | null | undefined>((resolve, reject) => {
      const waiter: ReadWaiter = {
        payload: opts.payload ?? null,
        allowFollower: opts.allowFollower === true,
        resolve: () => { waiter.timer.cancel(); this.pendingCount--; resolve(waiter.reply); },
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
    let waiters = this.takeRound();
    if (ctx.role !== 'leader') {
      // Follower reads go to the leader as a forwarded ReadIndex; the others are refused with a hint.
      const ok = ctx.leader !== null ? waiters.filter((w) => w.allowFollower) : [];
      for (const w of waiters) if (!ok.includes(w)) w.reject(ctx.notLeader());
      waiters = ok;
      if (waiters.length === 0) return;
      waiters = this.serveUnderFollowerLease(waiters);
      if (waiters.length === 0) return;
    }
    const rctx = encodeReadContext(this.incarnation, ++this.roundSeq, waiters.map((w) => w.payload));
    try {
      ctx.core.readIndex(rctx);
    } catch (err) {
      // The core refuses reads it cannot confirm (leader leaving, too many pending): the callers get the reason.
      const e = err instanceof MooringError ? (err.code === ErrorCode.NOT_LEADER ? ctx.notLeader() : err) : new MooringError(ErrorCode.UNAVAILABLE, String(err));
      for (const w of waiters) w.reject(e);
      return;
    }
    this.batches.set(readRoundKey(rctx), { waiters, index: null });
  }

  /**
   * Follower read lease (followerLeaseTicks): the reads with no payload for the leader need no round; they are served
   * once this node has applied the index the lease names. Returns the reads that still need a round.
   */
  private serveUnderFollowerLease(waiters: ReadWaiter[]): ReadWaiter[] {
    let free = 0;
    for (const w of waiters) if (w.payload === null) free++;
    if (free === 0) return waiters;
    const index = this.ctx.core.followerLeaseRead(); // ticks were caught up by startRound
    if (index === null) return waiters;
    const served: ReadWaiter[] = [];
    const rest: ReadWaiter[] = [];
    for (const w of waiters) (w.payload === null ? served : rest).push(w);
    this.followerLeaseReads += served.length;
    this.awaitingApply.push({ waiters: served, index });
    this.serve(this.ctx.parts.applier.smApplied);
    return rest;
  }

  /** The next round's reads: all waiting, up to maxReadPayloadBytesPerRound of payloads (the rest wait). */
  private takeRound(): ReadWaiter[] {
    let bytes = 0;
    let n = 0;
    for (const w of this.next) {
      bytes += w.payload?.byteLength ?? 0;
      if (n > 0 && bytes > maxReadPayloadBytesPerRound) break;
      n++;
    }
    const round = this.next.splice(0, n);
    if (this.next.length > 0) this.ctx.kick();
    return round;
  }

  /** A follower's answered round: hand each read the leader's reply to its payload. */
  private attachReplies(batch: ReadBatch, rctx: Uint8Array): void {
    let replies: Array<Uint8Array | null> | undefined;
    try {
      replies = readReplies(rctx);
    } catch (err) {
      this.ctx.log.warn({ err: String(err) }, 'leader reply to a read round does not decode; reads get no reply');
    }
    batch.waiters.forEach((w, i) => { w.reply = replies?.[i] ?? null; });
  }

  /** Leader: the handler that answers follower reads' payloads (e.g. records their read leases). */
  setForwardedReadHandler(handler: ForwardedReadHandler | null): void {
    this.forwardedReadHandler = handler;
  }

  /**
   * Leader: answers the payloads of a follower's ReadIndex round just before the answer is sent, so whatever the
   * handler records (read leases) is in place before the follower can serve the read.
   */
  answerForwarded(m: Message): void {
    const h = this.forwardedReadHandler;
    if (h === null || m.context === undefined) return;
    let payloads: Array<Uint8Array | null>;
    try {
      payloads = readPayloads(m.context);
    } catch (err) {
      this.ctx.log.warn({ to: m.to, err: String(err) }, 'a follower read round does not decode; answered without replies');
      return;
    }
    if (payloads.length === 0) return;
    m.context = answerReadContext(m.context, h(m.to, payloads));
  }

  /** A follower's rounds were sent to the old leader: their answers will not come (the core drops them). */
  failFollowerRounds(): void {
    if (this.batches.size === 0) return;
    const err = new MooringError(ErrorCode.NOT_LEADER, 'the leader changed while a follower read waited for it; retry');
    for (const b of this.batches.values()) for (const w of b.waiters) w.reject(err);
    this.batches.clear();
  }

  onReadStates(states: ReadState[]): void {
    for (const rs of states) {
      const key = readRoundKey(rs.context);
      const batch = this.batches.get(key);
      if (batch === undefined) continue;
      this.batches.delete(key);
      batch.index = rs.index;
      this.attachReplies(batch, rs.context);
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
