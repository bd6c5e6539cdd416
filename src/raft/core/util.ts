/** Small helpers shared by the Raft core files (pure, no I/O). */
import type { ConfState, Entry, LogPosition } from './types.js';

export const EMPTY_BYTES: Uint8Array = new Uint8Array(0);

/** Raft's up-to-date order: does a log ending at (index, term) reach `than` (a later last term, or the same and an index as high)? */
export function reaches(index: number, term: number, than: LogPosition): boolean {
  return term > than.term || (term === than.term && index >= than.index);
}

export function emptyConfState(): ConfState {
  return { voters: [], learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false };
}

export function cloneConfState(cs: ConfState): ConfState {
  return {
    voters: [...cs.voters],
    learners: [...cs.learners],
    votersOutgoing: [...cs.votersOutgoing],
    learnersNext: [...cs.learnersNext],
    autoLeave: cs.autoLeave,
  };
}

/** Size used for all byte limits: the entry's data length (headers are ignored, as in etcd's payloadSize). */
export function entrySize(e: Entry): number {
  return e.data.length;
}

export function entriesSize(ents: readonly Entry[]): number {
  let s = 0;
  for (const e of ents) s += e.data.length;
  return s;
}

/**
 * Keeps a prefix of `ents` whose total size stays within maxBytes, but always at least one entry
 * (so a single oversize entry still makes progress).
 */
export function limitSize(ents: Entry[], maxBytes: number): Entry[] {
  if (ents.length === 0) return ents;
  let size = ents[0]!.data.length;
  let n = 1;
  for (; n < ents.length; n++) {
    size += ents[n]!.data.length;
    if (size > maxBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

export function bytesEqual(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
