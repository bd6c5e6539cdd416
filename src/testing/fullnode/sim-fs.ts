/**
 * A simulated file system under the real WAL (`WalFs`, src/raft/wal/fs.ts): one per node, surviving the node's
 * crashes, with a page-cache model driven by the simulator's scheduler and seeded rng.
 *
 * Every file has two images: the page cache (what reads see) and the disk (what survives a crash). Every
 * mutation — a data write, a file created, renamed or removed — is recorded, in the order it was issued, as
 * *unsynced* until something makes it durable:
 * - a write to a file opened 'append-dsync' (O_DSYNC) when it completes, and `datasync`/`sync` of a file: that
 *   file's completed writes;
 * - `fsyncDir` of a directory: that directory's completed entry changes (create, rename, remove).
 * Asynchronous operations complete after a simulated delay (writes and syncs sometimes slow), so a save really
 * overlaps with other work; the process hears of a completion through its NodeClock (held while it is paused,
 * dropped once it died).
 *
 * Faults:
 * - process crash (SIGKILL, a crash-stop): the page cache survives, so every completed operation stays (still
 *   unsynced: a later power loss may lose it) and a random prefix (in issue order) of those still in flight happens,
 *   the rest never does; the machine's boot id stays;
 * - crash (power loss, an OS crash): a random prefix (in issue order) of the unsynced operations, including those still in flight,
 *   reaches the disk, the rest is lost; when the last survivor is a data write it may be torn (a prefix of its
 *   bytes cut at a 512-byte sector boundary or anywhere, or a random subset of its sectors). A created or renamed
 *   file whose directory was not fsynced can vanish, a removed one can come back;
 * - short write: a write writes a prefix of its bytes and says so (the caller must write the rest);
 * - failed sync: a sync (an O_DSYNC write, datasync, sync, fsyncDir) fails with EIO; the data it covered stays
 *   unsynced (and is never made durable by a later sync: Linux marks the pages clean), so the crash decides —
 *   except for bytes a newer write replaced and a sync made durable (supersede(): they never come back);
 *   a WAL that writes or syncs that file again afterwards (a retry) is recorded as a violation;
 * - corrupted read: at the next open one byte of a segment's written region (on disk, so synced) is flipped.
 * A power loss also changes the boot id (`bootId`), as a reboot does.
 * Not modelled: writeback out of issue order beyond the surviving prefix (a later write surviving an earlier lost
 * one), ENOSPC, read errors other than the flipped byte, failures of the synchronous calls made while a WAL opens,
 * and directories themselves (mkdir is durable at once).
 */
import path from 'node:path';
import { ErrorCode, MooringError } from '../../errors.js';
import { segmentHeaderBytes } from '../../raft/wal/format.js';
import type { WalDirLock, WalFile, WalFs, WalOpenMode } from '../../raft/wal/fs.js';
import type { SeededRng } from '../../util/rng.js';
import { chance, randInt } from './rand.js';
import type { NodeClock, SimScheduler } from './scheduler.js';

export interface DiskFaults {
  /** Each write or sync takes 0..this many ms (virtual). */
  maxWriteMs: number;
  /** Probability that a write or sync is slow (takes up to slowWriteMs). */
  slowWriteProbability: number;
  slowWriteMs: number;
  /** Probability that a sync (O_DSYNC write, datasync, fsync, directory fsync) fails with EIO. */
  fsyncFailProbability: number;
  /** At a crash, probability that the last surviving unsynced write is torn. */
  tornWriteProbability: number;
  /** Probability that a write is short (writes a prefix and reports fewer bytes: the caller must write the rest). */
  shortWriteProbability: number;
  /** Negative control: syncs succeed without making anything durable (a lying disk). */
  unsafeLyingFsync: boolean;
  /** Negative control: a power loss keeps the boot id (a lease file that lost writes is then trusted). */
  unsafeKeepBootId?: boolean;
}

