// Data integrity of transfers over every in-host path (local copy, shm, tcp over loopback), checked by SHA-256,
// with random sizes and offsets (fast-check; a failure prints its seed: replay with { seed, path }).
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Engine, type Segment, type TransferProtocol, type TransferRequest } from '../../src/engine/index.js';

const segmentBytes = 16 * 1024 * 1024;
const stripes = 8; // requests in one batch use distinct stripes, so they never overlap
const stripeBytes = segmentBytes / stripes;

let a: Engine;
let b: Engine;
let la: Segment; // local side (engine a)
let rb: Segment; // remote side (engine b)
let ra: Segment; // a second segment of engine a (the same-engine local path)

beforeAll(() => {
  a = new Engine({ onWarning: () => {} });
  b = new Engine({ onWarning: () => {} });
  la = a.createSegment({ size: segmentBytes, name: 'local' });
  rb = b.createSegment({ size: segmentBytes, name: 'remote' });
  ra = a.createSegment({ size: segmentBytes, name: 'same-engine' });
});
afterAll(async () => {
  await a.close();
  await b.close();
});

const sha = (buf: Buffer) => createHash('sha256').update(buf).digest('hex');

function fillPattern(buf: Buffer, seed: number): void {
  // xorshift32: cheap deterministic bytes
  let x = seed | 1;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 0xff;
  }
}

const reqArb = fc.record({
  write: fc.boolean(),
  length: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 1, max: stripeBytes / 2 })),
  localPos: fc.double({ min: 0, max: 1, noNaN: true }),
  remotePos: fc.double({ min: 0, max: 1, noNaN: true }),
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
});

type Path = 'local' | TransferProtocol;

async function checkBatch(path: Path, specs: { write: boolean; length: number; localPos: number; remotePos: number; seed: number }[]): Promise<void> {
  const remoteSeg = path === 'local' ? ra : rb;
  const desc = remoteSeg.descriptor();
  const expected: { dst: Buffer; hash: string }[] = [];
  const reqs: TransferRequest[] = specs.map((s, i) => {
    const localOff = i * stripeBytes + Math.floor(s.localPos * (stripeBytes - s.length));
    const remoteOff = i * stripeBytes + Math.floor(s.remotePos * (stripeBytes - s.length));
    const lview = la.buffer.subarray(localOff, localOff + s.length);
    const rview = remoteSeg.buffer.subarray(remoteOff, remoteOff + s.length);
    const [src, dst] = s.write ? [lview, rview] : [rview, lview];
    fillPattern(src, s.seed);
    dst.fill(0xee);
    expected.push({ dst, hash: sha(src) });
    return {
      op: s.write ? 'write' : 'read',
      local: { segment: la, offset: localOff },
      remote: { segment: desc, offset: remoteOff },
      length: s.length,
    };
  });
  const results = await a.transfer(reqs, path === 'local' ? {} : { protocol: path });
  expect(results).toHaveLength(specs.length);
  results.forEach((r, i) => {
    expect(r.status, r.message).toBe('completed');
    expect(r.protocol).toBe(path);
    expect(sha(expected[i]!.dst)).toBe(expected[i]!.hash);
  });
}

describe('transfers keep data intact', () => {
  for (const path of ['local', 'shm', 'tcp'] as const) {
    it(`over ${path} with random sizes and offsets`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(reqArb, { minLength: 1, maxLength: stripes }), (specs) => checkBatch(path, specs)),
        { numRuns: path === 'tcp' ? 25 : 40 },
      );
    });
  }

  it('picks shm automatically for another engine on the same host, tcp without an shm section', async () => {
    // Two engines share a host (here, a process): auto picks shm for the other engine's segment.
    const [r] = await a.transfer([
      { op: 'read', local: { segment: la, offset: 0 }, remote: { segment: rb.descriptor(), offset: 0 }, length: 10 },
    ]);
    expect(r).toEqual({ status: 'completed', protocol: 'shm' });
    // Without the shm section (e.g. a descriptor from another host) it goes over tcp.
    const { shm: _shm, ...noShm } = rb.descriptor();
    const [t] = await a.transfer([
      { op: 'read', local: { segment: la, offset: 0 }, remote: { segment: noShm, offset: 0 }, length: 10 },
    ]);
    expect(t).toEqual({ status: 'completed', protocol: 'tcp' });
  });

  it('runs many batches in flight at once without mixing their bytes', async () => {
    const batches = 32;
    const perBatch = 4;
    const chunk = segmentBytes / (batches * perBatch); // distinct region per request
    const desc = rb.descriptor();
    fillPattern(la.buffer, 12345);
    rb.buffer.fill(0);
    const pending: Promise<unknown>[] = [];
    for (let bi = 0; bi < batches; bi++) {
      const reqs: TransferRequest[] = [];
      for (let k = 0; k < perBatch; k++) {
        const off = (bi * perBatch + k) * chunk;
        reqs.push({ op: 'write', local: { segment: la, offset: off }, remote: { segment: desc, offset: off }, length: chunk });
      }
      pending.push(a.transfer(reqs, { protocol: bi % 2 ? 'tcp' : 'shm' }));
    }
    const all = (await Promise.all(pending)) as { status: string }[][];
    expect(all.flat().every((r) => r.status === 'completed')).toBe(true);
    expect(sha(rb.buffer)).toBe(sha(la.buffer));
  });

  it('a forced rdma transfer falls back to tcp with a logged reason when no device is active', async () => {
    const warnings: string[] = [];
    const c = new Engine({ onWarning: (m) => warnings.push(m) });
    try {
      const s = c.createSegment({ size: 4096 });
      s.buffer.fill(3);
      const [r] = await c.transfer(
        [{ op: 'write', local: { segment: s, offset: 0 }, remote: { segment: rb.descriptor(), offset: 0 }, length: 4096 }],
        { protocol: 'rdma' },
      );
      if (c.info.rdmaActive) return; // real hardware: nothing to check here
      expect(r).toEqual({ status: 'completed', protocol: 'tcp' });
      expect(rb.buffer.subarray(0, 4096).every((x) => x === 3)).toBe(true);
      expect(warnings.some((w) => /rdma.*falling back to tcp/.test(w))).toBe(true);
    } finally {
      await c.close();
    }
  });
});
