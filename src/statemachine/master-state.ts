/**
 * MasterState: the replicated master state machine (segments, objects, replicas, allocators, clients,
 * exactly-once sessions) = a deterministic StateCore in memory + its own LevelDB store. The master layer wires it
 * to Raft; nothing here knows of Raft, sockets or clocks.
 *
 * API (for the master layer):
 *   static open(dir, options?): Promise<MasterState>          open (or create) the store and load it
 *   appliedIndex: number                                       last entry applied (and stored)
 *   applyBatch(entries, {waitForWrite?}): Promise<Result[]>   apply committed entries in order; one LevelDB batch
 *   applyNoop(index): Promise<void>                            advance the index for entries without a command
 *   flush(): Promise<void>                                     sync write: call BEFORE compacting the Raft log
 *   getReplicaList(key, nowMs, leases?) / batchGetReplicaList  queries from memory (grant leases on the leader)
 *   existKey(key) / batchExistKey(keys) / listSegments() / querySegment(id) / ping(clientId) / stats()
 *   createSnapshot(): AsyncIterable<Uint8Array>                consistent dump, chunks ≤ 1 MiB, incl. applied index
 *   installSnapshot(chunks): Promise<void>                     replace the whole state with a snapshot
 *   static restore(dir, chunks, options?): Promise<MasterState>
 *   stateHash(): string                                        sha256 over the whole state (sorted)
 *   close(): Promise<void>
 *   objects / segments / ordered / clients / inFlight          read-only views for the planners (StateView)
 *
 * Leader-side helpers (soft state, not replicated): LeaseTable (leases.ts), ClientLiveness (clients.ts, fed by
 * Ping), and the planners planClientExpiry, planReclaim, planDrain, planEviction, planEvictionForPut, whose
 * commands the leader proposes. Ping itself is a query (`ping(clientId)` → OK | NEED_REMOUNT), not a log entry.
 *
 * Durability: see store.ts. applyBatch writes with sync:false (the Raft log is the durable source and is
 * replayed from appliedIndex after a crash), at most every stateWriteIntervalMs when nothing waits for the write;
 * flush() makes it durable and must precede Raft log compaction.
 *
 * Leases are NOT here: they are leader soft state (LeaseTable), passed to queries and planners. Remove honours
 * leases at admission: the leader checks `leases.isLeased(key, now)` before proposing Remove and answers
 * OBJECT_HAS_LEASE itself; RemoveAll/RemoveByPrefix/DrainSegments carry the leased keys as `skipKeys`.
 * Likewise UpsertEnd and OffloadEnd free the old memory replicas: the leader should refuse them with
 * OBJECT_HAS_LEASE while the key is leased (the client retries after the lease TTL).
 */
import { sessionEpochStateVersion } from './state-version.js';
import { ErrorCode, MooringError } from '../errors.js';
import type { Result, ReplicaDescriptor } from './commands.js';
import { StateLoader } from './codec.js';
import { computeStateHash } from './hash.js';
import type { LeaseTable } from './leases.js';
import type { CoverSlot } from './objects.js';
import { decodeSnapshot, encodeSnapshot } from './snapshot.js';
import { StateCore } from './state-core.js';
import type { ApplyEntry, GetReplicaListValue, PingValue, ReplicaListSink, StateOptions, StateStats } from './state-core.js';
import type { SegmentInfo } from './segments.js';
import type { StateView } from './state-view.js';
import { StateStore, type StoreBatch } from './store.js';

export type MasterStateOptions = Partial<StateOptions>;

/** A queued state write (see queueChanges). */
interface OpenWrite {
  /** What was encoded ahead of the start (null: nothing yet). */
  batch: StoreBatch | null;
  /** Encoded for good (sealOpenWrite): takes no later changes at its start. */
  sealed: boolean;
  written: Promise<void>;
  /** Queues the write now (idempotent): its interval ran out, or something must see the store at appliedIndex. */
  start: () => void;
  timer: ReturnType<typeof setTimeout> | null;
}

/**
 * The applies of this many ms share one LevelDB write (MasterState.open; etcd's backend commits every 100 ms the same
 * way): per Raft round that saves a LevelDB write, its thread-pool hop and its completion on every master. Nothing
 * waits on it (replies come from memory; the Raft log replays from the applied index that reached LevelDB), and
 * flush, snapshots, installs and close start it at once. Alternating bench:master runs: −17 to −23% server CPU per
 * put pair, closed loop and at half of peak (bench/RESULTS.md).
 */
export const stateWriteIntervalMs = 20;

/** Changed objects an open write lets wait unencoded; past this, each apply encodes them into it at once (~10 ms). */
const maxDeferredObjects = 4096;

