/**
 * The lease file's I/O (LeaseFileIo, src/master/lease-file.ts) in the full-node simulator: on the node's simulated
 * disk (sim-fs.ts), so a process crash keeps what reached the page cache and a power loss may lose it and changes
 * the boot id. The boot clock is the node's NodeClock, which goes on across the node's crashes like CLOCK_MONOTONIC.
 */
import path from 'node:path';
import type { LeaseFileIo } from '../../master/lease-file.js';
import type { NodeClock } from './scheduler.js';
import type { SimFsDisk, SimWalFs } from './sim-fs.js';

export class SimLeaseFileIo implements LeaseFileIo {
  constructor(private readonly disk: SimFsDisk, private readonly fs: SimWalFs, private readonly clock: NodeClock) {}

  bootId(): string {
    return this.disk.bootId();
  }

  bootClockMs(): number {
    return this.clock.now();
  }

  size(file: string): number | null {
    return this.exists(file) ? this.fs.size(file) : null;
  }

  read(file: string): Buffer | null {
    return this.exists(file) ? this.fs.readFile(file) : null;
  }

  append(file: string, data: Buffer): void {
    this.fs.mkdirp(path.dirname(file));
    this.fs.appendSync(file, data);
  }

  replace(file: string, pieces: readonly Buffer[]): void {
    this.fs.mkdirp(path.dirname(file));
    this.fs.replaceSync(file, Buffer.concat(pieces));
  }

  beginReplace(file: string): void {
    this.fs.mkdirp(path.dirname(file));
    this.fs.truncateNewSync(`${file}.tmp`);
  }

  appendReplace(file: string, data: Buffer): void {
    this.fs.appendSync(`${file}.tmp`, data);
  }

  commitReplace(file: string): void {
    this.fs.renameSync(`${file}.tmp`, file);
  }

  private exists(file: string): boolean {
    const dir = path.dirname(file);
    try {
      return this.fs.readdir(dir).includes(path.basename(file));
    } catch {
      return false;
    }
  }
}
