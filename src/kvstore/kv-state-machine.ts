/**
 * A small replicated KV state machine on LevelDB, used to test and benchmark the durable Raft node without the
 * master's data model. Keys and values are strings. Writes are exactly-once per (clientId, seq): a retried
 * write returns the first reply and changes nothing.
 *
 * Persistence: keys and values live only in its own LevelDB (memory holds the exactly-once sessions); the applies of
 * each `kvWriteIntervalMs` share one LevelDB batch that also records the applied index (not fsynced: the Raft log is
 * the durable source and replays from appliedIndex); flush() makes it durable before the node compacts its log.
 *
 * Why not a JS Map of the values, as before: a node holding 1–2 M keys carried ~330 bytes of V8 heap per key, and
 * its major GCs grew with it (50–150 ms pauses at 100–300 MB, up to ~900 ms at 2.4 M keys on a loaded 2-core
 * machine), each a Raft election when it hit the leader or both followers at once (bench/RESULTS.md, seventh
 * session).
 *
 * Off the reply path (issue 13 item 3): an apply neither reads LevelDB nor waits for its write, unless a command asks
 * for the previous value (`prev: true`, etcd's prevKv; then one getMany for those keys). The batch is written behind
 * the replies, in apply order (one write at a time: two LevelDB writes in flight may land in either order), joined
 * by the applies that come before it starts; until it has landed its values sit in `unwritten`, which every read
 * (get, a later apply's prev) consults first. So readers see exactly the applied state, and a restart replays the
 * Raft log from the last applied index that reached LevelDB. At most `maxKvWritesBehind` batches wait; beyond that an
 * apply waits for the oldest. Anything that must see LevelDB at exactly `applied` (snapshot, state hash, flush) is
 * queued in the same write order, so it runs after every earlier batch landed and before any later one starts. A
 * failed write poisons the state machine: the next apply throws it (the node crash-stops and replays on restart).
 *
 * No running key count (it needed every key's previous existence, a LevelDB read per write on the reply path): the
 * count comes with the state hash (`summary()`), one scan.
 */
import { Level } from 'level';
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../errors.js';
import type { AppliedCommand, RaftStateMachine } from '../raft/state-machine.js';

export const maxKvKeyBytes = 1024;
export const maxKvValueBytes = 1024 * 1024;
export const maxKvSessions = 100_000;
/** Apply batches written behind the replies at most; then an apply waits for the oldest to land. */
export const maxKvWritesBehind = 4;
/**
 * The applies of this many ms share one LevelDB write, started this long after the first of them (etcd's backend
 * commits its batch every 100 ms the same way). Per Raft round that saves a LevelDB write, its thread-pool hop and its
 * completion on every node: at one client, 22 → 18 thread wakeups and −10 to −25% server CPU per write
 * (bench/RESULTS.md). Nothing waits on it: replies come from memory, and a crash replays the Raft log from the
 * applied index that reached LevelDB.
 */
export const kvWriteIntervalMs = 20;
const snapshotChunkEntries = 4096;

const packr = new Packr({ useRecords: false });
const appliedKey = '\u0000applied';
const sessionPrefix = '\u0000s:';
const dataPrefix = 'k:';
/** Upper bounds of the session and data key ranges (the prefix with its last character incremented). */
const sessionEnd = '\u0000s;';
const dataEnd = 'k;';

export type KvCommand =
  | { op: 'put'; key: string; value: string; clientId?: string; seq?: number; prev?: boolean }
  | { op: 'del'; key: string; clientId?: string; seq?: number; prev?: boolean };

/** `prev` (the value before the write, null if none) only when the command asked for it. */
export type KvResult = { ok: true; prev?: string | null } | { ok: false; code: string; message: string };

export function encodeKvCommand(cmd: KvCommand): Uint8Array {
  if (typeof cmd.key !== 'string' || cmd.key.length === 0 || Buffer.byteLength(cmd.key) > maxKvKeyBytes) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `key must be 1..${maxKvKeyBytes} bytes`);
  }
  if (cmd.op === 'put' && (typeof cmd.value !== 'string' || Buffer.byteLength(cmd.value) > maxKvValueBytes)) {
    throw new MooringError(ErrorCode.INVALID_ARGUMENT, `value must be a string of at most ${maxKvValueBytes} bytes`);
  }
  return packr.pack(cmd) as Uint8Array;
}