export class MasterState implements StateView {
  private core: StateCore;
  private store: StateStore;
  /** Writes (and snapshot starts) run one after another, in call order. */
  private chain: Promise<void> = Promise.resolve();
  /**
   * The queued write that has not started yet: later applies join it (coalescing) instead of queueing another. It is
   * encoded when it starts, or sealed (encoded for good) by createSnapshot/flush/installSnapshot so that nothing
   * applied after them can slip into a write they wait for.
   */
  private openWrite: OpenWrite | null = null;
  private broken: unknown = null;
  private readonly failureListeners: Array<(err: unknown) => void> = [];
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly options: MasterStateOptions,
    store: StateStore,
    core: StateCore,
    /** 0: a write is queued at once (openStore: the simulator's memory store, tools). */
    private readonly writeIntervalMs = 0,
  ) {
    this.store = store;
    this.core = core;
  }

  static async open(dir: string, options: MasterStateOptions = {}): Promise<MasterState> {
    return MasterState.openStore(await StateStore.open(dir), dir, options, stateWriteIntervalMs);
  }

  /** Opens the state held by an already created store (`label` names it in messages; the simulator's memory store). */
  static async openStore(store: StateStore, label: string, options: MasterStateOptions = {}, writeIntervalMs = 0): Promise<MasterState> {
    const core = new StateCore(options);
    try {
      await store.load(core);
    } catch (e) {
      await store.close();
      throw e;
    }
    return new MasterState(label, options, store, core, writeIntervalMs);
  }

  static async restore(dir: string, chunks: AsyncIterable<Uint8Array>, options: MasterStateOptions = {}): Promise<MasterState> {
    // Do not load what the directory holds (it may be an interrupted restore): it is replaced anyway.
    const ms = new MasterState(dir, options, await StateStore.open(dir), new StateCore(options));
    try {
      await ms.installSnapshot(chunks);
    } catch (e) {
      await ms.close();
      throw e;
    }
    return ms;
  }

  /**
   * Writes the snapshot in `chunks` into a fresh store in `dir` and checks it the way a restore does (the stream's
   * record count and sha256; every record decodes; the allocators rebuild from the extents), without keeping the
   * state in memory: for a restore into a data dir that a master opens later. Durable when it resolves (the store's
   * last write is synced). Throws INVALID_ARGUMENT for a bad stream, like restore().
   */
  static async restoreToStore(dir: string, chunks: AsyncIterable<Uint8Array>, options: MasterStateOptions = {}): Promise<{ appliedIndex: number; objectCount: number }> {
    const store = await StateStore.open(dir);
    try {
      return await MasterState.restoreIntoStore(store, chunks, options);
    } finally {
      await store.close();
    }
  }

  /** restoreToStore on a store the caller opened and closes (the full-node simulator's memory store). */
  static async restoreIntoStore(store: StateStore, chunks: AsyncIterable<Uint8Array>, options: MasterStateOptions = {}): Promise<{ appliedIndex: number; objectCount: number }> {
    const loader = new StateLoader({ retainObjects: false });
    await store.replaceAll((write) => decodeSnapshot(chunks, write).then(() => undefined), loader);
    const core = new StateCore(options);
    loader.finish(core);
    return { appliedIndex: core.appliedIndex, objectCount: loader.objectCount };
  }

  get appliedIndex(): number {
    return this.core.appliedIndex;
  }
  get objects(): StateView['objects'] {
    return this.core.objects;
  }
  get segments(): StateView['segments'] {
    return this.core.segments;
  }
  get ordered(): StateView['ordered'] {
    return this.core.ordered;
  }
  get clients(): StateView['clients'] {
    return this.core.clients;
  }
  get inFlight(): StateView['inFlight'] {
    return this.core.inFlight;
  }
  get onSegment(): StateView['onSegment'] {
    return this.core.onSegment;
  }
  get stateVersion(): number {
    return this.core.stateVersion;
  }
  get stateOptions(): Readonly<StateOptions> {
    return this.core.options;
  }

  private check(): void {
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'the master state is closed');
    if (this.broken !== null) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, 'an earlier state store write failed; reopen from disk', { cause: this.broken });
    }
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.then(
      () => undefined,
      (e: unknown) => this.markBroken(e),
    );
    return p;
  }

  /**
   * Calls `listener` once when a store write (or any queued store work) fails: the state is then unusable until it is
   * reopened from disk. A write behind an apply that already resolved (`waitForWrite: false`) fails with no caller to
   * tell, so the driver listens here to stop the node at once (RaftStateMachine.onFailure).
   */
  onFailure(listener: (err: unknown) => void): void {
    if (this.broken !== null) {
      const e = this.broken;
      queueMicrotask(() => listener(e));
      return;
    }
    this.failureListeners.push(listener);
  }

  private markBroken(e: unknown): void {
    if (this.broken !== null) return;
    this.broken = e;
    const listeners = this.failureListeners.splice(0);
    for (const l of listeners) l(e);
  }

  /**
   * Apply committed entries in order (indexes strictly increasing, above appliedIndex) and persist them, with
   * the new applied index, in one LevelDB batch. Resolves with one Result per entry once written.
   *
   * With `{ waitForWrite: false }` it resolves as soon as the entries are applied in memory; the write is queued
   * behind the earlier ones (a later write takes every change made so far, so queued writes coalesce). That is
   * safe because the Raft log, not this store, is the durable source (see store.ts): a failed write makes every
   * later call reject, and flush() still waits for all of them. It lets a driver apply the next entries while
   * LevelDB writes the last ones instead of waiting for each write.
   */
  // async: a closed or broken state rejects; the synchronous part (check + apply) still runs in call order.
  async applyBatch(entries: readonly ApplyEntry[], options: { waitForWrite?: boolean } = {}): Promise<Result[]> {
    this.check();
    let results: Result[];
    try {
      results = entries.map((e) => this.core.apply(e));
    } catch (e) {
      // Only a bug gets here (bad commands become error results): memory may now be ahead of the store.
      this.markBroken(e);
      throw e;
    }
    const written = this.queueChanges(options.waitForWrite !== false);
    if (options.waitForWrite === false) {
      written.catch(() => undefined); // recorded in `broken` by enqueue: the next call reports it
      return results;
    }
    return written.then(() => results);
  }

  /** Advances the applied index past entries without a command. With `waitForWrite: false`, as applyBatch. */
  async applyNoop(index: number, options: { waitForWrite?: boolean } = {}): Promise<void> {
    this.check();
    this.core.applyNoop(index);
    const written = this.queueChanges(options.waitForWrite !== false);
    if (options.waitForWrite === false) {
      written.catch(() => undefined);
      return;
    }
    return written;
  }

  /**
   * Joins what was applied since the last write to the open (not yet started) write, or queues a new one. The open
   * write is encoded when it starts (LevelDB is free for it): everything applied by then, each changed object once
   * at its latest state, with the applied index it reached. Encoded in one synchronous step, so a write always
   * holds the state exactly as of the applied index it carries. (Encoding at every apply instead wrote an object
   * put and completed within one write twice: twice the msgpack and LevelDB batch work per object.) A write nobody
   * waits for (`waited` false) is queued `writeIntervalMs` after it opened, so the applies of that interval join it.
   */
  private queueChanges(waited: boolean): Promise<void> {
    const open = this.openWrite;
    if (open !== null) {
      // A long wait (LevelDB busy) must not leave one huge encoding step for the write's start: encode ahead.
      if (this.core.dirtyObjects.size >= maxDeferredObjects) this.encodeInto(open);
      if (waited) open.start(); // someone waits for it: no interval
      return open.written;
    }
    const entry: OpenWrite = { batch: null, sealed: false, written: Promise.resolve(), start: () => {}, timer: null };
    entry.written = new Promise<void>((resolve, reject) => {
      let started = false;
      entry.start = () => {
        if (started) return;
        started = true;
        if (entry.timer !== null) clearTimeout(entry.timer);
        entry.timer = null;
        this.enqueue(async () => {
          if (this.openWrite === entry) this.openWrite = null;
          const batch = entry.sealed ? entry.batch! : this.encodeInto(entry);
          await this.store.write(batch, false);
        }).then(resolve, reject);
      };
    });
    this.openWrite = entry;
    if (this.writeIntervalMs > 0 && !waited) {
      entry.timer = setTimeout(entry.start, this.writeIntervalMs);
      entry.timer.unref?.(); // an exit without close() loses nothing: the Raft log replays it
    } else {
      entry.start();
    }
    return entry.written;
  }

  /** Encodes what was applied since the last encoding into `w`'s batch (created on first use). */
  private encodeInto(w: OpenWrite): StoreBatch {
    w.batch = this.store.addChanges(this.core, w.batch ?? this.store.newBatch());
    return w.batch;
  }

  /**
   * Encodes the open write now, with what was applied so far, and closes it to later applies (they queue a new write
   * behind whatever is enqueued next): a flush, snapshot or install must not let later applies into an earlier write.
   */
  private sealOpenWrite(): void {
    const open = this.openWrite;
    if (open === null) return;
    this.encodeInto(open);
    open.sealed = true;
    this.openWrite = null;
    open.start(); // queued now, ahead of whatever sealed it
  }

  /** Make everything applied so far durable (sync write). Call before compacting the Raft log. */
  async flush(): Promise<void> {
    this.check();
    this.sealOpenWrite();
    const batch = this.store.addChanges(this.core, this.store.newBatch());
    return this.enqueue(() => this.store.write(batch, true));
  }

  /** The soft-state slot of `key`'s object record (objects.ts: CoverSlot); undefined when there is no object. */
  coverSlot(key: string): CoverSlot | undefined {
    return this.core.objects.get(key);
  }

  getReplicaList(key: string, nowMs: number, leases?: LeaseTable): Result<GetReplicaListValue> {
    return this.core.getReplicaList(key, nowMs, leases);
  }

  batchGetReplicaList(keys: readonly string[], nowMs: number, leases?: LeaseTable): Result<GetReplicaListValue>[] {
    return keys.map((k) => this.core.getReplicaList(k, nowMs, leases));
  }

  /** getReplicaList of each key into `sink` (no descriptor objects: StateCore.replicaListInto). */
  batchReplicaListsInto<T>(keys: readonly string[], nowMs: number, leases: LeaseTable | undefined, sink: ReplicaListSink<T>): T[] {
    return keys.map((k) => this.core.replicaListInto(k, nowMs, leases, sink));
  }

  existKey(key: string): boolean {
    return this.core.existKey(key);
  }

  batchExistKey(keys: readonly string[]): boolean[] {
    return keys.map((k) => this.core.existKey(k));
  }

  listSegments(): SegmentInfo[] {
    return this.core.listSegments();
  }

  querySegment(id: string): Result<SegmentInfo> {
    return this.core.querySegment(id);
  }

  /** The exactly-once reply stored for (clientId, seq), if it is still in the session's window. */
  /**
   * The stored reply of a write (clientId, seq), if it belongs to the open session: a write of another epoch gets
   * none (apply refuses it with SESSION_EXPIRED). `epoch` undefined: a write without one (older clients).
   */
  sessionReply(clientId: string, seq: number, epoch?: unknown): Result | undefined {
    if (epoch !== undefined && this.core.stateVersion >= sessionEpochStateVersion && this.core.clients.get(clientId)?.epoch !== epoch) return undefined;
    return this.core.replies.get(clientId)?.get(seq);
  }

  ping(clientId: string): PingValue {
    return this.core.ping(clientId);
  }

  stats(): StateStats {
    return this.core.stats();
  }

  stateHash(): string {
    return computeStateHash(this.core);
  }

  /**
   * A consistent point-in-time dump of the whole state (applied index included), as chunks ≤ 1 MiB: exactly the
   * state at `appliedIndex` when this is called. Every write is encoded in one step at an apply boundary (queueChanges) and
   * the dump reads a LevelDB snapshot opened right after the write that holds this index, before any later one,
   * so applies made after this call — even with waitForWrite: false — never leak into it, and the caller may
   * keep applying while it streams.
   */
  createSnapshot(): AsyncIterable<Uint8Array> {
    this.check();
    // Seal the open write: it holds exactly what was applied so far; later applies go to a write queued after
    // the snapshot's LevelDB read point, so the image is exactly the state at appliedIndex now.
    this.sealOpenWrite();
    const records = this.enqueue(async () => this.store.recordBatches());
    return {
      [Symbol.asyncIterator]: () => {
        const gen = (async function* () {
          yield* encodeSnapshot(await records);
        })();
        return gen[Symbol.asyncIterator]();
      },
    };
  }

  /** Replace the whole state with the snapshot in `chunks` (throws INVALID_ARGUMENT for a bad stream). */
  async installSnapshot(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    this.check();
    this.sealOpenWrite();
    return this.enqueue(async () => {
      const loader = new StateLoader();
      try {
        await this.store.replaceAll((write) => decodeSnapshot(chunks, write).then(() => undefined), loader);
      } catch (e) {
        if (e instanceof MooringError && e.code === ErrorCode.INVALID_ARGUMENT) {
          // The store now holds a partial restore (marked as such): keep the old state in memory unusable.
          this.markBroken(e);
        }
        throw e;
      }
      const core = new StateCore(this.options);
      loader.finish(core);
      this.core = core;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.openWrite?.start();
    await this.chain;
    await this.store.close();
  }

  /** For tests and tools: the directory of the store. */
  get location(): string {
    return this.dir;
  }
}

export type { ApplyEntry, ReplicaDescriptor };
