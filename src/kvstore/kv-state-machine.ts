/**
 * A small replicated KV state machine on LevelDB, used to test and benchmark the durable Raft node without the
 * master's data model. Keys and values are strings. Writes are exactly-once per (clientId, seq): a retried
 * write returns the first reply and changes nothing.
 *
 * Persistence: keys and values live only in its own LevelDB (memory holds the exactly-once sessions and a key
 * count); every apply batch is one LevelDB batch that also records the applied index (not fsynced: the Raft log is
 * the durable source and replays from appliedIndex); flush() makes it durable before the node compacts its log.
 *
 * Why not a JS Map of the values, as before: a node holding 1–2 M keys carried ~330 bytes of V8 heap per key, and
 * its major GCs grew with it (50–150 ms pauses at 100–300 MB, up to ~900 ms at 2.4 M keys on a loaded 2-core
 * machine), each a Raft election when it hit the leader or both followers at once (bench/RESULTS.md, seventh
 * session). LevelDB keeps the data (and its cache) outside the JS heap; an apply reads the previous values it
 * replies with in one getMany.
 */
import { Level } from 'level';
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../errors.js';
import type { AppliedCommand, RaftStateMachine } from '../raft/state-machine.js';

export const maxKvKeyBytes = 1024;
export const maxKvValueBytes = 1024 * 1024;
export const maxKvSessions = 100_000;
const snapshotChunkEntries = 4096;

const packr = new Packr({ useRecords: false });
const appliedKey = '\u0000applied';
const sessionPrefix = '\u0000s:';
const dataPrefix = 'k:';
/** Upper bounds of the session and data key ranges (the prefix with its last character incremented). */
const sessionEnd = '\u0000s;';
const dataEnd = 'k;';

export type KvCommand =
  | { op: 'put'; key: string; value: string; clientId?: string; seq?: number }
  | { op: 'del'; key: string; clientId?: string; seq?: number };

export type KvResult = { ok: true; prev: string | null } | { ok: false; code: string; message: string };

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

export class KvStateMachine implements RaftStateMachine {
  private readonly sessions = new Map<string, Session>();
  private applied = 0;
  private keyCount = 0;

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
    this.keyCount = 0;
    const a = await this.db.get(appliedKey);
    if (a !== undefined) this.applied = packr.unpack(a) as number;
    for await (const [k, v] of this.db.iterator({ gte: sessionPrefix, lt: sessionEnd })) {
      this.sessions.set(k.slice(sessionPrefix.length), packr.unpack(v) as Session);
    }
    for await (const _ of this.db.keys({ gte: dataPrefix, lt: dataEnd })) this.keyCount++;
  }

  appliedIndex(): number {
    return this.applied;
  }

  /** The value of `key` as of the last completed apply, or undefined. */
  async get(key: string): Promise<string | undefined> {
    const v = await this.db.get(dataPrefix + key);
    return v === undefined ? undefined : (packr.unpack(v) as string);
  }

  get size(): number {
    return this.keyCount;
  }

  /** A deterministic digest of the whole state (for comparing replicas): keys in LevelDB (byte) order. */
  async stateHash(): Promise<string> {
    let h = 0x811c9dc5;
    let n = 0;
    for await (const [k, v] of this.db.iterator({ gte: dataPrefix, lt: dataEnd })) {
      const s = `${k.slice(dataPrefix.length)}=${packr.unpack(v) as string};`;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
      n++;
    }
    return `${n}:${h.toString(16)}`;
  }

  async apply(commands: AppliedCommand[], noopThrough: number): Promise<unknown[]> {
    const decoded = commands.map((c) => decodeCommand(c));
    // The previous values the replies carry, read once for the batch; `overlay` holds what this batch changed.
    const keys = [...new Set(decoded.flatMap((d) => (typeof d === 'string' ? [] : [dataPrefix + d.key])))];
    const stored = keys.length > 0 ? await this.db.getMany(keys) : [];
    const overlay = new Map<string, string | null>();
    for (let i = 0; i < keys.length; i++) overlay.set(keys[i]!, stored[i] === undefined ? null : (packr.unpack(stored[i]!) as string));
    const batch = this.db.batch();
    const results: KvResult[] = [];
    let delta = 0;
    for (let i = 0; i < commands.length; i++) {
      const d = decoded[i]!;
      if (typeof d === 'string') {
        results.push({ ok: false, code: ErrorCode.INVALID_ARGUMENT, message: d });
        continue;
      }
      const r = this.applyOne(d, commands[i]!.index, overlay, batch);
      delta += r.delta;
      results.push(r.reply);
    }
    const applied = Math.max(this.applied, noopThrough);
    batch.put(appliedKey, packr.pack(applied) as Uint8Array);
    await batch.write();
    // Advanced only once written: a snapshot (taken between applies) reads exactly the state at `applied`.
    this.applied = applied;
    this.keyCount += delta;
    return results;
  }

  private applyOne(cmd: KvCommand, index: number, overlay: Map<string, string | null>, batch: ReturnType<Level<string, Uint8Array>['batch']>): { reply: KvResult; delta: number } {
    const session = typeof cmd.clientId === 'string' && typeof cmd.seq === 'number' ? cmd.clientId : null;
    if (session !== null) {
      const prev = this.sessions.get(session);
      if (prev !== undefined && cmd.seq! <= prev.seq) return { reply: prev.reply, delta: 0 }; // a retry: same reply, no change
    }
    const dk = dataPrefix + cmd.key;
    const prevValue = overlay.get(dk) ?? null;
    let reply: KvResult;
    let delta = 0;
    if (cmd.op === 'put' && typeof cmd.value === 'string') {
      overlay.set(dk, cmd.value);
      batch.put(dk, packr.pack(cmd.value) as Uint8Array);
      if (prevValue === null) delta = 1;
      reply = { ok: true, prev: prevValue };
    } else if (cmd.op === 'del') {
      overlay.set(dk, null);
      batch.del(dk);
      if (prevValue !== null) delta = -1;
      reply = { ok: true, prev: prevValue };
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
    return { reply, delta };
  }

  async flush(): Promise<void> {
    await this.db.put(appliedKey, packr.pack(this.applied) as Uint8Array, { sync: true });
  }

  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> } {
    // Called between applies (the driver's apply pipeline): the LevelDB iterator's implicit snapshot, taken now,
    // holds exactly the state at `applied`, whatever is applied while the chunks stream.
    const index = this.applied;
    const sessions = [...this.sessions.entries()];
    const it = this.db.iterator({ gte: dataPrefix, lt: dataEnd });
    async function* chunks(): AsyncIterable<Uint8Array> {
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
    await this.db.clear();
    this.sessions.clear();
    this.keyCount = 0;
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
          this.keyCount++;
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
