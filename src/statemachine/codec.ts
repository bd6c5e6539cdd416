/**
 * Encoding of the persisted records (LevelDB values and snapshot entries) and the loader that rebuilds a
 * StateCore from them. Records are compact msgpack arrays (no field names): smaller and faster than maps.
 *
 * Keys: `m:applied` (applied index), `o<key>` objects, `s<id>` segments, `c<id>` clients, `r<clientId>\0<slot>`
 * exactly-once replies `[seq, result]`, one record per window slot: an applied batch writes only the slots whose
 * reply changed (a new reply overwrites the one it pushed out of the window) instead of re-encoding every dirty
 * client's whole window. A client record of the first format, with its window inline, is still read. Allocators are not stored: they are a pure function of
 * the replicas (see allocator.ts), so they are rebuilt from the objects on load.
 */
import { Packr } from 'msgpackr';
import { ErrorCode, MooringError } from '../errors.js';
import type { Result, Tier } from './commands.js';
import type { ClientRecord } from './clients.js';
import { OffsetAllocator } from './allocator.js';
import type { ObjectRecord, Replica } from './objects.js';
import type { Segment, SegmentRecord } from './segments.js';
import { supportedStateVersion } from './state-version.js';
import type { StateCore } from './state-core.js';
import { sessionReplyWindow } from './limits.js';

/** Distinct client and segment ids the loader shares among objects (more are kept unshared). */
const maxInternedIds = 100_000;

export const packr = new Packr({ useRecords: false, moreTypes: false });

export const appliedKey = 'm:applied';
/** The state version (state-version.ts), once raised above 1. */
export const stateVersionKey = 'm:stateVersion';
/** Present while a snapshot restore is under way: a store holding it is incomplete and must not be used. */
export const restoringKey = 'm:restoring';
export const objectKey = (key: string): string => 'o' + key;
export const segmentKey = (id: string): string => 's' + id;
export const clientKey = (id: string): string => 'c' + id;
/** The slot follows the last NUL (a client id may hold one; a decimal slot never does). */
export const replyKey = (clientId: string, slot: number): string => 'r' + clientId + '\0' + slot;

const tierCodes: Tier[] = ['DRAM', 'VRAM', 'DISK'];
const tierCode = (t: Tier): number => tierCodes.indexOf(t);

function flatReplicas(list: readonly Replica[]): unknown[] {
  const out: unknown[] = [];
  for (const r of list) out.push(r.segmentId, r.offset, r.length, r.status === 'COMPLETE' ? 1 : 0, tierCode(r.tier));
  return out;
}

function unflatReplicas(a: unknown[]): Replica[] {
  const out: Replica[] = [];
  for (let i = 0; i + 4 < a.length; i += 5) {
    out.push({
      segmentId: a[i] as string,
      offset: a[i + 1] as number,
      length: a[i + 2] as number,
      status: a[i + 3] === 1 ? 'COMPLETE' : 'PROCESSING',
      tier: tierCodes[a[i + 4] as number]!,
    });
  }
  return out;
}

export function encodeObject(o: ObjectRecord): Buffer {
  return packr.pack([
    o.size,
    o.clientId,
    o.createdIndex,
    o.createdAtMs,
    o.completedAtMs,
    o.softPinUntilMs,
    o.hardPin ? 1 : 0,
    flatReplicas(o.replicas),
    o.pending === null
      ? null
      : [o.pending.size, flatReplicas(o.pending.replicas), o.pending.startedAtMs, o.pending.softPin ? 1 : 0, o.pending.hardPin ? 1 : 0],
    o.offload === null ? null : [flatReplicas([o.offload.replica]), o.offload.startedAtMs],
    // Re-replication fields only when they say something (most objects have all their replicas): records stay
    // as they were, and a record without them reads as replicaNum = its replica count, no repair.
    ...(o.replicaNum === o.replicas.length && o.repair === null
      ? []
      : [o.replicaNum, o.repair === null ? null : [flatReplicas([o.repair.replica]), o.repair.startedAtMs, o.repair.startedIndex]]),
  ]);
}