export const noDiskFaults: DiskFaults = {
  maxWriteMs: 1, slowWriteProbability: 0, slowWriteMs: 0, fsyncFailProbability: 0, tornWriteProbability: 0, shortWriteProbability: 0, unsafeLyingFsync: false,
};

/** Counters of the faults a disk went through (reported by the simulator). */
export interface DiskStats {
  /** Unsynced data writes lost at crashes. */
  lostUnsyncedWrites: number;
  /** Unsynced directory changes (create, rename, remove) lost at crashes. */
  lostDirOps: number;
  tornWrites: number;
  shortWrites: number;
  failedFsyncs: number;
  /** Corruptions injected at open. */
  corruptionsInjected: number;
  /** Injected corruptions the node refused to start on (CORRUPT_LOG). */
  corruptionsCaught: number;
  /**
   * Injected corruptions in the last batch taken for a torn write (cut without recovery). A single flipped byte in a
   * complete batch never is (wal.ts provablyTorn): sim-master.ts reports it as a violation, unless the byte is in the
   * write the crash tore (that batch was never complete).
   */
  corruptionsCutAsTorn: number;
  /** Injected corruptions in the last batch cut as damaged: the node started recovering (wal.ts, "Recovery"). */
  corruptionsRecovered: number;
  /** Synced log saves issued while another synced save of the node was in flight (counted by sim-master.ts). */
  overlappedWrites: number;
}

const sectorBytes = 512;

interface Inode {
  cache: Buffer;
  disk: Buffer;
}

/** Applies a data or directory operation to one image: the page cache (names: the files, bytes: inode.cache) or the disk. */
function applyOpTo(op: Op, names: Map<string, Inode>, image: 'cache' | 'disk'): void {
  switch (op.kind) {
    case 'write':
      op.inode[image] = writeInto(op.inode[image], op.pos, op.data);
      return;
    case 'create':
      names.set(op.file, op.inode);
      return;
    case 'rename': {
      const inode = names.get(op.from);
      if (inode !== undefined) {
        names.delete(op.from);
        names.set(op.to, inode);
      }
      return;
    }
    case 'remove':
      names.delete(op.file);
      return;
  }
}

type Op =
  | { kind: 'write'; inode: Inode; pos: number; data: Buffer; done: boolean; syncFailed: boolean }
  | { kind: 'create'; dir: string; file: string; inode: Inode; done: boolean }
  | { kind: 'rename'; dir: string; from: string; to: string; done: boolean }
  | { kind: 'remove'; dir: string; file: string; done: boolean };

function writeInto(buf: Buffer, pos: number, data: Buffer): Buffer {
  const end = pos + data.byteLength;
  const out = end > buf.byteLength ? Buffer.concat([buf, Buffer.alloc(end - buf.byteLength)]) : buf;
  data.copy(out, pos);
  return out;
}

function errno(code: string, msg: string): Error {
  return Object.assign(new Error(`${code}: ${msg}`), { code });
}

/** One node's disk. `mount` gives the running process its WalFs; `crash` ends it. */
export class SimFsDisk {
  readonly stats: DiskStats = { lostUnsyncedWrites: 0, lostDirOps: 0, tornWrites: 0, shortWrites: 0, failedFsyncs: 0, corruptionsInjected: 0, corruptionsCaught: 0, corruptionsCutAsTorn: 0, corruptionsRecovered: 0, overlappedWrites: 0 };
  /** Things the WAL must never do (a write or sync of a file after one of its syncs failed). */
  readonly violations: string[] = [];
  faults: DiskFaults;
  /** The page cache's directory entries (full path → file) and the disk's. */
  private files = new Map<string, Inode>();
  private durable = new Map<string, Inode>();
  private readonly dirs = new Set<string>(['/']);
  private pending: Op[] = [];
  private readonly locks = new Set<string>();
  private current: SimWalFs | null = null;
  private corruptNextOpen: 'anywhere' | 'tail' | null = null;
  /** The write the last power loss tore (a corruption inside it damages a batch that was never complete). */
  private lastTear: { inode: Inode; from: number; to: number } | null = null;
  /** Power losses so far: the boot id's number. */
  private boots = 0;

