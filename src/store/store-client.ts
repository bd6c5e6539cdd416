/**
 * StoreClient: objects whose metadata goes through the Raft masters and whose bytes go through the native engine.
 *
 *   put(key, bytes)  = PutStart (replica descriptors) → the engine writes `bytes ‖ trailer` to every replica →
 *                      PutEnd (PutRevoke when any replica write fails).
 *   get(key)         = GetReplicaList (grants a read lease) → read the nearest replica into a staging slot,
 *                      verify the checksum trailer; on a failed transfer or a mismatch, the next replica.
 *
 * A StoreClient may also be a storage node: it mounts DRAM segments of its engine (and optionally one DISK
 * segment) with the masters and keeps them alive with a ping loop. The ping reply can carry tier tasks (demote
 * an object to NVMe) that the client carries out through the log: OffloadStart → copy → OffloadEnd.
 * A DISK replica is readable only by its owner's engine, so owners of DISK segments run a small tier RPC server
 * that reads/writes their disk for others; a get served from DISK counts a hit, and after `promoteAfterHits`
 * hits the client promotes the object back to DRAM (UpsertStart → write → UpsertEnd).
 *
 * The engine is imported lazily: `StoreClient.create` throws ENGINE_UNAVAILABLE when the addon is not built.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { ErrorCode, MooringError } from '../errors.js';
import { diskAllocAlignmentBytes } from '../statemachine/limits.js';
import type { DiskSegment, Engine, EngineOptions, Segment, SegmentDescriptor, TransferRequest } from '../engine/index.js';
import { MasterClient, parseEndpoint, type RetryPolicy } from '../master/client.js';
import type { PingReply } from '../master/rpc-methods.js';
import type { ReplicaDescriptor, SegmentSpec } from '../statemachine/commands.js';
import { RpcClient, RpcServer } from '../transport/rpc.js';
import { silentLogger, type LoggerLike } from '../transport/logger.js';
import { decodeAddress, encodeDiskName, encodeMemoryName, type SegmentAddress } from './descriptor.js';
import { sealInto, trailerBytes, unseal } from './checksum.js';
import { StagingPool, type Slot } from './staging.js';

/** Default staging slot: the largest object (payload + trailer) one put or get can move. */
export const defaultStagingSlotBytes = 4 * 1024 * 1024;
/** Default number of slots: how many puts/gets of one client move bytes at once. */
export const defaultStagingSlots = 8;
/** One engine transfer (a replica read or write) gives up after this long; the next replica is tried. */
export const defaultTransferTimeoutMs = 3_000;
/** A get served from DISK this many times (by this client) promotes the object back to DRAM. */
export const defaultPromoteAfterHits = 2;
/** Promotions running at once per client (each holds a staging slot). */
export const maxConcurrentPromotions = 2;
/** Hit counters kept for DISK-served keys (oldest forgotten first). */
export const maxTrackedDiskKeys = 10_000;
/** UpsertEnd / OffloadEnd are refused while a read lease is held: retried at this interval... */
export const leaseRetryIntervalMs = 250;
/** ...for at most this long beyond the lease TTL, then the tier operation is revoked. */
export const leaseRetrySlackMs = 3_000;
/** listSegments is asked at most this often when a replica names an unknown segment. */
export const minSegmentRefreshIntervalMs = 100;
/** A read that finished later than this fraction of the lease TTL after GetReplicaList is not trusted. */
export const leaseSafetyRatio = 0.8;
/** Tier RPC calls (disk reads/writes for other clients). */
export const tierRpcTimeoutMs = 5_000;
const tierClusterSuffix = '/tier';
/** A segment whose transfer failed is avoided by puts for this long (its owner may be dead, not yet expired). */
export const suspectSegmentMs = 5_000;
/** While segments are suspect, the segment list is refreshed at most this often for placement hints. */
export const suspectRefreshIntervalMs = 1_000;
/** A put whose replica write failed is placed again (after a successful PutRevoke) at most this many times. */
export const maxPutPlacementRetries = 1;

export interface StoreClientOptions {
  /** Master RPC endpoints (`host:port`). */
  masters: string[];
  clusterId?: string;
  /** Session id with the masters. Default: a random UUID (a restarted process is a new client). */
  clientId?: string;
  zone?: string;
  /** Engine options (host/port of its data server, threads). Ignored when `engine` is given. */
  engineOptions?: EngineOptions;
  /** An engine to use (not closed by close()). Default: a new one owned by this client. */
  engine?: Engine;
  /** DRAM this client contributes to the cluster: `count` segments of `size` bytes (default none). */
  memory?: { size: number; count?: number };
  /** A DISK (NVMe) tier segment this client contributes: a file at `path` of `size` bytes (multiple of 4096). */
  disk?: { path: string; size: number };
  /** Host the tier RPC server binds (only with `disk`). Default the engine's host or 127.0.0.1. */
  tierHost?: string;
  stagingSlotBytes?: number;
  stagingSlots?: number;
  transferTimeoutMs?: number;
  promoteAfterHits?: number;
  requestTimeoutMs?: number;
  retry?: RetryPolicy;
  pingIntervalMs?: number;
  logger?: LoggerLike;
}

export interface PutOptions {
  /** Number of replicas, each on a distinct segment (default 1). */
  replicas?: number;
  /** Prefer segments in distinct zones (best effort; the masters' placement decides). */
  zoneSpread?: boolean;
  /** 'soft': evicted last (soft-pin TTL); 'hard': never evicted. */
  pin?: 'soft' | 'hard';
}