export function decodeObject(key: string, buf: Uint8Array, intern?: (s: string) => string): ObjectRecord {
  const fast = decodeObjectFast(key, buf, intern);
  if (fast !== null) return fast;
  const a = packr.unpack(buf) as unknown[];
  const p = a[8] as unknown[] | null;
  const off = a[9] as unknown[] | null;
  const replicas = unflatReplicas(a[7] as unknown[]);
  const rep = a.length >= 12 ? (a[11] as unknown[] | null) : null;
  return {
    key,
    size: a[0] as number,
    clientId: a[1] as string,
    createdIndex: a[2] as number,
    createdAtMs: a[3] as number,
    completedAtMs: a[4] as number,
    softPinUntilMs: a[5] as number,
    hardPin: a[6] === 1,
    replicas,
    pending:
      p === null
        ? null
        : { size: p[0] as number, replicas: unflatReplicas(p[1] as unknown[]), startedAtMs: p[2] as number, softPin: p[3] === 1, hardPin: p[4] === 1 },
    offload: off === null ? null : { replica: unflatReplicas(off[0] as unknown[])[0]!, startedAtMs: off[1] as number },
    replicaNum: a.length >= 12 ? (a[10] as number) : replicas.length,
    repair: rep === null ? null : { replica: unflatReplicas(rep[0] as unknown[])[0]!, startedAtMs: rep[1] as number, startedIndex: rep[2] as number },
    cover: null,
  };
}

/**
 * A reader of the msgpack subset encodeObject writes (ints, floats, short strings, nil, arrays), building the
 * ObjectRecord directly: no intermediate arrays and no per-call decoder setup, which made decoding (and the GC
 * after it) a large part of a 1M-object restore. Returns null on anything else, and decodeObject then uses
 * msgpackr itself, so the two always agree.
 */
/** Buffer's own utf8 decoder binding, without toString's argument handling (not in @types/node). */
export function utf8(b: Buffer, start: number, end: number): string {
  return (b as unknown as { utf8Slice(start: number, end: number): string }).utf8Slice(start, end);
}

class Mini {
  pos = 0;
  ok = true;
  constructor(readonly b: Buffer) {}
  private byte(): number {
    if (this.pos >= this.b.length) {
      this.ok = false;
      return 0xc1; // never used by msgpack: fails whatever reads it
    }
    return this.b[this.pos++]!;
  }
  num(): number {
    const t = this.byte();
    const b = this.b;
    const p = this.pos;
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    let n: number;
    let w: number;
    switch (t) {
      case 0xcb: n = b.readDoubleBE(p); w = 8; break;
      case 0xcc: n = b[p]!; w = 1; break;
      case 0xcd: n = b.readUInt16BE(p); w = 2; break;
      case 0xce: n = b.readUInt32BE(p); w = 4; break;
      case 0xcf: n = b.readUInt32BE(p) * 0x1_0000_0000 + b.readUInt32BE(p + 4); w = 8; break;
      case 0xd0: n = b.readInt8(p); w = 1; break;
      case 0xd1: n = b.readInt16BE(p); w = 2; break;
      case 0xd2: n = b.readInt32BE(p); w = 4; break;
      case 0xd3: n = b.readInt32BE(p) * 0x1_0000_0000 + b.readUInt32BE(p + 4); w = 8; break;
      case 0xca: n = b.readFloatBE(p); w = 4; break;
      default:
        this.ok = false;
        return 0;
    }
    if (p + w > b.length) {
      this.ok = false;
      return 0;
    }
    this.pos = p + w;
    return n;
  }
  str(intern: ((s: string) => string) | undefined): string {
    const t = this.byte();
    let len: number;
    if (t >= 0xa0 && t <= 0xbf) len = t - 0xa0;
    else if (t === 0xd9 && this.pos < this.b.length) len = this.b[this.pos++]!;
    else {
      this.ok = false;
      return '';
    }
    const end = this.pos + len;
    if (end > this.b.length) {
      this.ok = false;
      return '';
    }
    const out = utf8(this.b, this.pos, end);
    this.pos = end;
    return intern === undefined ? out : intern(out);
  }
  /** Array header: its length, -1 for nil, -2 for anything else. */
  arr(): number {
    const t = this.byte();
    if (t >= 0x90 && t <= 0x9f) return t - 0x90;
    if (t === 0xc0) return -1;
    if (t === 0xdc && this.pos + 2 <= this.b.length) {
      this.pos += 2;
      return this.b.readUInt16BE(this.pos - 2);
    }
    this.ok = false;
    return -2;
  }
  replicas(intern: ((s: string) => string) | undefined): Replica[] | null {
    const n = this.arr();
    if (n < 0 || n % 5 !== 0) return null;
    const out: Replica[] = [];
    for (let i = 0; i < n; i += 5) {
      const segmentId = this.str(intern);
      const offset = this.num();
      const length = this.num();
      const status = this.num() === 1 ? 'COMPLETE' : 'PROCESSING';
      const tier = tierCodes[this.num()];
      if (tier === undefined) return null;
      out.push({ segmentId, offset, length, status, tier });
    }
    return out;
  }
}

