/**
 * Rewrites a node's WAL as a 0.1 data dir's Raft log (LevelDB, written with 0.1's LogStore class) and removes the
 * WAL: the layout an upgrade from 0.1 starts from.
 */
import { rmSync } from 'node:fs';
import { LogStore } from '../../src/raft/log-store.js';
import { Wal } from '../../src/raft/wal/wal.js';

export async function rewriteAsLegacyLog(walDir: string, legacyDir: string): Promise<{ firstIndex: number; lastIndex: number }> {
  const wal = await Wal.open(walDir);
  const old = await LogStore.open(legacyDir);
  try {
    const first = wal.firstIndex();
    const last = wal.lastIndex();
    await old.applySnapshot({ index: first - 1, term: wal.term(first - 1), confState: wal.snapshot().metadata.confState });
    await old.save({ entries: wal.entries(first, last + 1, Infinity), hardState: wal.hardState(), confState: wal.initialState().confState }, { sync: true });
    return { firstIndex: first, lastIndex: last };
  } finally {
    await old.close();
    await wal.close();
    rmSync(walDir, { recursive: true });
  }
}