export interface PutResult {
  replicas: ReplicaDescriptor[];
}

export interface BatchItemResult<T> {
  key: string;
  ok: boolean;
  value?: T;
  error?: MooringError;
}

/** A tier task as carried by the master's ping reply. */
export interface TierTask {
  kind: 'demote' | 'repair';
  key: string;
  /** repair: the object version the leader planned for. */
  createdIndex?: number;
}

export interface StoreStats {
  puts: number;
  gets: number;
  removes: number;
  replicaReadFailures: number;
  checksumMismatches: number;
  diskHits: number;
  promotions: number;
  promotionFailures: number;
  demotions: number;
  demotionFailures: number;
  repairs: number;
  repairFailures: number;
}

interface Resolved {
  spec: { id: string; clientId: string; zone: string; tier: string; endpoint: string };
  address: SegmentAddress;
  /** Free bytes when last listed (a hint for avoidSuspects). */
  free: number;
}

type EngineModule = typeof import('../engine/index.js');

export class StoreClient {
  readonly master: MasterClient;
  readonly engine: Engine;
  readonly clientId: string;
  readonly stats: StoreStats = {
    puts: 0, gets: 0, removes: 0, replicaReadFailures: 0, checksumMismatches: 0, diskHits: 0,
    promotions: 0, promotionFailures: 0, demotions: 0, demotionFailures: 0, repairs: 0, repairFailures: 0,
  };
  private readonly opts: StoreClientOptions;
  private readonly log: LoggerLike;
  private readonly ownsEngine: boolean;
  private readonly staging: StagingPool;
  private readonly transferTimeoutMs: number;
  private readonly promoteAfterHits: number;
  private readonly memory: Segment[] = [];
  private disk: { segment: DiskSegment; token: string; specId: string } | null = null;
  private tierServer: RpcServer | null = null;
  private readonly tierClients = new Map<string, RpcClient>();
  private readonly segments = new Map<string, Resolved>();
  private refreshing: Promise<void> | null = null;
  private lastRefreshMs = 0;
  private readonly diskHits = new Map<string, number>();
  /** Segments whose last transfer failed, until when (ms): puts are placed elsewhere meanwhile. */
  private readonly suspects = new Map<string, number>();
  private readonly promoting = new Set<string>();
  private readonly tierTasksRunning = new Set<string>();
  private pingTimer: NodeJS.Timeout | null = null;
  private pingBusy = false;
  private closed = false;
  private readonly background = new Set<Promise<unknown>>();
  private hostId = '';

