/**
 * LeaseFile: what a member acknowledged about read leases, kept in a small file in its data dir so that a process
 * restarted on the same boot can still vouch for it (LeaseSync "Restarts", docs/raft.md).
 *
 * Why no fsync: the file only has to survive a *process* crash (SIGKILL, OOM kill, a crash-stop), and a write that
 * reached the page cache does. An OS crash or power loss can lose it, but it also changes the machine's boot id, and
 * a file tagged with another boot id is not trusted (the member is then amnesic for a TTL, as without the file). So
 * the cost per acknowledgement is one write(2) of a line, no disk round trip.
 *
 * Format (UTF-8 lines, JSON each):
 *   {"v":1,"boot":"<boot id>","amnesicUntil":<boot-clock ms>}        header (first line)
 *   {"t":<term seen>,"k":[["<key>",<expiry, boot-clock ms>],...]}     one line per recorded event ("t", "k" optional)
 * Times are on the boot clock (`LeaseFileIo.bootClockMs`: CLOCK_MONOTONIC on Linux, shared by every process of one
 * boot and never stepped, unlike the wall clock), converted to and from the caller's time base at each call.
 * `amnesicUntil`: until when a restart must still count as amnesic (the file misses acknowledgements made before it,
 * by an earlier amnesic process or while the file could not be kept). A last line without its newline is a write
 * cut by the crash: its acknowledgement was never sent (lines are written before), so it is dropped. Anything
 * else unparsable, a file over `maxLeaseFileBytes`, another boot id or no boot id: not trusted (a warning for the
 * damaged ones), never a crash.
 *
 * Bounded: expired entries are dropped by rewriting the file (write a temporary file, rename over; atomic for a
 * process crash) when it grew past twice its last compacted size (at least `minLeaseFileCompactBytes`). If even the
 * live entries would exceed half of `maxLeaseFileBytes`, the file is replaced by an untrusted header (a restart is
 * then amnesic) until they fit again. The rewrite is built in steps of `leaseFileCompactEntriesPerStep` entries, one
 * step per record() call (100k live leases took ~26 ms in one go, a million ~155 ms, every few seconds on every
 * member under read load), and written to the temporary file as it goes, a line of 1,024 entries at a time (the whole
 * file in one write at the end took 15–30 ms at a million live leases); lines appended to the old file meanwhile go
 * into the new one too, and the old file stays the one a restart reads until the rename. A rewrite that cannot be
 * written marks the file untrusted (or, if even that fails, leaves the old one and waits `leaseFileRetryMs`).
 *
 * All I/O goes through `LeaseFileIo` (production: `nodeLeaseFileIo`, lease-file-io.ts; the full-node simulator's
 * page cache and disk: sim-lease-file.ts). Nothing here reads a clock; times come from the caller and the io.
 */
import type { LoggerLike } from '../transport/logger.js';

/** The lease file in a member's data dir. */
export const leaseFileName = 'read-leases.jsonl';
/** A lease file larger than this is not read (amnesic + warning) and the writer keeps it below. */
export const maxLeaseFileBytes = 64 * 1024 * 1024;
/** The file is compacted once it grows past max(this, twice its size after the last compaction). */
export const minLeaseFileCompactBytes = 256 * 1024;
/** While the live entries do not fit, how often (boot-clock ms) a record tries to write them again. */
export const leaseFileRetryMs = 1_000;
/** Mirror entries a compaction in progress looks at per record() call (~1 ms). */
export const leaseFileCompactEntriesPerStep = 4_096;

const formatVersion = 1;

/** The file operations LeaseFile needs. Synchronous: a record must be in the page cache before the ack is sent. */
export interface LeaseFileIo {
  /** This machine's boot id, or null where there is none (then the file is never trusted, nor written). */
  bootId(): string | null;
  /** Milliseconds on a clock every process of this boot shares and that is never stepped back. */
  bootClockMs(): number;
  /** The file's size in bytes, or null if it does not exist. */
  size(file: string): number | null;
  /** The whole file, or null if it does not exist. */
  read(file: string): Buffer | null;
  /** Appends to the file (creating it). */
  append(file: string, data: Buffer): void;
  /**
   * Replaces the file by `pieces`, in order, atomically as seen by a later process of this boot (temporary file +
   * rename, no fsync).
   */
  replace(file: string, pieces: readonly Buffer[]): void;
  /**
   * A replacement written piece by piece (a compaction spread over many records): `beginReplace` starts the
   * temporary file empty, `appendReplace` adds to it, `commitReplace` renames it over the file (atomic for a later
   * process of this boot; no fsync). The file itself is untouched until the commit.
   */
  beginReplace(file: string): void;
  appendReplace(file: string, data: Buffer): void;
  commitReplace(file: string): void;
}

