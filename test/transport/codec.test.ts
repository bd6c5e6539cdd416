import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { FrameDecoder, defaultMaxFrameBytes, encodeFrame, encodePayload } from '../../src/transport/codec.js';

function header(len: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(len >>> 0);
  return b;
}

describe('frame codec', () => {
  it('round-trips plain values, including Uint8Array, across arbitrary chunk splits', () => {
    const value = { type: 'app', from: 'a', to: 'b', term: 7, entries: [{ index: 1, term: 7, type: 'normal', data: new Uint8Array([0, 1, 255]) }], nested: { list: [1, 'x', null, true] } };
    const frame = encodeFrame(value);
    expect(frame.readUInt32BE(0)).toBe(frame.byteLength - 4);
    for (let split = 1; split < frame.byteLength; split++) {
      const d = new FrameDecoder();
      const got = [...d.push(frame.subarray(0, split)), ...d.push(frame.subarray(split))];
      expect(got).toHaveLength(1);
      const v = got[0] as typeof value;
      expect(v.entries[0]!.data).toBeInstanceOf(Uint8Array);
      expect(Buffer.isBuffer(v.entries[0]!.data)).toBe(false); // exactly Uint8Array, as sent
      expect(v.entries[0]!.data).toEqual(new Uint8Array([0, 1, 255]));
      expect(Array.from(v.entries[0]!.data)).toEqual([0, 1, 255]);
      expect({ ...v, entries: undefined }).toEqual({ ...value, entries: undefined });
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('property: any sequence of JSON-ish values survives any chunking', () => {
    // Replay a failure with fc.assert(..., { seed, path }) from the printed report.
    const valueArb = fc.oneof(fc.jsonValue(), fc.uint8Array({ maxLength: 64 }).map((data) => ({ data })));
    fc.assert(
      fc.property(fc.array(valueArb, { minLength: 1, maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }), (values, cuts) => {
        const stream = Buffer.concat(values.map((v) => encodeFrame(v)));
        const d = new FrameDecoder();
        const out: unknown[] = [];
        let pos = 0;
        let k = 0;
        while (pos < stream.byteLength) {
          const n = cuts[k++ % cuts.length]!;
          out.push(...d.push(stream.subarray(pos, pos + n)));
          pos += n;
        }
        expect(out.length).toBe(values.length);
        // Normalize through msgpack semantics (-0 → 0, Buffer vs Uint8Array) before comparing.
        const norm = (v: unknown): unknown => {
          if (v instanceof Uint8Array) return { bytes: Array.from(v) };
          if (Array.isArray(v)) return v.map(norm);
          // msgpackr decodes a key named __proto__ as __proto_ (its prototype-pollution guard): expected and safe.
          if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k === '__proto__' ? '__proto_' : k, norm(x)]));
          return Object.is(v, -0) ? 0 : v;
        };
        expect(out.map(norm)).toEqual(values.map(norm));
      }),
    );
  });

  it('rejects an oversize header before buffering the body', () => {
    const d = new FrameDecoder(1024);
    // Only the header arrives: the decoder must refuse at once, not wait for (or allocate) 4 GiB.
    expect(() => d.push(header(0xffffffff))).toThrowError(expect.objectContaining({ code: ErrorCode.FRAME_TOO_LARGE }));
    expect(d.bufferedBytes).toBe(0);
    const d2 = new FrameDecoder(1024);
    expect(() => d2.push(header(1025))).toThrowError(expect.objectContaining({ code: ErrorCode.FRAME_TOO_LARGE }));
    const d3 = new FrameDecoder(1024);
    expect(d3.push(header(1024))).toEqual([]); // exactly at the limit is fine
  });

  it('encodeFrame refuses a value over maxFrameBytes', () => {
    expect(() => encodeFrame({ data: new Uint8Array(2048) }, 1024)).toThrowError(expect.objectContaining({ code: ErrorCode.FRAME_TOO_LARGE }));
    expect(defaultMaxFrameBytes).toBe(16 * 1024 * 1024);
  });

  it('turns undecodable payloads into MALFORMED_FRAME and stays failed', () => {
    const bad = [Buffer.from([0xc1]), Buffer.from([0xd6, 0xff, 0, 0, 0, 1]) /* a Date extension */, Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0x92, 0x01]), Buffer.from([0x01, 0x02])];
    for (const body of bad) {
      const d = new FrameDecoder();
      expect(() => d.push(Buffer.concat([header(body.byteLength), body]))).toThrowError(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME }));
      expect(() => d.push(encodeFrame({ ok: 1 }))).toThrowError(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME }));
    }
    const empty = new FrameDecoder();
    expect(() => empty.push(header(0))).toThrowError(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME }));
  });

  it('refuses an extension value nested among numbers and strings (the inline fast path skips only those)', () => {
    const date = [0xd6, 0xff, 0, 0, 0, 1];
    const bodies = [
      Buffer.from([0x93, 0x01, 0xa1, 0x78, ...date]), // [1, 'x', Date]
      Buffer.from([0x82, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0x92, 0x02, ...date]), // {a: 1, b: [2, Date]}
    ];
    for (const body of bodies) {
      expect(() => new FrameDecoder().push(Buffer.concat([header(body.byteLength), body]))).toThrowError(expect.objectContaining({ code: ErrorCode.MALFORMED_FRAME }));
    }
    // The same shapes without the extension decode to exactly what was sent, Uint8Array views included.
    const ok = { a: 1, b: [2, 'x', new Uint8Array([7, 8])], c: { d: [3.5, null, true] } };
    const [got] = new FrameDecoder().push(encodeFrame(ok)) as [typeof ok];
    expect(got).toEqual(ok);
    expect(Buffer.isBuffer(got.b[2])).toBe(false);
  });

  it('property: random bytes never throw anything but FRAME_TOO_LARGE / MALFORMED_FRAME', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const d = new FrameDecoder(256);
        try {
          d.push(bytes);
        } catch (err) {
          expect([ErrorCode.FRAME_TOO_LARGE, ErrorCode.MALFORMED_FRAME]).toContain((err as { code?: string }).code);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('property: mutated valid frames decode or fail with a frame error, never anything else', () => {
    const base = encodePayload({ type: 'app', from: 'n1', to: 'n2', term: 3, entries: [{ index: 9, term: 3, data: new Uint8Array([1, 2, 3]) }] });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(base.byteLength - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), (muts) => {
        const body = Buffer.from(base);
        for (const [i, b] of muts) body[i] = b;
        const d = new FrameDecoder();
        try {
          d.push(Buffer.concat([header(body.byteLength), body]));
        } catch (err) {
          expect([ErrorCode.FRAME_TOO_LARGE, ErrorCode.MALFORMED_FRAME]).toContain((err as { code?: string }).code);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
