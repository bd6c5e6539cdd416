/**
 * Staging for inbound snapshot streams. A follower writes the chunks as they arrive and installs them only once
 * the core accepts the snapshot. Production stages files under dataDir/snapshots
 * (src/raft/effects/file-snapshot-store.ts); the simulator keeps them in memory.
 */
export interface SnapshotStore {
  /** Removes whatever an earlier run left staged (staged images never survive a restart). */
  clear(): void;
  /**
   * Opens a staging area. `onError` is called (once) if a write fails asynchronously; the area is then unusable.
   * Errors never surface any other way (issue 11: an unhandled stream error used to end the process).
   */
  create(onError: (err: Error) => void): StagedSnapshot;
}

export interface StagedSnapshot {
  /** Appends one chunk exactly as the sender's state machine produced it; `written` runs once it is stored. */
  write(chunk: Uint8Array, written: (err: Error | null) => void): void;
  /** Bytes accepted by write() and not yet stored (a disk that falls behind shows here). */
  readonly pendingBytes: number;
  /** Finishes writing; `done` runs once everything written can be read back, with the first error if any. */
  end(done: (err: Error | null) => void): void;
  /** Reads the chunks back, same boundaries, same order. */
  read(): AsyncIterable<Uint8Array>;
  /** Abandons the staging area and deletes what it holds (once pending writes settled). Idempotent. */
  remove(): void;
}
