/**
 * The backup file (`mooring admin backup FILE`) and the cluster identity a restore gives its data dirs.
 *
 *   "MOORBAK1" | u32 header bytes | msgpack header | state-machine snapshot stream | "MOORBEND" | sha256
 *
 * The snapshot stream is exactly what the state machine hands followers for catch-up (self-framed, with its own
 * record count and hash); the trailing sha256 covers every byte before the trailer, so a truncated or damaged
 * file is refused before anything is written.
 *
 * Identity: a restored cluster must never exchange Raft messages with survivors of the one it was restored from
 * (their logs describe a different history). Restore writes `identity.json` (cluster id + a new `clusterUid`)
 * into each data dir; the master then uses `clusterId/clusterUid` as the Raft peer handshake's cluster id, so old
 * members are refused with CLUSTER_MISMATCH. Clients keep using the plain cluster id: storage clients of the old
 * cluster reconnect (and remount when the restored state does not know them).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../errors.js';

const packr = new Packr({ useRecords: false });
export const backupMagic = Buffer.from('MOORBAK1');
export const backupEndMagic = Buffer.from('MOORBEND');
export const backupVersion = 1;
export const backupTrailerBytes = backupEndMagic.length + 32;
/** A header larger than this is not ours (it holds ids and addresses only). */
export const maxBackupHeaderBytes = 1024 * 1024;
export const identityFileName = 'identity.json';

export interface BackupPeer {
  id: string;
  host: string;
  raftPort: number;
  rpcPort?: number;
}

export interface BackupHeader {
  version: number;
  clusterId: string;
  clusterUid: string | null;
  /** The log index the image reflects (every entry up to it, nothing after). */
  index: number;
  voters: string[];
  learners: string[];
  peers: BackupPeer[];
  objectCount: number;
  /** The leader's wall clock when the backup began (informational). */
  createdAtMs: number;
  takenFrom: string;
}

export function encodeBackupHeader(h: BackupHeader): Buffer {
  const body = packr.pack(h);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length, 0);
  return Buffer.concat([backupMagic, len, body]);
}

function bad(message: string): never {
  throw new MooringError(ErrorCode.CHECKSUM_MISMATCH, `backup file: ${message}`);
}

/** Parses the start of a backup file; returns the header and where the snapshot stream begins. */
export function decodeBackupHeader(head: Buffer): { header: BackupHeader; bodyOffset: number } {
  if (head.length < backupMagic.length + 4 || !head.subarray(0, backupMagic.length).equals(backupMagic)) bad('not a Mooring backup (bad magic)');
  const len = head.readUInt32BE(backupMagic.length);
  if (len > maxBackupHeaderBytes) bad(`header of ${len} bytes`);
  const start = backupMagic.length + 4;
  if (head.length < start + len) bad('truncated header');
  let h: BackupHeader;
  try {
    h = packr.unpack(head.subarray(start, start + len)) as BackupHeader;
  } catch {
    bad('the header does not decode');
  }
  if (typeof h !== 'object' || h === null || h.version !== backupVersion) bad(`unsupported version ${String((h as { version?: unknown })?.version)}`);
  if (typeof h.index !== 'number' || !Number.isSafeInteger(h.index) || h.index < 1) bad('bad index');
  if (typeof h.clusterId !== 'string' || !Array.isArray(h.voters)) bad('bad header fields');
  return { header: h, bodyOffset: start + len };
}

export interface ClusterIdentity {
  clusterId: string;
  clusterUid: string;
  restoredFrom?: { index: number; sha256: string; clusterId: string; clusterUid: string | null };
}

/**
 * The uid of a restored cluster: the same for every member restored from the same file into the same membership
 * (each member is restored separately, maybe on another machine), different from the old cluster's (its members
 * and the file differ). `--cluster-uid` overrides it, like etcd's --initial-cluster-token.
 */
export function deriveClusterUid(fileSha256: string, clusterId: string, voters: readonly string[]): string {
  return createHash('sha256').update(`${fileSha256}\n${clusterId}\n${[...voters].sort().join(',')}`).digest('hex').slice(0, 16);
}

export function readIdentity(dataDir: string): ClusterIdentity | null {
  const file = path.join(dataDir, identityFileName);
  if (!existsSync(file)) return null;
  const v = JSON.parse(readFileSync(file, 'utf8')) as ClusterIdentity;
  if (typeof v?.clusterId !== 'string' || typeof v.clusterUid !== 'string' || v.clusterUid.length === 0) {
    throw new MooringError(ErrorCode.INVALID_CONFIG, `${file}: not a cluster identity file`);
  }
  return v;
}

export function writeIdentity(dataDir: string, id: ClusterIdentity): void {
  const file = path.join(dataDir, identityFileName);
  writeFileSync(`${file}.tmp`, JSON.stringify(id, null, 2) + '\n', { flag: 'w' });
  renameSync(`${file}.tmp`, file);
}

/**
 * The cluster id of the Raft peer handshake for a data dir: the plain id for a cluster that was never restored,
 * `clusterId/clusterUid` for a restored one. A data dir restored for another cluster id refuses to start.
 */
export function peerClusterId(dataDir: string, configClusterId: string): string {
  const id = readIdentity(dataDir);
  if (id === null) return configClusterId;
  if (id.clusterId !== configClusterId) {
    throw new MooringError(ErrorCode.INVALID_CONFIG, `the data dir ${dataDir} was restored for cluster '${id.clusterId}', the config says '${configClusterId}'`);
  }
  return `${id.clusterId}/${id.clusterUid}`;
}
