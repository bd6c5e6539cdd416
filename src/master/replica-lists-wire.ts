/**
 * The compact wire forms of a batchGetReplicaList reply, asked for with `compact: true` (MasterClient always asks).
 *
 * The plain form is one msgpack map per key, a map per replica inside it, and the same segment id, endpoint,
 * protocol and tier strings in every one: on a 64-key reply ~11 KB, and msgpackr's map reads and writes were most of
 * what a read cost a client (~1.2 µs per key to decode) and much of what it cost a master (~0.8 µs per key to
 * encode). The compact forms name each replica place (segment id, endpoint, protocol, tier) once per reply.
 *
 * Version 1 (`compact: true`) sends each key as a flat array of numbers: ~2 KB, ~0.2 µs per key each way
 * (bench/RESULTS.md).
 *
 *   { v: 1, places: [[segmentId, endpoint, protocol, tier], ...],
 *     rows: [ [size, statusCode, leaseTtlMs, place, offset, length, address, place, offset, ...] | {ok: false, error} ] }
 *
 * Version 2 (`compact: true, rows: 'binary'`) writes the same numbers as varints (src/transport/varint.ts) into one
 * byte string (msgpack `bin`, which the frame codec hands over without copying): msgpackr then reads and writes one
 * value instead of one per number: ~120 ns per key to encode instead of ~170, ~85 to decode and expand instead of
 * ~200, and ~23% fewer bytes (docs/raft.md "Compact batch replies").
 *
 *   { v: 2, places: [...as above], rows: bytes, errors?: [[index, {ok: false, error}], ...] }
 *
 * where `rows` holds, per requested key in order, a header h: 0 if the key failed (its result is the next entry of
 * `errors`, which lists the failed keys in increasing index order), else the replica count + 1 followed by size,
 * statusCode, leaseTtlMs and per replica place, offset, length, address.
 *
 * A master that does not know `compact` (an older version) ignores it and sends the plain form; one that does not
 * know `rows` ignores that (parseArgs keeps only the fields it knows) and sends version 1. `expandReplicaLists` takes all
 * three, so clients and masters of every version mix during a rolling upgrade; an older client never asks for `rows`
 * and so never gets version 2.
 */
import { assert, ErrorCode, MooringError } from '../errors.js';
import type { Protocol, ReplicaDescriptor, Result, Tier } from '../statemachine/commands.js';
import type { Replica } from '../statemachine/objects.js';
import type { Segment } from '../statemachine/segments.js';
import type { GetReplicaListValue, ObjectStatus, ReplicaListSink } from '../statemachine/state-core.js';
import { varintMaxBytes, VarintReader, writeVarint } from '../transport/varint.js';

export const replicaListsWireVersion = 1;
export const binaryReplicaListsWireVersion = 2;
/** How a compact reply carries its rows: version 1 or 2. */
export type CompactRows = 'arrays' | 'binary';

/** Status codes in a compact row (index into this list). */
const statuses: readonly ObjectStatus[] = ['COMPLETE', 'UPSERTING', 'OFFLOADING'];
const statusCode = new Map<string, number>(statuses.map((s, i) => [s, i]));
const protocols: ReadonlySet<string> = new Set<Protocol>(['shm', 'tcp', 'rdma']);
const tiers: ReadonlySet<string> = new Set<Tier>(['DRAM', 'VRAM', 'DISK']);

type Place = [segmentId: string, endpoint: string, protocol: Protocol, tier: Tier];
/** Numbers before the replicas in a row, and per replica after them. */
const rowHead = 3;
const perReplica = 4;
/** Bytes a replica takes at least in binary rows (four varints of one byte). */
const minBinaryReplicaBytes = perReplica;

export interface CompactReplicaLists {
  v: typeof replicaListsWireVersion;
  places: Place[];
  rows: Array<number[] | Result<never>>;
}

export interface BinaryReplicaLists {
  v: typeof binaryReplicaListsWireVersion;
  places: Place[];
  rows: Uint8Array;
  /** The failed keys' results, by key index, ascending; absent when none failed. */
  errors?: Array<[index: number, result: Result<never>]>;
}

/** The compact form of `rs` (master side). */
export function compactReplicaLists(rs: ReadonlyArray<Result<GetReplicaListValue>>): CompactReplicaLists {
  const b = new CompactReplicaListsBuilder();
  const rows: Array<number[] | Result<never>> = new Array(rs.length);
  for (let i = 0; i < rs.length; i++) {
    const r = rs[i]!;
    if (!r.ok) {
      rows[i] = r;
      continue;
    }
    const v = r.value;
    const row: number[] = [v.size, statusCode.get(v.status)!, v.leaseTtlMs];
    for (const rep of v.replicas) row.push(b.place(rep.segmentId, rep.endpoint, rep.protocol, rep.tier), rep.offset, rep.length, rep.address);
    rows[i] = row;
  }
  return { v: replicaListsWireVersion, places: b.places, rows };
}

/**
 * Builds compact rows straight from the state's replica records (StateCore.replicaListInto), with no descriptor or
 * result objects in between: per key one array of numbers. `done(rows)` makes the reply.
 */
