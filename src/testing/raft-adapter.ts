/**
 * The simulator's view of the Raft core and its storage, and the default binding to Mooring's RaftCore and
 * MemoryStorage. Kept to one file so the simulator can drive another implementation (createCore option).
 */
import { decodeConfChange } from '../raft/core/confchange.js';
import { RaftCore } from '../raft/core/core.js';
import { MemoryStorage } from '../raft/core/memory-storage.js';
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, RaftConfig, Ready, Snapshot, Status, Storage } from '../raft/core/types.js';

/** What the simulator calls on a Raft core (the etcd RawNode shape). */
export interface SimCore {
  tick(): void;
  step(m: Message): void;
  propose(data: Uint8Array): void;
  proposeConfChange(cc: ConfChange): void;
  applyConfChange(cc: ConfChange): ConfState;
  readIndex(ctx: Uint8Array): void;
  /** Follower read leases (RaftCore.followerLeaseRead): the index to wait for, or null without a lease. */
  followerLeaseRead?(): number | null;
  transferLeadership(to: NodeId): void;
  /** The driver's report on a snapshot it streamed to `id` (delivered, or lost). */
  reportSnapshot(id: NodeId, ok: boolean): void;
  hasReady(): boolean;
  ready(): Ready;
  advance(rd: Ready): void;
  /** Pipelined storage writes (RaftCore): the Ready's writes are durable. Without both, the simulator is serial. */
  onPersisted?(rd: Ready): void;
  /** Pipelined storage writes (RaftCore): the Ready's committed entries were applied. */
  onApplied?(rd: Ready): void;
  status(): Status;
}

/** Durable log storage as the simulator writes it while handling a Ready. */
export interface SimStorage extends Storage {
  append(entries: Entry[]): void;
  setHardState(hs: HardState): void;
  setConfState(cs: ConfState): void;
  applySnapshot(snap: Snapshot): void;
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot;
  compact(compactIndex: number): void;
}

export function createDefaultCore(config: RaftConfig): SimCore {
  return new RaftCore(config) as unknown as SimCore;
}

/**
 * Storage for a simulated node. Founders record the initial membership as a snapshot at index 1 (term 1), as
 * RaftNode does: a node that joins later starts empty and, since the log begins at 2, can only be caught up by a
 * snapshot, which carries the membership (entries from index 1 would never name the founders).
 * `bootstrapData` is the state machine image at that point.
 */
export function newSimStorage(founders: NodeId[] | null, bootstrapData: Uint8Array): SimStorage {
  const storage = new MemoryStorage();
  if (founders !== null) {
    storage.applySnapshot({
      metadata: {
        index: 1,
        term: 1,
        confState: { voters: [...founders].sort(), learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false },
      },
      data: bootstrapData,
    });
  }
  return storage;
}

export function decodeSimConfChange(data: Uint8Array): ConfChange {
  return decodeConfChange(data);
}
