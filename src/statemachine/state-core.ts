/**
 * StateCore: the in-memory, deterministic heart of the master state machine (no I/O, no clock, no Math.random).
 * `apply(entry)` depends only on the current state and the entry: time is the leader's stamp `entry.timeMs`,
 * randomness is SeededRng(entry.index). MasterState wraps it with LevelDB persistence; tests and the simulator
 * may use it directly.
 *
 * Every handler checks all its preconditions before changing anything, so an error result leaves the state as it
 * was (batch commands do this per item). An exception that is not a MooringError is a bug and propagates.
 * Mutations are recorded in the dirty sets, which MasterState turns into one LevelDB batch.
 */
import { ErrorCode, MooringError, assert } from '../errors.js';
import { SeededRng } from '../util/rng.js';
import type {
  Command,
  EvictItem,
  PlacementStrategy,
  PutOptions,
  ReplicaDescriptor,
  Result,
  SegmentSpec,
  Tier,
} from './commands.js';
import { errResult, isClientCommand, okResult, validateCommand } from './commands.js';
import { isStorageClient, type ClientRecord } from './clients.js';
import type { LeaseTable } from './leases.js';
import * as L from './limits.js';
import type { ObjectRecord, Replica } from './objects.js';
import { describeReplica, isComplete, isPinned, isSettled, liveReplicas, readableReplicas } from './objects.js';
import { placeReplicas } from './placement.js';
import { SegmentIndex } from './segment-index.js';
import { boundedDrainStateVersion, sealedRefusalStateVersion, sessionEpochStateVersion, supportedStateVersion } from './state-version.js';
import type { Segment, SegmentInfo } from './segments.js';
import { isMemoryTier, overlaps, sameSpec, segmentFromSpec, segmentInfo } from './segments.js';

/** Options that change what apply computes: every replica of the cluster must use the same values. */
export interface StateOptions {
  allocAlignmentBytes: number;
  placement: PlacementStrategy;
  softPinTtlMs: number;
}

export const defaultStateOptions: StateOptions = {
  allocAlignmentBytes: L.defaultAllocAlignmentBytes,
  placement: 'random',
  softPinTtlMs: L.defaultSoftPinTtlMs,
};

export interface ApplyEntry {
  index: number;
  /** The leader's clock when it proposed the entry (ms since epoch). */
  timeMs: number;
  command: Command;
}

export interface StateStats {
  appliedIndex: number;
  objectCount: number;
  /** Objects with a PutStart, UpsertStart or OffloadStart not ended yet. */
  inFlightCount: number;
  segmentCount: number;
  /** Storage clients (admin CLI sessions without segments are not counted). */
  clientCount: number;
  /** DRAM + VRAM segments (the eviction watermark is computed over these). */
  memoryCapacityBytes: number;
  memoryAllocatedBytes: number;
  memoryUsageRatio: number;
  diskCapacityBytes: number;
  diskAllocatedBytes: number;
}

export interface PutStartValue {
  replicas: ReplicaDescriptor[];
}
/** COMPLETE: readable and settled; UPSERTING / OFFLOADING: readable, with a new version or a DISK copy in flight. */
export type ObjectStatus = 'COMPLETE' | 'UPSERTING' | 'OFFLOADING';

export interface GetReplicaListValue {
  replicas: ReplicaDescriptor[];
  leaseTtlMs: number;
  /** The object's size in bytes (every replica holds all of it). */
  size: number;
  status: ObjectStatus;
}
/**
 * Where StateCore.replicaListInto hands a replica list: `ok` with the object's size, status, lease TTL and its
 * replicas (each on `segments.get(r.segmentId)`, always present: a replica's segment is never dropped before it),
 * or `fail` with the error result. Both are called synchronously, once.
 */
export interface ReplicaListSink<T> {
  ok(size: number, status: ObjectStatus, leaseTtlMs: number, replicas: readonly Replica[], segments: ReadonlyMap<string, Segment>): T;
  fail(result: Result<never>): T;
}
export interface PingValue {
  status: 'OK' | 'NEED_REMOUNT';
  viewVersion: number;
}

/**
 * A refusal becomes a result on the wire, never a stack trace: created without capturing one (capturing it was ~5% of
 * the apply path where refusals are common, e.g. a put of an existing key replayed on every replica).
 */
function fail(code: ErrorCode, message?: string): never {
  throw MooringError.replyOnly(code, message);
}

function insertSorted(list: string[], id: string): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! < id) lo = mid + 1;
    else hi = mid;
  }
  if (list[lo] !== id) list.splice(lo, 0, id);
}

export class StateCore {
  readonly options: StateOptions;
  appliedIndex = 0;
  readonly objects = new Map<string, ObjectRecord>();
  readonly segments = new Map<string, Segment>();
  /** Segments in id order: the canonical order placement scans. */
  readonly ordered: Segment[] = [];
  readonly clients = new Map<string, ClientRecord>();
  /** Exactly-once replies per client, by seq (at most sessionReplyWindow each; stored one record per slot). */
  readonly replies = new Map<string, Map<number, Result>>();
  /** Keys with a version, upsert or offload still PROCESSING (what planReclaim looks at). */
  readonly inFlight = new Set<string>();
  /** Per segment, the objects with a replica there: drains and forced removals visit only those. */
  readonly onSegment = new SegmentIndex();
  /** Which command forms the cluster applies (state-version.ts); raised by SetStateVersion, never lowered. */
  stateVersion = 1;
  /** SetStateVersion raised it since the last drainChanges(): MasterState stores it with those changes. */
  stateVersionChanged = false;