  constructor(private readonly sched: SimScheduler, private readonly rng: SeededRng, faults: DiskFaults) {
    this.faults = faults;
  }

  /** The running process's view of the disk (one at a time; the previous one must have crashed). */
  mount(clock: NodeClock): SimWalFs {
    if (this.current !== null) this.crash();
    this.current = new SimWalFs(this, clock);
    return this.current;
  }

  /** A seeded 32-bit value (segment salts). */
  random32(): number {
    return this.rng.nextUint32();
  }

  /** The machine's boot id (/proc/sys/kernel/random/boot_id): changes at every power loss. */
  bootId(): string {
    return `sim-boot-${this.boots}`;
  }

  /**
   * The running process died. 'power' (a power loss or OS crash): a random prefix of the unsynced operations reaches
   * the disk, the last surviving write possibly torn; the page cache is gone; the boot id changes. 'process' (SIGKILL):
   * the page cache stays; a random prefix of the operations in flight happens, the rest never does.
   */
  crash(kind: 'power' | 'process' = 'power'): void {
    this.current?.kill();
    this.current = null;
    this.locks.clear();
    if (kind === 'process') {
      const inFlight = this.pending.filter((op) => !op.done);
      if (inFlight.length === 0) return;
      const keep = randInt(this.rng, inFlight.length + 1);
      inFlight.slice(0, keep).forEach((op) => this.applyToCache(op));
      const lost = new Set<Op>(inFlight.slice(keep));
      this.pending = this.pending.filter((op) => !lost.has(op));
      return;
    }
    this.lastTear = null;
    if (this.faults.unsafeKeepBootId !== true) this.boots++;
    const ops = this.pending;
    this.pending = [];
    const keep = ops.length === 0 ? 0 : randInt(this.rng, ops.length + 1);
    for (let i = 0; i < keep; i++) {
      const op = ops[i]!;
      if (i === keep - 1 && op.kind === 'write' && op.data.byteLength > 1 && chance(this.rng, this.faults.tornWriteProbability)) {
        this.stats.tornWrites++;
        this.lastTear = { inode: op.inode, from: op.pos, to: op.pos + op.data.byteLength };
        this.tear(op.inode, op.pos, op.data);
        continue;
      }
      this.persist(op);
    }
    for (const op of ops.slice(keep)) {
      if (op.kind === 'write') this.stats.lostUnsyncedWrites++;
      else this.stats.lostDirOps++;
    }
    this.files = new Map(this.durable);
    for (const inode of this.files.values()) inode.cache = Buffer.from(inode.disk);
  }

  /** Is a data write issued and not yet completed (a crash now may tear it)? */
  get writeInFlight(): boolean {
    return this.pending.some((op) => op.kind === 'write' && !op.done);
  }

  /**
   * The next mount finds one byte of a segment's written region flipped (a bad sector, a bit flip): anywhere, or
   * the last written byte of the newest segment ('tail': always in the last batch, which the WAL cannot tell from
   * a torn write).
   */
  corruptOnNextOpen(where: 'anywhere' | 'tail' = 'anywhere'): void {
    this.corruptNextOpen = where;
  }

  /** Applies a pending corruption; returns where it is (null if there was nothing written to corrupt). */
  injectCorruption(dir: string): { file: string; offset: number; inTornWrite: boolean } | null {
    const where = this.corruptNextOpen;
    if (where === null) return null;
    this.corruptNextOpen = null;
    const candidates: Array<{ file: string; inode: Inode; last: number }> = [];
    for (const [file, inode] of this.files) {
      if (path.dirname(file) !== dir || !file.endsWith('.wal')) continue;
      let last = inode.disk.byteLength - 1;
      while (last >= 0 && inode.disk[last] === 0) last--;
      if (last >= 0) candidates.push({ file, inode, last });
    }
    if (candidates.length === 0) return null;
    candidates.sort((a, b) => (a.file < b.file ? -1 : 1));
    const withBatches = candidates.filter((x) => x.last >= segmentHeaderBytes);
    const c = where === 'tail' ? (withBatches[withBatches.length - 1] ?? candidates[candidates.length - 1]!) : candidates[randInt(this.rng, candidates.length)]!;
    const offset = where === 'tail' ? c.last : randInt(this.rng, c.last + 1);
    const flip = 1 + randInt(this.rng, 255);
    c.inode.disk[offset]! ^= flip;
    c.inode.cache = Buffer.from(c.inode.disk);
    this.stats.corruptionsInjected++;
    const t = this.lastTear;
    return { file: c.file, offset, inTornWrite: t !== null && t.inode === c.inode && offset >= t.from && offset < t.to };
  }