export class CompactReplicaListsBuilder implements ReplicaListSink<number[] | Result<never>> {
  readonly places: Place[] = [];
  // By segment id first (no string built per replica); a replica of that id with another tier, endpoint or protocol
  // (a demoted replica keeps its segment id; a segment remounted elsewhere) gets a place of its own.
  private readonly bySegment = new Map<string, number>();
  private readonly byAll = new Map<string, number>();

  ok(size: number, status: ObjectStatus, leaseTtlMs: number, replicas: readonly Replica[], segments: ReadonlyMap<string, Segment>): number[] {
    // Sized once (growing a literal by push per replica cost 2-4x as much per row).
    const row = new Array<number>(rowHead + perReplica * replicas.length);
    row[0] = size;
    row[1] = statusCode.get(status)!;
    row[2] = leaseTtlMs;
    let j = rowHead;
    for (let i = 0; i < replicas.length; i++) {
      const r = replicas[i]!;
      const seg = segments.get(r.segmentId)!;
      row[j++] = this.place(r.segmentId, seg.rec.endpoint, seg.rec.protocol, r.tier);
      row[j++] = r.offset;
      row[j++] = r.length;
      row[j++] = seg.rec.base + r.offset;
    }
    return row;
  }

  fail(result: Result<never>): Result<never> {
    return result;
  }

  /** The number of the place (segment id, endpoint, protocol, tier) in this reply, added if new. */
  place(segmentId: string, endpoint: string, protocol: Protocol, tier: Tier): number {
    let p = this.bySegment.get(segmentId);
    if (p !== undefined) {
      const q = this.places[p]!;
      if (q[1] === endpoint && q[2] === protocol && q[3] === tier) return p;
    }
    const key = `${segmentId}\u0000${endpoint}\u0000${protocol}\u0000${tier}`;
    p = this.byAll.get(key);
    if (p === undefined) {
      p = this.places.length;
      this.byAll.set(key, p);
      if (!this.bySegment.has(segmentId)) this.bySegment.set(segmentId, p);
      this.places.push([segmentId, endpoint, protocol, tier]);
    }
    return p;
  }

  done(rows: Array<number[] | Result<never>>): CompactReplicaLists {
    return { v: replicaListsWireVersion, places: this.places, rows };
  }

  /** The reply with `rows` as binary rows (version 2). */
  doneBinary(rows: Array<number[] | Result<never>>): BinaryReplicaLists {
    return binaryRows(this.places, rows);
  }
}

/**
 * Version 2 of compact rows (master side). One allocation: every varint takes at most varintMaxBytes, so the buffer
 * is sized for the worst case and the reply is the written part of it.
 */
export function binaryRows(places: Place[], rows: ReadonlyArray<number[] | Result<never>>): BinaryReplicaLists {
  let bound = 0;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    bound += Array.isArray(r) ? varintMaxBytes * (1 + r.length) : 1;
  }
  const buf = Buffer.allocUnsafe(bound);
  let p = 0;
  let errors: Array<[number, Result<never>]> | undefined;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!Array.isArray(r)) {
      buf[p++] = 0;
      (errors ??= []).push([i, r]);
      continue;
    }
    const replicas = (r.length - rowHead) / perReplica;
    if (!Number.isInteger(replicas) || replicas < 0) assert(false, `compact row ${i} has ${r.length} numbers`);
    p = writeVarint(buf, p, replicas + 1);
    for (let j = 0; j < r.length; j++) p = writeVarint(buf, p, r[j]!);
  }
  const bytes = buf.subarray(0, p);
  const v = binaryReplicaListsWireVersion;
  return errors === undefined ? { v, places, rows: bytes } : { v, places, rows: bytes, errors };
}

/** The lease TTL a compact row announces (a follower answers with the cluster's: follower-reads.ts). */
export function setRowLeaseTtl(row: number[], leaseTtlMs: number): void {
  row[2] = leaseTtlMs;
}

/**
 * The results of a batchGetReplicaList of `keyCount` keys from any wire form (client side). A reply of no known form,
 * of another length, or with a value out of range is refused with MALFORMED_FRAME: nothing half-read reaches the
 * caller.
 */
export function expandReplicaLists(wire: unknown, keyCount: number): Array<Result<GetReplicaListValue>> {
  if (Array.isArray(wire)) {
    if (wire.length !== keyCount) throw malformed(`${wire.length} results for ${keyCount} keys`);
    return wire as Array<Result<GetReplicaListValue>>;
  }
  const c = wire as Partial<CompactReplicaLists> | Partial<BinaryReplicaLists> | null;
  if (typeof c !== 'object' || c === null || (c.v !== replicaListsWireVersion && c.v !== binaryReplicaListsWireVersion) || !Array.isArray(c.places)) {
    throw malformed('neither a result list nor a compact reply of version 1 or 2');
  }
  const places = c.places.map(checkPlace);
  return c.v === binaryReplicaListsWireVersion ? expandBinary(c as Partial<BinaryReplicaLists>, places, keyCount) : expandArrays(c as Partial<CompactReplicaLists>, places, keyCount);
}

