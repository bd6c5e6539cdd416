/** The address book as dataDir/peers.json, replaced atomically (write tmp, fsync, rename). */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { PeerAddress } from '../../transport/types.js';
import type { PeerBookStore } from '../node/peer-book-store.js';

export class FilePeerBookStore implements PeerBookStore {
  private readonly file: string;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.file = path.join(dataDir, 'peers.json');
  }

  load(): unknown {
    if (!existsSync(this.file)) return undefined;
    return JSON.parse(readFileSync(this.file, 'utf8'));
  }

  save(peers: PeerAddress[]): void {
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify(peers));
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.file);
  }
}