/**
 * A caller's cache of what the file holds for one key (a LeaseEntry's `recordedUntil`, src/statemachine/leases.ts):
 * at least until when, boot clock, the file holds it; 0: unknown. `record` reads it before its own mirror and keeps
 * it up to date. Sound because the mirror never drops below what a slot was given: it is only raised, restored on a
 * failed write (and the slot with it), or pruned of entries that ended, which no slot can then vouch for.
 */
export interface RecordedSlot {
  recordedUntil: number;
}

/** What a previous process of this boot had recorded, in the caller's time base. */
export interface RestoredLeases {
  termSeen: number;
  /** Until when this member still cannot vouch (0: it can). */
  amnesicUntilMs: number;
  /** Live leases: key → expiry. */
  leases: Array<[string, number]>;
}

export interface LeaseFileOptions {
  /** The longest a lease may still run from now (TTL + the announce-ahead margin): longer claims are capped. */
  longestLeaseMs: number;
  logger: LoggerLike;
  /** Tests only: a smaller bound than maxLeaseFileBytes. */
  maxFileBytes?: number;
  /** Tests only: another step than leaseFileCompactEntriesPerStep. */
  compactEntriesPerStep?: number;
}

/**
 * A rewrite being written (see the file comment) to the temporary file, step by step: the live entries, and every
 * line appended to the old file meanwhile (a restart takes the latest expiry of a key, so their order is free).
 */
interface Compaction {
  /** Boot clock at its start: entries that ended by then are dropped. */
  boot: number;
  entries: Iterator<[string, number]>;
  chunk: Array<[string, number]>;
  /** Bytes written to the new file so far. */
  bytes: number;
}

type Mode = 'append' | 'untrusted';

export class LeaseFile {
  private readonly boot: string | null;
  /** The previous process's record, boot clock (null: none, or not trusted). */
  private readonly previous: { termSeen: number; amnesicUntil: number; leases: Map<string, number> } | null;
  /** What the file holds (boot clock), to rewrite it without expired entries. */
  private readonly mirror = new Map<string, number>();
  private termSeen = 0;
  /** Until when (boot clock) a restart must count as amnesic. */
  private amnesicUntil = 0;
  private mode: Mode = 'append';
  private fileBytes = 0;
  private compactAtBytes = minLeaseFileCompactBytes;
  private retryAt = 0;
  /** No compaction starts before this (boot clock): one that failed, with the file left as it was, is not retried at every record. */
  private compactRetryAt = 0;
  private failing = false;
  private readonly maxBytes: number;
  private compaction: Compaction | null = null;

  private constructor(private readonly io: LeaseFileIo, readonly file: string, private readonly o: LeaseFileOptions) {
    this.boot = io.bootId();
    this.maxBytes = o.maxFileBytes ?? maxLeaseFileBytes;
    this.previous = this.boot === null ? null : this.load();
  }

  /** Reads what a previous process of this boot recorded (nothing is written until `begin`). */
  static open(io: LeaseFileIo, file: string, o: LeaseFileOptions): LeaseFile {
    return new LeaseFile(io, file, o);
  }

  /** The previous process's record, in the caller's time base (`nowMs`), or null if there is none to trust. */
  restored(nowMs: number): RestoredLeases | null {
    const p = this.previous;
    if (p === null) return null;
    const boot = this.io.bootClockMs();
    const leases: Array<[string, number]> = [];
    for (const [k, until] of p.leases) if (until > boot) leases.push([k, nowMs + Math.min(until - boot, this.o.longestLeaseMs)]);
    const left = Math.min(p.amnesicUntil - boot, this.o.longestLeaseMs);
    return { termSeen: p.termSeen, amnesicUntilMs: left > 0 ? nowMs + left : 0, leases };
  }