function expandArrays(c: Partial<CompactReplicaLists>, places: Place[], keyCount: number): Array<Result<GetReplicaListValue>> {
  if (!Array.isArray(c.rows)) throw malformed('rows of version 1 are not a list');
  if (c.rows.length !== keyCount) throw malformed(`${c.rows.length} rows for ${keyCount} keys`);
  const out: Array<Result<GetReplicaListValue>> = new Array(keyCount);
  for (let i = 0; i < keyCount; i++) {
    const row = c.rows[i];
    if (!Array.isArray(row)) {
      out[i] = checkFailure(row, () => `row ${i} is neither a replica list nor an error`);
      continue;
    }
    if (row.length < rowHead || (row.length - rowHead) % perReplica !== 0) throw malformed(`row ${i} has ${row.length} numbers`);
    for (let j = 0; j < row.length; j++) if (!Number.isSafeInteger(row[j]) || row[j]! < 0) throw malformed(`row ${i} holds ${String(row[j])}`);
    const status = statuses[row[1]!];
    if (status === undefined) throw malformed(`row ${i} has status code ${row[1]}`);
    const replicas: ReplicaDescriptor[] = [];
    for (let j = rowHead; j < row.length; j += perReplica) {
      const p = places[row[j]!];
      if (p === undefined) throw malformed(`row ${i} names place ${row[j]} of ${places.length}`);
      replicas.push({ segmentId: p[0], offset: row[j + 1]!, length: row[j + 2]!, address: row[j + 3]!, endpoint: p[1], protocol: p[2], tier: p[3] });
    }
    out[i] = { ok: true, value: { replicas, leaseTtlMs: row[2]!, size: row[0]!, status } };
  }
  return out;
}

const noErrors: ReadonlyArray<unknown> = [];

function expandBinary(c: Partial<BinaryReplicaLists>, places: Place[], keyCount: number): Array<Result<GetReplicaListValue>> {
  if (!(c.rows instanceof Uint8Array)) throw malformed('rows of version 2 are not bytes');
  const errors: unknown = c.errors === undefined ? noErrors : c.errors;
  if (!Array.isArray(errors)) throw malformed('errors is not a list');
  const r = new VarintReader(c.rows, 'batchGetReplicaList reply is malformed: rows');
  const out: Array<Result<GetReplicaListValue>> = new Array(keyCount);
  let failed = 0;
  for (let i = 0; i < keyCount; i++) {
    const h = r.next();
    if (h === 0) {
      // The next error must be this key's.
      const e: unknown = errors[failed];
      if (e === undefined && failed >= errors.length) throw malformed(`key ${i} failed but errors has ${errors.length} entries`);
      if (!Array.isArray(e) || e.length !== 2 || e[0] !== i) throw malformed(`error ${failed} is not [${i}, {ok: false, error}]`);
      out[i] = checkFailure(e[1], () => `error ${failed} (key ${i}) is not {ok: false, error}`);
      failed++;
      continue;
    }
    const n = h - 1;
    const size = r.next();
    const code = r.next();
    const leaseTtlMs = r.next();
    const status = statuses[code];
    if (status === undefined) throw malformed(`key ${i} has status code ${code}`);
    // Before allocating for an untrusted count: each replica takes at least minBinaryReplicaBytes.
    if (n * minBinaryReplicaBytes > r.remaining) throw malformed(`key ${i} has ${n} replicas in ${r.remaining} bytes`);
    const replicas: ReplicaDescriptor[] = new Array(n);
    for (let j = 0; j < n; j++) {
      const pi = r.next();
      const p = places[pi];
      if (p === undefined) throw malformed(`key ${i} names place ${pi} of ${places.length}`);
      const offset = r.next();
      const length = r.next();
      const address = r.next();
      replicas[j] = { segmentId: p[0], offset, length, address, endpoint: p[1], protocol: p[2], tier: p[3] };
    }
    out[i] = { ok: true, value: { replicas, leaseTtlMs, size, status } };
  }
  if (r.remaining !== 0) throw malformed(`${r.remaining} bytes after the last of ${keyCount} keys`);
  if (failed !== errors.length) throw malformed(`${errors.length} errors for ${failed} failed keys`);
  return out;
}

function checkFailure(e: unknown, what: () => string): Result<never> {
  const f = e as Result<never> | null | undefined;
  if (typeof f !== 'object' || f === null || f.ok !== false || typeof f.error !== 'object' || f.error === null) throw malformed(what());
  return f;
}

function checkPlace(p: unknown, i: number): Place {
  if (!Array.isArray(p) || p.length !== 4 || typeof p[0] !== 'string' || typeof p[1] !== 'string' || !protocols.has(p[2] as string) || !tiers.has(p[3] as string)) {
    throw malformed(`place ${i} is not [segmentId, endpoint, protocol, tier]`);
  }
  return p as Place;
}

function malformed(why: string): MooringError {
  return new MooringError(ErrorCode.MALFORMED_FRAME, `batchGetReplicaList reply is malformed: ${why}`);
}