function decodeObjectFast(key: string, buf: Uint8Array, intern: ((s: string) => string) | undefined): ObjectRecord | null {
  const m = new Mini(Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  const fields = m.arr();
  if (fields !== 10 && fields !== 12) return null;
  const size = m.num();
  const clientId = m.str(intern);
  const createdIndex = m.num();
  const createdAtMs = m.num();
  const completedAtMs = m.num();
  const softPinUntilMs = m.num();
  const hardPin = m.num() === 1;
  const replicas = m.replicas(intern);
  if (replicas === null) return null;
  let pending: ObjectRecord['pending'] = null;
  const pn = m.arr();
  if (pn === 5) {
    const psize = m.num();
    const preplicas = m.replicas(intern);
    if (preplicas === null) return null;
    pending = { size: psize, replicas: preplicas, startedAtMs: m.num(), softPin: m.num() === 1, hardPin: m.num() === 1 };
  } else if (pn !== -1) return null;
  let offload: ObjectRecord['offload'] = null;
  const on = m.arr();
  if (on === 2) {
    const r = m.replicas(intern);
    if (r === null || r.length !== 1) return null;
    offload = { replica: r[0]!, startedAtMs: m.num() };
  } else if (on !== -1) return null;
  let replicaNum = replicas.length;
  let repair: ObjectRecord['repair'] = null;
  if (fields === 12) {
    replicaNum = m.num();
    const rn = m.arr();
    if (rn === 3) {
      const r = m.replicas(intern);
      if (r === null || r.length !== 1) return null;
      repair = { replica: r[0]!, startedAtMs: m.num(), startedIndex: m.num() };
    } else if (rn !== -1) return null;
  }
  if (!m.ok || m.pos !== m.b.length) return null;
  return { key, size, clientId, createdIndex, createdAtMs, completedAtMs, replicas, softPinUntilMs, hardPin, pending, offload, replicaNum, repair, cover: null };
}

export function encodeSegment(s: SegmentRecord): Buffer {
  return packr.pack([s.name, s.clientId, s.base, s.size, s.protocol, s.endpoint, s.zone, s.tier, s.status, s.mountedIndex, s.allocAlignmentBytes]);
}

export function decodeSegment(id: string, buf: Uint8Array): SegmentRecord {
  const a = packr.unpack(buf) as unknown[];
  return {
    id,
    name: a[0] as string,
    clientId: a[1] as string,
    base: a[2] as number,
    size: a[3] as number,
    protocol: a[4] as SegmentRecord['protocol'],
    endpoint: a[5] as string,
    zone: a[6] as string,
    tier: a[7] as Tier,
    status: a[8] as SegmentRecord['status'],
    mountedIndex: a[9] as number,
    // 0 = a 0.1 record (no alignment recorded): StateLoader.finish gives it 0.1's, the configured alignment.
    allocAlignmentBytes: a.length > 10 ? (a[10] as number) : legacyAlignment,
  };
}

/** decodeSegment's mark of a record written by 0.1, whose allocator aligned every tier to allocAlignmentBytes. */
const legacyAlignment = 0;

/** The client record (its replies are separate records, see replyKey). */
export function encodeClient(c: ClientRecord): Buffer {
  // An open session (state version 3) follows at 5 and 6 (4: the first format's inline replies, here none).
  const session = sessionFields(c);
  return packr.pack([c.nodeStatus, c.lastSeenMs, c.segmentIds, c.retiredSeq, ...(session.length > 0 ? [null, ...session] : [])]);
}

/** [epoch, nonce] when the client has an open session, else nothing (a record or hash as before version 3). */
function sessionFields(c: ClientRecord): unknown[] {
  return c.epoch !== undefined && c.epoch > 0 ? [c.epoch, c.sessionNonce ?? ''] : [];
}

/** A client with its whole reply window, sorted by seq: what the state hash covers (never stored). */
export function encodeClientWithReplies(c: ClientRecord, replies: ReadonlyMap<number, Result> | undefined): Buffer {
  const flat: unknown[] = [];
  if (replies !== undefined) {
    for (const seq of [...replies.keys()].sort((x, y) => x - y)) flat.push(seq, replies.get(seq));
  }
  // The session only when one is open: a state without sessions hashes as before version 3.
  return packr.pack([c.nodeStatus, c.lastSeenMs, c.segmentIds, c.retiredSeq, flat, ...sessionFields(c)]);
}

/** A client record; the replies are those of the first format (inline window), else empty. */
export function decodeClient(id: string, buf: Uint8Array): [ClientRecord, Map<number, Result>] {
  const a = packr.unpack(buf) as unknown[];
  const flat = (a[4] ?? []) as unknown[];
  const replies = new Map<number, Result>();
  for (let i = 0; i + 1 < flat.length; i += 2) replies.set(flat[i] as number, flat[i + 1] as Result);
  const rec: ClientRecord = { clientId: id, nodeStatus: a[0] as ClientRecord['nodeStatus'], lastSeenMs: a[1] as number, segmentIds: a[2] as string[], retiredSeq: a[3] as number };
  if (typeof a[5] === 'number' && a[5] > 0) {
    rec.epoch = a[5];
    rec.sessionNonce = typeof a[6] === 'string' ? a[6] : '';
  }
  return [rec, replies];
}

export function encodeReply(seq: number, r: Result): Buffer {
  return packr.pack([seq, r]);
}

export function encodeApplied(index: number): Buffer {
  return packr.pack(index);
}

/**
 * Rebuilds a StateCore from stored records, in any order (LevelDB iteration, or a snapshot stream).
 *
 * `retainObjects: false` checks the records without keeping the objects: each is decoded (so it must decode) and
 * its extents are kept for the allocator rebuild in finish() (so they must not overlap, be unaligned or run past
 * their segment), but the object itself is dropped at once. finish() then builds a core without objects;
 * `objectCount` says how many there were. A restore that only writes a data dir (backup-restore.ts) checks the
 * image this way without holding every object in memory (their promotion to the old generation was most of its
 * garbage-collection work).
 */
export class StateLoader {
  private applied = 0;
  private stateVersion: unknown = 1;
  private restoring = false;
  private readonly objects: ObjectRecord[] = [];
  private readonly retainObjects: boolean;
  objectCount = 0;
  /** Every extent the objects hold (current, upsert, offload and repair versions), per segment. */
  private readonly extents = new Map<string, ExtentList>();
  private lastExtents: ExtentList | null = null;

  constructor(options: { retainObjects?: boolean } = {}) {
    this.retainObjects = options.retainObjects ?? true;
  }

  private pushExtent(r: Replica): void {
    // Consecutive replicas are often on the segment of the previous one: skip the map then.
    const last = this.lastExtents;
    let l = last !== null && last.segmentId === r.segmentId ? last : this.extents.get(r.segmentId);
    if (l === undefined) this.extents.set(r.segmentId, (l = new ExtentList(r.segmentId)));
    l.push(r.offset, r.length);
    this.lastExtents = l;
  }

  private addObject(o: ObjectRecord): void {
    const rs = o.replicas;
    for (let i = 0; i < rs.length; i++) this.pushExtent(rs[i]!);
    if (o.pending !== null) for (const r of o.pending.replicas) this.pushExtent(r);
    if (o.offload !== null) this.pushExtent(o.offload.replica);
    if (o.repair !== null) this.pushExtent(o.repair.replica);
    this.objectCount++;
    if (this.retainObjects) this.objects.push(o);
  }
  private readonly segments: SegmentRecord[] = [];
  /**
   * One copy of each client and segment id for all the objects that name it (they repeat across 1M objects:
   * a copy each was ~15% of the heap per object and GC work). Bounded; beyond the bound strings are kept as is.
   */
  private readonly interned = new Map<string, string>();
  private readonly intern = (s: string): string => {
    const x = this.interned.get(s);
    if (x !== undefined) return x;
    if (this.interned.size < maxInternedIds) this.interned.set(s, s);
    return s;
  };
  private readonly clients: Array<[ClientRecord, Map<number, Result>]> = [];
  /** [clientId, slot, seq, reply] */
  private readonly replies: Array<[string, number, number, Result]> = [];

  /**
   * add() with the key as raw utf8 bytes: an object's key is decoded once, without its prefix, into a flat
   * string (key.slice(1) of a decoded key keeps the whole prefixed string alive behind each object's key).
   */
  addRaw(key: Uint8Array, value: Uint8Array): void {
    const k = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    // An object that is not kept needs no key string (utf8 decoding checks nothing: bad bytes become U+FFFD).
    if (k[0] === 0x6f /* o */) this.addObject(decodeObject(this.retainObjects ? utf8(k, 1, k.length) : '', value, this.intern));
    else this.add(utf8(k, 0, k.length), value);
  }

  add(key: string, value: Uint8Array): void {
    switch (key.charCodeAt(0)) {
      case 0x6f /* o */:
        this.addObject(decodeObject(key.slice(1), value, this.intern));
        return;
      case 0x73 /* s */:
        this.segments.push(decodeSegment(key.slice(1), value));
        return;
      case 0x63 /* c */:
        this.clients.push(decodeClient(key.slice(1), value));
        return;
      case 0x72 /* r */: {
        const nul = key.lastIndexOf('\0');
        const slot = Number(key.slice(nul + 1));
        const v = packr.unpack(value) as [number, Result];
        if (nul < 1 || !Number.isInteger(slot) || slot < 0 || slot >= sessionReplyWindow || !Array.isArray(v)) {
          throw new MooringError(ErrorCode.STORAGE_FAILED, `bad reply record ${JSON.stringify(key.slice(0, 40))}`);
        }
        this.replies.push([key.slice(1, nul), slot, v[0], v[1]]);
        return;
      }
      default:
        if (key === appliedKey) this.applied = packr.unpack(value) as number;
        else if (key === stateVersionKey) this.stateVersion = packr.unpack(value) as number;
        else if (key === restoringKey) this.restoring = true;
        else throw new MooringError(ErrorCode.STORAGE_FAILED, `unknown record key ${JSON.stringify(key.slice(0, 40))}`);
    }
  }

  get incomplete(): boolean {
    return this.restoring;
  }

  finish(core: StateCore): void {
    core.appliedIndex = this.applied;
    const v = this.stateVersion;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new MooringError(ErrorCode.STORAGE_FAILED, `bad state version record ${String(v)}`);
    // Checked here too: a data dir (or snapshot) of a newer cluster is refused before anything is applied to it.
    if (v > supportedStateVersion) {
      throw new MooringError(ErrorCode.STORAGE_FAILED, `this state is at state version ${v}, but this Mooring supports at most ${supportedStateVersion}: run a newer Mooring`);
    }
    core.stateVersion = v;
    const legacy: Array<[string, number]> = [];
    // Replies of first-format client records (inline window) get slots here and are written as reply records by
    // the next store write (with the rewritten client record).
    const slotsOf = (clientId: string): number[] => {
      let slots = core.replySlots.get(clientId);
      if (slots === undefined) core.replySlots.set(clientId, (slots = new Array<number>(sessionReplyWindow).fill(-1)));
      return slots;
    };
    for (const [c, replies] of this.clients) {
      core.clients.set(c.clientId, c);
      if (replies.size === 0) continue;
      core.replies.set(c.clientId, replies);
      const slots = slotsOf(c.clientId);
      let slot = 0;
      for (const seq of replies.keys()) {
        if (slot >= sessionReplyWindow) throw new MooringError(ErrorCode.STORAGE_FAILED, `client ${c.clientId} holds more replies than the window`);
        slots[slot] = seq;
        legacy.push([c.clientId, slot++]);
      }
    }
    for (const [clientId, slot, seq, r] of this.replies) {
      let m = core.replies.get(clientId);
      if (m === undefined) core.replies.set(clientId, (m = new Map()));
      m.set(seq, r);
      slotsOf(clientId)[slot] = seq;
    }
    // Allocators are rebuilt from every extent the objects hold, gathered as they were added in flat per-segment
    // arrays (no per-extent object).
    for (const rec of this.segments) {
      const e = this.extents.get(rec.id);
      // A segment mounted under 0.1 keeps 0.1's alignment, DISK too (see SegmentRecord.allocAlignmentBytes).
      if (rec.allocAlignmentBytes === legacyAlignment) rec.allocAlignmentBytes = core.options.allocAlignmentBytes;
      const alloc = OffsetAllocator.fromExtents(rec.size, rec.allocAlignmentBytes, e?.offsets ?? [], e?.lengths ?? [], e?.count ?? 0);
      const seg: Segment = { rec, alloc };
      core.segments.set(rec.id, seg);
      core.ordered.push(seg);
    }
    core.ordered.sort((a, b) => (a.rec.id < b.rec.id ? -1 : a.rec.id > b.rec.id ? 1 : 0));
    // Map order approximates least-recently-written first (what eviction planning scans); it never affects apply.
    for (const o of orderByLastWrite(this.objects)) {
      core.objects.set(o.key, o);
      if (!(o.pending === null && o.offload === null && o.repair === null && o.replicas.length > 0 && o.replicas[0]!.status === 'COMPLETE')) core.inFlight.add(o.key);
    }
    core.onSegment.rebuild(core.objects.values());
    core.drainChanges();
    for (const [clientId, slot] of legacy) {
      core.dirtyClients.add(clientId);
      core.markReplySlot(clientId, slot);
    }
  }
}

/** One segment's extents while loading: parallel growable Float64Arrays (no per-extent number boxing). */
class ExtentList {
  offsets = new Float64Array(1024);
  lengths = new Float64Array(1024);
  count = 0;
  constructor(readonly segmentId: string) {}
  push(offset: number, length: number): void {
    if (this.count === this.offsets.length) {
      const o = new Float64Array(this.count * 2);
      o.set(this.offsets);
      this.offsets = o;
      const l = new Float64Array(this.count * 2);
      l.set(this.lengths);
      this.lengths = l;
    }
    this.offsets[this.count] = offset;
    this.lengths[this.count++] = length;
  }
}

/**
 * Objects ordered by last write (PutEnd, else PutStart time), at one-second resolution. Packs (seconds, index)
 * into one float so a plain numeric sort does it (a comparator sort of 1M objects cost ~10% of a restore).
 */
function orderByLastWrite(objects: ObjectRecord[]): ObjectRecord[] {
  const n = objects.length;
  if (n < 2) return objects;
  const secs = new Float64Array(n);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const o = objects[i]!;
    const s = Math.floor((o.completedAtMs > 0 ? o.completedAtMs : o.createdAtMs) / 1000);
    secs[i] = s;
    if (s < min) min = s;
    if (s > max) max = s;
  }
  let ordered = true;
  for (let i = 1; i < n && ordered; i++) if (secs[i]! < secs[i - 1]!) ordered = false;
  if (ordered) return objects; // e.g. keys written in key order: the sort would keep this order anyway
  const idxSpan = 2 ** Math.ceil(Math.log2(n + 1));
  if ((max - min + 1) * idxSpan > Number.MAX_SAFE_INTEGER) {
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => secs[a]! - secs[b]! || a - b);
    return order.map((i) => objects[i]!);
  }
  const packed = new Float64Array(n);
  for (let i = 0; i < n; i++) packed[i] = (secs[i]! - min) * idxSpan + i;
  packed.sort();
  const out = new Array<ObjectRecord>(n);
  for (let i = 0; i < n; i++) out[i] = objects[packed[i]! % idxSpan]!;
  return out;
}
