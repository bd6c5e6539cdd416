// NVMe tier: offload (DRAM → DISK) and promote (DISK → DRAM) keep bytes intact, on an O_DIRECT file via io_uring
// (or the fallbacks the engine reports), and refuse bad arguments with codes.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DiskSegment, Engine, type Segment, diskAlignBytes } from '../../src/engine/index.js';
import { ErrorCode, MooringError } from '../../src/errors.js';

const dramBytes = 8 * 1024 * 1024;
const diskBytes = 16 * 1024 * 1024;
const pages = dramBytes / diskAlignBytes;

let dir: string;
let e: Engine;
let dram: Segment;
let disk: DiskSegment;

beforeAll(() => {
  // If the temp dir is tmpfs (no O_DIRECT), the engine falls back to buffered I/O and reports direct: false.
  dir = mkdtempSync(path.join(os.tmpdir(), 'mooring-disk-'));
  e = new Engine({ onWarning: () => {} });
  dram = e.createSegment({ size: dramBytes });
  disk = e.createDiskSegment({ path: path.join(dir, 'tier.dat'), size: diskBytes });
});
afterAll(async () => {
  await e.close();
  rmSync(dir, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('NVMe tier', () => {
  it('reports its backend and describes the segment as plain data', () => {
    expect(['io_uring', 'threadpool']).toContain(e.info.diskBackend);
    expect(typeof disk.direct).toBe('boolean');
    const d = disk.descriptor();
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
    expect(d).toMatchObject({ segmentId: disk.id, size: diskBytes, tier: 'DISK', path: disk.path });
  });

  it('offload then promote returns the same bytes (random aligned extents)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 600 }), // pages to move
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 2 ** 30 }),
        async (n, dpos, kpos, seed) => {
          const length = n * diskAlignBytes;
          const dramOff = Math.floor(dpos * (pages - n)) * diskAlignBytes;
          const diskOff = Math.floor(kpos * (diskBytes / diskAlignBytes - n)) * diskAlignBytes;
          const view = dram.buffer.subarray(dramOff, dramOff + length);
          let x = seed;
          for (let i = 0; i < view.length; i += 4) {
            x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
            view.writeUInt32LE(x, i);
          }
          const want = sha(view);
          const w = await e.offload([{ dram: { segment: dram, offset: dramOff }, disk: { segment: disk, offset: diskOff }, length }]);
          expect(w).toEqual([{ status: 'completed', protocol: 'disk' }]);
          view.fill(0);
          const r = await e.promote([{ dram: { segment: dram, offset: dramOff }, disk: { segment: disk, offset: diskOff }, length }]);
          expect(r).toEqual([{ status: 'completed', protocol: 'disk' }]);
          expect(sha(view)).toBe(want);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('many offloads in flight at once', async () => {
    const chunk = 256 * 1024;
    for (let i = 0; i < dram.size; i++) dram.buffer[i] = (i * 31) & 0xff;
    const want = sha(dram.buffer);
    const jobs = [];
    for (let off = 0; off < dramBytes; off += chunk) {
      jobs.push(e.offload([{ dram: { segment: dram, offset: off }, disk: { segment: disk, offset: diskBytes - dramBytes + off }, length: chunk }]));
    }
    expect((await Promise.all(jobs)).flat().every((r) => r.status === 'completed')).toBe(true);
    dram.buffer.fill(1);
    const back = await e.promote([{ dram: { segment: dram, offset: 0 }, disk: { segment: disk, offset: diskBytes - dramBytes }, length: dramBytes }]);
    expect(back[0]?.status).toBe('completed');
    expect(sha(dram.buffer)).toBe(want);
  });

  it('refuses bad arguments with codes', async () => {
    const code = async (f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (err) {
        expect(err).toBeInstanceOf(MooringError);
        return (err as MooringError).code;
      }
      return undefined;
    };
    const req = (o: Partial<{ dramOff: number; diskOff: number; length: number }>) => [
      { dram: { segment: dram, offset: o.dramOff ?? 0 }, disk: { segment: disk, offset: o.diskOff ?? 0 }, length: o.length ?? 4096 },
    ];
    expect(await code(() => e.offload(req({ diskOff: diskBytes })))).toBe(ErrorCode.OUT_OF_RANGE);
    expect(await code(() => e.promote(req({ dramOff: dramBytes - 4096, length: 8192 })))).toBe(ErrorCode.OUT_OF_RANGE);
    if (disk.direct) expect(await code(() => e.offload(req({ diskOff: 512 })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await code(() => e.offload([{ dram: { segment: dram, offset: 0 }, disk: { segment: dram as never, offset: 0 }, length: 4096 }])))
      .toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await code(() => e.offload(null as never))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(() => e.createDiskSegment({ path: path.join(dir, 'x.dat'), size: 1000 })).toThrow(MooringError);
    expect(() => e.createDiskSegment({ path: path.join(dir, 'no', 'such', 'dir.dat'), size: 4096 })).toThrow(
      expect.objectContaining({ code: ErrorCode.STORAGE_FAILED }),
    );
    const other = e.createDiskSegment({ path: path.join(dir, 'other.dat'), size: 4096 });
    other.close();
    expect(await code(() => e.offload([{ dram: { segment: dram, offset: 0 }, disk: { segment: other, offset: 0 }, length: 4096 }])))
      .toBe(ErrorCode.SEGMENT_CLOSED);
  });
});
