/**
 * The compact batchGetReplicaList reply (src/master/replica-lists-wire.ts): it carries exactly the plain results
 * through the real frame codec, a client takes an older master's plain reply too, and anything malformed is refused
 * with MALFORMED_FRAME instead of reaching the caller half-read.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { CompactReplicaListsBuilder, compactReplicaLists, expandReplicaLists } from '../../src/master/replica-lists-wire.js';
import { LeaseTable } from '../../src/statemachine/leases.js';
import { Driver, seg } from '../statemachine/helpers.js';
import type { Result } from '../../src/statemachine/commands.js';
import type { GetReplicaListValue } from '../../src/statemachine/state-core.js';
import { decodePayload, encodePayload } from '../../src/transport/codec.js';

// fast-check prints the seed and counterexample on failure; replay with fc.assert(..., { seed, path }).

const replica = fc.record({
  segmentId: fc.constantFrom('s1', 's2', 'seg-3', ''),
  offset: fc.nat(),
  length: fc.nat(),
  address: fc.maxSafeNat(),
  endpoint: fc.constantFrom('127.0.0.1:9000', '[::1]:9001', 'h:1'),
  protocol: fc.constantFrom('shm' as const, 'tcp' as const, 'rdma' as const),
  tier: fc.constantFrom('DRAM' as const, 'VRAM' as const, 'DISK' as const),
});
const result: fc.Arbitrary<Result<GetReplicaListValue>> = fc.oneof(
  fc.record({
    ok: fc.constant(true as const),
    value: fc.record({
      replicas: fc.array(replica, { maxLength: 4 }),
      leaseTtlMs: fc.nat(),
      size: fc.nat(),
      status: fc.constantFrom('COMPLETE' as const, 'UPSERTING' as const, 'OFFLOADING' as const),
    }),
  }),
  fc.constantFrom<Result<GetReplicaListValue>>(
    { ok: false, error: { code: ErrorCode.OBJECT_NOT_FOUND, message: 'no object k' } },
    { ok: false, error: { code: ErrorCode.OBJECT_NOT_READY, message: 'not yet' } },
  ),
);

/** Through the real codec, as a reply travels. */
const wire = (v: unknown): unknown => decodePayload(encodePayload(v));

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

  it('a client takes an older master’s plain reply as it is', () => {
    const rs: Array<Result<GetReplicaListValue>> = [{ ok: false, error: { code: ErrorCode.OBJECT_NOT_FOUND, message: 'x' } }];
    expect(expandReplicaLists(wire(rs), 1)).toEqual(rs);
  });

  it('refuses malformed replies with MALFORMED_FRAME', () => {
    const good = compactReplicaLists([{ ok: true, value: { replicas: [{ segmentId: 's', offset: 0, length: 8, address: 16, endpoint: 'h:1', protocol: 'tcp', tier: 'DRAM' }], leaseTtlMs: 1, size: 8, status: 'COMPLETE' } }]);
    const bad: Array<[string, unknown, number]> = [
      ['a plain list of another length', [], 1],
      ['neither form', { rows: [] }, 0],
      ['another version', { ...good, v: 2 }, 1],
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