interface Session {
  seq: number;
  reply: KvResult;
}

type KvBatch = ReturnType<Level<string, Uint8Array>['batch']>;

export class KvStateMachine implements RaftStateMachine {
  private readonly sessions = new Map<string, Session>();
  private applied = 0;
  /** Values of applied batches not yet in LevelDB (null: deleted), with the batch that wrote them last. */
  private readonly unwritten = new Map<string, { value: string | null; batch: number }>();
  private batchNo = 0;
  private writesBehind = 0;
  /** The batch later applies join until its write starts (kvWriteIntervalMs after it opened, or sooner when needed). */
  private open: { batch: KvBatch; written: Map<string, string | null>; no: number; timer: NodeJS.Timeout } | null = null;
  /** The write order: batches, then whatever must see LevelDB between two of them. Never rejects. */
  private tail: Promise<void> = Promise.resolve();
  private failed: Error | null = null;

  private constructor(private db: Level<string, Uint8Array>, private readonly dir: string) {}

  static async open(dir: string): Promise<KvStateMachine> {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' });
    await db.open();
    const sm = new KvStateMachine(db, dir);
    await sm.load();
    return sm;
  }

  private async load(): Promise<void> {
    this.sessions.clear();
    this.applied = 0;
    const a = await this.db.get(appliedKey);
    if (a !== undefined) this.applied = packr.unpack(a) as number;
    for await (const [k, v] of this.db.iterator({ gte: sessionPrefix, lt: sessionEnd })) {
      this.sessions.set(k.slice(sessionPrefix.length), packr.unpack(v) as Session);
    }
  }

  appliedIndex(): number {
    return this.applied;
  }

  /** The value of `key` as of the last completed apply, or undefined. */
  async get(key: string): Promise<string | undefined> {
    const dk = dataPrefix + key;
    const u = this.unwritten.get(dk);
    if (u !== undefined) return u.value ?? undefined;
    const v = await this.db.get(dk);
    // A batch writing this key may have been applied (and landed) meanwhile: the later value wins.
    const after = this.unwritten.get(dk);
    if (after !== undefined) return after.value ?? undefined;
    return v === undefined ? undefined : (packr.unpack(v) as string);
  }

  /**
   * Runs `fn` in the write order: after every batch applied so far has landed, before any later one starts (so a
   * LevelDB iterator it opens sees exactly the state at the current `applied`).
   */
  private inWriteOrder<T>(fn: () => T | Promise<T>): Promise<T> {
    this.writeOpen();
    return this.inWriteOrderAfterOpen(fn);
  }

