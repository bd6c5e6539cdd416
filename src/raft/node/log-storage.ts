/**
 * The durable Raft log as the driver uses it: the core's read interface (`Storage`) plus the three writes the
 * Ready loop issues. The WAL (src/raft/wal/wal.ts) is the production implementation, and the full-node simulator
 * runs it too, on a simulated file system; 0.1's LevelDB `LogStore` (src/raft/log-store.ts) set the names and
 * semantics.
 */
import type { ConfState, Entry, HardState, SnapshotMetadata, Storage } from '../core/types.js';

export interface LogSaveBatch {
  entries?: Entry[];
  hardState?: HardState;
  /** A snapshot installed from the leader: applied first, with `applySnapshot` semantics, in the same batch. */
  snapshotMeta?: SnapshotMetadata;
  /**
   * The current membership, recorded after the driver applies a conf change (for inspection: a restart starts
   * from the snapshot's membership and re-applies the changes after it; see Storage.initialState).
   */
  confState?: ConfState;
}

export interface LogSaveOptions {
  /** Make the batch durable before the promise resolves. Must be true whenever the Ready says mustSync. */
  sync: boolean;
}

export interface LogStorage extends Storage {
  /**
   * Persists one Ready atomically: an entry whose index exists replaces it and every later one. The synchronous
   * read methods reflect the batch only once it resolved. A rejected write means the store is unusable
   * (the node crash-stops; it never retries and acknowledges).
   */
  save(batch: LogSaveBatch, opts: LogSaveOptions): Promise<void>;
  /** Replaces the log by the snapshot point (durably). */
  applySnapshot(meta: SnapshotMetadata): Promise<void>;
  /** Drops entries ≤ index (durably), recording `snapshotMeta` when it is newer than the stored one. */
  compact(index: number, snapshotMeta?: SnapshotMetadata): Promise<void>;
}
