/**
 * The leader's view of one follower: probe (one append at a time until we find the match), replicate
 * (optimistic pipelining, bounded by Inflights), snapshot (waiting for a snapshot to be installed).
 */
import { assert } from '../../errors.js';

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** The size of one follower's pipelining window: unacknowledged appends, and the entry bytes they carry. */
export interface InflightLimits {
  appends: number;
  bytes: number;
}

/**
 * A ring buffer of the last index (and entry bytes) of each unacknowledged append. Full at `appends` messages or
 * at `bytes` entry bytes, whichever comes first (as etcd-raft's MaxInflightBytes): without the byte bound a
 * follower far behind was sent 256 appends of 512 entries in one Ready, a 20–60 MB frame whose encoding held the
 * leader's event loop for ~0.5 s (its heartbeats stopped: a spurious election at every follower restart), and the
 * transport then refused it as over maxFrameBytes.
 */
export class Inflights {
  private readonly capacity: number;
  private readonly maxBytes: number;
  private readonly indexes: number[];
  private readonly sizes: number[];
  private start = 0;
  count = 0;
  /** Entry bytes of the appends in the window. */
  bytes = 0;

  constructor(limits: InflightLimits) {
    assert(Number.isInteger(limits.appends) && limits.appends > 0, 'inflight capacity must be a positive integer');
    assert(Number.isInteger(limits.bytes) && limits.bytes > 0, 'inflight bytes must be a positive integer');
    this.capacity = limits.appends;
    this.maxBytes = limits.bytes;
    this.indexes = new Array<number>(this.capacity).fill(0);
    this.sizes = new Array<number>(this.capacity).fill(0);
  }

  add(index: number, bytes: number): void {
    assert(!this.full(), 'cannot add into a full inflights window');
    assert(bytes >= 0, 'inflight bytes cannot be negative');
    let next = this.start + this.count;
    if (next >= this.capacity) next -= this.capacity;
    this.indexes[next] = index;
    this.sizes[next] = bytes;
    this.count++;
    this.bytes += bytes;
  }

  /** Frees every inflight append whose last index is ≤ to. */
  freeLE(to: number): void {
    if (this.count === 0 || to < this.indexes[this.start]!) return;
    let idx = this.start;
    let i = 0;
    for (; i < this.count; i++) {
      if (to < this.indexes[idx]!) break;
      this.bytes -= this.sizes[idx]!;
      idx++;
      if (idx >= this.capacity) idx -= this.capacity;
    }
    this.count -= i;
    this.start = this.count === 0 ? 0 : idx;
  }

  /** Frees the oldest slot (a heartbeat response proved the peer alive; its acks may have been lost). */
  freeFirstOne(): void {
    if (this.count === 0) return;
    this.freeLE(this.indexes[this.start]!);
  }

  full(): boolean {
    return this.count === this.capacity || this.bytes >= this.maxBytes;
  }

  reset(): void {
    this.count = 0;
    this.start = 0;
    this.bytes = 0;
  }

  clone(): Inflights {
    const c = new Inflights({ appends: this.capacity, bytes: this.maxBytes });
    for (let i = 0; i < this.capacity; i++) {
      c.indexes[i] = this.indexes[i]!;
      c.sizes[i] = this.sizes[i]!;
    }
    c.start = this.start;
    c.count = this.count;
    c.bytes = this.bytes;
    return c;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In snapshot state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** Heard from within the current election timeout (the leader clears it every election timeout). */
  recentActive = false;
  /**
   * Leader: its tick when it last heard from this peer (check-quorum). null: not since this node became leader or the
   * peer was added; the next check starts counting from then.
   */
  lastHeardTick: number | null = null;
  /** In probe state: an append is outstanding; wait for a response or heartbeat before the next one. */
  msgAppFlowPaused = false;
  /** The leader's tick at which a heartbeat answer last eased flow control (at most once per tick: see core). */
  heartbeatFlowTick = -1;
  inflights: Inflights;
  isLearner: boolean;
  /**
   * The follower is recovering a cut log (Message.recovering): its acks from before are void, match was reset, and
   * once match reaches this index (the leader's last index when it learnt of the recovery, so at least everything
   * committed with the follower's lost acks) the leader tells it `recovered`. null otherwise.
   */
  recoverTo: number | null = null;
  /** The follower's latest recovery (Message.recovering), kept after it ended so its late messages are ignored. */
  recoveryId = 0;

  constructor(next: number, window: InflightLimits, isLearner: boolean) {
    this.next = next;
    this.inflights = new Inflights(window);
    this.isLearner = isLearner;
  }

  /** A deep copy (conf changes work on copies so a rejected change leaves no trace). */
  clone(): Progress {
    const c = Object.create(Progress.prototype) as Progress;
    Object.assign(c, this);
    c.inflights = this.inflights.clone();
    return c;
  }

  private resetState(state: ProgressState): void {
    this.msgAppFlowPaused = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState('probe');
      this.next = this.match + 1;
    }
  }

  /** The follower lost the end of its log: forget what it acknowledged and find the match again from `next`. */
  resetForRecovery(recoveryId: number, recoverTo: number, next: number): void {
    this.recoveryId = recoveryId;
    this.recoverTo = recoverTo;
    this.match = 0;
    this.resetState('probe');
    this.next = Math.max(1, next);
  }

  becomeReplicate(): void {
    this.resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** Bookkeeping after sending an append with `entries` entries of `bytes` entry bytes (the last is next+entries-1). */
  sentEntries(entries: number, bytes: number): void {
    if (this.state === 'replicate') {
      if (entries > 0) {
        this.next += entries;
        this.inflights.add(this.next - 1, bytes);
      }
      // An empty append (commit only) takes no window slot.
    } else if (this.state === 'probe') {
      this.msgAppFlowPaused = true;
    } else {
      assert(false, `sending append in unhandled state ${this.state}`);
    }
  }

  /** An ack for index n: returns whether match advanced. */
  maybeUpdate(n: number): boolean {
    if (n <= this.match) return false;
    this.match = n;
    this.next = Math.max(this.next, n + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  /**
   * A rejection of the append at `rejected`; `matchHint` is the follower's guess of the longest matching
   * prefix. Returns false when the rejection is stale (out of order).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    if (rejected <= this.match) {
      // The answer to this very probe says the follower lacks entries it once acknowledged (lost or replaced
      // storage): re-replicate from what it has. Without this the leader re-sent the same probe at network speed
      // forever (found by the full-node simulator, seed 1031). Commit never moves back; a lower match only costs
      // a retransmission.
      this.match = Math.max(0, Math.min(matchHint, rejected - 1));
    }
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.msgAppFlowPaused = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.msgAppFlowPaused;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}