  // ------------------------------------------------------------------ used by SimWalFs

  /** @internal */
  get scheduler(): SimScheduler {
    return this.sched;
  }

  /** @internal Delay of a write or sync. */
  ioDelay(): number {
    const f = this.faults;
    if (f.slowWriteProbability > 0 && chance(this.rng, f.slowWriteProbability)) return randInt(this.rng, f.slowWriteMs + 1);
    return f.maxWriteMs > 0 ? randInt(this.rng, f.maxWriteMs + 1) : 0;
  }

  /** @internal Delay of a metadata operation (open, rename, remove, close). */
  metaDelay(): number {
    return this.faults.maxWriteMs > 0 ? randInt(this.rng, this.faults.maxWriteMs + 1) : 0;
  }

  /** @internal */
  syncFails(): boolean {
    if (chance(this.rng, this.faults.fsyncFailProbability)) {
      this.stats.failedFsyncs++;
      return true;
    }
    return false;
  }

  /** @internal */
  shortWrite(): boolean {
    if (chance(this.rng, this.faults.shortWriteProbability)) {
      this.stats.shortWrites++;
      return true;
    }
    return false;
  }

  /** @internal A seeded integer in [0, n). */
  below(n: number): number {
    return randInt(this.rng, n);
  }

  /** @internal */
  get lying(): boolean {
    return this.faults.unsafeLyingFsync;
  }

  /** @internal */
  lookup(file: string): Inode | undefined {
    return this.files.get(file);
  }

  /** @internal */
  hasDir(dir: string): boolean {
    return this.dirs.has(dir);
  }

  /** @internal */
  mkdirp(dir: string): void {
    for (let d = dir; !this.dirs.has(d); d = path.dirname(d)) this.dirs.add(d);
  }

  /** @internal */
  names(dir: string): string[] {
    const out: string[] = [];
    for (const f of this.files.keys()) if (path.dirname(f) === dir) out.push(path.basename(f));
    return out;
  }

  /** @internal An operation is issued (it is unsynced, and at risk at a crash, from now on). */
  issue(op: Op): void {
    this.pending.push(op);
  }

  /** @internal A directory change completes: the page cache sees it. */
  applyToCache(op: Op): void {
    op.done = true;
    applyOpTo(op, this.files, 'cache');
  }

  /** @internal Makes the completed writes of a file durable (fdatasync), unless a sync of theirs failed. */
  syncFile(inode: Inode): void {
    this.syncWhere((op) => op.kind === 'write' && op.inode === inode && op.done && !op.syncFailed);
  }

  /** @internal A sync of the file failed: its unsynced writes are never made durable by a later sync. */
  failFile(inode: Inode): void {
    for (const op of this.pending) if (op.kind === 'write' && op.inode === inode && op.done) op.syncFailed = true;
  }

  /** @internal Makes the completed entry changes of a directory durable. */
  syncDir(dir: string): void {
    this.syncWhere((op) => op.kind !== 'write' && op.dir === dir && op.done);
  }

  /** @internal */
  lock(dir: string): WalDirLock {
    if (this.locks.has(dir)) throw new MooringError(ErrorCode.STORAGE_FAILED, `another process holds ${dir} (simulated lock)`);
    this.locks.add(dir);
    let released = false;
    const mount = this.current;
    return {
      release: () => {
        if (released || this.current !== mount) return;
        released = true;
        this.locks.delete(dir);
      },
    };
  }