  // Changes since the last drainChanges(): MasterState writes them in one batch.
  dirtyObjects = new Set<string>();
  dirtySegments = new Set<string>();
  dirtyClients = new Set<string>();
  /**
   * Where each client's replies are stored: slot (0 ≤ slot < sessionReplyWindow) → seq, -1 when empty. A reply
   * that enters a full window takes the slot of the one it pushes out, so the store overwrites one record per new
   * reply and never re-encodes the rest of the window. Storage detail only: not part of the state hash.
   */
  readonly replySlots = new Map<string, number[]>();
  /** Reply slots written since the last drain, per client, as a bit mask (bit i = slot i). */
  dirtyReplies = new Map<string, number>();

  private now = 0;
  private index = 0;
  private rngCache: SeededRng | null = null;

  constructor(options: Partial<StateOptions> = {}) {
    this.options = { ...defaultStateOptions, ...options };
  }

  // ------------------------------------------------------------------ apply

  /** Apply one committed entry. Never throws for bad commands (they become error results). */
  apply(entry: ApplyEntry): Result {
    if (!(entry.index > this.appliedIndex)) assert(false, `entry ${entry.index} is not after applied index ${this.appliedIndex}`);
    this.index = entry.index;
    this.now = entry.timeMs;
    this.rngCache = null;
    const result = this.applyCommand(entry.command);
    this.onSegment.settle();
    this.appliedIndex = entry.index;
    return result;
  }

  /** Advance the applied index for an entry that carries no command (no-op, membership change). */
  applyNoop(index: number): void {
    if (!(index > this.appliedIndex)) assert(false, `entry ${index} is not after applied index ${this.appliedIndex}`);
    this.appliedIndex = index;
  }

  private applyCommand(cmd: Command): Result {
    try {
      validateCommand(cmd);
    } catch (e) {
      if (e instanceof MooringError) return { ok: false, error: e.toWire() };
      throw e;
    }
    if (!isClientCommand(cmd)) return this.guard(() => this.run(cmd));
    // Before version 4 a replica does not know SealRefusal (it refuses it unrecorded): so does this one.
    if (cmd.type === 'SealRefusal' && this.stateVersion < sealedRefusalStateVersion) return errResult(ErrorCode.INVALID_ARGUMENT, `SealRefusal needs state version ${sealedRefusalStateVersion} (the cluster is at ${this.stateVersion})`);
    if (cmd.type === 'OpenSession') return this.guard(() => this.openSession(cmd.clientId, cmd.nonce));
    // A session's writes only while it is open (state version 3): not after its client expired, not once a newer
    // session (another process with this client id) opened. Checked before the reply window, which belongs to the
    // open session: a retry of an earlier session must not get a reply of the current one.
    if (cmd.epoch !== undefined && this.stateVersion >= sessionEpochStateVersion) {
      const open = this.clients.get(cmd.clientId)?.epoch;
      if (open !== cmd.epoch) {
        return errResult(ErrorCode.SESSION_EXPIRED, `session ${String(cmd.epoch)} of client ${cmd.clientId} is not open (${open === undefined || open === 0 ? 'the client expired or never opened one' : `session ${open} replaced it`}); open a new session`);
      }
    }
    const seq = cmd.seq;
    if (seq !== undefined) {
      // Exactly-once: a retry returns the first reply and changes nothing.
      const prev = this.replies.get(cmd.clientId)?.get(seq);
      if (prev !== undefined) return prev;
      const c = this.clients.get(cmd.clientId);
      if (c !== undefined && seq <= c.retiredSeq) {
        // Not applied now, but the write's first attempt may have been (its reply left the window): not definite.
        return errResult(ErrorCode.INVALID_ARGUMENT, `seq ${seq} is older than the reply window of client ${cmd.clientId}; an earlier attempt of it may have applied`, { definite: false });
      }
    }
    this.touchClient(cmd.clientId);
    const result = this.guard(() => this.run(cmd));
    if (seq !== undefined) this.remember(cmd.clientId, seq, result);
    return result;
  }

  private guard(fn: () => unknown): Result {
    try {
      return okResult(fn() ?? null);
    } catch (e) {
      if (e instanceof MooringError) return { ok: false, error: e.toWire() };
      throw e;
    }
  }

