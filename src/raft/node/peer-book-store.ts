/**
 * Where the address book survives restarts (peers.json in production, src/raft/effects/file-peer-book-store.ts).
 * What it holds is validated by the caller: `load` returns untrusted data.
 */
import type { PeerAddress } from '../../transport/types.js';

export interface PeerBookStore {
  /** The saved list, or undefined when none was saved. Throws when it exists but cannot be read. */
  load(): unknown;
  /** Replaces the saved list durably (atomically: a crash leaves the old or the new one). */
  save(peers: PeerAddress[]): void;
}