  private syncWhere(pred: (op: Op) => boolean): void {
    if (this.lying) return;
    let rest: Op[] = [];
    for (const op of this.pending) {
      if (pred(op)) {
        this.persist(op);
        if (op.kind === 'write') rest = rest.flatMap((older) => supersede(older, op));
      } else {
        rest.push(op);
      }
    }
    this.pending = rest;
  }

  private persist(op: Op): void {
    applyOpTo(op, this.durable, 'disk');
  }

  /**
   * What of a torn write reaches the disk: its bytes up to a sector boundary inside it, up to any byte, or (out of
   * order writeback of its sectors) a random subset of its sectors.
   */
  private tear(inode: Inode, pos: number, data: Buffer): void {
    const len = data.byteLength;
    const firstBoundary = Math.floor(pos / sectorBytes) * sectorBytes + sectorBytes;
    const boundaries = firstBoundary < pos + len ? Math.floor((pos + len - 1 - firstBoundary) / sectorBytes) + 1 : 0;
    const mode = boundaries > 0 ? randInt(this.rng, 3) : 1;
    if (mode === 0) {
      inode.disk = writeInto(inode.disk, pos, data.subarray(0, firstBoundary + sectorBytes * randInt(this.rng, boundaries) - pos));
    } else if (mode === 1) {
      inode.disk = writeInto(inode.disk, pos, data.subarray(0, 1 + randInt(this.rng, len - 1)));
    } else {
      // Sector pieces [start, end) of the write, each kept or not; at least one is missing.
      const pieces: Array<[number, number]> = [];
      for (let start = 0, end = firstBoundary - pos; start < len; start = end, end = Math.min(len, end + sectorBytes)) pieces.push([start, Math.min(end, len)]);
      const missing = randInt(this.rng, pieces.length);
      pieces.forEach(([start, end], k) => {
        if (k !== missing && chance(this.rng, 0.5)) inode.disk = writeInto(inode.disk, pos + start, data.subarray(start, end));
      });
    }
  }
}

/** The WalFs of one process incarnation on a SimFsDisk: dead (every call hangs or throws) once it crashed. */
export class SimWalFs implements WalFs {
  private dead = false;

  constructor(private readonly disk: SimFsDisk, private readonly clock: NodeClock) {}

  /** @internal */
  kill(): void {
    this.dead = true;
  }

  private alive(): void {
    if (this.dead) throw new Error('simulated process is dead');
  }

  /** Runs `effect` after `delay` (if the process still lives) and tells the process its outcome. */
  private later<T>(delay: number, effect: () => T): Promise<T> {
    if (this.dead) return new Promise<T>(() => {});
    return new Promise<T>((resolve, reject) => {
      let outcome: { ok: true; value: T } | { ok: false; err: unknown } | null = null;
      const tell = this.clock.guard(() => (outcome!.ok ? resolve(outcome!.value) : reject(outcome!.err)));
      this.disk.scheduler.after(delay, () => {
        if (this.dead) return; // the crash model decides what of it survives
        try {
          outcome = { ok: true, value: effect() };
        } catch (err) {
          outcome = { ok: false, err };
        }
        tell();
      });
    });
  }

  private inode(file: string): Inode {
    const inode = this.disk.lookup(file);
    if (inode === undefined) throw errno('ENOENT', `no such file '${file}'`);
    return inode;
  }

  mkdirp(dir: string): void {
    this.alive();
    this.disk.mkdirp(dir);
  }

  readdir(dir: string): string[] {
    this.alive();
    if (!this.disk.hasDir(dir)) throw errno('ENOENT', `no such directory '${dir}'`);
    return this.disk.names(dir);
  }

  readFile(file: string): Buffer {
    this.alive();
    return Buffer.from(this.inode(file).cache);
  }

  size(file: string): number {
    this.alive();
    return this.inode(file).cache.byteLength;
  }

