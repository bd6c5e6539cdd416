/** The lease file's I/O in production (LeaseFileIo, lease-file.ts): node:fs, the Linux boot id, CLOCK_MONOTONIC. */
import { closeSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import type { LeaseFileIo } from './lease-file.js';

const bootIdFile = '/proc/sys/kernel/random/boot_id';

/** The kernel's boot id (changes at every boot); null where there is none (not Linux). */
export function readBootId(): string | null {
  try {
    const id = readFileSync(bootIdFile, 'utf8').trim();
    return id.length > 0 ? id : null;
  } catch {
    return null;
  }
}

function writeAll(fd: number, data: Buffer): void {
  for (let off = 0; off < data.byteLength;) {
    const n = writeSync(fd, data, off, data.byteLength - off);
    if (n <= 0) throw new Error('write wrote nothing');
    off += n;
  }
}

/**
 * One open append descriptor per file (a lease record costs one write(2)), and one for a replacement being written.
 * `close()` releases them (MasterNode.stop).
 * The boot clock is process.hrtime: CLOCK_MONOTONIC on Linux, the same for every process of one boot.
 */
export class NodeLeaseFileIo implements LeaseFileIo {
  private fd: number | null = null;
  private fdFile: string | null = null;
  /** The temporary file of a replacement in progress (beginReplace → commitReplace). */
  private tmpFd: number | null = null;
  private tmpFile: string | null = null;
  private readonly boot = readBootId();

  bootId(): string | null {
    return this.boot;
  }

  bootClockMs(): number {
    return Number(process.hrtime.bigint()) / 1e6;
  }

  size(file: string): number | null {
    try {
      return statSync(file).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  read(file: string): Buffer | null {
    try {
      return readFileSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  append(file: string, data: Buffer): void {
    if (this.fd === null || this.fdFile !== file) {
      this.closeAppend();
      this.fd = openSync(file, 'a');
      this.fdFile = file;
    }
    writeAll(this.fd, data);
  }

  replace(file: string, pieces: readonly Buffer[]): void {
    this.beginReplace(file);
    for (const p of pieces) this.appendReplace(file, p);
    this.commitReplace(file);
  }

  beginReplace(file: string): void {
    this.closeTmp();
    this.tmpFd = openSync(`${file}.tmp`, 'w');
    this.tmpFile = file;
  }

  appendReplace(file: string, data: Buffer): void {
    if (this.tmpFd === null || this.tmpFile !== file) throw new Error(`no replacement of ${file} in progress`);
    writeAll(this.tmpFd, data);
  }

  commitReplace(file: string): void {
    if (this.tmpFd === null || this.tmpFile !== file) throw new Error(`no replacement of ${file} in progress`);
    this.closeTmp();
    // The append descriptor would write to the replaced file: reopened on the next append.
    if (this.fdFile === file) this.closeAppend();
    renameSync(`${file}.tmp`, file);
  }

  /** Releases the descriptors (a replacement not committed leaves its temporary file: the next one truncates it). */
  close(): void {
    this.closeAppend();
    this.closeTmp();
  }

  private closeAppend(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.fdFile = null;
  }

  private closeTmp(): void {
    if (this.tmpFd !== null) closeSync(this.tmpFd);
    this.tmpFd = null;
    this.tmpFile = null;
  }
}
