/**
 * The compact batchGetReplicaList replies (src/master/replica-lists-wire.ts), version 1 (rows of numbers) and 2
 * (binary rows): each carries exactly the plain results through the real frame codec, a client takes an older
 * master's version 1 or plain reply too, and anything malformed is refused with MALFORMED_FRAME instead of reaching
 * the caller half-read.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { binaryRows, CompactReplicaListsBuilder, compactReplicaLists, expandReplicaLists, setRowLeaseTtl, type BinaryReplicaLists } from '../../src/master/replica-lists-wire.js';
import { parseArgs } from '../../src/master/rpc-methods.js';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { Driver, seg } from '../statemachine/helpers.js';
import type { ReplicaDescriptor, Result } from '../../src/statemachine/commands.js';
import type { GetReplicaListValue } from '../../src/statemachine/state-core.js';
import { decodePayload, encodePayload } from '../../src/transport/codec.js';
import { refusal } from '../helpers/refusal.js';

// fast-check prints the seed and counterexample on failure; replay with fc.assert(..., { seed, path }).

const replica = fc.record({ ...replicaFields(), offset: fc.nat(), length: fc.nat(), address: fc.maxSafeNat() });
const status = fc.constantFrom('COMPLETE' as const, 'UPSERTING' as const, 'OFFLOADING' as const);
const failure = fc.constantFrom<Result<GetReplicaListValue>>(
  { ok: false, error: { code: ErrorCode.OBJECT_NOT_FOUND, message: 'no object k' } },
  { ok: false, error: { code: ErrorCode.OBJECT_NOT_READY, message: 'not yet' } },
);
/** A key's result: its replicas from `rep` (up to `maxReplicas`), its numbers from `num`; or a failure. */
function resultOf(rep: fc.Arbitrary<ReplicaDescriptor>, num: fc.Arbitrary<number>, maxReplicas: number): fc.Arbitrary<Result<GetReplicaListValue>> {
  return fc.oneof(
    fc.record({
      ok: fc.constant(true as const),
      value: fc.record({ replicas: fc.array(rep, { maxLength: maxReplicas }), leaseTtlMs: num, size: num, status }),
    }),
    failure,
  );
}
const result = resultOf(replica, fc.nat(), 4);

/** Through the real codec, as a reply travels. */
const wire = (v: unknown): unknown => decodePayload(encodePayload(v));

/** Large numbers everywhere, more replicas: what binary rows must carry as exactly as arrays of numbers do. */
const largeResult = resultOf(fc.record({ ...replicaFields(), offset: fc.maxSafeNat(), length: fc.maxSafeNat(), address: fc.maxSafeNat() }), fc.maxSafeNat(), 6);

/** A replica's place fields (its numbers are up to each arbitrary). */
function replicaFields() {
  return {
    segmentId: fc.constantFrom('s1', 's2', 'seg-3', ''),
    endpoint: fc.constantFrom('127.0.0.1:9000', '[::1]:9001', 'h:1'),
    protocol: fc.constantFrom('shm' as const, 'tcp' as const, 'rdma' as const),
    tier: fc.constantFrom('DRAM' as const, 'VRAM' as const, 'DISK' as const),
  };
}

/** The version 2 form of plain results (master side), as the builder's doneBinary makes it. */
const binaryOf = (rs: ReadonlyArray<Result<GetReplicaListValue>>): BinaryReplicaLists => {
  const c = compactReplicaLists(rs);
  return binaryRows(c.places, c.rows);
};