  private run(cmd: Command): unknown {
    switch (cmd.type) {
      case 'MountSegment':
        return this.mount(cmd.clientId, cmd.segment);
      case 'ReMountSegment':
        return cmd.segments.map((s) => this.guard(() => this.mount(cmd.clientId, s)));
      case 'UnmountSegment':
        return this.unmount(cmd.segmentId, cmd.graceful === true);
      case 'PutStart':
        return this.putStart(cmd.clientId, cmd, cmd.evictable, false);
      case 'UpsertStart':
        return this.putStart(cmd.clientId, cmd, cmd.evictable, true);
      case 'BatchPutStart':
        return cmd.items.map((it) => this.guard(() => this.putStart(cmd.clientId, it, cmd.evictable, false)));
      case 'PutEnd':
      case 'UpsertEnd':
        return this.putEnd(cmd.key);
      case 'PutRevoke':
      case 'UpsertRevoke':
        return this.putRevoke(cmd.key);
      case 'BatchPutEnd':
        return cmd.keys.map((k) => this.guard(() => this.putEnd(k)));
      case 'BatchPutRevoke':
        return cmd.keys.map((k) => this.guard(() => this.putRevoke(k)));
      case 'Remove':
        return this.remove(cmd.key, cmd.force === true);
      case 'RemoveAll':
        return this.removeMatching(() => true, cmd.force === true, cmd.skipKeys);
      case 'RemoveByPrefix':
        return this.removeMatching((k) => k.startsWith(cmd.prefix), cmd.force === true, cmd.skipKeys);
      case 'SetNodeStatus':
        return this.setNodeStatus(cmd.nodeId, cmd.status);
      case 'OffloadStart':
        return this.offloadStart(cmd.key);
      case 'OffloadEnd':
        return this.offloadEnd(cmd.key);
      case 'OffloadRevoke':
        return this.offloadRevoke(cmd.key);
      case 'RepairStart':
        return this.repairStart(cmd.key, cmd.createdIndex);
      case 'RepairEnd':
        return this.repairEnd(cmd.key, cmd.repairId);
      case 'RepairRevoke':
        return this.repairRevoke(cmd.key, cmd.repairId);
      case 'ExpireClients':
        return this.expireClients(cmd.clientIds, cmd.clientTtlMs);
      case 'ReclaimPuts':
        return this.reclaimPuts(cmd.keys, cmd.putTimeoutMs);
      case 'Evict':
        return { evicted: cmd.items.filter((it) => this.tryEvict(it, null)).map((it) => it.key) };
      case 'DrainSegments':
        return this.drainSegments(cmd.segmentIds, cmd.skipKeys, cmd.keys);
      case 'SetStateVersion':
        return this.setStateVersion(cmd.version);
      case 'SealRefusal':
        // Recorded below as this seq's answer (applyCommand's reply window): no attempt of the write applies after it.
        throw MooringError.replyOnly(cmd.code as ErrorCode, cmd.message, { sealed: true });
    }
  }

  private get rng(): SeededRng {
    // Randomness only from the entry's index: every replica draws the same numbers.
    if (this.rngCache === null) this.rngCache = new SeededRng(this.index);
    return this.rngCache;
  }

  // ------------------------------------------------------------------ clients and sessions

  private touchClient(clientId: string): ClientRecord {
    let c = this.clients.get(clientId);
    if (c === undefined) {
      c = { clientId, nodeStatus: 'ACTIVE', lastSeenMs: this.now, segmentIds: [], retiredSeq: 0 };
      this.clients.set(clientId, c);
    } else if (this.now > c.lastSeenMs) {
      c.lastSeenMs = this.now;
    }
    this.dirtyClients.add(clientId);
    return c;
  }

  /**
   * OpenSession: the client's session becomes this entry's index, with an empty reply window (the previous session's
   * replies are dropped with it: its writes are refused from now on). The same nonce again (a retried OpenSession)
   * returns the open session unchanged.
   */
  private openSession(clientId: string, nonce: string): { epoch: number } {
    if (this.stateVersion < sessionEpochStateVersion) fail(ErrorCode.INVALID_ARGUMENT, `OpenSession needs state version ${sessionEpochStateVersion} (the cluster is at ${this.stateVersion})`);
    const c = this.touchClient(clientId);
    if (c.epoch !== undefined && c.epoch > 0 && c.sessionNonce === nonce) return { epoch: c.epoch };
    c.epoch = this.index;
    c.sessionNonce = nonce;
    c.retiredSeq = 0;
    this.dropReplies(clientId);
    return { epoch: c.epoch };
  }

  /** Forgets the client's reply window (its stored slots are deleted with the next write batch). */
  private dropReplies(clientId: string): void {
    const slots = this.replySlots.get(clientId);
    if (slots !== undefined) slots.forEach((s, slot) => s >= 0 && this.markReplySlot(clientId, slot));
    this.replySlots.delete(clientId);
    this.replies.delete(clientId);
  }

  private remember(clientId: string, seq: number, result: Result): void {
    let m = this.replies.get(clientId);
    if (m === undefined) {
      m = new Map();
      this.replies.set(clientId, m);
    }
    let slots = this.replySlots.get(clientId);
    if (slots === undefined) {
      slots = new Array<number>(L.sessionReplyWindow).fill(-1);
      this.replySlots.set(clientId, slots);
    }
    this.dirtyClients.add(clientId);
    if (m.size < L.sessionReplyWindow) {
      const slot = slots.indexOf(-1);
      if (slot < 0) assert(false, `client ${clientId} has ${m.size} replies but no free reply slot`);
      m.set(seq, result);
      slots[slot] = seq;
      this.markReplySlot(clientId, slot);
      return;
    }
    // Window full: the lowest seq of the window and the new one leaves (it may be the new one itself).
    let min = seq;
    for (const s of m.keys()) if (s < min) min = s;
    if (min !== seq) {
      m.delete(min);
      m.set(seq, result);
      const slot = slots.indexOf(min);
      if (slot < 0) assert(false, `reply ${clientId}/${min} has no slot`);
      slots[slot] = seq;
      this.markReplySlot(clientId, slot);
    }
    const c = this.clients.get(clientId)!;
    if (min > c.retiredSeq) c.retiredSeq = min;
  }

