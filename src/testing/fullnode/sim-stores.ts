/** In-memory SnapshotStore and PeerBookStore for simulated nodes (the address book survives crashes). */
import type { PeerAddress } from '../../transport/types.js';
import type { PeerBookStore } from '../../raft/node/peer-book-store.js';
import type { SnapshotStore, StagedSnapshot } from '../../raft/node/snapshot-store.js';

export class MemorySnapshotStore implements SnapshotStore {
  clear(): void {}

  create(_onError: (err: Error) => void): StagedSnapshot {
    let chunks: Uint8Array[] = [];
    return {
      // Stored at once; the callback still runs asynchronously, as a real disk's would.
      write: (chunk, written) => { chunks.push(chunk.slice()); queueMicrotask(() => written(null)); },
      pendingBytes: 0,
      end: (done) => { queueMicrotask(() => done(null)); },
      read: () => (async function* () { for (const c of chunks) yield c; })(),
      remove: () => { chunks = []; },
    };
  }
}

export class MemoryPeerBookStore implements PeerBookStore {
  private saved: PeerAddress[] | undefined;

  load(): unknown {
    return this.saved === undefined ? undefined : this.saved.map((p) => ({ ...p }));
  }

  save(peers: PeerAddress[]): void {
    this.saved = peers.map((p) => ({ ...p }));
  }
}
