/**
 * Inbound snapshots staged as files under `<dir>` (dataDir/snapshots): each chunk length-prefixed so the state
 * machine gets back exactly the chunks its peer's snapshot() produced.
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ErrorCode, MooringError } from '../../errors.js';
import type { SnapshotStore, StagedSnapshot } from '../node/snapshot-store.js';

export class FileSnapshotStore implements SnapshotStore {
  /** Names staging files: a sender's stream id may repeat across streams and senders. */
  private files = 0;

  constructor(private readonly dir: string) {}

  clear(): void {
    if (!existsSync(this.dir)) return;
    for (const name of readdirSync(this.dir)) rmSync(path.join(this.dir, name), { force: true });
  }

  create(onError: (err: Error) => void): StagedSnapshot {
    mkdirSync(this.dir, { recursive: true });
    const file = path.join(this.dir, `incoming-${++this.files}.snap`);
    const out = createWriteStream(file);
    let failed: Error | null = null;
    // Always listened to: a failed write (disk full) or a write racing remove() must never become uncaught.
    out.on('error', (err) => {
      if (failed !== null) return;
      failed = err;
      onError(err);
    });
    return {
      write(chunk, written) {
        const len = Buffer.allocUnsafe(4);
        len.writeUInt32BE(chunk.byteLength);
        out.write(len);
        out.write(chunk, (err) => written(err ?? null));
      },
      get pendingBytes() {
        return out.writableLength;
      },
      end(done) {
        if (failed !== null || out.destroyed) {
          done(failed ?? new Error('staging stream closed'));
          return;
        }
        out.end(() => done(failed));
      },
      read: () => readChunks(file),
      remove() {
        out.destroy();
        // Remove the file only once the stream has closed: an open() still pending would recreate it.
        const rm = (): void => rmSync(file, { force: true });
        if (out.closed) rm();
        else out.once('close', rm);
      },
    };
  }
}

/** Reads back the length-prefixed chunks of a staged snapshot file, one original chunk at a time. */
async function* readChunks(file: string): AsyncIterable<Uint8Array> {
  let buf: Buffer = Buffer.alloc(0);
  for await (const piece of createReadStream(file, { highWaterMark: 1 << 20 })) {
    buf = buf.length === 0 ? (piece as Buffer) : Buffer.concat([buf, piece as Buffer]);
    while (buf.length >= 4) {
      const len = buf.readUInt32BE(0);
      if (buf.length < 4 + len) break;
      yield buf.subarray(4, 4 + len);
      buf = buf.subarray(4 + len);
    }
  }
  if (buf.length !== 0) throw new MooringError(ErrorCode.CORRUPT_LOG, `staged snapshot ${file} ends mid-chunk`);
}
