/**
 * LevelDB persistence of the master state (its own database, separate from the Raft log).
 *
 * Every applyBatch becomes ONE LevelDB batch holding the changed records AND the applied index, so the store is
 * always a state "as of" some applied index: never a change without its index, never an index without its
 * change. Those batches use sync:false: the Raft log is the durable source, and after a crash the node replays
 * committed entries from the stored applied index (the batch is atomic, so that index is exact). Before the node
 * compacts its Raft log past the applied index it MUST call flush() (a sync write, which also makes every earlier
 * unsynced write durable): only then may the entries the store relies on be discarded.
 */
import { Level } from 'level';
import { ErrorCode, MooringError } from '../errors.js';
import { levelOpenFailure } from '../util/level-open.js';
import {
  appliedKey,
  clientKey,
  encodeApplied,
  encodeClient,
  encodeObject,
  encodeReply,
  encodeSegment,
  objectKey,
  replyKey,
  restoringKey,
  segmentKey,
  StateLoader,
  stateVersionKey,
} from './codec.js';
import type { StateCore } from './state-core.js';
import { sessionReplyWindow } from './limits.js';

type Op = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

const iteratorBatchSize = 1000;
const loadBatchRecords = 10_000;
/**
 * Bytes one nextv() may read ahead. classic-level stops a nextv at 16 KiB by default: ~180 records of ~90 bytes,
 * so a 1M-record scan (a load, a snapshot, a backup) took ~5,500 thread-pool round trips instead of 100-1,000.
 */
const iteratorHighWaterMarkBytes = 1024 * 1024;
/**
 * LevelDB memtable size for the state store (default 4 MiB). Larger means fewer level-0 files, so a bulk
 * snapshot restore is not throttled by LevelDB's level-0 write slowdown while compaction catches up.
 */
const stateWriteBufferBytes = 64 * 1024 * 1024;
const restoreBatchRecords = 20_000;

/**
 * classic-level's own batch methods, skipping abstract-level's per-operation JavaScript (option spreading, key
 * and value transcoding, hook and event plumbing): that was ~60% of the cost of a state write (restore of 200k
 * objects: 5.5 s → 1.8 s on the bench machine). Writes go through classic-level's native chained batch
 * (`_chainedBatch()._put/_del/_write`): one native call per record and no `{type, key, value}` object, ~40% less
 * CPU per record than an operations array (200k puts: 262–293 ms → 158–170 ms CPU). It is only valid because
 * every key is a utf8 string and every value a Buffer, which are classic-level's native formats, and we use no
 * hooks, events or sublevels. Without those methods (another `level` backend) the public batch API is used.
 */
interface NativeChainedBatch {
  _put(key: string | Uint8Array, value: Uint8Array): void;
  _del(key: string): void;
  _write(options: { sync: boolean }): Promise<void>;
}
function hasNativeBatch(db: unknown): boolean {
  const d = db as { _chainedBatch?: unknown; detachResource?: unknown };
  return typeof d._chainedBatch === 'function' && typeof d.detachResource === 'function';
}

/** Records of one atomic LevelDB batch, collected then written at once. */
export class StoreBatch {
  private readonly native: NativeChainedBatch | null;
  private readonly ops: Op[] = [];
  count = 0;
  constructor(db: unknown, native: boolean) {
    if (native) {
      const d = db as { _chainedBatch(): NativeChainedBatch; detachResource(r: unknown): void };
      this.native = d._chainedBatch();
      // The abstract batch registers itself to be closed with the database; we never use that layer (the native
      // batch is freed by GC), so unregister it or every batch would stay reachable until close.
      d.detachResource(this.native);
    } else {
      this.native = null;
    }
  }
  /** `key` as a string or as its utf8 bytes. */
  put(key: string | Uint8Array, value: Uint8Array): void {
    this.count++;
    if (this.native !== null) this.native._put(key, value);
    else {
      const k = typeof key === 'string' ? key : Buffer.from(key).toString('utf8');
      this.ops.push({ type: 'put', key: k, value: Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength) });
    }
  }
  del(key: string): void {
    this.count++;
    if (this.native !== null) this.native._del(key);
    else this.ops.push({ type: 'del', key });
  }
  /** @internal */
  async writeTo(db: Level<string, Buffer>, sync: boolean): Promise<void> {
    if (this.native !== null) await this.native._write({ sync });
    else await db.batch(this.ops, { sync });
  }
}

export class StateStore {
  /** Whether classic-level's native batch is available (it is with classic-level, what `level` is on Node). */
  private readonly native: boolean;
  private constructor(readonly db: Level<string, Buffer>, native = hasNativeBatch(db)) {
    this.native = native;
  }

  newBatch(): StoreBatch {
    return new StoreBatch(this.db, this.native);
  }

