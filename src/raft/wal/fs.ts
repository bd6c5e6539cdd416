/**
 * The file system as the WAL uses it: exactly the operations wal.ts performs, so the simulator can run the real
 * WAL on a simulated page cache and disk (src/testing/fullnode/sim-fs.ts). Production: `nodeWalFs` (node-fs.ts).
 *
 * Durability is the caller's business, as with POSIX: a write is durable once `datasync`/`sync` of its file
 * returned (or at once for a file opened 'append-dsync', O_DSYNC); a created, renamed or removed directory entry
 * is durable once `fsyncDir` of its directory returned. The synchronous calls are the ones `open` makes while
 * replaying (nothing else runs then); the write path uses the asynchronous ones only.
 */

/** An open file: the subset of node's `FileHandle` the WAL uses (a real FileHandle is one). */
export interface WalFile {
  /** Writes `length` bytes of `buffer` from `offset` at file `position`; may write fewer (the WAL loops). */
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  /** fdatasync(2). */
  datasync(): Promise<void>;
  /** fsync(2). */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * How a file is opened: 'create' = O_WRONLY|O_CREAT|O_TRUNC ('w'); 'append' = O_RDWR (an existing segment);
 * 'append-dsync' = O_RDWR|O_DSYNC (every write is durable when it returns).
 */
export type WalOpenMode = 'create' | 'append' | 'append-dsync';

/** One writer per WAL dir (production: the LOCK file, lock.ts). */
export interface WalDirLock {
  release(): void;
}

export interface WalFs {
  /** mkdir -p. */
  mkdirp(dir: string): void;
  /** The names in `dir` (throws if it does not exist). */
  readdir(dir: string): string[];
  /** The whole file. */
  readFile(file: string): Buffer;
  /** The file's size in bytes. */
  size(file: string): number;
  /** Removes a file if it exists (its entry is durable only after fsyncDirSync/fsyncDir). */
  removeSync(file: string): void;
  /** Overwrites [from, to) of an existing file with zeros and fsyncs the file (repairing a torn tail). */
  zeroRangeSync(file: string, from: number, to: number): void;
  /** Makes the entries of `dir` (created, renamed, removed files) durable. */
  fsyncDirSync(dir: string): void;
  /** Takes the dir's writer lock or throws STORAGE_FAILED naming the holder. */
  lock(dir: string): WalDirLock;

  open(file: string, mode: WalOpenMode): Promise<WalFile>;
  /** rename(2): atomic replacement of `to`. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file if it exists. */
  remove(file: string): Promise<void>;
  /** fsync of the directory, off the event loop. */
  fsyncDir(dir: string): Promise<void>;
}
