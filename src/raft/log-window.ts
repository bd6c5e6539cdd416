/**
 * Reads of the live Raft log kept in memory as an array after the compaction point (index compactIndex + 1 at
 * position 0), shared by the WAL and 0.1's LevelDB LogStore: the core's `entries` and `term` on that window.
 */
import { ErrorCode, MooringError, assert } from '../errors.js';
import type { Entry } from './core/types.js';

export interface LogWindow {
  log: readonly Entry[];
  compactIndex: number;
  compactTerm: number;
}

function lastIndexOf(w: LogWindow): number {
  return w.compactIndex + w.log.length;
}

/** Entries [lo, hi), at most maxBytes of data but always at least one (a single oversized entry still moves). */
export function windowEntries(w: LogWindow, lo: number, hi: number, maxBytes: number): Entry[] {
  if (lo <= w.compactIndex) throw new MooringError(ErrorCode.COMPACTED, `entries from ${lo} were compacted (first index ${w.compactIndex + 1})`);
  assert(hi <= lastIndexOf(w) + 1, () => `entries(${lo}, ${hi}) beyond last index ${lastIndexOf(w)}`);
  const out: Entry[] = [];
  let size = 0;
  for (let i = lo; i < hi; i++) {
    const e = w.log[i - w.compactIndex - 1]!;
    size += e.data.byteLength;
    if (out.length > 0 && size > maxBytes) break;
    out.push(e);
  }
  return out;
}

export function windowTerm(w: LogWindow, i: number): number {
  if (i === w.compactIndex) return w.compactTerm;
  if (i < w.compactIndex) throw new MooringError(ErrorCode.COMPACTED, `term of ${i}: compacted (first index ${w.compactIndex + 1})`);
  const e = w.log[i - w.compactIndex - 1];
  if (e === undefined) throw new MooringError(ErrorCode.INTERNAL, `term of ${i}: beyond last index ${lastIndexOf(w)}`);
  return e.term;
}
