/** Test helper: a real WAL behind the driver's LogStorage interface whose saves a test holds and releases. */
import type { ConfState, Entry, HardState, Snapshot, SnapshotMetadata } from '../../src/raft/core/types.js';
import type { LogSaveBatch, LogSaveOptions, LogStorage } from '../../src/raft/node/log-storage.js';
import type { Wal } from '../../src/raft/wal/wal.js';

/** A real WAL whose saves can be held and released (or failed) one by one, in order. */
export class GatedLog implements LogStorage {
  hold = false;
  saves = 0;
  readonly held: Array<{ batch: LogSaveBatch; opts: LogSaveOptions; resolve: () => void; reject: (e: Error) => void }> = [];
  constructor(readonly inner: Wal) {}
  initialState(): { hardState: HardState; confState: ConfState } { return this.inner.initialState(); }
  entries(lo: number, hi: number, maxBytes: number): Entry[] { return this.inner.entries(lo, hi, maxBytes); }
  term(i: number): number { return this.inner.term(i); }
  /** Set: every read throws, as a WAL poisoned by a failed background write or fsync does. */
  broken: Error | null = null;
  firstIndex(): number {
    if (this.broken !== null) throw this.broken;
    return this.inner.firstIndex();
  }
  lastIndex(): number { return this.inner.lastIndex(); }
  snapshot(): Snapshot { return this.inner.snapshot(); }
  applySnapshot(meta: SnapshotMetadata): Promise<void> { return this.inner.applySnapshot(meta); }
  compact(index: number, meta?: SnapshotMetadata): Promise<void> { return this.inner.compact(index, meta); }
  save(batch: LogSaveBatch, opts: LogSaveOptions): Promise<void> {
    this.saves++;
    if (!this.hold && this.held.length === 0) return this.inner.save(batch, opts);
    return new Promise((resolve, reject) => this.held.push({ batch, opts, resolve, reject }));
  }
  async release(n = Infinity): Promise<void> {
    for (let k = 0; k < n && this.held.length > 0; k++) {
      const h = this.held.shift()!;
      await this.inner.save(h.batch, h.opts).then(h.resolve, h.reject);
    }
  }
  failAll(): void {
    for (const h of this.held.splice(0)) h.reject(new Error('fsync failed (test)'));
  }
}