  /**
   * Starts this process's file: the state it starts from (restored or not), written as a new file. Returns false if
   * it could not be written (then a restart finds no file it trusts).
   */
  begin(nowMs: number, state: { amnesicUntilMs: number; termSeen: number; leases: Iterable<[string, number]> }): boolean {
    if (this.boot === null) return true;
    const boot = this.io.bootClockMs();
    this.amnesicUntil = state.amnesicUntilMs > nowMs ? Math.ceil(boot + (state.amnesicUntilMs - nowMs)) : 0;
    this.termSeen = state.termSeen;
    for (const [k, until] of state.leases) this.remember(k, Math.ceil(boot + (until - nowMs)));
    return this.rewrite(boot);
  }

  /**
   * Records acknowledged leases ([key, expiry] in the caller's time base; [key, expiry, ahead]: written as lasting
   * until `ahead` unless already recorded until `expiry`) and the highest term seen, before the acknowledgement is
   * sent. False: nothing could be recorded, the caller must not acknowledge. A fourth element is the caller's slot
   * for the key (its lease entry, just looked up): see `RecordedSlot`.
   */
  record(nowMs: number, leases: Iterable<readonly [string, number, number?, RecordedSlot?]>, termSeen: number): boolean {
    if (this.boot === null) return true;
    const boot = this.io.bootClockMs();
    // The line is built by hand (no intermediate arrays): a follower records every key a leader announces.
    let keys = '';
    let latest = 0;
    const before: Array<[string, number | undefined, RecordedSlot | undefined, number]> = [];
    for (const [key, until, ahead, slot] of leases) {
      if (until <= nowMs) continue;
      const need = boot + (until - nowMs);
      // Already recorded at least this long (a key read again within the margin it was recorded ahead by): first by
      // the caller's slot, a warm object, then by the mirror, a cold lookup in a map of every recorded key (~85% of
      // this function's time on a leader granting followers' reads, before the slot).
      if (slot !== undefined && slot.recordedUntil >= need) continue;
      const cur = this.mirror.get(key);
      if (cur !== undefined && cur >= need) {
        if (slot !== undefined) slot.recordedUntil = cur;
        continue;
      }
      // Whole milliseconds, rounded up: never shorter than acknowledged.
      const b = Math.ceil(boot + (Math.max(until, ahead ?? 0) - nowMs));
      before.push([key, cur, slot, slot?.recordedUntil ?? 0]);
      this.mirror.set(key, b);
      if (slot !== undefined) slot.recordedUntil = b;
      keys += `${keys === '' ? '' : ','}[${JSON.stringify(key)},${b}]`;
      latest = Math.max(latest, b);
    }
    const newTerm = termSeen > this.termSeen;
    const termBefore = this.termSeen;
    this.termSeen = Math.max(this.termSeen, termSeen);
    if (this.mode === 'untrusted') {
      // Written in full again (the mirror has these entries) if they fit now; otherwise, whatever is acknowledged
      // meanwhile must keep a restart amnesic once the file is trusted again.
      if (boot >= this.retryAt && this.rewrite(boot) && (this.mode as Mode) === 'append') return true;
      this.amnesicUntil = Math.max(this.amnesicUntil, latest);
      return true;
    }
    if (keys === '' && !newTerm) return true;
    const line = Buffer.from(`{"t":${this.termSeen}${keys === '' ? '' : `,"k":[${keys}]`}}\n`);
    try {
      this.io.append(this.file, line);
      this.fileBytes += line.byteLength;
      this.failing = false;
    } catch (err) {
      // The file now misses this record: make it untrusted, or refuse the acknowledgement if even that fails.
      this.warnOnce(err, 'could not record an acknowledged read lease; a restart will count as amnesic');
      this.amnesicUntil = Math.max(this.amnesicUntil, latest);
      if (this.markUntrusted(boot)) return true;
      // Not recorded, not acknowledged: forget that it was, so the next attempt writes it again.
      for (const [key, cur, slot, slotBefore] of before) {
        if (cur === undefined) this.mirror.delete(key);
        else this.mirror.set(key, cur);
        if (slot !== undefined) slot.recordedUntil = slotBefore;
      }
      this.termSeen = termBefore;
      return false;
    }
    // Recorded in the old file, which stays the one a restart reads until the rename: a compaction that fails from
    // here on only marks the file untrusted (amnesic restarts), the acknowledgement may go out.
    if (this.compaction !== null && !this.writeNew(line)) return true;
    if (this.compaction === null && this.fileBytes > this.compactAtBytes && boot >= this.compactRetryAt && !this.startCompaction(boot)) return true;
    if (this.compaction !== null) this.compactStep(boot, this.o.compactEntriesPerStep ?? leaseFileCompactEntriesPerStep);
    return true;
  }

