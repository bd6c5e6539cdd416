/**
 * Online backup of the master state (`mooring admin backup`, `MasterClient.backup`).
 *
 * `backupBegin` (leader, admin token): a read barrier (everything committed is applied), then one state-machine
 * image at the applied index — the same chunk stream followers get for catch-up, taken from a LevelDB snapshot,
 * so writes keep flowing while it streams and none of them leaks into it. It answers a session id and the header
 * (index, membership, cluster identity). `backupNext` pages the stream out in replies of at most
 * `backupReplyBytes`; the client writes the file and its checksum (backup-format.ts). Sessions are bounded
 * (`maxBackupSessions`) and dropped after `backupSessionIdleMs` without a call.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Writable } from 'node:stream';
import { ErrorCode, MooringError } from '../errors.js';
import type { ConfState } from '../raft/core/types.js';
import { backupEndMagic, backupVersion, encodeBackupHeader, type BackupHeader, type BackupPeer } from './backup-format.js';

export const maxBackupSessions = 2;
export const backupSessionIdleMs = 30_000;
const backupSweepIntervalMs = 5_000;
/** Target payload of one backupNext reply (bounded again by the frame limit). */
export const backupReplyBytes = 4 * 1024 * 1024;
/** Room left in a frame for the reply envelope. */
const replyEnvelopeBytes = 64 * 1024;

export interface BackupSource {
  /** Resolves once this node is leader and has applied everything committed (a linearizable read barrier). */
  barrier(): Promise<void>;
  /** One image of the state and the log index it reflects (synchronous: nothing is applied in between). */
  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> };
  members(): ConfState;
  peer(id: string): BackupPeer | undefined;
  objectCount(): number;
  clusterId: string;
  clusterUid: string | null;
  nodeId: string;
  maxFrameBytes: number;
}

interface Session {
  it: AsyncIterator<Uint8Array>;
  carry: Buffer | null;
  lastUsedMs: number;
  busy: boolean;
}

/** The header of a backup whose image (taken right after the barrier) is at `index`. */
export function backupHeaderOf(src: Omit<BackupSource, 'barrier' | 'snapshot' | 'maxFrameBytes'>, index: number, createdAtMs: number): BackupHeader {
  const cs = src.members();
  const ids = [...new Set([...cs.voters, ...cs.learners])];
  return {
    version: backupVersion,
    clusterId: src.clusterId,
    clusterUid: src.clusterUid,
    index,
    voters: [...cs.voters],
    learners: [...cs.learners],
    peers: ids.map((id) => src.peer(id)).filter((p): p is BackupPeer => p !== undefined),
    objectCount: src.objectCount(),
    createdAtMs,
    takenFrom: src.nodeId,
  };
}

export class BackupService {
  private readonly sessions = new Map<string, Session>();
  private readonly sweeper: NodeJS.Timeout;
  private lastSweepMs = Date.now();

