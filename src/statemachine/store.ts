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
import {
  appliedKey,
  clientKey,
  encodeApplied,
  encodeClient,
  encodeObject,
  encodeSegment,
  objectKey,
  restoringKey,
  segmentKey,
  StateLoader,
} from './codec.js';
import type { StateCore } from './state-core.js';

type Op = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

const iteratorBatchSize = 1000;
/**
 * LevelDB memtable size for the state store (default 4 MiB). Larger means fewer level-0 files, so a bulk
 * snapshot restore is not throttled by LevelDB's level-0 write slowdown while compaction catches up.
 */
const stateWriteBufferBytes = 64 * 1024 * 1024;
const restoreBatchRecords = 20_000;

/**
 * classic-level's own batch method, skipping abstract-level's per-operation JavaScript (option spreading, key
 * and value transcoding, hook and event plumbing): that was ~60% of the cost of a state write (restore of 200k
 * objects: 5.5 s → 1.8 s on the bench machine). It is only valid because every key is a utf8 string and every
 * value a Buffer, which are classic-level's native formats, and we use no hooks, events or sublevels.
 */
type DirectBatch = (ops: Op[], options: { sync: boolean }) => Promise<void>;
function hasDirectBatch(db: unknown): boolean {
  return typeof (db as { _batch?: unknown })._batch === 'function';
}
function directBatch(db: unknown, ops: Op[], sync: boolean): Promise<void> {
  return ((db as { _batch: DirectBatch })._batch).call(db, ops, { sync });
}

export class StateStore {
  /** Whether directBatch is available (it is with classic-level, what `level` is on Node). */
  private readonly direct: boolean;
  private constructor(readonly db: Level<string, Buffer>) {
    this.direct = hasDirectBatch(db);
  }

  static async open(dir: string): Promise<StateStore> {
    const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer', writeBufferSize: stateWriteBufferBytes });
    try {
      await db.open();
    } catch (e) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, `cannot open state store at ${dir}`, { cause: e });
    }
    return new StateStore(db);
  }

  /** Load every record into `core` (which must be empty). */
  async load(core: StateCore): Promise<void> {
    const loader = new StateLoader();
    for await (const [k, v] of this.records()) loader.add(k, v);
    if (loader.incomplete) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'state store holds an interrupted snapshot restore; install the snapshot again');
    }
    loader.finish(core);
  }

  /** All records in key order, from one LevelDB snapshot taken synchronously when this is called. */
  records(): AsyncIterable<[string, Buffer]> {
    const it = this.db.iterator();
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

  /** Write the changes `core` recorded since the last call, with its applied index, as one batch. */
  async writeChanges(core: StateCore, sync: boolean): Promise<void> {
    const ch = core.drainChanges();
    const ops: Op[] = [];
    for (const key of ch.objects) {
      const o = core.objects.get(key);
      ops.push(o === undefined ? { type: 'del', key: objectKey(key) } : { type: 'put', key: objectKey(key), value: encodeObject(o) });
    }
    for (const id of ch.segments) {
      const s = core.segments.get(id);
      ops.push(s === undefined ? { type: 'del', key: segmentKey(id) } : { type: 'put', key: segmentKey(id), value: encodeSegment(s.rec) });
    }
    for (const id of ch.clients) {
      const c = core.clients.get(id);
      ops.push(c === undefined ? { type: 'del', key: clientKey(id) } : { type: 'put', key: clientKey(id), value: encodeClient(c, core.replies.get(id)) });
    }
    ops.push({ type: 'put', key: appliedKey, value: encodeApplied(core.appliedIndex) });
    await this.batch(ops, sync);
  }

  async batch(ops: Op[], sync: boolean): Promise<void> {
    try {
      if (this.direct && this.db.status === 'open') await directBatch(this.db, ops, sync);
      else await this.db.batch(ops, { sync });
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
    await this.batch([{ type: 'put', key: restoringKey, value: encodeApplied(1) }], true);
    let ops: Op[] = [];
    const flushOps = async (): Promise<void> => {
      if (ops.length > 0) await this.batch(ops, false);
      ops = [];
    };
    await records(async (flat) => {
      for (let i = 0; i < flat.length; i += 2) {
        const k = flat[i] as string;
        const v = flat[i + 1] as Uint8Array;
        if (k === restoringKey) continue;
        const value = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
        loader.add(k, value);
        ops.push({ type: 'put', key: k, value });
      }
      if (ops.length >= restoreBatchRecords) await flushOps();
    });
    await flushOps();
    await this.batch([{ type: 'del', key: restoringKey }], true);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