  // ------------------------------------------------------------------ internals

  private remember(key: string, until: number): void {
    const cur = this.mirror.get(key);
    if (cur === undefined || cur < until) this.mirror.set(key, until);
  }

  /** Starts a rewrite: the temporary file with its header. False: it could not (the file is marked untrusted). */
  private startCompaction(boot: number): boolean {
    this.compaction = { boot, entries: this.mirror.entries(), chunk: [], bytes: 0 };
    try {
      this.io.beginReplace(this.file);
    } catch (err) {
      this.warnOnce(err, 'could not write the lease file; a restart will count as amnesic');
      this.markUntrusted(boot);
      return false;
    }
    return this.writeNew(Buffer.from(this.header(false)));
  }

  /**
   * Adds a line to the rewrite in progress. False: it is abandoned and the file marked untrusted (live entries over
   * the bound, or a failed write).
   */
  private writeNew(line: Buffer): boolean {
    const c = this.compaction!;
    c.bytes += line.byteLength;
    try {
      // Checked as it grows: no writing beyond the bound only to find out at the end.
      if (c.bytes > this.maxBytes / 2) return this.tooLarge(this.io.bootClockMs(), c.bytes);
      this.io.appendReplace(this.file, line);
    } catch (err) {
      this.warnOnce(err, 'could not write the lease file; a restart will count as amnesic');
      this.markUntrusted(this.io.bootClockMs());
      return false;
    }
    return true;
  }

  /**
   * Looks at the next `budget` entries of the compaction in progress, writing the live ones to the new file; at its
   * end, renames the new file over the old. False only if the file could be neither rewritten nor marked untrusted
   * (true while it goes on, once installed, or once abandoned for an untrusted header).
   */
  private compactStep(boot: number, budget: number): boolean {
    const c = this.compaction!;
    const flush = (): boolean => {
      const l = Buffer.from(`${JSON.stringify({ t: this.termSeen, k: c.chunk })}\n`);
      c.chunk = [];
      return this.writeNew(l);
    };
    for (let n = 0; n < budget; n++) {
      const next = c.entries.next();
      if (next.done === true) {
        if ((c.chunk.length > 0 || this.termSeen > 0) && !flush()) return this.mode === 'untrusted';
        this.compaction = null;
        return this.install(boot, c.bytes);
      }
      const [k, until] = next.value;
      // Deleting the entry just visited is safe for a Map iterator.
      if (until <= c.boot) this.mirror.delete(k);
      else {
        c.chunk.push([k, until]);
        if (c.chunk.length === 1_024 && !flush()) return this.mode === 'untrusted';
      }
    }
    return true;
  }

  /** Writes the file anew from the live entries (at once: at start and while untrusted); false if it could not be written. */
  private rewrite(boot: number): boolean {
    // False from startCompaction: abandoned, the file marked untrusted if that could be written.
    if (!this.startCompaction(boot)) return this.mode === 'untrusted';
    return this.compactStep(boot, Infinity);
  }

  /** The live entries do not fit: the file says "untrusted" until they do (false if even that could not be written). */
  private tooLarge(boot: number, bytes: number): false {
    if (this.mode !== 'untrusted') this.o.logger.warn({ file: this.file, bytes, maxLeaseFileBytes: this.maxBytes }, 'too many live read leases to keep in the lease file; a restart will count as amnesic until they fit');
    this.markUntrusted(boot);
    return false;
  }

  /** The rewrite is complete: its file replaces the old one (or, if the rename fails, an untrusted header does). */
  private install(boot: number, bytes: number): boolean {
    this.retryAt = boot + leaseFileRetryMs;
    try {
      this.io.commitReplace(this.file);
    } catch (err) {
      this.warnOnce(err, 'could not write the lease file; a restart will count as amnesic');
      return this.markUntrusted(boot);
    }
    this.mode = 'append';
    this.failing = false;
    this.fileBytes = bytes;
    this.compactAtBytes = Math.min(Math.max(minLeaseFileCompactBytes, 2 * bytes), this.maxBytes);
    return true;
  }