describe('compact batchGetReplicaList replies', () => {
  it('carry exactly the plain results (property, through the frame codec)', () => {
    fc.assert(
      fc.property(fc.array(result, { maxLength: 40 }), (rs) => {
        expect(expandReplicaLists(wire(compactReplicaLists(rs)), rs.length)).toEqual(wire(rs));
      }),
      { numRuns: 300 },
    );
  });

  it('built straight from the state (no descriptors) equal the compact form of the plain results (property)', () => {
    let rows = 0;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 4 }), fc.array(fc.tuple(fc.nat(5), fc.integer({ min: 1, max: 3 }), fc.boolean()), { maxLength: 30 }), fc.array(fc.nat(7), { maxLength: 40 }), fc.boolean(), (segs, puts, reads, leased) => {
        const plain = new Driver();
        const direct = new Driver();
        for (const d of [plain, direct]) {
          for (let i = 0; i < segs; i++) d.ok({ type: 'MountSegment', clientId: `n${i}`, segment: seg(`s${i}`, 1 << 20, { base: 4096 * (i + 1), tier: i === 3 ? 'DISK' : 'DRAM', protocol: i === 2 ? 'shm' : 'tcp' }) });
          puts.forEach(([k, n, complete], i) => {
            if (d.code({ type: 'PutStart', clientId: 'c', key: `k${k}`, size: 100 + i, replicaNum: Math.min(n, segs) }) === null && complete) d.code({ type: 'PutEnd', clientId: 'c', key: `k${k}` });
          });
        }
        const keys = reads.map((k) => `k${k}`);
        const leasesA = leased ? new LeaseTable(5000) : undefined;
        const leasesB = leased ? new LeaseTable(5000) : undefined;
        const expected = compactReplicaLists(keys.map((k) => plain.core.getReplicaList(k, 1000, leasesA)));
        const b = new CompactReplicaListsBuilder();
        const built = b.done(keys.map((k) => direct.core.replicaListInto<number[] | Result<never>>(k, 1000, leasesB, b)));
        expect(wire(built)).toEqual(wire(expected));
        // Version 2 of the same rows says the same.
        expect(expandReplicaLists(wire(b.doneBinary(built.rows)), keys.length)).toEqual(expandReplicaLists(wire(expected), keys.length));
        rows += built.rows.filter((r) => Array.isArray(r)).length;
      }),
      { numRuns: 200 },
    );
    expect(rows).toBeGreaterThan(50); // objects were found, not only errors compared
  });

  it('name each place once and are a fraction of the plain size on a typical 64-key reply', () => {
    const rs: Array<Result<GetReplicaListValue>> = Array.from({ length: 64 }, (_, i) => ({
      ok: true,
      value: { replicas: [{ segmentId: `seg-${i % 4}`, offset: i * 4096, length: 4096, address: 0x10000000 + i * 4096, endpoint: `10.0.0.${i % 4}:9000`, protocol: 'tcp', tier: 'DRAM' }], leaseTtlMs: 5000, size: 4096, status: 'COMPLETE' },
    }));
    const c = compactReplicaLists(rs);
    expect(c.places).toHaveLength(4);
    expect(encodePayload(c).byteLength * 4).toBeLessThan(encodePayload(rs).byteLength);
    // A segment id seen with two tiers is two places.
    const two = compactReplicaLists([{ ok: true, value: { replicas: [rs[0]!.ok ? rs[0]!.value.replicas[0]! : (undefined as never), { ...(rs[0] as { value: GetReplicaListValue }).value.replicas[0]!, tier: 'DISK' }], leaseTtlMs: 1, size: 1, status: 'COMPLETE' } }]);
    expect(two.places).toHaveLength(2);
  });

  it('binary rows (version 2) carry exactly the plain results, failed keys anywhere, numbers up to 2^53-1 (property, through the frame codec)', () => {
    let failed = 0;
    fc.assert(
      fc.property(fc.array(fc.oneof(result, largeResult), { maxLength: 40 }), (rs) => {
        const travelled = wire(binaryOf(rs)) as BinaryReplicaLists;
        expect(travelled.v).toBe(2);
        // The codec hands bytes over as a plain Uint8Array view.
        expect(travelled.rows).toBeInstanceOf(Uint8Array);
        expect(expandReplicaLists(travelled, rs.length)).toEqual(wire(rs));
        failed += travelled.errors?.length ?? 0;
      }),
      { numRuns: 500 },
    );
    expect(failed).toBeGreaterThan(100);
  });

  it('binary rows are smaller than rows of numbers on a typical 64-key reply, and carry the lease TTL a follower sets', () => {
    const rs: Array<Result<GetReplicaListValue>> = Array.from({ length: 64 }, (_, i) => ({
      ok: true,
      value: { replicas: [{ segmentId: `seg-${i % 2}`, offset: (i * 4096 * 37) % 2 ** 30, length: 4096, address: 0x7f0000000000 + ((i * 4096 * 37) % 2 ** 30), endpoint: `10.0.0.${i % 2}:9000`, protocol: 'tcp', tier: 'DRAM' }], leaseTtlMs: 5000, size: 4096, status: 'COMPLETE' },
    }));
    const c = compactReplicaLists(rs);
    expect(encodePayload(binaryRows(c.places, c.rows)).byteLength).toBeLessThan(encodePayload(c).byteLength * 0.85);
    // A follower rewrites the rows' lease TTL after building them (follower-reads.ts compactForm), before doneBinary.
    for (const r of c.rows) if (Array.isArray(r)) setRowLeaseTtl(r, 2 ** 40);
    const out = expandReplicaLists(wire(binaryRows(c.places, c.rows)), rs.length);
    expect(out.map((r) => (r.ok ? r.value.leaseTtlMs : -1))).toEqual(rs.map(() => 2 ** 40));
  });

  it('a client takes an older master’s plain reply as it is', () => {
    const rs: Array<Result<GetReplicaListValue>> = [{ ok: false, error: { code: ErrorCode.OBJECT_NOT_FOUND, message: 'x' } }];
    expect(expandReplicaLists(wire(rs), 1)).toEqual(rs);
  });

  it('a client that asks for binary rows takes an older master’s version 1 reply', () => {
    const rs: Array<Result<GetReplicaListValue>> = [
      { ok: true, value: { replicas: [{ segmentId: 's', offset: 0, length: 8, address: 2 ** 47, endpoint: 'h:1', protocol: 'tcp', tier: 'DRAM' }], leaseTtlMs: 1, size: 8, status: 'COMPLETE' } },
      { ok: false, error: { code: ErrorCode.OBJECT_NOT_FOUND, message: 'x' } },
    ];
    expect(expandReplicaLists(wire(compactReplicaLists(rs)), 2)).toEqual(rs);
  });

  it('the request: rows takes only the one value, with compact; fields a master does not know are dropped (so an older one answers version 1)', () => {
    expect(parseArgs('batchGetReplicaList', { keys: ['a'], compact: true, rows: 'binary' })).toEqual({ keys: ['a'], compact: true, rows: 'binary' });
    expect(parseArgs('batchGetReplicaList', { keys: ['a'], compact: true })).toEqual({ keys: ['a'], compact: true });
    for (const rows of ['Binary', 'arrays', '', true, 1, null, ['binary']]) {
      const e = refusal(() => parseArgs('batchGetReplicaList', { keys: ['a'], compact: true, rows }));
      expect(e.code, String(rows)).toBe(ErrorCode.INVALID_ARGUMENT);
    }
    for (const compact of [undefined, false]) {
      const e = refusal(() => parseArgs('batchGetReplicaList', { keys: ['a'], compact, rows: 'binary' }));
      expect(e.code).toBe(ErrorCode.INVALID_ARGUMENT);
    }
    // parseArgs builds its result field by field: a field it does not know is not passed on (nor refused). That is
    // how a master older than `rows` took it (its parseArgs was built the same way), answering version 1.
    expect(parseArgs('batchGetReplicaList', { keys: ['a'], compact: true, rowsFromTheFuture: 'x' })).toEqual({ keys: ['a'], compact: true });
  });

  it('refuses malformed binary rows (version 2) with MALFORMED_FRAME, saying what is wrong', () => {
    const places = [['s', 'h:1', 'tcp', 'DRAM']];
    const err = { ok: false, error: { code: ErrorCode.OBJECT_NOT_FOUND, message: 'x' } };
    // One key with one replica: header 2, size 8, status 0, ttl 1, place 0, offset 0, length 8, address 16.
    const one = [2, 8, 0, 1, 0, 0, 8, 16];
    const v2 = (rows: number[] | unknown, extra: object = {}): unknown => ({ v: 2, places, rows: rows instanceof Array && rows.every((x) => typeof x === 'number') ? Uint8Array.from(rows as number[]) : rows, ...extra });
    // The good ones these are cut from.
    expect(expandReplicaLists(v2(one), 1)).toHaveLength(1);
    expect(expandReplicaLists(v2([0, ...one, 0], { errors: [[0, err], [2, err]] }), 3).map((r) => r.ok)).toEqual([false, true, false]);
    const bad: Array<[string, unknown, number, RegExp]> = [
      ['rows a list of numbers', { v: 2, places, rows: one }, 1, /rows of version 2 are not bytes/],
      ['rows a string', v2('abc'), 1, /not bytes/],
      ['rows missing', { v: 2, places }, 1, /not bytes/],
      ['a varint cut short', v2(one.slice(0, -1).concat([0x80])), 1, /ends inside a varint/],
      ['fewer keys than asked for', v2(one), 2, /ends inside a varint/],
      ['a varint longer than 8 bytes', v2([0x82, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, ...one.slice(1)]), 1, /longer than 8 bytes/],
      ['a value above 2^53-1', v2([...one.slice(0, -1), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]), 1, /above 2\^53-1/],
      ['a status code out of range', v2([2, 8, 3, 1, 0, 0, 8, 16]), 1, /status code 3/],
      ['a place out of range', v2([2, 8, 0, 1, 1, 0, 8, 16]), 1, /names place 1 of 1/],
      ['more replicas than bytes remain', v2([3, 8, 0, 1, 0, 0, 8, 16]), 1, /2 replicas in 4 bytes/],
      ['a replica count of 2^53-2', v2([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f, 8, 0, 1]), 1, /replicas in 0 bytes/],
      ['trailing bytes', v2([...one, 0]), 1, /1 bytes after the last of 1 keys/],
      ['more keys than asked for', v2([...one, ...one]), 1, /8 bytes after the last/],
      ['errors not a list', v2([0], { errors: { 0: err } }), 1, /errors is not a list/],
      ['too few errors', v2([0, 0], { errors: [[0, err]] }), 2, /key 1 failed but errors has 1 entries/],
      ['no errors at all', v2([0]), 1, /key 0 failed but errors has 0 entries/],
      ['too many errors', v2(one, { errors: [[0, err]] }), 1, /1 errors for 0 failed keys/],
      ['an error for a key that did not fail', v2([...one, 0], { errors: [[0, err], [1, err]] }), 2, /error 0 is not \[1,/],
      ['an error of the wrong index', v2([0, ...one], { errors: [[1, err]] }), 2, /error 0 is not \[0,/],
      ['errors out of order', v2([0, 0], { errors: [[1, err], [0, err]] }), 2, /error 0 is not \[0,/],
      ['an error that is not a pair', v2([0], { errors: [[0]] }), 1, /error 0 is not \[0,/],
      ['an error that is not a failure', v2([0], { errors: [[0, { ok: true, value: 1 }]] }), 1, /error 0 \(key 0\) is not \{ok: false, error\}/],
      ['an error without its error', v2([0], { errors: [[0, { ok: false }]] }), 1, /is not \{ok: false, error\}/],
      ['a place with an unknown tier', { v: 2, places: [['s', 'h:1', 'tcp', 'SSD']], rows: Uint8Array.from(one) }, 1, /place 0 is not/],
    ];
    for (const [what, reply, keys, message] of bad) {
      const e = refusal(() => expandReplicaLists(reply, keys));
      expect(e.code, what).toBe(ErrorCode.MALFORMED_FRAME);
      expect(e.message, what).toMatch(message);
    }
  });

  it('refuses malformed replies with MALFORMED_FRAME', () => {
    const good = compactReplicaLists([{ ok: true, value: { replicas: [{ segmentId: 's', offset: 0, length: 8, address: 16, endpoint: 'h:1', protocol: 'tcp', tier: 'DRAM' }], leaseTtlMs: 1, size: 8, status: 'COMPLETE' } }]);
    const bad: Array<[string, unknown, number]> = [
      ['a plain list of another length', [], 1],
      ['neither form', { rows: [] }, 0],
      ['another version', { ...good, v: 3 }, 1],
      ['version 2 with rows of numbers', { ...good, v: 2 }, 1],
      ['rows of another length', good, 2],
      ['a row too short', { ...good, rows: [[8, 0]] }, 1],
      ['a replica cut short', { ...good, rows: [[8, 0, 1, 0, 0, 8]] }, 1],
      ['a place out of range', { ...good, rows: [[8, 0, 1, 5, 0, 8, 16]] }, 1],
      ['a negative number', { ...good, rows: [[8, 0, 1, 0, -1, 8, 16]] }, 1],
      ['a fraction', { ...good, rows: [[8, 0, 1.5, 0, 0, 8, 16]] }, 1],
      ['a string among the numbers', { ...good, rows: [[8, 0, 1, '0', 0, 8, 16]] }, 1],
      ['an unknown status code', { ...good, rows: [[8, 9, 1, 0, 0, 8, 16]] }, 1],
      ['a row that is neither', { ...good, rows: [{ ok: true }] }, 1],
      ['a place with an unknown protocol', { ...good, places: [['s', 'h:1', 'udp', 'DRAM']] }, 1],
      ['a place that is not a tuple', { ...good, places: ['s'] }, 1],
      ['null', null, 0],
    ];
    for (const [what, reply, keys] of bad) {
      let err: unknown;
      try {
        expandReplicaLists(reply, keys);
      } catch (e) {
        err = e;
      }
      expect(err, what).toBeInstanceOf(MooringError);
      expect((err as MooringError).code, what).toBe(ErrorCode.MALFORMED_FRAME);
    }
  });
});
