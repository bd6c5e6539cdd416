/** The object record codec: the hand-written fast reader agrees with msgpackr on every record encodeObject writes. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeObject, encodeObject, packr } from '../../src/statemachine/codec.js';
import type { ObjectRecord, Replica } from '../../src/statemachine/objects.js';

const num = fc.oneof(
  fc.integer({ min: 0, max: 300 }),
  fc.integer({ min: 0, max: 2 ** 32 + 5 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  fc.constantFrom(0, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 44, 2 ** 52),
);
const id = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), fc.string({ minLength: 32, maxLength: 300 }));
const replica: fc.Arbitrary<Replica> = fc.record({
  segmentId: id,
  offset: num,
  length: num,
  status: fc.constantFrom('PROCESSING' as const, 'COMPLETE' as const),
  tier: fc.constantFrom('DRAM' as const, 'VRAM' as const, 'DISK' as const),
});
const object: fc.Arbitrary<ObjectRecord> = fc.record({
  key: id,
  size: num,
  clientId: id,
  createdIndex: num,
  createdAtMs: num,
  completedAtMs: num,
  replicas: fc.array(replica, { maxLength: 8 }),
  softPinUntilMs: num,
  hardPin: fc.boolean(),
  pending: fc.option(fc.record({ size: num, replicas: fc.array(replica, { maxLength: 4 }), startedAtMs: num, softPin: fc.boolean(), hardPin: fc.boolean() })),
  offload: fc.option(fc.record({ replica, startedAtMs: num })),
  replicaNum: fc.integer({ min: 0, max: 8 }),
  repair: fc.option(fc.record({ replica, startedAtMs: num, startedIndex: num })),
  cover: fc.constant(null),
});

describe('object record codec', () => {
  it('never encodes the soft-state slot: a record with a cover encodes as without one and decodes with none', () => {
    fc.assert(
      fc.property(object, (o) => {
        const bare = encodeObject(o);
        const covered = encodeObject({ ...o, cover: { start: 1, read: true } });
        expect(covered.equals(bare)).toBe(true);
        expect(decodeObject(o.key, covered).cover).toBeNull();
      }),
      { numRuns: 50 },
    );
  });

  it('decodeObject(encodeObject(o)) equals o, and equals the generic msgpack decoding', () => {
    fc.assert(
      fc.property(object, (o) => {
        const buf = encodeObject(o);
        const back = decodeObject(o.key, buf);
        expect(back).toEqual(o);
        // Same record through msgpackr (what the fast reader must agree with), also from a non-Buffer view.
        const a = packr.unpack(buf) as unknown[];
        expect(a[0]).toBe(o.size);
        expect(decodeObject(o.key, new Uint8Array(buf))).toEqual(o);
        const shared = new Map<string, string>();
        const interned = decodeObject(o.key, buf, (s) => shared.get(s) ?? (shared.set(s, s), s));
        expect(interned).toEqual(o);
      }),
      { numRuns: 300 },
    );
  });

  it('falls back to msgpackr for records the fast reader does not take, and rejects garbage', () => {
    // A float size and a map where a number is expected: msgpackr decodes what it can.
    const odd = packr.pack([1.5, 'c', 1, 2, 3, 4, 0, [], null, null]);
    expect(decodeObject('k', odd).size).toBe(1.5);
    const truncated = encodeObject({ key: 'k', size: 1, clientId: 'c', createdIndex: 1, createdAtMs: 1, completedAtMs: 0, replicas: [], softPinUntilMs: 0, hardPin: false, pending: null, offload: null, replicaNum: 0, repair: null }).subarray(0, 5);
    expect(() => decodeObject('k', truncated)).toThrow();
  });
});