  /** Replaces the file by a header a restart does not trust; false if even that failed (the old file may remain). */
  private markUntrusted(boot: number): boolean {
    // A compaction in progress would write the entries this failure made the file miss: abandoned.
    this.compaction = null;
    this.retryAt = boot + leaseFileRetryMs;
    if (this.mode === 'untrusted') return true;
    try {
      this.io.replace(this.file, [Buffer.from(this.header(true))]);
    } catch (err) {
      this.warnOnce(err, 'could not mark the lease file untrusted; read leases are not acknowledged until it can be written');
      // The old file stays as it was; its next compaction waits as a retry does.
      this.compactRetryAt = boot + leaseFileRetryMs;
      return false;
    }
    this.mode = 'untrusted';
    return true;
  }

  private header(untrusted: boolean): string {
    return `${JSON.stringify({ v: formatVersion, boot: this.boot, amnesicUntil: this.amnesicUntil, ...(untrusted ? { untrusted: true } : {}) })}\n`;
  }

  private warnOnce(err: unknown, msg: string): void {
    if (this.failing) return;
    this.failing = true;
    this.o.logger.warn({ file: this.file, err: err instanceof Error ? err.message : String(err) }, msg);
  }

  /** The previous record if this file can be trusted (same boot, intact, within bounds); otherwise null. */
  private load(): { termSeen: number; amnesicUntil: number; leases: Map<string, number> } | null {
    const bad = (why: string): null => {
      this.o.logger.warn({ file: this.file, why }, 'ignoring the lease file: this member counts as amnesic for one lease TTL');
      return null;
    };
    let text: string;
    try {
      const size = this.io.size(this.file);
      if (size === null) return null;
      if (size > this.maxBytes) return bad(`${size} bytes, over maxLeaseFileBytes (${this.maxBytes})`);
      const buf = this.io.read(this.file);
      if (buf === null) return null;
      if (buf.byteLength > this.maxBytes) return bad(`${buf.byteLength} bytes, over maxLeaseFileBytes (${this.maxBytes})`);
      text = buf.toString('utf8');
    } catch (err) {
      return bad(`unreadable: ${err instanceof Error ? err.message : String(err)}`);
    }
    const lines = text.split('\n');
    // The last piece has no newline: empty, or a line the crash cut (never acknowledged).
    lines.pop();
    if (lines.length === 0) return bad('no header');
    let header: unknown;
    try {
      header = JSON.parse(lines[0]!);
    } catch {
      return bad('bad header');
    }
    const h = header as { v?: unknown; boot?: unknown; amnesicUntil?: unknown; untrusted?: unknown };
    if (typeof h !== 'object' || h === null || h.v !== formatVersion || typeof h.boot !== 'string' || !isTime(h.amnesicUntil)) return bad('bad header');
    if (h.boot !== this.boot) {
      this.o.logger.info({ file: this.file }, 'the lease file is from an earlier boot: this member counts as amnesic for one lease TTL');
      return null;
    }
    if (h.untrusted === true) {
      this.o.logger.info({ file: this.file }, 'the lease file was marked incomplete: this member counts as amnesic for one lease TTL');
      return null;
    }
    const leases = new Map<string, number>();
    let termSeen = 0;
    for (let i = 1; i < lines.length; i++) {
      let rec: unknown;
      try {
        rec = JSON.parse(lines[i]!);
      } catch {
        return bad(`bad line ${i + 1}`);
      }
      const r = rec as { t?: unknown; k?: unknown };
      if (typeof r !== 'object' || r === null) return bad(`bad line ${i + 1}`);
      if (r.t !== undefined) {
        if (typeof r.t !== 'number' || !Number.isSafeInteger(r.t) || r.t < 0) return bad(`bad term on line ${i + 1}`);
        termSeen = Math.max(termSeen, r.t);
      }
      if (r.k !== undefined) {
        if (!Array.isArray(r.k)) return bad(`bad keys on line ${i + 1}`);
        for (const e of r.k as unknown[]) {
          if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || !isTime(e[1])) return bad(`bad key on line ${i + 1}`);
          const cur = leases.get(e[0]);
          if (cur === undefined || cur < e[1]) leases.set(e[0], e[1]);
        }
      }
    }
    return { termSeen, amnesicUntil: h.amnesicUntil, leases };
  }
}

function isTime(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && x >= 0;
}