  constructor(private readonly src: BackupSource) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), backupSweepIntervalMs);
    this.sweeper.unref();
  }

  async begin(): Promise<{ backupId: string; header: BackupHeader }> {
    if (this.sessions.size >= maxBackupSessions) {
      throw new MooringError(ErrorCode.QUEUE_FULL, `${maxBackupSessions} backups are already streaming from this master; retry later`);
    }
    await this.src.barrier();
    const snap = this.src.snapshot();
    const header = backupHeaderOf(this.src, snap.index, Date.now());
    const backupId = randomUUID();
    this.sessions.set(backupId, { it: snap.chunks[Symbol.asyncIterator](), carry: null, lastUsedMs: Date.now(), busy: false });
    return { backupId, header };
  }

  async next(backupId: string): Promise<{ chunks: Uint8Array[]; done: boolean }> {
    const s = this.sessions.get(backupId);
    if (s === undefined) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'unknown or expired backup session (start the backup again)');
    if (s.busy) throw new MooringError(ErrorCode.INVALID_ARGUMENT, 'backupNext calls of one session must not overlap');
    s.busy = true;
    const limit = Math.max(1, Math.min(backupReplyBytes, this.src.maxFrameBytes - replyEnvelopeBytes));
    try {
      const chunks: Uint8Array[] = [];
      let bytes = 0;
      while (bytes < limit) {
        let c: Buffer;
        if (s.carry !== null) {
          c = s.carry;
          s.carry = null;
        } else {
          const r = await s.it.next();
          if (r.done === true) {
            this.sessions.delete(backupId);
            return { chunks, done: true };
          }
          c = Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        }
        const room = limit - bytes;
        if (c.length > room) {
          s.carry = c.subarray(room);
          c = c.subarray(0, room);
        }
        chunks.push(c);
        bytes += c.length;
      }
      return { chunks, done: false };
    } catch (err) {
      this.drop(backupId);
      throw err;
    } finally {
      s.busy = false;
      s.lastUsedMs = Date.now();
    }
  }

  private drop(id: string): void {
    const s = this.sessions.get(id);
    this.sessions.delete(id);
    // Closes the state machine's store snapshot behind the stream.
    void s?.it.return?.().catch(() => undefined);
  }

  private sweep(now: number): void {
    // A late sweep means this process was blocked (a long apply, a paused VM): no client could call meanwhile.
    if (now - this.lastSweepMs > 2 * backupSweepIntervalMs) for (const s of this.sessions.values()) s.lastUsedMs = now;
    this.lastSweepMs = now;
    for (const [id, s] of this.sessions) if (!s.busy && now - s.lastUsedMs > backupSessionIdleMs) this.drop(id);
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const id of [...this.sessions.keys()]) this.drop(id);
  }
}

export interface BackupProgress {
  bytes: number;
  header: BackupHeader;
}

export interface BackupResult {
  header: BackupHeader;
  bytes: number;
  sha256: string;
}

type Call = (method: string, args: Record<string, unknown>, opts?: { timeoutMs?: number; retry?: { maxAttempts?: number } }) => Promise<unknown>;

/** Backup timeout per call: the first waits for the read barrier, later ones read ≤ backupReplyBytes. */
export const backupCallTimeoutMs = 30_000;

/**
 * Client side: begins a backup on the leader and writes the whole file (header, stream, checksum trailer) to
 * `out`, respecting its back-pressure. Pages are fetched from the node that began the session (the client's
 * current endpoint); if it fails mid-way the backup fails and must be started again.
 */
export async function streamBackup(call: Call, adminArgs: (a: Record<string, unknown>) => Record<string, unknown>, out: Writable, onProgress?: (p: BackupProgress) => void): Promise<BackupResult> {
  const begun = (await call('backupBegin', adminArgs({}), { timeoutMs: backupCallTimeoutMs })) as { backupId: string; header: BackupHeader };
  const pages = (async function* () {
    for (;;) {
      // No retry on another endpoint: the session lives on the node that began it.
      const page = (await call('backupNext', adminArgs({ backupId: begun.backupId }), { timeoutMs: backupCallTimeoutMs, retry: { maxAttempts: 1 } })) as { chunks: Uint8Array[]; done: boolean };
      yield* page.chunks;
      if (page.done) return;
    }
  })();
  return writeBackup(begun.header, pages, out, onProgress);
}

/** Writes a backup file (header, the state machine's snapshot stream, checksum trailer) to `out`. */
export async function writeBackup(header: BackupHeader, chunks: AsyncIterable<Uint8Array>, out: Writable, onProgress?: (p: BackupProgress) => void): Promise<BackupResult> {
  const hash = createHash('sha256');
  let bytes = 0;
  const write = async (b: Uint8Array, hashed = true): Promise<void> => {
    if (hashed) hash.update(b);
    bytes += b.byteLength;
    if (!out.write(b)) await new Promise<void>((resolve, reject) => {
      const onErr = (e: Error): void => { out.off('drain', onDrain); reject(e); };
      const onDrain = (): void => { out.off('error', onErr); resolve(); };
      out.once('drain', onDrain);
      out.once('error', onErr);
    });
  };
  await write(encodeBackupHeader(header));
  for await (const c of chunks) {
    await write(c);
    onProgress?.({ bytes, header });
  }
  const digest = hash.digest();
  await write(Buffer.concat([backupEndMagic, digest]), false);
  return { header, bytes, sha256: digest.toString('hex') };
}