  markReplySlot(clientId: string, slot: number): void {
    this.dirtyReplies.set(clientId, (this.dirtyReplies.get(clientId) ?? 0) | (1 << slot));
  }

  // ------------------------------------------------------------------ segments

  private mount(clientId: string, spec: SegmentSpec): unknown {
    const existing = this.segments.get(spec.id);
    if (existing !== undefined) {
      if (sameSpec(existing.rec, spec, clientId)) return { segmentId: spec.id, status: existing.rec.status };
      fail(ErrorCode.SEGMENT_ALREADY_EXISTS, `segment ${spec.id} is already mounted with another spec`);
    }
    const client = this.clients.get(clientId)!;
    if (client.segmentIds.length >= L.maxSegmentsPerClient) {
      fail(ErrorCode.INVALID_ARGUMENT, `client ${clientId} already has ${L.maxSegmentsPerClient} segments`);
    }
    for (const s of this.ordered) {
      if (overlaps(s.rec, spec)) fail(ErrorCode.INVALID_ARGUMENT, `segment ${spec.id} overlaps segment ${s.rec.id}`);
    }
    const seg = segmentFromSpec(spec, clientId, this.index, this.options.allocAlignmentBytes);
    this.addSegment(seg);
    return { segmentId: spec.id, status: 'OK' };
  }