  removeSync(file: string): void {
    this.alive();
    if (this.disk.lookup(file) === undefined) return;
    const op: Op = { kind: 'remove', dir: path.dirname(file), file, done: false };
    this.disk.issue(op);
    this.disk.applyToCache(op);
  }

  zeroRangeSync(file: string, from: number, to: number): void {
    this.alive();
    const inode = this.inode(file);
    if (to > from) {
      const op: Op = { kind: 'write', inode, pos: from, data: Buffer.alloc(to - from), done: false, syncFailed: false };
      this.disk.issue(op);
      this.disk.applyToCache(op);
    }
    this.disk.syncFile(inode);
  }

  fsyncDirSync(dir: string): void {
    this.alive();
    this.disk.syncDir(dir);
  }

  lock(dir: string): WalDirLock {
    this.alive();
    return this.disk.lock(dir);
  }

  open(file: string, mode: WalOpenMode): Promise<WalFile> {
    if (mode === 'create') {
      if (this.dead) return new Promise(() => {});
      const op: Op = { kind: 'create', dir: path.dirname(file), file, inode: { cache: Buffer.alloc(0), disk: Buffer.alloc(0) }, done: false };
      if (!this.disk.hasDir(op.dir)) return this.later(this.disk.metaDelay(), () => { throw errno('ENOENT', `no such directory '${op.dir}'`); });
      this.disk.issue(op);
      return this.later(this.disk.metaDelay(), () => {
        this.disk.applyToCache(op);
        return new SimFile(this.disk, this, op.inode, false, file);
      });
    }
    return this.later(this.disk.metaDelay(), () => new SimFile(this.disk, this, this.inode(file), mode === 'append-dsync', file));
  }

  rename(from: string, to: string): Promise<void> {
    if (this.dead) return new Promise(() => {});
    if (this.disk.lookup(from) === undefined) return this.later(this.disk.metaDelay(), () => { throw errno('ENOENT', `no such file '${from}'`); });
    const op: Op = { kind: 'rename', dir: path.dirname(to), from, to, done: false };
    this.disk.issue(op);
    return this.later(this.disk.metaDelay(), () => this.disk.applyToCache(op));
  }

  remove(file: string): Promise<void> {
    if (this.dead) return new Promise(() => {});
    if (this.disk.lookup(file) === undefined) return this.later(this.disk.metaDelay(), () => {});
    const op: Op = { kind: 'remove', dir: path.dirname(file), file, done: false };
    this.disk.issue(op);
    return this.later(this.disk.metaDelay(), () => this.disk.applyToCache(op));
  }

  fsyncDir(dir: string): Promise<void> {
    return this.later(this.disk.ioDelay(), () => {
      if (this.disk.syncFails()) throw errno('EIO', `i/o error, fsync '${dir}' (simulated)`);
      this.disk.syncDir(dir);
    });
  }

  /** @internal */
  run<T>(delay: number, effect: () => T): Promise<T> {
    return this.later(delay, effect);
  }

  // Synchronous writes to the page cache (write(2) without fsync), for the lease file (sim-lease-file.ts).

  /** Appends `data` to `file` (created if missing): in the page cache at once, unsynced. */
  appendSync(file: string, data: Buffer): void {
    this.alive();
    let inode = this.disk.lookup(file);
    if (inode === undefined) inode = this.createSync(file);
    const op: Op = { kind: 'write', inode, pos: inode.cache.byteLength, data: Buffer.from(data), done: false, syncFailed: false };
    this.disk.issue(op);
    this.disk.applyToCache(op);
  }

  /** Writes `file.tmp` and renames it over `file`: in the page cache at once, unsynced. */
  replaceSync(file: string, data: Buffer): void {
    this.alive();
    const tmp = `${file}.tmp`;
    const inode = this.createSync(tmp);
    const op: Op = { kind: 'write', inode, pos: 0, data: Buffer.from(data), done: false, syncFailed: false };
    this.disk.issue(op);
    this.disk.applyToCache(op);
    const ren: Op = { kind: 'rename', dir: path.dirname(file), from: tmp, to: file, done: false };
    this.disk.issue(ren);
    this.disk.applyToCache(ren);
  }