  private inWriteOrderAfterOpen<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.tail.then(() => {
      if (this.failed !== null) throw this.failed;
      return fn();
    });
    this.tail = run.then(() => {}, () => {});
    return run;
  }

  /** Key count and a deterministic digest of the whole state (for comparing replicas), in one scan. */
  async summary(): Promise<{ keys: number; hash: string }> {
    const it = await this.inWriteOrder(() => this.db.iterator({ gte: dataPrefix, lt: dataEnd }));
    let h = 0x811c9dc5;
    let n = 0;
    try {
      for await (const [k, v] of it) {
        const s = `${k.slice(dataPrefix.length)}=${packr.unpack(v) as string};`;
        for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
        n++;
      }
    } finally {
      await it.close();
    }
    return { keys: n, hash: `${n}:${h.toString(16)}` };
  }

  /** A deterministic digest of the whole state: keys in LevelDB (byte) order. */
  async stateHash(): Promise<string> {
    return (await this.summary()).hash;
  }

  async apply(commands: AppliedCommand[], noopThrough: number): Promise<unknown[]> {
    if (this.failed !== null) throw this.failed;
    // Bounded write-behind: beyond maxKvWritesBehind batches, wait for the oldest (the tail settles them in order).
    while (this.writesBehind >= maxKvWritesBehind) {
      this.writeOpen();
      await this.tail;
      if (this.failed !== null) throw this.failed;
    }
    const decoded = commands.map((c) => decodeCommand(c));
    // The previous values asked for, read once for the batch (unwritten batches first); `overlay` holds what this
    // batch changed.
    const overlay = new Map<string, string | null>();
    const toRead: string[] = [];
    for (const d of decoded) {
      if (typeof d === 'string' || d.prev !== true) continue;
      const dk = dataPrefix + d.key;
      if (overlay.has(dk)) continue;
      const u = this.unwritten.get(dk);
      if (u !== undefined) overlay.set(dk, u.value);
      else {
        overlay.set(dk, null);
        toRead.push(dk);
      }
    }
    if (toRead.length > 0) {
      // No write of these keys is in flight (none was unwritten, and applies run one at a time: the driver's chain).
      const stored = await this.db.getMany(toRead);
      for (let i = 0; i < toRead.length; i++) overlay.set(toRead[i]!, stored[i] === undefined ? null : (packr.unpack(stored[i]!) as string));
      if (this.failed !== null) throw this.failed;
    }
    let open = this.open;
    if (open === null) {
      open = { batch: this.db.batch(), written: new Map(), no: ++this.batchNo, timer: setTimeout(() => this.writeOpen(), kvWriteIntervalMs) };
      open.timer.unref(); // an exit without close() loses nothing: the log replays it
      this.open = open;
      this.writesBehind++;
    }
    const { batch, no } = open;
    const written = new Map<string, string | null>();
    const results: KvResult[] = [];
    for (let i = 0; i < commands.length; i++) {
      const d = decoded[i]!;
      if (typeof d === 'string') {
        results.push({ ok: false, code: ErrorCode.INVALID_ARGUMENT, message: d });
        continue;
      }
      results.push(this.applyOne(d, commands[i]!.index, overlay, written, batch));
    }
    const applied = Math.max(this.applied, noopThrough);
    // The last put of a key in a batch wins: a joined batch carries the latest applied index.
    batch.put(appliedKey, packr.pack(applied) as Uint8Array);
    // Readers see the batch at once (unwritten); LevelDB gets it behind the replies, in apply order.
    for (const [dk, value] of written) {
      this.unwritten.set(dk, { value, batch: no });
      open.written.set(dk, value);
    }
    this.applied = applied;
    return results;
  }

  /** Starts the open batch's write now (its interval ran out, or something must see LevelDB at `applied`). */
  private writeOpen(): void {
    const open = this.open;
    if (open === null) return;
    this.open = null;
    clearTimeout(open.timer);
    const { batch, written, no } = open;
    this.inWriteOrderAfterOpen(() => batch.write()).then(
      () => {
        for (const dk of written.keys()) if (this.unwritten.get(dk)?.batch === no) this.unwritten.delete(dk);
      },
      (err: unknown) => {
        this.failed ??= err instanceof Error ? err : new Error(String(err));
      },
    ).finally(() => {
      this.writesBehind--;
    });
  }

  private applyOne(cmd: KvCommand, index: number, overlay: Map<string, string | null>, written: Map<string, string | null>, batch: KvBatch): KvResult {
    const session = typeof cmd.clientId === 'string' && typeof cmd.seq === 'number' ? cmd.clientId : null;
    if (session !== null) {
      const prev = this.sessions.get(session);
      if (prev !== undefined && cmd.seq! <= prev.seq) return prev.reply; // a retry: same reply, no change
    }
    const dk = dataPrefix + cmd.key;
    const prevValue = cmd.prev === true ? (overlay.get(dk) ?? null) : undefined;
    let reply: KvResult;
    if (cmd.op === 'put' && typeof cmd.value === 'string') {
      overlay.set(dk, cmd.value);
      written.set(dk, cmd.value);
      batch.put(dk, packr.pack(cmd.value) as Uint8Array);
      reply = prevValue !== undefined ? { ok: true, prev: prevValue } : { ok: true };
    } else if (cmd.op === 'del') {
      overlay.set(dk, null);
      written.set(dk, null);
      batch.del(dk);
      reply = prevValue !== undefined ? { ok: true, prev: prevValue } : { ok: true };
    } else {
      reply = { ok: false, code: ErrorCode.INVALID_ARGUMENT, message: `unknown op in entry ${index}` };
    }
    if (session !== null) {
      if (!this.sessions.has(session) && this.sessions.size >= maxKvSessions) {
        // Deterministic eviction of the oldest session keeps the table bounded on every replica alike.
        const oldest = this.sessions.keys().next().value as string;
        this.sessions.delete(oldest);
        batch.del(sessionPrefix + oldest);
      }
      const s: Session = { seq: cmd.seq!, reply };
      this.sessions.delete(session);
      this.sessions.set(session, s);
      batch.put(sessionPrefix + session, packr.pack(s) as Uint8Array);
    }
    return reply;
  }

  async flush(): Promise<void> {
    // In write order, with the index applied now: every batch up to it has landed when this (synced) put runs.
    const index = this.applied;
    await this.inWriteOrder(() => this.db.put(appliedKey, packr.pack(index) as Uint8Array, { sync: true }));
  }

  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> } {
    // Called between applies (the driver's apply pipeline). The LevelDB iterator is opened in write order — after
    // the batches applied so far landed, before any later one is written — so its implicit snapshot holds exactly
    // the state at `applied`, whatever is applied while the chunks stream.
    const index = this.applied;
    const sessions = [...this.sessions.entries()];
    const opened = this.inWriteOrder(() => this.db.iterator({ gte: dataPrefix, lt: dataEnd }));
    opened.catch(() => {}); // a consumer that never pulls must not leave an unhandled rejection behind
    async function* chunks(): AsyncIterable<Uint8Array> {
      const it = await opened;
      try {
        yield packr.pack({ t: 'h', index, sessions }) as Uint8Array;
        let kv: [string, string][] = [];
        for await (const [k, v] of it) {
          kv.push([k.slice(dataPrefix.length), packr.unpack(v) as string]);
          if (kv.length >= snapshotChunkEntries) {
            yield packr.pack({ t: 'd', kv }) as Uint8Array;
            kv = [];
          }
        }
        if (kv.length > 0) yield packr.pack({ t: 'd', kv }) as Uint8Array;
      } finally {
        await it.close();
      }
    }
    return { index, chunks: chunks() };
  }

  async restore(index: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    // Batches written behind earlier applies land first; what they wrote is replaced below.
    this.writeOpen();
    await this.tail;
    if (this.failed !== null) throw this.failed;
    this.unwritten.clear();
    await this.db.clear();
    this.sessions.clear();
    // The driver hands back exactly the chunks snapshot() produced: one msgpack value each.
    for await (const chunk of chunks) {
      const obj = packr.unpack(chunk) as { t: string; sessions?: [string, Session][]; kv?: [string, string][] };
      const batch = this.db.batch();
      if (obj.t === 'h') {
        for (const [id, s] of obj.sessions ?? []) {
          this.sessions.set(id, s);
          batch.put(sessionPrefix + id, packr.pack(s) as Uint8Array);
        }
      } else if (obj.t === 'd') {
        for (const [k, v] of obj.kv ?? []) {
          batch.put(dataPrefix + k, packr.pack(v) as Uint8Array);
        }
      } else {
        throw new MooringError(ErrorCode.CORRUPT_LOG, 'snapshot chunk of unknown kind');
      }
      await batch.write();
    }
    this.applied = index;
    await this.db.put(appliedKey, packr.pack(this.applied) as Uint8Array, { sync: true });
  }

  async close(): Promise<void> {
    this.writeOpen();
    await this.tail; // the batches written behind the replies (a failed one is replayed from the log on restart)
    await this.db.close();
  }

  get directory(): string {
    return this.dir;
  }
}

/** A command, or the message of the error result an undecodable entry gets. */
function decodeCommand(c: AppliedCommand): KvCommand | string {
  let cmd: KvCommand;
  try {
    cmd = packr.unpack(c.data) as KvCommand;
  } catch {
    return `entry ${c.index} does not decode`;
  }
  if (typeof cmd !== 'object' || cmd === null || typeof cmd.key !== 'string') return `entry ${c.index} is not a KV command`;
  return cmd;
}