  private constructor(opts: StoreClientOptions, engine: Engine, ownsEngine: boolean, staging: StagingPool) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger;
    this.engine = engine;
    this.ownsEngine = ownsEngine;
    this.staging = staging;
    this.clientId = opts.clientId ?? randomUUID();
    this.transferTimeoutMs = opts.transferTimeoutMs ?? defaultTransferTimeoutMs;
    this.promoteAfterHits = opts.promoteAfterHits ?? defaultPromoteAfterHits;
    this.master = new MasterClient({
      endpoints: opts.masters,
      clientId: this.clientId,
      ...(opts.clusterId !== undefined ? { clusterId: opts.clusterId } : {}),
      ...(opts.requestTimeoutMs !== undefined ? { requestTimeoutMs: opts.requestTimeoutMs } : {}),
      retry: opts.retry ?? { maxAttempts: 6, initialBackoffMs: 50, maxBackoffMs: 1_000 },
      logger: this.log,
    });
  }

  /** Loads the engine (ENGINE_UNAVAILABLE when the addon is not built), mounts the segments, starts pinging. */
  static async create(opts: StoreClientOptions): Promise<StoreClient> {
    let engine = opts.engine;
    const ownsEngine = engine === undefined;
    if (engine === undefined) {
      const mod: EngineModule = await import('../engine/index.js');
      engine = new mod.Engine({ onWarning: () => {}, ...opts.engineOptions });
    }
    const slotBytes = opts.stagingSlotBytes ?? defaultStagingSlotBytes;
    const slots = opts.stagingSlots ?? defaultStagingSlots;
    if (!Number.isSafeInteger(slotBytes) || slotBytes < 4096) throw invalid('stagingSlotBytes must be an integer ≥ 4096');
    if (!Number.isSafeInteger(slots) || slots < 1) throw invalid('stagingSlots must be an integer ≥ 1');
    const stagingSeg = engine.createSegment({ size: slotBytes * slots, name: 'staging' });
    const client = new StoreClient(opts, engine, ownsEngine, new StagingPool(stagingSeg, slotBytes, slots));
    client.hostId = engine.info.hostId;
    try {
      await client.mountAll();
    } catch (e) {
      await client.close();
      throw e;
    }
    return client;
  }

  /** Largest payload one put can store (a staging slot minus the checksum trailer). */
  get maxObjectBytes(): number {
    return this.staging.slotBytes - trailerBytes;
  }

  // ------------------------------------------------------------------ mounting and liveness

  private async mountAll(): Promise<void> {
    const mem = this.opts.memory;
    let base = 0;
    const specs: SegmentSpec[] = [];
    if (mem !== undefined) {
      const count = mem.count ?? 1;
      for (let i = 0; i < count; i++) {
        const seg = this.engine.createSegment({ size: mem.size, name: `mem-${i}` });
        this.memory.push(seg);
        const d = seg.descriptor();
        specs.push({
          id: `${this.clientId}/m${seg.id}`,
          name: encodeMemoryName(d),
          base,
          size: seg.size,
          protocol: d.protocol,
          endpoint: d.endpoint,
          ...(this.opts.zone !== undefined ? { zone: this.opts.zone } : {}),
          tier: 'DRAM',
        });
        base += seg.size;
      }
    }
    if (this.opts.disk !== undefined) {
      // O_DIRECT needs 4096-aligned file offsets (the masters align DISK extents to diskAllocAlignmentBytes), I/O
      // lengths (rounded up inside the extent) and memory (staging slots, when the slot size is a multiple).
      const direct = this.staging.slotBytes % diskAllocAlignmentBytes === 0;
      const seg = this.engine.createDiskSegment({ path: this.opts.disk.path, size: this.opts.disk.size, name: 'disk', direct });
      const token = randomBytes(8).toString('hex');
      this.disk = { segment: seg, token, specId: `${this.clientId}/k${seg.id}` };
      const host = this.opts.tierHost ?? (this.opts.engineOptions?.host ?? '127.0.0.1');
      this.tierServer = new RpcServer({ clusterId: this.tierClusterId, nodeId: this.clientId, listen: { host, port: 0 }, logger: this.log });
      this.registerTierRpcs();
      await this.tierServer.start();
      const tierEndpoint = `${host}:${this.tierServer.port}`;
      specs.push({
        id: this.disk.specId,
        name: encodeDiskName(seg.id, token, this.hostId, tierEndpoint),
        base: 0,
        size: seg.size,
        protocol: 'tcp',
        endpoint: tierEndpoint,
        ...(this.opts.zone !== undefined ? { zone: this.opts.zone } : {}),
        tier: 'DISK',
      });
    }
    for (const s of specs) await this.master.mountSegment(s);
    // Pure clients ping too: a silent client is expired, and its exactly-once session with it.
    this.startPing();
  }

  private get tierClusterId(): string {
    return (this.opts.clusterId ?? 'mooring') + tierClusterSuffix;
  }

  private startPing(): void {
    const interval = this.opts.pingIntervalMs ?? 1_000;
    this.pingTimer = setInterval(() => {
      if (this.pingBusy || this.closed) return;
      this.pingBusy = true;
      this.master
        .ping()
        .then((reply) => this.onPing(reply))
        .catch((err) => this.log.debug({ err: String(err) }, 'ping failed'))
        .finally(() => { this.pingBusy = false; });
    }, interval);
    this.pingTimer.unref();
  }

  private onPing(reply: PingReply): void {
    const tasks = (reply as PingReply & { tierTasks?: unknown }).tierTasks;
    if (!Array.isArray(tasks)) return;
    for (const t of tasks) {
      if (typeof t !== 'object' || t === null) continue;
      const task = t as Partial<TierTask>;
      if (typeof task.key !== 'string' || this.tierTasksRunning.has(task.key)) continue;
      if (task.kind === 'demote') {
        this.tierTasksRunning.add(task.key);
        this.track(this.demote(task.key).finally(() => this.tierTasksRunning.delete(task.key!)));
      } else if (task.kind === 'repair' && typeof task.createdIndex === 'number') {
        this.tierTasksRunning.add(task.key);
        this.track(this.repair(task.key, task.createdIndex).finally(() => this.tierTasksRunning.delete(task.key!)));
      }
    }
  }

  private track(p: Promise<unknown>): void {
    const q = p.catch((err) => this.log.debug({ err: String(err) }, 'background tier task failed'));
    this.background.add(q);
    void q.finally(() => this.background.delete(q));
  }

  // ------------------------------------------------------------------ objects

  async put(key: string, bytes: Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    this.checkOpen();
    const replicaNum = options.replicas ?? 1;
    this.checkSize(key, bytes);
    return this.staging.with(async (slot) => {
      const stored = sealInto(slot.view(bytes.length + trailerBytes), key, bytes);
      for (let attempt = 0; ; attempt++) {
        const preferred = options.zoneSpread === true ? await this.zoneSpreadSegments(replicaNum, stored) : await this.avoidSuspects(replicaNum, stored);
        const replicas = await this.master.putStart(key, stored, {
          replicaNum,
          ...(preferred !== undefined ? { preferredSegments: preferred } : {}),
          ...(options.pin === 'soft' ? { softPin: true } : {}),
          ...(options.pin === 'hard' ? { hardPin: true } : {}),
        });
        try {
          await this.writeReplicas(replicas, slot, stored);
        } catch (e) {
          let revoked = false;
          await this.master.putRevoke(key).then(
            () => { revoked = true; },
            (err) => this.log.warn({ key, err: String(err) }, 'PutRevoke failed; the masters reclaim it later'),
          );
          // A replica on a dead storage node (not expired yet): once more, placed away from it.
          if (revoked && attempt < maxPutPlacementRetries && this.suspects.size > 0) continue;
          throw e;
        }
        await this.master.putEnd(key);
        this.stats.puts++;
        return { replicas };
      }
    });
  }

  /**
   * While some segments recently failed a transfer (their owner may be dead and not expired yet), prefer
   * `count` other memory segments with room; undefined when nothing is suspect (the masters' placement decides).
   */
  private async avoidSuspects(count: number, size: number): Promise<string[] | undefined> {
    const now = Date.now();
    for (const [id, until] of this.suspects) if (until <= now) this.suspects.delete(id);
    if (this.suspects.size === 0) return undefined;
    if (now - this.lastRefreshMs > suspectRefreshIntervalMs) await this.refreshSegments(false).catch(() => {});
    const healthy = [...this.segments.values()].filter((r) => r.address.kind === 'memory' && !this.suspects.has(r.spec.id) && r.free >= size);
    for (let i = healthy.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1)); // spread load; placement itself stays with the masters
      [healthy[i], healthy[j]] = [healthy[j]!, healthy[i]!];
    }
    const ids = healthy.slice(0, count).map((r) => r.spec.id);
    return ids.length > 0 ? ids : undefined;
  }

  private suspect(segmentId: string): void {
    this.suspects.set(segmentId, Date.now() + suspectSegmentMs);
  }

  /** The object's bytes; OBJECT_NOT_FOUND when there is no such (complete) object. */
  async get(key: string): Promise<Buffer> {
    this.checkOpen();
    const started = performance.now(); // the read lease counts from the request, on a clock that never steps
    const { replicas, leaseTtlMs } = await this.master.getReplicaList(key);
    const out = await this.readOrAskAgain(key, replicas, started, leaseTtlMs);
    this.stats.gets++;
    return out;
  }

  /**
   * readAny, but when the replica list named only segments unmounted since (SEGMENT_NOT_FOUND: a storage node that
   * left or restarted between the master's answer and this client's segment lookup), asks the master once more: the
   * read then takes effect later, after the unmount, and answers what the object is now (gone: OBJECT_NOT_FOUND;
   * written again: its new bytes) instead of an error naming a segment the caller never chose.
   */
  private async readOrAskAgain(key: string, replicas: ReplicaDescriptor[], started: number, leaseTtlMs: number): Promise<Buffer> {
    try {
      return await this.readAny(key, replicas, started, leaseTtlMs);
    } catch (e) {
      if (!(e instanceof MooringError) || e.code !== ErrorCode.SEGMENT_NOT_FOUND) throw e;
      const again = performance.now();
      const fresh = await this.master.getReplicaList(key);
      return this.readAny(key, fresh.replicas, again, fresh.leaseTtlMs);
    }
  }

  /** Like get, but null when the object does not exist. */
  async tryGet(key: string): Promise<Buffer | null> {
    try {
      return await this.get(key);
    } catch (e) {
      if (e instanceof MooringError && (e.code === ErrorCode.OBJECT_NOT_FOUND || e.code === ErrorCode.OBJECT_NOT_READY)) return null;
      throw e;
    }
  }

  async exists(key: string): Promise<boolean> {
    return this.master.existKey(key);
  }

  async remove(key: string, force = false): Promise<void> {
    this.checkOpen();
    await this.master.remove(key, force);
    this.diskHits.delete(key);
    this.stats.removes++;
  }

  async batchPut(items: Array<{ key: string; bytes: Uint8Array }>, options: PutOptions = {}): Promise<BatchItemResult<PutResult>[]> {
    this.checkOpen();
    const replicaNum = options.replicas ?? 1;
    for (const it of items) this.checkSize(it.key, it.bytes);
    const starts = (await this.master.batchPutStart(items.map((it) => ({
      key: it.key,
      size: it.bytes.length + trailerBytes,
      replicaNum,
      ...(options.pin === 'soft' ? { softPin: true } : {}),
      ...(options.pin === 'hard' ? { hardPin: true } : {}),
    })))) as Array<{ ok: boolean; value?: { replicas: ReplicaDescriptor[] }; error?: unknown }>;
    const results: BatchItemResult<PutResult>[] = items.map((it, i) => {
      const r = starts[i];
      if (r?.ok === true && r.value !== undefined) return { key: it.key, ok: true, value: { replicas: r.value.replicas } };
      return { key: it.key, ok: false, error: MooringError.fromWire(r?.error) };
    });
    await Promise.all(items.map(async (it, i) => {
      const res = results[i]!;
      if (!res.ok) return;
      try {
        await this.staging.with(async (slot) => {
          const stored = sealInto(slot.view(it.bytes.length + trailerBytes), it.key, it.bytes);
          await this.writeReplicas(res.value!.replicas, slot, stored);
        });
      } catch (e) {
        res.ok = false;
        res.error = asMooringError(e);
      }
    }));
    const done = results.filter((r) => r.ok).map((r) => r.key);
    const failed = results.filter((r) => !r.ok && starts[results.indexOf(r)]?.ok === true).map((r) => r.key);
    if (failed.length > 0) await this.master.batchPutRevoke(failed).catch(() => {});
    if (done.length > 0) {
      const ends = (await this.master.batchPutEnd(done)) as Array<{ ok: boolean; error?: unknown }>;
      done.forEach((k, i) => {
        const e = ends[i];
        const res = results.find((r) => r.key === k)!;
        if (e?.ok !== true) {
          res.ok = false;
          res.error = MooringError.fromWire(e?.error);
        } else this.stats.puts++;
      });
    }
    return results;
  }

  async batchGet(keys: string[]): Promise<BatchItemResult<Buffer>[]> {
    this.checkOpen();
    const started = performance.now(); // the read lease counts from the request, on a clock that never steps
    const lists = (await this.master.batchGetReplicaList(keys)) as Array<{ ok: boolean; value?: { replicas: ReplicaDescriptor[]; leaseTtlMs: number }; error?: unknown }>;
    return Promise.all(keys.map(async (key, i) => {
      const r = lists[i];
      if (r?.ok !== true || r.value === undefined) return { key, ok: false, error: MooringError.fromWire(r?.error) };
      try {
        const value = await this.readOrAskAgain(key, r.value.replicas, started, r.value.leaseTtlMs);
        this.stats.gets++;
        return { key, ok: true, value };
      } catch (e) {
        return { key, ok: false, error: asMooringError(e) };
      }
    }));
  }

  async batchRemove(keys: string[], force = false): Promise<BatchItemResult<null>[]> {
    return Promise.all(keys.map(async (key) => {
      try {
        await this.remove(key, force);
        return { key, ok: true, value: null };
      } catch (e) {
        return { key, ok: false, error: asMooringError(e) };
      }
    }));
  }

  private checkSize(key: string, bytes: Uint8Array): void {
    if (typeof key !== 'string' || key.length === 0) throw invalid('key must be a non-empty string');
    if (!(bytes instanceof Uint8Array)) throw invalid('bytes must be a Uint8Array or Buffer');
    if (bytes.length + trailerBytes > this.staging.slotBytes) {
      throw invalid(`object ${key} is ${bytes.length} bytes; this client moves at most ${this.maxObjectBytes} bytes per object (raise stagingSlotBytes)`);
    }
  }

  private async zoneSpreadSegments(replicaNum: number, size: number): Promise<string[] | undefined> {
    const list = (await this.master.listSegments()) as Array<{ id: string; zone: string; tier: string; status: string; capacityBytes?: number; allocatedBytes?: number }>;
    const byZone = new Map<string, { id: string; free: number }>();
    for (const s of list) {
      if (s.tier === 'DISK' || s.status !== 'OK') continue;
      const free = (s.capacityBytes ?? 0) - (s.allocatedBytes ?? 0);
      if (free < size) continue;
      const cur = byZone.get(s.zone);
      if (cur === undefined || free > cur.free) byZone.set(s.zone, { id: s.id, free });
    }
    const ids = [...byZone.values()].sort((a, b) => b.free - a.free).slice(0, replicaNum).map((x) => x.id);
    return ids.length > 0 ? ids : undefined;
  }

  // ------------------------------------------------------------------ replica I/O

  private async writeReplicas(replicas: ReplicaDescriptor[], slot: Slot, length: number): Promise<void> {
    const memory: TransferRequest[] = [];
    const memorySegs: string[] = [];
    const others: Array<Promise<void>> = [];
    for (const r of replicas) {
      if (r.length !== length) throw new MooringError(ErrorCode.INTERNAL, `replica length ${r.length} is not the stored length ${length}`);
      const res = await this.resolve(r.segmentId);
      if (res.address.kind === 'memory') {
        memorySegs.push(r.segmentId);
        memory.push({ op: 'write', local: { segment: this.staging.segment, offset: slot.offset }, remote: { segment: res.address.descriptor, offset: r.offset }, length });
      } else {
        others.push(this.writeDisk(res, r.offset, slot, length));
      }
    }
    if (memory.length > 0) {
      others.push(this.engine.transfer(memory, { timeoutMs: this.transferTimeoutMs }).then((results) => {
        const bad = results.findIndex((r) => r.status !== 'completed');
        results.forEach((r, i) => {
          if (r.status !== 'completed') this.suspect(memorySegs[i]!);
        });
        if (bad >= 0) {
          const r = results[bad]!;
          throw new MooringError(r.status === 'timeout' ? ErrorCode.TIMEOUT : (r.code ?? ErrorCode.TRANSFER_FAILED), `replica on ${memorySegs[bad]}: ${r.message ?? r.status}`);
        }
      }));
    }
    const settled = await Promise.allSettled(others);
    const bad = settled.find((s) => s.status === 'rejected');
    if (bad !== undefined) throw asMooringError((bad as PromiseRejectedResult).reason, ErrorCode.TRANSFER_FAILED);
  }

  /** Reads one replica into `slot` and returns the verified payload (a view of the slot). */
  private async readReplica(key: string, r: ReplicaDescriptor, slot: Slot): Promise<Buffer> {
    if (r.length > slot.bytes) throw invalid(`replica of ${key} is ${r.length} bytes, more than a staging slot (${slot.bytes})`);
    const res = await this.resolve(r.segmentId);
    if (res.address.kind === 'memory') {
      await this.engine.transferOrThrow(
        [{ op: 'read', local: { segment: this.staging.segment, offset: slot.offset }, remote: { segment: res.address.descriptor, offset: r.offset }, length: r.length }],
        { timeoutMs: this.transferTimeoutMs },
      ).catch((e: unknown) => { throw outOfReach(e, `the engine at ${res.spec.endpoint} no longer holds segment ${r.segmentId} (its owner restarted?)`); });
    } else {
      await this.readDisk(res, r.offset, slot, r.length);
    }
    return unseal(slot.view(r.length), key);
  }

  /** Nearest first: our own engine, same host, same zone, others; DISK replicas last. */
  private async order(replicas: ReplicaDescriptor[]): Promise<ReplicaDescriptor[]> {
    const score = async (r: ReplicaDescriptor): Promise<number> => {
      if (r.tier === 'DISK') return 10;
      const res = await this.resolve(r.segmentId).catch(() => null);
      if (res === null) return 20;
      if (res.spec.clientId === this.clientId) return 0;
      if (res.address.kind === 'memory' && res.address.descriptor.hostId === this.hostId) return 1;
      if (this.opts.zone !== undefined && res.spec.zone === this.opts.zone) return 2;
      return 3;
    };
    const scored = await Promise.all(replicas.map(async (r) => ({ r, s: await score(r) })));
    return scored.sort((a, b) => a.s - b.s).map((x) => x.r);
  }

  private async readAny(key: string, replicas: ReplicaDescriptor[], started: number, leaseTtlMs: number): Promise<Buffer> {
    const ordered = await this.order(replicas);
    let lastError: MooringError | null = null;
    return this.staging.with(async (slot) => {
      for (const r of ordered) {
        try {
          const payload = await this.readReplica(key, r, slot);
          // Bytes read after the lease ran out may belong to a newer version at the same place.
          // Monotonic: a wall clock stepped back meanwhile must not make a read that outlived its lease look in time.
          if (performance.now() - started > leaseTtlMs * leaseSafetyRatio) {
            throw new MooringError(ErrorCode.LEASE_EXPIRED, `the read of ${key} outlived its read lease; retry`);
          }
          const out = Buffer.from(payload); // copy out of the slot before it is reused
          if (r.tier === 'DISK') this.onDiskHit(key, out, replicas);
          return out;
        } catch (e) {
          const err = asMooringError(e, ErrorCode.TRANSFER_FAILED);
          if (err.code === ErrorCode.LEASE_EXPIRED) throw err;
          if (err.code === ErrorCode.CHECKSUM_MISMATCH) this.stats.checksumMismatches++;
          else this.suspect(r.segmentId);
          this.stats.replicaReadFailures++;
          this.log.debug({ key, segment: r.segmentId, err: err.message }, 'replica read failed; trying the next');
          lastError = err;
        }
      }
      throw lastError ?? new MooringError(ErrorCode.OBJECT_NOT_FOUND, `object ${key} has no replica`);
    });
  }

  // ------------------------------------------------------------------ segment resolution

  private async resolve(segmentId: string): Promise<Resolved> {
    let r = this.segments.get(segmentId);
    if (r !== undefined) return r;
    await this.refreshSegments(true);
    r = this.segments.get(segmentId);
    if (r === undefined) throw new MooringError(ErrorCode.SEGMENT_NOT_FOUND, `segment ${segmentId} is not mounted (its owner may be gone)`);
    return r;
  }

  private async refreshSegments(force: boolean): Promise<void> {
    if (this.refreshing !== null) return this.refreshing;
    if (!force && Date.now() - this.lastRefreshMs < minSegmentRefreshIntervalMs) return;
    const wait = Math.max(0, this.lastRefreshMs + minSegmentRefreshIntervalMs - Date.now());
    this.refreshing = (async () => {
      if (wait > 0) await sleep(wait);
      const list = (await this.master.listSegments()) as Array<{ id: string; name: string; clientId: string; size: number; endpoint: string; zone: string; tier: 'DRAM' | 'VRAM' | 'DISK'; status?: string; capacityBytes?: number; allocatedBytes?: number }>;
      this.segments.clear();
      for (const s of list) {
        const address = decodeAddress(s);
        if (address === null) continue;
        const free = s.status === undefined || s.status === 'OK' ? (s.capacityBytes ?? s.size) - (s.allocatedBytes ?? 0) : 0;
        this.segments.set(s.id, { spec: { id: s.id, clientId: s.clientId, zone: s.zone, tier: s.tier, endpoint: s.endpoint }, address, free });
      }
      this.lastRefreshMs = Date.now();
    })().finally(() => { this.refreshing = null; });
    return this.refreshing;
  }

  // ------------------------------------------------------------------ DISK tier

  private ownDisk(res: Resolved): DiskSegment | null {
    if (res.address.kind !== 'disk' || this.disk === null) return null;
    return res.address.diskId === this.disk.segment.id && res.address.token === this.disk.token ? this.disk.segment : null;
  }

  private tierClient(endpoint: string): RpcClient {
    let c = this.tierClients.get(endpoint);
    if (c === undefined) {
      const { host, port } = parseEndpoint(endpoint);
      c = new RpcClient({ host, port, clusterId: this.tierClusterId, nodeId: this.clientId, defaultTimeoutMs: tierRpcTimeoutMs, logger: this.log });
      this.tierClients.set(endpoint, c);
    }
    return c;
  }

  /** I/O length on our DISK segment: whole O_DIRECT blocks (the extent is reserved in whole blocks too). */
  private diskIoBytes(length: number): number {
    if (this.disk === null || !this.disk.segment.direct) return length;
    return Math.ceil(length / diskAllocAlignmentBytes) * diskAllocAlignmentBytes;
  }

  private async writeDisk(res: Resolved, offset: number, slot: Slot, length: number): Promise<void> {
    const own = this.ownDisk(res);
    if (own !== null) {
      await tierOrThrow(this.engine.offload([{ dram: { segment: this.staging.segment, offset: slot.offset }, disk: { segment: own, offset }, length: this.diskIoBytes(length) }], { timeoutMs: this.transferTimeoutMs }));
      return;
    }
    const a = res.address as Extract<SegmentAddress, { kind: 'disk' }>;
    await this.tierClient(a.tierEndpoint).call('diskWrite', { diskId: a.diskId, token: a.token, offset, data: Buffer.from(slot.view(length)) });
  }

  private async readDisk(res: Resolved, offset: number, slot: Slot, length: number): Promise<void> {
    const own = this.ownDisk(res);
    if (own !== null) {
      await tierOrThrow(this.engine.promote([{ dram: { segment: this.staging.segment, offset: slot.offset }, disk: { segment: own, offset }, length: this.diskIoBytes(length) }], { timeoutMs: this.transferTimeoutMs }));
      return;
    }
    if (res.address.kind !== 'disk') throw new MooringError(ErrorCode.INTERNAL, 'not a disk segment');
    const endpoint = res.address.tierEndpoint;
    const data = await this.tierClient(endpoint).call<Uint8Array>('diskRead', { diskId: res.address.diskId, token: res.address.token, offset, length })
      .catch((e: unknown) => { throw outOfReach(e, `the tier server at ${endpoint} no longer holds disk segment ${res.spec.id} (its owner restarted?)`); });
    if (!(data instanceof Uint8Array) || data.length !== length) throw new MooringError(ErrorCode.TRANSFER_FAILED, 'tier server returned a short read');
    slot.view(length).set(data);
  }

  /** The tier RPC server: other clients' reads and writes of our DISK segment. Bad input is an error reply. */
  private registerTierRpcs(): void {
    const server = this.tierServer!;
    const check = (a: unknown, needData: boolean): { offset: number; length: number; data?: Uint8Array } => {
      if (typeof a !== 'object' || a === null) throw invalid('arguments must be an object');
      const o = a as Record<string, unknown>;
      const disk = this.disk;
      if (disk === null || o.diskId !== disk.segment.id || o.token !== disk.token) {
        throw new MooringError(ErrorCode.SEGMENT_NOT_FOUND, 'no such disk segment here (stale descriptor?)');
      }
      const offset = o.offset;
      const data = needData ? o.data : undefined;
      if (needData && !(data instanceof Uint8Array)) throw invalid('data must be bytes');
      const length = needData ? (data as Uint8Array).length : o.length;
      if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) throw invalid('offset must be a non-negative integer');
      if (typeof length !== 'number' || !Number.isSafeInteger(length) || length <= 0 || length > this.staging.slotBytes) {
        throw invalid(`length must be in 1..${this.staging.slotBytes}`);
      }
      if (offset + this.diskIoBytes(length) > disk.segment.size) throw new MooringError(ErrorCode.OUT_OF_RANGE, 'outside the disk segment');
      return { offset, length, ...(data !== undefined ? { data: data as Uint8Array } : {}) };
    };
    server.handle('diskRead', async (a) => {
      const { offset, length } = check(a, false);
      return this.staging.with(async (slot) => {
        await tierOrThrow(this.engine.promote([{ dram: { segment: this.staging.segment, offset: slot.offset }, disk: { segment: this.disk!.segment, offset }, length: this.diskIoBytes(length) }], { timeoutMs: this.transferTimeoutMs }));
        return Buffer.from(slot.view(length));
      });
    });
    server.handle('diskWrite', async (a) => {
      const { offset, length, data } = check(a, true);
      await this.staging.with(async (slot) => {
        slot.view(length).set(data!);
        await tierOrThrow(this.engine.offload([{ dram: { segment: this.staging.segment, offset: slot.offset }, disk: { segment: this.disk!.segment, offset }, length: this.diskIoBytes(length) }], { timeoutMs: this.transferTimeoutMs }));
      });
      return null;
    });
  }

  /** Demotion task from the master: OffloadStart → copy a memory replica to the DISK replica → OffloadEnd. */
  async demote(key: string): Promise<boolean> {
    let started = false;
    try {
      const plan = await this.master.write('offloadStart', { key });
      started = true;
      await this.staging.with(async (slot) => {
        const sources = await this.order(plan.source.filter((r) => r.tier !== 'DISK'));
        let copied = false;
        let lastErr: unknown = null;
        for (const r of sources) {
          try {
            await this.readReplica(key, r, slot); // verifies the checksum: never demote damaged bytes
            copied = true;
            break;
          } catch (e) {
            lastErr = e;
          }
        }
        if (!copied) throw asMooringError(lastErr, ErrorCode.TRANSFER_FAILED);
        await this.writeDisk(await this.resolve(plan.target.segmentId), plan.target.offset, slot, plan.target.length);
      });
      await this.endUnderLease(() => this.master.write('offloadEnd', { key }));
      this.stats.demotions++;
      return true;
    } catch (e) {
      this.stats.demotionFailures++;
      if (started) await this.master.write('offloadRevoke', { key }).catch(() => {});
      this.log.info({ key, err: String(e) }, 'demotion failed');
      return false;
    }
  }

  /**
   * Re-replication task from the master: RepairStart (one more replica is allocated) → copy a replica whose
   * checksum verifies (never damaged bytes) → RepairEnd. On failure RepairRevoke frees the new extent.
   */
  async repair(key: string, createdIndex: number): Promise<boolean> {
    let repairId: number | null = null;
    try {
      const plan = await this.master.write('repairStart', { key, createdIndex });
      repairId = plan.repairId;
      await this.staging.with(async (slot) => {
        let copied = false;
        let lastErr: unknown = null;
        for (const r of await this.order(plan.source)) {
          try {
            await this.readReplica(key, r, slot);
            copied = true;
            break;
          } catch (e) {
            lastErr = e;
          }
        }
        if (!copied) throw asMooringError(lastErr, ErrorCode.TRANSFER_FAILED);
        await this.writeReplicas([plan.target], slot, plan.target.length);
      });
      await this.master.write('repairEnd', { key, repairId });
      this.stats.repairs++;
      return true;
    } catch (e) {
      this.stats.repairFailures++;
      if (repairId !== null) await this.master.write('repairRevoke', { key, repairId }).catch(() => {});
      this.log.info({ key, err: String(e) }, 'repair failed');
      return false;
    }
  }

  /** UpsertEnd/OffloadEnd are refused while someone holds a read lease: retry until it runs out. */
  private async endUnderLease(fn: () => Promise<unknown>): Promise<void> {
    const deadline = Date.now() + 10_000 + leaseRetrySlackMs;
    for (;;) {
      try {
        await fn();
        return;
      } catch (e) {
        if (!(e instanceof MooringError) || e.code !== ErrorCode.OBJECT_HAS_LEASE || Date.now() > deadline || this.closed) throw e;
        await sleep(leaseRetryIntervalMs);
      }
    }
  }

  private onDiskHit(key: string, bytes: Buffer, readFrom: ReplicaDescriptor[]): void {
    this.stats.diskHits++;
    const n = (this.diskHits.get(key) ?? 0) + 1;
    this.diskHits.delete(key);
    this.diskHits.set(key, n);
    if (this.diskHits.size > maxTrackedDiskKeys) this.diskHits.delete(this.diskHits.keys().next().value!);
    if (n >= this.promoteAfterHits && !this.promoting.has(key) && this.promoting.size < maxConcurrentPromotions) {
      this.promoting.add(key);
      this.track(this.promote(key, bytes, readFrom).finally(() => this.promoting.delete(key)));
    }
  }

  /**
   * Promotion on hit: UpsertStart (new DRAM replicas, pending) → check, with a linearizable read, that the
   * object still has exactly the replicas our bytes came from (an object with an upsert pending can no longer be
   * removed or replaced without force) → write → UpsertEnd, which swaps the DRAM replicas in and frees the DISK
   * one. Any change in between revokes: we never install bytes of another version.
   */
  private async promote(key: string, bytes: Buffer, readFrom: ReplicaDescriptor[]): Promise<void> {
    if (readFrom.some((r) => r.tier !== 'DISK')) return;
    const sameAs = (list: ReplicaDescriptor[]): boolean =>
      list.length === readFrom.length && list.every((r, i) => r.segmentId === readFrom[i]!.segmentId && r.offset === readFrom[i]!.offset);
    // Cheap pre-check: an UpsertStart on a key removed meanwhile would create (and then revoke) an object.
    if (!sameAs((await this.master.getReplicaList(key)).replicas)) return;
    let started = false;
    try {
      await this.staging.with(async (slot) => {
        const stored = sealInto(slot.view(bytes.length + trailerBytes), key, bytes);
        const v = await this.master.write('upsertStart', { key, size: stored, replicaNum: 1, tier: 'DRAM' });
        started = true;
        if (!sameAs((await this.master.getReplicaList(key)).replicas)) throw new MooringError(ErrorCode.OBJECT_NOT_READY, `${key} changed while being promoted`);
        await this.writeReplicas(v.replicas, slot, stored);
      });
      await this.endUnderLease(() => this.master.write('upsertEnd', { key }));
      this.diskHits.delete(key);
      this.stats.promotions++;
    } catch (e) {
      this.stats.promotionFailures++;
      if (started) await this.master.write('upsertRevoke', { key }).catch(() => {});
      this.log.info({ key, err: String(e) }, 'promotion failed');
    }
  }

  // ------------------------------------------------------------------ lifecycle

  private checkOpen(): void {
    if (this.closed) throw new MooringError(ErrorCode.SHUTTING_DOWN, 'StoreClient closed');
  }

  /** Waits for background tier tasks (tests use it to observe promotions/demotions). */
  async settle(): Promise<void> {
    while (this.background.size > 0) await Promise.all([...this.background]);
  }

  /** Unmounts nothing (a crashed client and a closed one look alike to the masters: its segments expire). */
  async close(options: { unmount?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (options.unmount === true) {
      for (const s of this.memory) await this.master.unmountSegment(`${this.clientId}/m${s.id}`).catch(() => {});
      if (this.disk !== null) await this.master.unmountSegment(this.disk.specId).catch(() => {});
    }
    this.closed = true;
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    await Promise.race([this.settle(), sleep(2_000)]);
    this.staging.close();
    await this.master.close();
    for (const c of this.tierClients.values()) await c.close();
    await this.tierServer?.close();
    if (this.ownsEngine) await this.engine.close();
  }
}