  /** Creates `file` anew, empty (a new inode: an old one under that name stays with whoever has it open). */
  truncateNewSync(file: string): void {
    this.alive();
    this.createSync(file);
  }

  /** Renames `from` over `to`: in the page cache at once, unsynced (a power loss may undo it). */
  renameSync(from: string, to: string): void {
    this.alive();
    if (this.disk.lookup(from) === undefined) throw errno('ENOENT', `no such file '${from}'`);
    const ren: Op = { kind: 'rename', dir: path.dirname(to), from, to, done: false };
    this.disk.issue(ren);
    this.disk.applyToCache(ren);
  }

  private createSync(file: string): Inode {
    const dir = path.dirname(file);
    if (!this.disk.hasDir(dir)) throw errno('ENOENT', `no such directory '${dir}'`);
    const op: Op = { kind: 'create', dir, file, inode: { cache: Buffer.alloc(0), disk: Buffer.alloc(0) }, done: false };
    this.disk.issue(op);
    this.disk.applyToCache(op);
    return op.inode;
  }
}

/** An open file of a SimWalFs (bound to the file, as a descriptor is, whatever happens to its name). */
class SimFile implements WalFile {
  private closed = false;
  /** A sync of this file failed: any later write or sync of it is a retry (a violation). */
  private failed = false;

  constructor(private readonly disk: SimFsDisk, private readonly fs: SimWalFs, private readonly inode: Inode, private readonly dsync: boolean, private readonly name: string) {}

  private check(what: string): void {
    if (this.closed) throw errno('EBADF', `${what} on a closed file`);
    if (this.failed) this.disk.violations.push(`the WAL ${what} ${this.name} again after a sync of it failed (a retry)`);
  }

  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    try {
      this.check('wrote');
    } catch (err) {
      return Promise.reject(err);
    }
    const n = length > 1 && this.disk.shortWrite() ? 1 + this.disk.below(length - 1) : length;
    const op: Op = { kind: 'write', inode: this.inode, pos: position, data: Buffer.from(buffer.subarray(offset, offset + n)), done: false, syncFailed: false };
    this.disk.issue(op);
    return this.fs.run(this.disk.ioDelay(), () => {
      this.disk.applyToCache(op);
      if (this.dsync) this.syncNow();
      return { bytesWritten: n };
    });
  }

  datasync(): Promise<void> {
    return this.syncOp('synced');
  }

  sync(): Promise<void> {
    return this.syncOp('synced');
  }

  close(): Promise<void> {
    this.closed = true;
    return this.fs.run(0, () => {});
  }

  private syncOp(what: string): Promise<void> {
    try {
      this.check(what);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.fs.run(this.disk.ioDelay(), () => this.syncNow());
  }

  private syncNow(): void {
    if (this.disk.syncFails()) {
      this.failed = true;
      this.disk.failFile(this.inode);
      throw errno('EIO', `i/o error, fdatasync '${this.name}' (simulated)`);
    }
    this.disk.syncFile(this.inode);
  }
}

/**
 * What is left of an older pending write once a newer write `w` of the same file is durable. Only a write whose
 * sync failed can still be pending under a durable newer one (Linux marked its pages clean). Its bytes that `w`
 * overwrote are gone from the page cache and were written out by `w`'s sync: a later power loss must not bring
 * them back over `w` (seed 20833 did: a stale batch replayed into the middle of a log that had grown past it).
 */
function supersede(older: Op, w: Op & { kind: 'write' }): Op[] {
  if (older.kind !== 'write' || older.inode !== w.inode) return [older];
  const a = older.pos, b = older.pos + older.data.byteLength;
  const c = w.pos, d = w.pos + w.data.byteLength;
  if (d <= a || c >= b) return [older];
  const out: Op[] = [];
  if (a < c) out.push({ ...older, data: older.data.subarray(0, c - a) });
  if (d < b) out.push({ ...older, pos: d, data: older.data.subarray(d - a) });
  return out;
}
