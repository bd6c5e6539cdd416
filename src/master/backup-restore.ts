/**
 * `mooring restore`: turns a backup file into the data dir of one member of a NEW cluster (like etcdutl snapshot
 * restore). Run it once per member, each with that member's config; all of them get the same derived identity.
 *
 * 1. The whole file is checked against its sha256 trailer before anything is written.
 * 2. Everything is written into `<dataDir>.restoring` and renamed to `<dataDir>` at the end, so an interrupted
 *    restore never leaves a half-made data dir a master could start from.
 * 3. The Raft log gets one snapshot point at the backup's index (term 1, voters = the config's peers), through the
 *    log store's own `applySnapshot` — as a bootstrap records index 1 — and the state store is written from the
 *    snapshot stream in the file by `MasterState.restoreToStore`, which re-checks its record count and hash and
 *    that the image loads (records decode, allocators rebuild) without keeping the state in memory.
 * 4. `identity.json` gives the cluster a new uid (backup-format.ts): old members are refused.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, openSync, readSync, closeSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, MooringError } from '../errors.js';
import { Wal } from '../raft/wal/wal.js';
import { MasterState } from '../statemachine/master-state.js';
import type { MasterConfig } from './config.js';
import { logIndexOf } from './state-adapter.js';
import {
  backupEndMagic,
  backupTrailerBytes,
  decodeBackupHeader,
  deriveClusterUid,
  maxBackupHeaderBytes,
  writeIdentity,
  type BackupHeader,
} from './backup-format.js';

export interface VerifiedBackup {
  header: BackupHeader;
  /** Byte range of the state-machine snapshot stream in the file. */
  bodyStart: number;
  bodyEnd: number;
  sha256: string;
}

/** Reads the whole file once and checks its trailer; throws CHECKSUM_MISMATCH for a damaged or truncated file. */
export async function verifyBackupFile(file: string, onProgress?: (done: number, total: number) => void): Promise<VerifiedBackup> {
  const size = statSync(file).size;
  if (size < backupTrailerBytes + 12) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `backup file ${file}: too short (${size} bytes)`);
  const fd = openSync(file, 'r');
  let head: Buffer;
  let trailer: Buffer;
  try {
    head = Buffer.alloc(Math.min(size, maxBackupHeaderBytes + 12));
    readSync(fd, head, 0, head.length, 0);
    trailer = Buffer.alloc(backupTrailerBytes);
    readSync(fd, trailer, 0, backupTrailerBytes, size - backupTrailerBytes);
  } finally {
    closeSync(fd);
  }
  const { header, bodyOffset } = decodeBackupHeader(head);
  if (!trailer.subarray(0, backupEndMagic.length).equals(backupEndMagic)) {
    throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `backup file ${file}: no trailer (truncated?)`);
  }
  const hash = createHash('sha256');
  let done = 0;
  const bodyEnd = size - backupTrailerBytes;
  for await (const c of createReadStream(file, { start: 0, end: bodyEnd - 1, highWaterMark: 1 << 20 })) {
    hash.update(c as Buffer);
    done += (c as Buffer).length;
    onProgress?.(done, bodyEnd);
  }
  const digest = hash.digest();
  if (!digest.equals(trailer.subarray(backupEndMagic.length))) {
    throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `backup file ${file}: checksum mismatch (damaged file)`);
  }
  return { header, bodyStart: bodyOffset, bodyEnd, sha256: digest.toString('hex') };
}

/** verifyBackupFile for a backup held in memory (the full-node simulator's): the same checks. */
export function verifyBackupBytes(file: Buffer): VerifiedBackup {
  if (file.length < backupTrailerBytes + 12) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `backup: too short (${file.length} bytes)`);
  const { header, bodyOffset } = decodeBackupHeader(file.subarray(0, Math.min(file.length, maxBackupHeaderBytes + 12)));
  const bodyEnd = file.length - backupTrailerBytes;
  const trailer = file.subarray(bodyEnd);
  if (!trailer.subarray(0, backupEndMagic.length).equals(backupEndMagic)) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, 'backup: no trailer (truncated?)');
  const digest = createHash('sha256').update(file.subarray(0, bodyEnd)).digest();
  if (!digest.equals(trailer.subarray(backupEndMagic.length))) throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, 'backup: checksum mismatch (damaged file)');
  return { header, bodyStart: bodyOffset, bodyEnd, sha256: digest.toString('hex') };
}

/** The image restored from a backup must be at the index its header names (restoreDataDir's last check). */
export function checkRestoredIndex(header: BackupHeader, restoredStateIndex: number): void {
  const index = logIndexOf(restoredStateIndex);
  if (index !== header.index) {
    throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `the image in the backup is at log index ${index}, its header says ${header.index}`);
  }
}

export interface RestoreOptions {
  file: string;
  /** This member's config: nodeId, dataDir, clusterId and peers (the new membership). */
  config: MasterConfig;
  /** Override the derived uid of the new cluster. */
  clusterUid?: string;
  onProgress?: (phase: 'verify' | 'restore', done: number, total: number) => void;
}

export interface RestoreResult {
  dataDir: string;
  index: number;
  objectCount: number;
  clusterId: string;
  clusterUid: string;
  voters: string[];
}

export async function restoreDataDir(opts: RestoreOptions): Promise<RestoreResult> {
  const cfg = opts.config;
  const dataDir = path.resolve(cfg.dataDir);
  if (existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `data dir ${dataDir} is not empty: restore writes a fresh one (move the old one away first)`);
  }
  const voters = [...new Set(cfg.peers.map((p) => p.id))].sort();
  if (!voters.includes(cfg.nodeId)) throw new MooringError(ErrorCode.INVALID_CONFIG, `nodeId ${cfg.nodeId} is not among the config's peers`);
  const v = await verifyBackupFile(opts.file, (d, t) => opts.onProgress?.('verify', d, t));
  const clusterUid = opts.clusterUid ?? deriveClusterUid(v.sha256, cfg.clusterId, voters);
  if (clusterUid === v.header.clusterUid && cfg.clusterId === v.header.clusterId) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'the restored cluster would have the identity of the backed-up one; choose another --cluster-uid');
  }

  const tmp = `${dataDir}.restoring`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    writeIdentity(tmp, {
      clusterId: cfg.clusterId,
      clusterUid,
      restoredFrom: { index: v.header.index, sha256: v.sha256, clusterId: v.header.clusterId, clusterUid: v.header.clusterUid },
    });
    const log = await Wal.open(path.join(tmp, 'raft-wal'));
    try {
      await log.applySnapshot({ index: v.header.index, term: 1, confState: { voters, learners: [], votersOutgoing: [], learnersNext: [], autoLeave: false } });
    } finally {
      await log.close();
    }
    let done = 0;
    const total = v.bodyEnd - v.bodyStart;
    const chunks = (async function* () {
      for await (const c of createReadStream(opts.file, { start: v.bodyStart, end: v.bodyEnd - 1, highWaterMark: 1 << 20 })) {
        done += (c as Buffer).length;
        opts.onProgress?.('restore', done, total);
        yield c as Buffer;
      }
    })();
    // Checked as a restore checks it, but not kept in memory: the master loads it when it starts.
    const restored = await MasterState.restoreToStore(path.join(tmp, 'state'), chunks, { placement: cfg.placement.strategy });
    checkRestoredIndex(v.header, restored.appliedIndex);
    const objectCount = restored.objectCount;
    renameSync(tmp, dataDir);
    return { dataDir, index: v.header.index, objectCount, clusterId: cfg.clusterId, clusterUid, voters };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