/**
 * A replica's owner answered that it does not hold the segment: it restarted (the masters list the old segment until
 * the old client expires). The replica is out of reach, as a dead owner's is: TRANSFER_FAILED. The segment itself
 * still exists, so not SEGMENT_NOT_FOUND, which a get answers by asking the masters again (readOrAskAgain).
 */
function outOfReach(e: unknown, message: string): unknown {
  return e instanceof MooringError && e.code === ErrorCode.SEGMENT_NOT_FOUND ? new MooringError(ErrorCode.TRANSFER_FAILED, message) : e;
}

function invalid(message: string): MooringError {
  return new MooringError(ErrorCode.INVALID_ARGUMENT, message);
}

function asMooringError(e: unknown, fallback: ErrorCode = ErrorCode.INTERNAL): MooringError {
  if (e instanceof MooringError) return e;
  const code = (e as { code?: unknown })?.code;
  return new MooringError(typeof code === 'string' && code in ErrorCode ? (code as ErrorCode) : fallback, e instanceof Error ? e.message : String(e));
}

async function tierOrThrow(p: Promise<Array<{ status: string; code?: ErrorCode; message?: string }>>): Promise<void> {
  const [r] = await p;
  if (r === undefined || r.status !== 'completed') {
    throw new MooringError(r?.status === 'timeout' ? ErrorCode.TIMEOUT : (r?.code ?? ErrorCode.TRANSFER_FAILED), `disk tier: ${r?.message ?? r?.status ?? 'no result'}`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export type { SegmentDescriptor };
