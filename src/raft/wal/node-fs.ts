/** The WAL's file system in production: node:fs, with the dir lock of lock.ts. */
import { constants as fsConstants, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import type { WalFs, WalOpenMode } from './fs.js';
import { DirLock } from './lock.js';

const zeroChunkBytes = 1024 * 1024;

/** Makes a directory's entries (created, renamed, removed files) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const openFlags: Record<WalOpenMode, string | number> = {
  create: 'w',
  append: fsConstants.O_RDWR,
  'append-dsync': fsConstants.O_RDWR | fsConstants.O_DSYNC,
};

export const nodeWalFs: WalFs = {
  mkdirp: (dir) => void mkdirSync(dir, { recursive: true }),
  readdir: (dir) => readdirSync(dir),
  readFile: (file) => readFileSync(file),
  size: (file) => statSync(file).size,
  removeSync: (file) => rmSync(file, { force: true }),
  zeroRangeSync(file, from, to) {
    const fd = openSync(file, 'r+');
    try {
      const zeros = Buffer.alloc(Math.min(zeroChunkBytes, Math.max(0, to - from)));
      for (let off = from; off < to;) {
        const n = writeSync(fd, zeros, 0, Math.min(zeros.length, to - off), off);
        if (n <= 0) throw new Error(`write of zeros at ${off} wrote nothing`);
        off += n;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  },
  fsyncDirSync: fsyncDir,
  lock: (dir) => DirLock.acquire(dir),
  open: (file, mode) => open(file, openFlags[mode]),
  rename: (from, to) => rename(from, to),
  remove: (file) => rm(file, { force: true }),
  async fsyncDir(dir) {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
};
