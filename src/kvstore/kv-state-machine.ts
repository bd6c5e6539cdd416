/**
 * A small replicated KV state machine on LevelDB, used to test and benchmark the durable Raft node without the
 * master's data model. Keys and values are strings. Writes are exactly-once per (clientId, seq): a retried
 * write returns the first reply and changes nothing.
 *
 * Persistence: the state lives in memory and in its own LevelDB; every apply batch is one LevelDB batch that also
 * records the applied index (not fsynced: the Raft log is the durable source and replays from appliedIndex);
 * flush() makes it durable before the node compacts its log.
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
  private readonly data = new Map<string, string>();
  private readonly sessions = new Map<string, Session>();
  private applied = 0;

  private constructor(private db: Level<string, Uint8Array>, private readonly dir: string) {}

  static async open(dir: string): Promise<KvStateMachine> {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' });
    await db.open();
    const sm = new KvStateMachine(db, dir);
    await sm.load();
    return sm;
  }

  private async load(): Promise<void> {
    this.data.clear();
    this.sessions.clear();
    this.applied = 0;
    for await (const [k, v] of this.db.iterator()) {
      if (k === appliedKey) this.applied = packr.unpack(v) as number;
      else if (k.startsWith(sessionPrefix)) this.sessions.set(k.slice(sessionPrefix.length), packr.unpack(v) as Session);
      else if (k.startsWith(dataPrefix)) this.data.set(k.slice(dataPrefix.length), packr.unpack(v) as string);
    }
  }

  appliedIndex(): number {
    return this.applied;
  }

  get(key: string): string | undefined {
    return this.data.get(key);
  }

  get size(): number {
    return this.data.size;
  }

  /** A deterministic digest of the whole state (for comparing replicas). */
  stateHash(): string {
    let h = 0x811c9dc5;
    const keys = [...this.data.keys()].sort();
    for (const k of keys) {
      const s = `${k}=${this.data.get(k)};`;
      for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
    }
    return `${keys.length}:${h.toString(16)}`;
  }

  entries(): [string, string][] {
    return [...this.data.entries()];
  }

  async apply(commands: AppliedCommand[], noopThrough: number): Promise<unknown[]> {
    const batch = this.db.batch();
    const results: KvResult[] = [];
    for (const c of commands) results.push(this.applyOne(c, batch));
    this.applied = Math.max(this.applied, noopThrough);
    batch.put(appliedKey, packr.pack(this.applied) as Uint8Array);
    await batch.write();
    return results;
  }

  private applyOne(c: AppliedCommand, batch: ReturnType<Level<string, Uint8Array>['batch']>): KvResult {
    let cmd: KvCommand;
    try {
      cmd = packr.unpack(c.data) as KvCommand;
    } catch {
      return { ok: false, code: ErrorCode.INVALID_ARGUMENT, message: `entry ${c.index} does not decode` };
    }
    if (typeof cmd !== 'object' || cmd === null || typeof cmd.key !== 'string') {
      return { ok: false, code: ErrorCode.INVALID_ARGUMENT, message: `entry ${c.index} is not a KV command` };
    }
    const session = typeof cmd.clientId === 'string' && typeof cmd.seq === 'number' ? cmd.clientId : null;
    if (session !== null) {
      const prev = this.sessions.get(session);
      if (prev !== undefined && cmd.seq! <= prev.seq) return prev.reply; // a retry: same reply, no change
    }
    const prevValue = this.data.get(cmd.key) ?? null;
    let reply: KvResult;
    if (cmd.op === 'put' && typeof cmd.value === 'string') {
      this.data.set(cmd.key, cmd.value);
      batch.put(dataPrefix + cmd.key, packr.pack(cmd.value) as Uint8Array);
      reply = { ok: true, prev: prevValue };
    } else if (cmd.op === 'del') {
      this.data.delete(cmd.key);
      batch.del(dataPrefix + cmd.key);
      reply = { ok: true, prev: prevValue };
    } else {
      reply = { ok: false, code: ErrorCode.INVALID_ARGUMENT, message: `unknown op in entry ${c.index}` };
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
    await this.db.put(appliedKey, packr.pack(this.applied) as Uint8Array, { sync: true });
  }

  snapshot(): { index: number; chunks: AsyncIterable<Uint8Array> } {
    // Copy references now: the image is exactly the state at this call, whatever is applied later.
    const index = this.applied;
    const data = [...this.data.entries()];
    const sessions = [...this.sessions.entries()];
    async function* chunks(): AsyncIterable<Uint8Array> {
      yield packr.pack({ t: 'h', index, sessions }) as Uint8Array;
      for (let i = 0; i < data.length; i += snapshotChunkEntries) {
        yield packr.pack({ t: 'd', kv: data.slice(i, i + snapshotChunkEntries) }) as Uint8Array;
      }
    }
    return { index, chunks: chunks() };
  }

  async restore(index: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    await this.db.clear();
    this.data.clear();
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
          this.data.set(k, v);
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
    await this.db.close();
  }

  get directory(): string {
    return this.dir;
  }
}
