/**
 * Staging for inbound snapshot streams. A follower writes the chunks as they arrive and installs them only once
 * the core accepts the snapshot. Production stages files under dataDir/snapshots
 * (src/raft/effects/file-snapshot-store.ts); the simulator keeps them in memory.
 */
export interface SnapshotStore {
  /** Removes whatever an earlier run left staged (staged images never survive a restart). */
  clear(): void;
  /** Opens a staging area for stream `sid`. */
  create(sid: number): StagedSnapshot;
}

export interface StagedSnapshot {
  /** Appends one chunk exactly as the sender's state machine produced it. */
  write(chunk: Uint8Array): void;
  /** Finishes writing; `done` runs once everything written can be read back. */
  end(done: () => void): void;
  /** Reads the chunks back, same boundaries, same order. */
  read(): AsyncIterable<Uint8Array>;
  /** Abandons the staging area and deletes what it holds. Idempotent. */
  remove(): void;
}
