/**
 * Opens a node's Raft log: the WAL in `walDir`, converting a 0.1 data dir (LevelDB log in `legacyDir`) once.
 *
 * Conversion is crash-safe by construction:
 *   1. the LevelDB log is read with 0.1's LogStore (its own LevelDB lock keeps a second process out) and written
 *      into `<walDir>.converting`, every batch fdatasynced; the WAL is closed and its dir fsynced;
 *   2. `<walDir>.converting` is renamed to `walDir` (atomic) and the parent dir fsynced: from here on the WAL is
 *      the log;
 *   3. only then is `legacyDir` renamed to `<legacyDir>.0.1-backup` (kept for the operator to delete).
 * A crash before 2 leaves the old log untouched and a staging dir that the next start deletes and redoes; a crash
 * between 2 and 3 leaves both, and the next start sees the WAL and just finishes step 3.
 */
import { existsSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, MooringError } from '../../errors.js';
import { silentLogger, type LoggerLike } from '../../transport/logger.js';
import { LogStore } from '../log-store.js';
import { fsyncDir } from './node-fs.js';
import { Wal, type WalOptions } from './wal.js';

/** Entries per batch while converting (bounds the memory of one write). */
const conversionBatchEntries = 1024;
export const legacyBackupSuffix = '.0.1-backup';
export const convertingSuffix = '.converting';

export interface OpenRaftLogOptions extends WalOptions {
  walDir: string;
  /** Where 0.1 kept its LevelDB log (converted once if present). */
  legacyDir: string;
  logger?: LoggerLike;
}

/** A LevelDB dir written by 0.1 (it has LevelDB's CURRENT file). */
function isLegacyLog(dir: string): boolean {
  return existsSync(path.join(dir, 'CURRENT'));
}

export async function openRaftLog(opts: OpenRaftLogOptions): Promise<Wal> {
  const logger = opts.logger ?? silentLogger;
  const { walDir, legacyDir } = opts;
  if (!Wal.exists(walDir) && isLegacyLog(legacyDir)) await convertLegacyLog(legacyDir, walDir, opts);
  if (isLegacyLog(legacyDir) && Wal.exists(walDir)) {
    // The WAL is complete and durable (step 2 happened): move the old log aside.
    const backup = legacyDir + legacyBackupSuffix;
    rmSync(backup, { recursive: true, force: true });
    renameSync(legacyDir, backup);
    fsyncDir(path.dirname(legacyDir));
    logger.info({ backup }, `the 0.1 LevelDB log was converted to the WAL; the old log is kept at ${backup} and can be deleted`);
  }
  return Wal.open(walDir, opts);
}

async function convertLegacyLog(legacyDir: string, walDir: string, opts: OpenRaftLogOptions): Promise<void> {
  const logger = opts.logger ?? silentLogger;
  const staging = walDir + convertingSuffix;
  rmSync(staging, { recursive: true, force: true }); // a conversion that crashed: start over
  let old: LogStore;
  try {
    old = await LogStore.open(legacyDir, { logger });
  } catch (err) {
    const cause = (err as { cause?: { cause?: { code?: string; message?: string } } }).cause?.cause;
    if (cause?.code === 'LEVEL_LOCKED') {
      throw new MooringError(ErrorCode.STORAGE_FAILED, `another process holds ${legacyDir} (${cause.message ?? 'LevelDB lock'}); stop it first`, { cause: err });
    }
    throw err;
  }
  let converted = 0;
  try {
    const wal = await Wal.open(staging, opts);
    try {
      const first = old.firstIndex();
      const last = old.lastIndex();
      const snap = old.snapshot().metadata;
      const { hardState } = old.initialState();
      const confState = old.recordedConfState() ?? undefined;
      // The compaction point first (it can be below the snapshot index: entries are kept behind a snapshot)...
      if (first > 1) await wal.save({ snapshotMeta: { index: first - 1, term: old.term(first - 1), confState: snap.confState } }, { sync: true });
      // ...then the live entries, then the real snapshot metadata, the recorded membership and the hard state.
      for (let lo = first; lo <= last; lo += conversionBatchEntries) {
        const hi = Math.min(last + 1, lo + conversionBatchEntries);
        const entries = old.entries(lo, hi, Number.POSITIVE_INFINITY);
        await wal.save({ entries }, { sync: true });
        converted += entries.length;
      }
      if (snap.index > first - 1) await wal.compact(first - 1, snap);
      await wal.save(confState === undefined ? { hardState } : { hardState, confState }, { sync: true });
    } finally {
      await wal.close();
    }
    fsyncDir(staging);
    renameSync(staging, walDir);
    fsyncDir(path.dirname(walDir));
  } finally {
    await old.close();
  }
  logger.info({ legacyDir, walDir, entries: converted }, `converted the 0.1 LevelDB log (${converted} entries) to the WAL`);
}
