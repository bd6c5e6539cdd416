/**
 * The compact wire form of a batchGetReplicaList reply, asked for with `compact: true` (MasterClient always asks).
 *
 * The plain form is one msgpack map per key, a map per replica inside it, and the same segment id, endpoint,
 * protocol and tier strings in every one: on a 64-key reply ~11 KB, and msgpackr's map reads and writes were most of
 * what a read cost a client (~1.2 µs per key to decode) and much of what it cost a master (~0.8 µs per key to
 * encode). The compact form names each replica place (segment id, endpoint, protocol, tier) once per reply and
 * sends each key as a flat array of numbers: ~2 KB, ~0.2 µs per key each way (bench/RESULTS.md).
 *
 *   { v: 1, places: [[segmentId, endpoint, protocol, tier], ...],
 *     rows: [ [size, statusCode, leaseTtlMs, place, offset, length, address, place, offset, ...] | {ok: false, error} ] }
 *
 * One row per requested key, in request order; a key that failed keeps its plain `{ok: false, error}` result. A
 * master that does not know `compact` (an older version) ignores it and sends the plain form: `expandReplicaLists`
 * takes either, so clients and masters of both versions mix during a rolling upgrade.
 */
import { ErrorCode, MooringError } from '../errors.js';
import type { Protocol, ReplicaDescriptor, Result, Tier } from '../statemachine/commands.js';
import type { Replica } from '../statemachine/objects.js';
import type { Segment } from '../statemachine/segments.js';
import type { GetReplicaListValue, ObjectStatus, ReplicaListSink } from '../statemachine/state-core.js';

export const replicaListsWireVersion = 1;

/** Status codes in a compact row (index into this list). */
const statuses: readonly ObjectStatus[] = ['COMPLETE', 'UPSERTING', 'OFFLOADING'];
const statusCode = new Map<string, number>(statuses.map((s, i) => [s, i]));
const protocols: ReadonlySet<string> = new Set<Protocol>(['shm', 'tcp', 'rdma']);
const tiers: ReadonlySet<string> = new Set<Tier>(['DRAM', 'VRAM', 'DISK']);

type Place = [segmentId: string, endpoint: string, protocol: Protocol, tier: Tier];
/** Numbers before the replicas in a row, and per replica after them. */
const rowHead = 3;
const perReplica = 4;

export interface CompactReplicaLists {
  v: typeof replicaListsWireVersion;
  places: Place[];
  rows: Array<number[] | Result<never>>;
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
}

/** The lease TTL a compact row announces (a follower answers with the cluster's: follower-reads.ts). */
export function setRowLeaseTtl(row: number[], leaseTtlMs: number): void {
  row[2] = leaseTtlMs;
}

/**
 * The results of a batchGetReplicaList of `keyCount` keys from either wire form (client side). A reply of neither
 * form, of another length, or with a value out of range is refused with MALFORMED_FRAME: nothing half-read reaches
 * the caller.
 */
export function expandReplicaLists(wire: unknown, keyCount: number): Array<Result<GetReplicaListValue>> {
  if (Array.isArray(wire)) {
    if (wire.length !== keyCount) throw malformed(`${wire.length} results for ${keyCount} keys`);
    return wire as Array<Result<GetReplicaListValue>>;
  }
  const c = wire as Partial<CompactReplicaLists> | null;
  if (typeof c !== 'object' || c === null || c.v !== replicaListsWireVersion || !Array.isArray(c.places) || !Array.isArray(c.rows)) {
    throw malformed('neither a result list nor a compact reply of version 1');
  }
  if (c.rows.length !== keyCount) throw malformed(`${c.rows.length} rows for ${keyCount} keys`);
  const places = c.places.map(checkPlace);
  const out: Array<Result<GetReplicaListValue>> = new Array(keyCount);
  for (let i = 0; i < keyCount; i++) {
    const row = c.rows[i];
    if (!Array.isArray(row)) {
      const e = row as Result<never> | null | undefined;
      if (typeof e !== 'object' || e === null || e.ok !== false || typeof e.error !== 'object' || e.error === null) throw malformed(`row ${i} is neither a replica list nor an error`);
      out[i] = e;
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

function checkPlace(p: unknown, i: number): Place {
  if (!Array.isArray(p) || p.length !== 4 || typeof p[0] !== 'string' || typeof p[1] !== 'string' || !protocols.has(p[2] as string) || !tiers.has(p[3] as string)) {
    throw malformed(`place ${i} is not [segmentId, endpoint, protocol, tier]`);
  }
  return p as Place;
}

function malformed(why: string): MooringError {
  return new MooringError(ErrorCode.MALFORMED_FRAME, `batchGetReplicaList reply is malformed: ${why}`);
}
