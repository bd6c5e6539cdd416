/**
 * What RaftNode needs from the replicated state machine it drives (MasterState through an adapter, or the small
 * KvStateMachine used by tests and benchmarks).
 *
 * Durability model: the Raft log is the durable source. The state machine may persist lazily (no fsync per
 * apply) as long as `appliedIndex()` after a restart matches the state it reopened with — the node then replays
 * the log from there. Before the node compacts its log it calls `flush()`, which must make everything applied so
 * far durable: otherwise a crash could leave the state machine behind a log that no longer holds the gap.
 */
export interface AppliedCommand {
  /** The log index of the entry that carries the command. */
  index: number;
  /** The command bytes as proposed. */
  data: Uint8Array;
  /**
   * Position of the command in its entry: commands proposed together share one entry (one index). The node never
   * splits an entry's commands across two apply() calls, so an entry is applied whole or not at all.
   */
  position?: number;
}

export interface RaftStateMachine {
  /** Index of the last entry reflected in the state (after open or restore). */
  appliedIndex(): number;
  /**
   * Applies committed commands in order and returns one result per command, by position. Deterministic: the
   * result may depend only on the state and the command bytes. `noopThrough` (≥ every command index) moves the
   * applied index past entries that carried no command (no-ops, membership changes).
   */
  apply(commands: AppliedCommand[], noopThrough: number): Promise<unknown[]>;
  /** Makes everything applied so far durable (fsync). */
  flush(): Promise<void>;
  /** A consistent image of the state at appliedIndex(), as a stream of chunks (each ≤ a few MiB). */
  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> };
  /**
   * Replaces the whole state by an image taken at `index` (from snapshot() on another node). The chunks arrive
   * exactly as snapshot() produced them: same boundaries, same order.
   */
  restore(index: number, chunks: AsyncIterable<Uint8Array>): Promise<void>;
  /**
   * Optional, for a state machine that persists behind its applies: calls `listener` (once) when that persistence
   * fails. The node crash-stops at once instead of at its next apply, which on an idle cluster could be much later
   * (a leader with a broken store kept serving reads and leases for ~20 s in one jepsen run).
   */
  onFailure?(listener: (err: unknown) => void): void;
}