  /**
   * A store on a database the caller created: any abstract-level implementation with utf8 keys and Buffer
   * values (the full-node simulator uses memory-level). It must be closed (not opened) when handed over.
   */
  static async openDb(db: Level<string, Buffer>): Promise<StateStore> {
    try {
      await db.open();
    } catch (e) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'cannot open the state store', { cause: e });
    }
    // Public batch API: abstract-level has `_chainedBatch` too, but only classic-level's is the native one.
    return new StateStore(db, false);
  }

  static async open(dir: string): Promise<StateStore> {
    const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer', writeBufferSize: stateWriteBufferBytes });
    try {
      await db.open();
    } catch (e) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, levelOpenFailure('the state store', dir, e), { cause: e });
    }
    return new StateStore(db);
  }

  /** Load every record into `core` (which must be empty). */
  async load(core: StateCore): Promise<void> {
    const loader = new StateLoader();
    // Whole iterator batches, not records(): an async generator costs a promise round trip per record. The next
    // batch is read (LevelDB's thread) while this one is decoded (this thread).
    const it = this.db.iterator({ highWaterMarkBytes: iteratorHighWaterMarkBytes });
    let next = it.nextv(loadBatchRecords);
    try {
      for (;;) {
        const batch = await next;
        if (batch.length === 0) break;
        next = it.nextv(loadBatchRecords);
        for (const [k, v] of batch) loader.add(k, v);
      }
    } finally {
      next.catch(() => undefined); // a bad record stopped the load: the read ahead is not wanted
      await it.close();
    }
    if (loader.incomplete) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'state store holds an interrupted snapshot restore; install the snapshot again');
    }
    loader.finish(core);
  }

  /** All records in key order, from one LevelDB snapshot taken synchronously when this is called. */
  records(): AsyncIterable<[string, Buffer]> {
    const it = this.db.iterator({ highWaterMarkBytes: iteratorHighWaterMarkBytes });
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const batch = await it.nextv(iteratorBatchSize);
            if (batch.length === 0) return;
            for (const kv of batch) yield kv as [string, Buffer];
          }
        } finally {
          await it.close();
        }
      },
    };
  }

  /** Same as records(), in batches (one promise per batch, not per record): what a snapshot copies. */
  recordBatches(): AsyncIterable<Array<[string, Buffer]>> {
    const it = this.db.iterator({ highWaterMarkBytes: iteratorHighWaterMarkBytes });
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            const batch = await it.nextv(iteratorBatchSize);
            if (batch.length === 0) return;
            yield batch as Array<[string, Buffer]>;
          }
        } finally {
          await it.close();
        }
      },
    };
  }

  /** Write the changes `core` recorded since the last call, with its applied index, as one batch. */
  async writeChanges(core: StateCore, sync: boolean): Promise<void> {
    await this.write(this.addChanges(core, this.newBatch()), sync);
  }

  /**
   * Encodes the changes `core` recorded since the last call, then its applied index, into `b` — synchronously, so
   * the batch is the state exactly as of that index whenever it is written. Adding to a batch that already holds
   * earlier changes coalesces them (LevelDB applies a batch in order: the last put of a key wins).
   */
  addChanges(core: StateCore, b: StoreBatch): StoreBatch {
    const ch = core.drainChanges();
    for (const key of ch.objects) {
      const o = core.objects.get(key);
      if (o === undefined) b.del(objectKey(key));
      else b.put(objectKey(key), encodeObject(o));
    }
    for (const id of ch.segments) {
      const s = core.segments.get(id);
      if (s === undefined) b.del(segmentKey(id));
      else b.put(segmentKey(id), encodeSegment(s.rec));
    }
    for (const id of ch.clients) {
      const c = core.clients.get(id);
      if (c === undefined) b.del(clientKey(id));
      else b.put(clientKey(id), encodeClient(c));
    }
    // Only the reply slots that changed: the rest of each window is already stored.
    for (const [id, mask] of ch.replies) {
      const slots = core.replySlots.get(id);
      const replies = core.replies.get(id);
      for (let slot = 0; slot < sessionReplyWindow; slot++) {
        if ((mask & (1 << slot)) === 0) continue;
        const seq = slots?.[slot] ?? -1;
        const r = seq >= 0 ? replies?.get(seq) : undefined;
        if (r === undefined) b.del(replyKey(id, slot));
        else b.put(replyKey(id, slot), encodeReply(seq, r));
      }
    }
    // Only once raised: a data dir at version 1 holds no such record (older versions refuse unknown records).
    if (ch.stateVersion) b.put(stateVersionKey, encodeApplied(core.stateVersion));
    b.put(appliedKey, encodeApplied(core.appliedIndex));
    return b;
  }

  async write(b: StoreBatch, sync: boolean): Promise<void> {
    try {
      if (this.db.status !== 'open') throw new MooringError(ErrorCode.STORAGE_FAILED, `state store is ${this.db.status}`);
      await b.writeTo(this.db, sync);
    } catch (e) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'state store write failed', { cause: e });
    }
  }

  /**
   * Replace the whole store with `records` (a snapshot), feeding `loader` on the way. A marker record makes an
   * interrupted restore detectable on the next open.
   */
  async replaceAll(
    records: (write: (flatRecords: ReadonlyArray<string | Uint8Array>) => Promise<void>) => Promise<void>,
    loader: StateLoader,
  ): Promise<void> {
    await this.db.clear();
    const mark = this.newBatch();
    mark.put(restoringKey, encodeApplied(1));
    await this.write(mark, true);
    // One batch is written (LevelDB's thread) while the next frames are decoded and loaded (this thread).
    let b = this.newBatch();
    let writing: Promise<void> = Promise.resolve();
    let failed: unknown = null;
    const startWrite = async (): Promise<void> => {
      await writing;
      if (failed !== null) throw failed;
      const full = b;
      b = this.newBatch();
      writing = this.write(full, false).catch((e: unknown) => {
        failed ??= e;
      });
    };
    await records(async (flat) => {
      for (let i = 0; i < flat.length; i += 2) {
        const k = flat[i]!;
        const v = flat[i + 1] as Uint8Array;
        if (typeof k === 'string') {
          if (k === restoringKey) continue;
          loader.add(k, v);
        } else {
          if (k[0] === 0x6d /* m */ && Buffer.from(k.buffer, k.byteOffset, k.byteLength).toString('utf8') === restoringKey) continue;
          loader.addRaw(k, v);
        }
        b.put(k, v);
      }
      if (b.count >= restoreBatchRecords) await startWrite();
    });
    if (b.count > 0) await startWrite();
    await writing;
    if (failed !== null) throw failed;
    const done = this.newBatch();
    done.del(restoringKey);
    await this.write(done, true);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