  /** Used by mount and by loading from the store. */
  addSegment(seg: Segment): void {
    this.segments.set(seg.rec.id, seg);
    let lo = 0;
    let hi = this.ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ordered[mid]!.rec.id < seg.rec.id) lo = mid + 1;
      else hi = mid;
    }
    this.ordered.splice(lo, 0, seg);
    const client = this.clients.get(seg.rec.clientId);
    if (client !== undefined) {
      insertSorted(client.segmentIds, seg.rec.id);
      this.dirtyClients.add(client.clientId);
    }
    this.dirtySegments.add(seg.rec.id);
  }

  private removeSegment(id: string): void {
    const seg = this.segments.get(id);
    if (seg === undefined) return;
    this.segments.delete(id);
    this.ordered.splice(this.ordered.indexOf(seg), 1);
    this.onSegment.dropSegment(id);
    const client = this.clients.get(seg.rec.clientId);
    if (client !== undefined) {
      const i = client.segmentIds.indexOf(id);
      if (i >= 0) client.segmentIds.splice(i, 1);
      this.dirtyClients.add(client.clientId);
    }
    this.dirtySegments.add(id);
  }

  private unmount(segmentId: string, graceful: boolean): unknown {
    const seg = this.segments.get(segmentId);
    if (seg === undefined) fail(ErrorCode.SEGMENT_NOT_FOUND, `no segment ${segmentId}`);
    if (!graceful) {
      this.dropSegments([segmentId]);
      return { segmentId, status: 'UNMOUNTED' };
    }
    return { segmentId, status: this.startDrain(seg) };
  }

  private startDrain(seg: Segment): 'DRAINING' | 'DRAINED' {
    seg.rec.status = 'DRAINING';
    this.dirtySegments.add(seg.rec.id);
    if (seg.alloc.allocationCount === 0) {
      this.removeSegment(seg.rec.id);
      return 'DRAINED';
    }
    return 'DRAINING';
  }

  /** Forced removal of segments: replicas there are dropped; objects left with no replica disappear. */
  private dropSegments(ids: readonly string[]): void {
    const gone = new Set(ids.filter((id) => this.segments.has(id)));
    if (gone.size === 0) return;
    const visit = this.objectsOn(gone);
    for (const id of gone) this.removeSegment(id);
    const on = (r: Replica): boolean => gone.has(r.segmentId);
    for (const o of visit) {
      const hit =
        o.replicas.some(on) || (o.pending?.replicas.some(on) ?? false) || (o.offload !== null && on(o.offload.replica)) ||
        (o.repair !== null && on(o.repair.replica));
      if (!hit) continue;
      o.replicas = o.replicas.filter((r) => !on(r));
      if (o.pending !== null) {
        o.pending.replicas = o.pending.replicas.filter((r) => !on(r));
        if (o.pending.replicas.length === 0) o.pending = null;
      }
      if (o.offload !== null && on(o.offload.replica)) o.offload = null;
      if (o.repair !== null && on(o.repair.replica)) o.repair = null;
      if (o.replicas.length === 0) this.deleteObject(o);
      else this.touchObject(o);
    }
  }

  private setNodeStatus(nodeId: string, status: ClientRecord['nodeStatus']): unknown {
    const c = this.clients.get(nodeId);
    if (c === undefined) fail(ErrorCode.CLIENT_NOT_FOUND, `no client ${nodeId}`);
    c.nodeStatus = status;
    this.dirtyClients.add(nodeId);
    for (const id of [...c.segmentIds]) {
      const seg = this.segments.get(id)!;
      if (status === 'DRAINING' && seg.rec.status === 'OK') this.startDrain(seg);
      else if (status === 'ACTIVE' && seg.rec.status === 'DRAINING') {
        seg.rec.status = 'OK';
        this.dirtySegments.add(id);
      }
    }
    return { nodeId, status };
  }

  private drainSegments(ids: readonly string[], skipKeys: readonly string[], keys: readonly string[] | undefined): unknown {
    // Refused the same way by every replica of this version: proposed only once the state version allows it.
    if (keys !== undefined && this.stateVersion < boundedDrainStateVersion) fail(ErrorCode.INVALID_ARGUMENT, `DrainSegments with keys needs state version ${boundedDrainStateVersion} (the cluster is at ${this.stateVersion})`);
    const draining = new Set(ids.filter((id) => this.segments.get(id)?.rec.status === 'DRAINING'));
    if (draining.size > 0) {
      const skip = new Set(skipKeys);
      const visit = keys === undefined ? this.objectsOn(draining) : this.listed(keys);
      for (const o of visit) {
        if (skip.has(o.key) || !isSettled(o)) continue;
        if (!o.replicas.some((r) => draining.has(r.segmentId))) continue;
        const drop = o.replicas.filter((r) => draining.has(r.segmentId));
        this.freeReplicas(o, drop);
        o.replicas = o.replicas.filter((r) => !draining.has(r.segmentId));
        if (o.replicas.length === 0) this.deleteObject(o);
        else this.touchObject(o);
      }
    }
    return ids.map((id) => {
      const seg = this.segments.get(id);
      if (seg === undefined) return { segmentId: id, status: 'GONE' };
      if (draining.has(id) && seg.alloc.allocationCount === 0) {
        this.removeSegment(id);
        return { segmentId: id, status: 'DRAINED' };
      }
      return { segmentId: id, status: seg.rec.status };
    });
  }

  // ------------------------------------------------------------------ objects

  /** The current objects of `keys`, each once. */
  private listed(keys: readonly string[]): ObjectRecord[] {
    const out = new Set<ObjectRecord>();
    for (const k of keys) {
      const o = this.objects.get(k);
      if (o !== undefined) out.add(o);
    }
    return [...out];
  }

  private setStateVersion(version: number): unknown {
    // Not an error result: a replica that went on would misread the commands of that version. Thrown out of apply,
    // it stops this node (crash-stop) before it applies anything else.
    if (version > supportedStateVersion) {
      throw new Error(`the cluster's state version is now ${version}, but this Mooring supports at most ${supportedStateVersion}: upgrade this master`);
    }
    if (version > this.stateVersion) {
      this.stateVersion = version;
      this.stateVersionChanged = true;
    }
    return { stateVersion: this.stateVersion };
  }

  /**
   * The current objects with a replica on any of `segmentIds`, each once (a copy: the visit may change the lists).
   * Current: one apply may drop segments twice (ExpireClients, once per client), and an object the first deleted is
   * still listed for the second (found by the segment-index property test: a double free).
   */
  private objectsOn(segmentIds: ReadonlySet<string>): ObjectRecord[] {
    const seen = new Set<ObjectRecord>();
    for (const id of segmentIds) for (const o of this.onSegment.on(id)) if (this.onSegment.current(o)) seen.add(o);
    return [...seen];
  }

  /**
   * `o` was given newly allocated replicas (a put, an upsert, an offload or a repair target): the only changes that
   * add segments to an object (the others move a replica between its lists or drop one), so the only ones the segment
   * index must learn of here. (Every touch did: 3% of the leader's time in bench:master's batch put.)
   */
  private touchPlaced(o: ObjectRecord): void {
    this.onSegment.touched(o);
    this.touchObject(o);
  }

  private touchObject(o: ObjectRecord): void {
    this.dirtyObjects.add(o.key);
    if (isSettled(o)) this.inFlight.delete(o.key);
    else this.inFlight.add(o.key);
  }

  private deleteObject(o: ObjectRecord): void {
    this.freeReplicas(o, o.replicas);
    if (o.pending !== null) this.freeReplicas(o, o.pending.replicas);
    if (o.offload !== null) this.freeReplicas(o, [o.offload.replica]);
    if (o.repair !== null) this.freeReplicas(o, [o.repair.replica]);
    this.objects.delete(o.key);
    this.onSegment.gone(o);
    this.inFlight.delete(o.key);
    this.dirtyObjects.add(o.key);
  }

  /** `o` gives up these replicas: their extents are freed, and the segment index re-checks `o` there. */
  private freeReplicas(o: ObjectRecord, list: readonly Replica[]): void {
    for (const r of list) {
      this.onSegment.released(o, r.segmentId);
      const seg = this.segments.get(r.segmentId);
      // A replica on a segment that is gone was dropped with it; otherwise its extent must be allocated.
      // (`if (!x) assert(false, ...)`: the message is only built on failure, not on every call of a hot path.)
      if (seg !== undefined && !seg.alloc.free(r.offset)) assert(false, `replica extent ${r.segmentId}@${r.offset} was not allocated`);
    }
  }

  private nodeActive = (clientId: string): boolean => (this.clients.get(clientId)?.nodeStatus ?? 'ACTIVE') === 'ACTIVE';

  private place(size: number, count: number, tier: Tier, preferred?: readonly string[], exclude?: ReadonlySet<string>): Segment[] {
    return placeReplicas({
      ordered: this.ordered,
      byId: this.segments,
      size,
      count,
      tier,
      preferred,
      exclude,
      strategy: this.options.placement,
      rng: this.rng,
      nodeActive: this.nodeActive,
    });
  }

  /** Place and allocate; when nothing fits, evict from the leader's `evictable` list and try again. */
  private allocate(
    size: number,
    count: number,
    tier: Tier,
    preferred: readonly string[] | undefined,
    evictable: readonly EvictItem[] | undefined,
    protectKey: string | null,
    exclude?: ReadonlySet<string>,
  ): Replica[] {
    let segs = this.place(size, count, tier, preferred, exclude);
    if (segs.length === 0 && evictable !== undefined) {
      for (const it of evictable) {
        if (this.tryEvict(it, protectKey)) {
          segs = this.place(size, count, tier, preferred, exclude);
          if (segs.length > 0) break;
        }
      }
    }
    if (segs.length === 0) fail(ErrorCode.NO_SPACE, `no ${tier} segment has a free extent of ${size} bytes`);
    return segs.map((s) => {
      const offset = s.alloc.alloc(size);
      assert(offset >= 0, 'placement chose a segment that cannot hold the object');
      return { segmentId: s.rec.id, offset, length: size, status: 'PROCESSING', tier };
    });
  }

  private tryEvict(it: EvictItem, protectKey: string | null): boolean {
    const o = this.objects.get(it.key);
    // Re-checked at apply: the key may have been re-created, pinned hard, or be mid-write since planning.
    if (o === undefined || o.key === protectKey || o.createdIndex !== it.createdIndex || !isSettled(o) || o.hardPin) {
      return false;
    }
    this.deleteObject(o);
    return true;
  }

  private describe(list: readonly Replica[]): ReplicaDescriptor[] {
    return list.map((r) => describeReplica(r, this.segments.get(r.segmentId)!));
  }

  private putStart(clientId: string, p: PutOptions, evictable: readonly EvictItem[] | undefined, upsert: boolean): PutStartValue {
    const existing = this.objects.get(p.key);
    if (existing !== undefined) {
      if (!upsert) fail(ErrorCode.OBJECT_ALREADY_EXISTS, `object ${p.key} already exists`);
      if (!isSettled(existing)) fail(ErrorCode.OBJECT_NOT_READY, `object ${p.key} has a write in progress`);
    }
    const tier = p.tier ?? 'DRAM';
    const replicas = this.allocate(p.size, p.replicaNum, tier, p.preferredSegments, evictable, p.key);
    if (existing !== undefined && this.objects.get(p.key) === existing) {
      existing.pending = { size: p.size, replicas, startedAtMs: this.now, softPin: p.softPin === true, hardPin: p.hardPin === true };
      this.touchPlaced(existing);
    } else {
      const o: ObjectRecord = {
        key: p.key,
        size: p.size,
        clientId,
        createdIndex: this.index,
        createdAtMs: this.now,
        completedAtMs: 0,
        replicas,
        softPinUntilMs: p.softPin === true ? this.now + this.options.softPinTtlMs : 0,
        hardPin: p.hardPin === true,
        pending: null,
        offload: null,
        replicaNum: replicas.length,
        repair: null,
        cover: null,
      };
      this.objects.set(p.key, o);
      this.touchPlaced(o);
    }
    return { replicas: this.describe(replicas) };
  }

  private putEnd(key: string): null {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (o.pending !== null) {
      // Upsert: swap in the new version atomically; the old replicas are freed now.
      const p = o.pending;
      this.freeReplicas(o, o.replicas);
      o.size = p.size;
      o.replicas = p.replicas;
      o.replicaNum = p.replicas.length;
      for (const r of o.replicas) r.status = 'COMPLETE';
      o.softPinUntilMs = p.softPin ? this.now + this.options.softPinTtlMs : 0;
      o.hardPin = p.hardPin;
      o.completedAtMs = this.now;
      o.pending = null;
      // Re-insert: Map order is approximately least-recently-written first (eviction scans from the front).
      this.objects.delete(key);
      this.objects.set(key, o);
      this.touchObject(o);
      return null;
    }
    if (isComplete(o)) return null; // idempotent
    for (const r of o.replicas) r.status = 'COMPLETE';
    o.completedAtMs = this.now;
    this.touchObject(o);
    return null;
  }

  private putRevoke(key: string): null {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (o.pending !== null) {
      this.freeReplicas(o, o.pending.replicas);
      o.pending = null;
      this.touchObject(o);
      return null;
    }
    if (isComplete(o)) fail(ErrorCode.INVALID_ARGUMENT, `object ${key} is complete; use Remove`);
    this.deleteObject(o);
    return null;
  }

  private remove(key: string, force: boolean): null {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (!force) {
      if (isPinned(o, this.now)) fail(ErrorCode.OBJECT_PINNED, `object ${key} is pinned`);
      if (!isSettled(o)) fail(ErrorCode.OBJECT_NOT_READY, `object ${key} has a write in progress`);
    }
    this.deleteObject(o);
    return null;
  }

  private removeMatching(pred: (key: string) => boolean, force: boolean, skipKeys: readonly string[] | undefined): unknown {
    const skip = new Set(skipKeys ?? []);
    const victims: ObjectRecord[] = [];
    for (const o of this.objects.values()) {
      if (!pred(o.key)) continue;
      if (!force && (skip.has(o.key) || isPinned(o, this.now) || !isSettled(o))) continue;
      victims.push(o);
    }
    for (const o of victims) this.deleteObject(o);
    return { removed: victims.length };
  }

  private offloadStart(key: string): unknown {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (!isSettled(o)) fail(ErrorCode.OBJECT_NOT_READY, `object ${key} has a write in progress`);
    if (!o.replicas.some((r) => isMemoryTier(r.tier))) fail(ErrorCode.INVALID_ARGUMENT, `object ${key} has no memory replica to offload`);
    const exclude = new Set(o.replicas.map((r) => r.segmentId));
    const [replica] = this.allocate(o.size, 1, 'DISK', undefined, undefined, null, exclude);
    o.offload = { replica: replica!, startedAtMs: this.now };
    this.touchPlaced(o);
    return { source: this.describe(o.replicas), target: this.describe([replica!])[0] };
  }

  private offloadEnd(key: string): null {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (o.offload === null) fail(ErrorCode.INVALID_ARGUMENT, `object ${key} has no offload in progress`);
    // Demotion: the DISK replica is recorded, the memory replicas are freed.
    this.freeReplicas(o, o.replicas.filter((r) => isMemoryTier(r.tier)));
    o.replicas = [...o.replicas.filter((r) => !isMemoryTier(r.tier)), { ...o.offload.replica, status: 'COMPLETE' }];
    o.replicaNum = o.replicas.length; // a demotion keeps fewer copies on purpose: nothing to repair
    o.offload = null;
    this.touchObject(o);
    return null;
  }

  private offloadRevoke(key: string): null {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (o.offload === null) fail(ErrorCode.INVALID_ARGUMENT, `object ${key} has no offload in progress`);
    this.freeReplicas(o, [o.offload.replica]);
    o.offload = null;
    this.touchObject(o);
    return null;
  }

  private repairStart(key: string, createdIndex: number): unknown {
    const o = this.objects.get(key);
    if (o === undefined || o.createdIndex !== createdIndex) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key} (created at ${createdIndex})`);
    if (!isSettled(o)) fail(ErrorCode.OBJECT_NOT_READY, `object ${key} has a write, offload or repair in progress`);
    const live = liveReplicas(o, this.segments);
    const sources = readableReplicas(o, this.segments);
    if (sources.length === 0) fail(ErrorCode.OBJECT_NOT_FOUND, `object ${key} has no readable replica to copy`);
    if (live.length >= o.replicaNum) fail(ErrorCode.INVALID_ARGUMENT, `object ${key} has ${live.length} live replicas of ${o.replicaNum}: nothing to repair`);
    const used = new Set(o.replicas.map((r) => r.segmentId));
    // Zone-spread: a zone no live replica uses, if any segment there fits; else any other segment.
    const usedZones = new Set(live.map((r) => this.segments.get(r.segmentId)?.rec.zone));
    const avoid = new Set(used);
    for (const s of this.ordered) if (usedZones.has(s.rec.zone)) avoid.add(s.rec.id);
    const tier = sources[0]!.tier;
    const segs = this.place(o.size, 1, tier, undefined, avoid);
    const [replica] = segs.length > 0 ? this.allocate(o.size, 1, tier, undefined, undefined, null, avoid) : this.allocate(o.size, 1, tier, undefined, undefined, null, used);
    o.repair = { replica: replica!, startedAtMs: this.now, startedIndex: this.index };
    this.touchPlaced(o);
    return { repairId: this.index, source: this.describe(sources), target: this.describe([replica!])[0] };
  }

  private repairEnd(key: string, repairId: number): null {
    const o = this.objects.get(key);
    if (o === undefined) fail(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`);
    if (o.repair === null || o.repair.startedIndex !== repairId) {
      // A retry of an applied RepairEnd is answered from the session's reply window; anything else is stale.
      fail(ErrorCode.INVALID_ARGUMENT, `object ${key} has no repair ${repairId} in progress (reclaimed or revoked?)`);
    }
    o.replicas = [...o.replicas, { ...o.repair.replica, status: 'COMPLETE' }];
    o.repair = null;
    this.touchObject(o);
    return null;
  }

  private repairRevoke(key: string, repairId: number): null {
    const o = this.objects.get(key);
    if (o === undefined || o.repair === null || o.repair.startedIndex !== repairId) return null; // gone, or another attempt
    this.freeReplicas(o, [o.repair.replica]);
    o.repair = null;
    this.touchObject(o);
    return null;
  }

  // ------------------------------------------------------------------ leader-proposed

  private expireClients(ids: readonly string[], clientTtlMs: number): unknown {
    const expired: string[] = [];
    for (const id of ids) {
      const c = this.clients.get(id);
      // Re-check with the entry time: a client that wrote after planning stays.
      if (c === undefined || c.lastSeenMs + clientTtlMs > this.now) continue;
      this.dropSegments([...c.segmentIds]);
      this.clients.delete(id);
      this.dirtyClients.add(id);
      this.dropReplies(id);
      expired.push(id);
    }
    return { expired };
  }

  private reclaimPuts(keys: readonly string[], putTimeoutMs: number): unknown {
    const reclaimed: string[] = [];
    for (const key of keys) {
      const o = this.objects.get(key);
      if (o === undefined) continue;
      if (!isComplete(o)) {
        if (o.createdAtMs + putTimeoutMs <= this.now) {
          this.deleteObject(o);
          reclaimed.push(key);
        }
        continue;
      }
      let changed = false;
      if (o.pending !== null && o.pending.startedAtMs + putTimeoutMs <= this.now) {
        this.freeReplicas(o, o.pending.replicas);
        o.pending = null;
        changed = true;
      }
      if (o.offload !== null && o.offload.startedAtMs + putTimeoutMs <= this.now) {
        this.freeReplicas(o, [o.offload.replica]);
        o.offload = null;
        changed = true;
      }
      if (o.repair !== null && o.repair.startedAtMs + putTimeoutMs <= this.now) {
        this.freeReplicas(o, [o.repair.replica]);
        o.repair = null;
        changed = true;
      }
      if (changed) {
        this.touchObject(o);
        reclaimed.push(key);
      }
    }
    return { reclaimed };
  }

  // ------------------------------------------------------------------ queries (from memory)

  /**
   * Replica descriptors of a complete object. With `leases` (on the leader), grants a read lease: the object
   * is then neither removed nor evicted for leases.leaseTtlMs.
   */
  getReplicaList(key: string, nowMs: number, leases?: LeaseTable): Result<GetReplicaListValue> {
    return this.replicaListInto(key, nowMs, leases, this.describing);
  }

  /**
   * getReplicaList handing the object's replicas to `sink` instead of building descriptor objects: the compact reply
   * (src/master/replica-lists-wire.ts) writes them straight into its rows (a batch read's descriptors and results
   * were most of what it allocated per key).
   */
  replicaListInto<T>(key: string, nowMs: number, leases: LeaseTable | undefined, sink: ReplicaListSink<T>): T {
    const o = this.objects.get(key);
    if (o === undefined) return sink.fail(errResult(ErrorCode.OBJECT_NOT_FOUND, `no object ${key}`));
    if (!isComplete(o)) return sink.fail(errResult(ErrorCode.OBJECT_NOT_READY, `object ${key} has no complete replica yet`));
    let leaseTtlMs = L.defaultLeaseTtlMs;
    if (leases !== undefined) {
      if (leases.grant(key, nowMs) === 0) return sink.fail(errResult(ErrorCode.OBJECT_NOT_FOUND, `object ${key} is being evicted`));
      leaseTtlMs = leases.leaseTtlMs;
    }
    const status: ObjectStatus = o.pending !== null ? 'UPSERTING' : o.offload !== null ? 'OFFLOADING' : 'COMPLETE';
    return sink.ok(o.size, status, leaseTtlMs, o.replicas, this.segments);
  }

  private readonly describing: ReplicaListSink<Result<GetReplicaListValue>> = {
    ok: (size, status, leaseTtlMs, replicas, segments) => okResult({ replicas: replicas.map((r) => describeReplica(r, segments.get(r.segmentId)!)), leaseTtlMs, size, status }),
    fail: (r) => r,
  };

  /** True if the key has a complete version. */
  existKey(key: string): boolean {
    const o = this.objects.get(key);
    return o !== undefined && isComplete(o);
  }

  listSegments(): SegmentInfo[] {
    return this.ordered.map(segmentInfo);
  }

  querySegment(id: string): Result<SegmentInfo> {
    const s = this.segments.get(id);
    return s === undefined ? errResult(ErrorCode.SEGMENT_NOT_FOUND, `no segment ${id}`) : okResult(segmentInfo(s));
  }

  /** Ping answer (liveness itself is leader soft state: see ClientLiveness). */
  ping(clientId: string): PingValue {
    return { status: this.clients.has(clientId) ? 'OK' : 'NEED_REMOUNT', viewVersion: this.appliedIndex };
  }

  stats(): StateStats {
    let memCap = 0;
    let memAlloc = 0;
    let diskCap = 0;
    let diskAlloc = 0;
    for (const s of this.ordered) {
      if (isMemoryTier(s.rec.tier)) {
        memCap += s.alloc.capacityBytes;
        memAlloc += s.alloc.allocatedBytes;
      } else {
        diskCap += s.alloc.capacityBytes;
        diskAlloc += s.alloc.allocatedBytes;
      }
    }
    let clientCount = 0;
    for (const c of this.clients.values()) if (isStorageClient(c)) clientCount++;
    return {
      appliedIndex: this.appliedIndex,
      objectCount: this.objects.size,
      inFlightCount: this.inFlight.size,
      segmentCount: this.segments.size,
      clientCount,
      memoryCapacityBytes: memCap,
      memoryAllocatedBytes: memAlloc,
      memoryUsageRatio: memCap === 0 ? 0 : memAlloc / memCap,
      diskCapacityBytes: diskCap,
      diskAllocatedBytes: diskAlloc,
    };
  }

  /** Take and reset the changes since the last call. */
  drainChanges(): { objects: Set<string>; segments: Set<string>; clients: Set<string>; replies: Map<string, number>; stateVersion: boolean } {
    const out = { objects: this.dirtyObjects, segments: this.dirtySegments, clients: this.dirtyClients, replies: this.dirtyReplies, stateVersion: this.stateVersionChanged };
    this.stateVersionChanged = false;
    this.dirtyObjects = new Set();
    this.dirtySegments = new Set();
    this.dirtyClients = new Set();
    this.dirtyReplies = new Map();
    return out;
  }
}
