/**
 * LEB128 varints of safe integers (src/transport/varint.ts): every non-negative safe integer reads back as written,
 * in as many bytes as its bits need, and the reader refuses what no writer produces.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { varintMaxBytes, VarintReader, writeVarint } from '../../src/transport/varint.js';
import { refusal } from '../helpers/refusal.js';

// fast-check prints the seed and counterexample on failure; replay with fc.assert(..., { seed, path }).

const edges = [0, 1, 127, 128, 16_383, 16_384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 35 - 1, 2 ** 35, 2 ** 49, 2 ** 52, Number.MAX_SAFE_INTEGER];
const value = fc.oneof(fc.constantFrom(...edges), fc.nat(), fc.maxSafeNat(), fc.integer({ min: 0, max: 2 ** 28 + 1000 }));


describe('varints', () => {
  it('read back as written, each in ceil(bits / 7) bytes (property)', () => {
    fc.assert(
      fc.property(fc.array(value, { maxLength: 50 }), (vs) => {
        const buf = new Uint8Array(vs.length * varintMaxBytes);
        let p = 0;
        for (const v of vs) {
          const q = writeVarint(buf, p, v);
          expect(q - p).toBe(Math.max(1, Math.ceil(v.toString(2).length / 7)));
          p = q;
        }
        const r = new VarintReader(buf.subarray(0, p), 'test');
        expect(vs.map(() => r.next())).toEqual(vs);
        expect(r.remaining).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it('a writer asked for what is not a non-negative safe integer fails an assertion (a bug, not a different number)', () => {
    for (const v of [-1, 1.5, 2 ** 28 + 0.5, NaN, 2 ** 53, Infinity]) expect(() => writeVarint(new Uint8Array(16), 0, v), String(v)).toThrow(/assertion failed/);
  });

  it('the reader refuses a cut varint, one longer than 8 bytes and a value above 2^53-1 with MALFORMED_FRAME', () => {
    const cases: Array<[string, number[], RegExp]> = [
      ['empty', [], /ends inside a varint/],
      ['cut after the continuation bit', [0x80], /ends inside a varint/],
      ['cut in the high bytes', [0xff, 0xff, 0xff, 0xff, 0xff], /ends inside a varint/],
      ['nine bytes', [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], /longer than 8 bytes/],
      ['2^53', [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10], /above 2\^53-1/],
    ];
    for (const [what, bytes, message] of cases) {
      const e = refusal(() => new VarintReader(Uint8Array.from(bytes), 'rows').next());
      expect(e.code, what).toBe(ErrorCode.MALFORMED_FRAME);
      expect(e.message, what).toMatch(message);
    }
    // 2^53-1, the largest, in its 8 bytes.
    expect(new VarintReader(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]), 'rows').next()).toBe(Number.MAX_SAFE_INTEGER);
  });
});
