// Segments: zero-copy views with a safe lifetime, engine info, bad arguments as coded errors.
import { afterEach, describe, expect, it } from 'vitest';
import { Engine, Segment } from '../../src/engine/index.js';
import { ErrorCode, MooringError } from '../../src/errors.js';

const engines: Engine[] = [];
function engine(): Engine {
  const e = new Engine({ onWarning: () => {} });
  engines.push(e);
  return e;
}
afterEach(async () => {
  for (const e of engines.splice(0)) await e.close();
});

async function codeOf(f: () => unknown): Promise<string | undefined> {
  try {
    await f();
  } catch (e) {
    expect(e).toBeInstanceOf(MooringError);
    return (e as MooringError).code;
  }
  return undefined;
}

describe('segments', () => {
  it('exposes memfd memory as a zero-copy Buffer shared with the engine', async () => {
    const e = engine();
    const a = e.createSegment({ size: 1 << 20, name: 'a' });
    const b = e.createSegment({ size: 1 << 20, name: 'b' });
    expect(a.buffer.length).toBe(1 << 20);
    expect(a.buffer.every((x) => x === 0)).toBe(true);
    a.buffer.write('hello mooring', 1000);
    // The engine copies from the same memory JS wrote: proof the view is zero-copy.
    const r = await e.transfer([
      { op: 'write', local: { segment: a, offset: 1000 }, remote: { segment: b.descriptor(), offset: 5 }, length: 13 },
    ]);
    expect(r).toEqual([{ status: 'completed', protocol: 'local' }]);
    expect(b.buffer.toString('utf8', 5, 18)).toBe('hello mooring');
  });

  it('detaches every view on close, so no JS code can reach freed memory', async () => {
    const e = engine();
    const s = e.createSegment({ size: 65536 });
    const view = s.buffer;
    const sub = view.subarray(100, 200);
    const u32 = new Uint32Array(view.buffer, view.byteOffset, 16);
    view[0] = 7;
    s.close();
    expect(s.closed).toBe(true);
    expect(view.length).toBe(0);
    expect(sub.length).toBe(0);
    expect(u32.length).toBe(0);
    expect(view[0]).toBeUndefined();
    view[0] = 9; // a no-op on a detached buffer, not a write into unmapped memory
    expect(await codeOf(() => s.buffer)).toBe(ErrorCode.SEGMENT_CLOSED);
    expect(await codeOf(() => s.descriptor())).toBe(ErrorCode.SEGMENT_CLOSED);
    s.close(); // idempotent
  });

  it('closing the engine detaches all segments and refuses further calls', async () => {
    const e = engine();
    const s = e.createSegment({ size: 4096 });
    const view = s.buffer;
    await e.close();
    expect(view.length).toBe(0);
    expect(s.closed).toBe(true);
    expect(await codeOf(() => e.createSegment({ size: 4096 }))).toBe(ErrorCode.SHUTTING_DOWN);
    expect(await codeOf(() => e.transfer([]))).toBe(ErrorCode.SHUTTING_DOWN);
  });

  it('close() with batches in flight resolves every promise (completed or failed), then refuses work', async () => {
    const a = new Engine({ onWarning: () => {} });
    const b = engine();
    const s = a.createSegment({ size: 8 << 20 });
    const d = b.createSegment({ size: 8 << 20 }).descriptor();
    const reqs = Array.from({ length: 32 }, () => ({
      op: 'write' as const,
      local: { segment: s, offset: 0 },
      remote: { segment: d, offset: 0 },
      length: 8 << 20,
    }));
    const pending = [a.transfer(reqs, { protocol: 'tcp' }), a.transfer(reqs, { protocol: 'shm' })];
    await a.close();
    const results = (await Promise.all(pending)).flat();
    expect(results).toHaveLength(64);
    for (const r of results) {
      expect(['completed', 'failed']).toContain(r.status);
      if (r.status === 'failed') expect(r.code).toBe(ErrorCode.UNAVAILABLE);
    }
  });

  it('advertises a dialable endpoint when bound to all interfaces', async () => {
    const a = new Engine({ host: '0.0.0.0', advertiseHost: '127.0.0.1', onWarning: () => {} });
    engines.push(a);
    expect(a.endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
    const s = a.createSegment({ size: 4096 });
    s.buffer.fill(5);
    const c = engine();
    const l = c.createSegment({ size: 4096 });
    const [r] = await c.transfer([{ op: 'read', local: { segment: l, offset: 0 }, remote: { segment: s.descriptor(), offset: 0 }, length: 4096 }], { protocol: 'tcp' });
    expect(r?.status).toBe('completed');
    expect(l.buffer.every((x) => x === 5)).toBe(true);
  });

  it('a data port already in use is an UNAVAILABLE error', () => {
    const a = engine();
    const port = Number(a.endpoint.split(':')[1]);
    expect(() => new Engine({ port, onWarning: () => {} })).toThrow(expect.objectContaining({ code: ErrorCode.UNAVAILABLE }));
  });

  it('describes segments as plain serializable data', () => {
    const e = engine();
    const s = e.createSegment({ size: 8192, name: 'kv-0' });
    const d = s.descriptor();
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
    expect(d).toMatchObject({ segmentId: s.id, name: 'kv-0', size: 8192, tier: 'DRAM', endpoint: e.endpoint });
    expect(d.token).toMatch(/^[0-9a-f]{16}$/);
    expect(d.shm?.path).toBe(`/proc/${process.pid}/fd/${d.shm?.fd}`);
    expect(e.endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('huge pages: a segment when pages are reserved, else UNAVAILABLE with the hint (never a crash)', () => {
    const e = engine();
    try {
      const s = e.createSegment({ size: 2 * 1024 * 1024, hugePages: true });
      s.buffer[0] = 1;
      expect(s.buffer[0]).toBe(1);
    } catch (err) {
      expect(err).toMatchObject({ code: ErrorCode.UNAVAILABLE });
      expect((err as Error).message).toMatch(/huge pages/);
    }
  });

  it('reports features and the reason RDMA is not active', () => {
    const warnings: string[] = [];
    const e = new Engine({ onWarning: (m) => warnings.push(m) });
    engines.push(e);
    const info = e.info;
    expect(['io_uring', 'threadpool']).toContain(info.diskBackend);
    if (!info.rdmaActive) {
      expect(info.rdmaReason.length).toBeGreaterThan(0);
      expect(warnings.some((w) => w.includes('rdma'))).toBe(true);
    }
  });

  it('turns bad arguments into coded errors', async () => {
    const e = engine();
    const other = engine();
    const s = e.createSegment({ size: 4096 });
    const foreign = other.createSegment({ size: 4096 });
    const d = s.descriptor();
    const req = (over: object) => ({
      op: 'read',
      local: { segment: s, offset: 0 },
      remote: { segment: d, offset: 0 },
      length: 16,
      ...over,
    });
    const t = (r: object) => () => e.transfer([r as never]);
    expect(await codeOf(() => e.createSegment({ size: 0 }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.createSegment({ size: -1 }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.createSegment({ size: 1.5 }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.createSegment({ size: '10' as never }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.createSegment({ size: 3 << 20, hugePages: true }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.transfer('x' as never))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(t(req({ op: 'copy' })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(t(req({ length: -5 })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(t(req({ length: 4097 })))).toBe(ErrorCode.OUT_OF_RANGE);
    expect(await codeOf(t(req({ local: { segment: s, offset: 4090 } })))).toBe(ErrorCode.OUT_OF_RANGE);
    expect(await codeOf(t(req({ remote: { segment: d, offset: 4095 } })))).toBe(ErrorCode.OUT_OF_RANGE);
    expect(await codeOf(t(req({ local: { segment: {}, offset: 0 } })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(t(req({ local: { segment: foreign, offset: 0 } })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(t(req({ remote: { segment: { ...d, token: 'zz' }, offset: 0 } })))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(t(req({ remote: { segment: { ...d, endpoint: 'nope' }, offset: 0 } }))))
      .toBeUndefined(); // same engine: the local path needs no endpoint
    expect(
      await codeOf(() => e.transfer([req({ remote: { segment: { ...d, endpoint: 'nope' }, offset: 0 } }) as never], { protocol: 'tcp' })),
    ).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.transfer([], { timeoutMs: 0 }))).toBe(ErrorCode.INVALID_ARGUMENT);
    expect(await codeOf(() => e.transfer([], { protocol: 'udp' as never }))).toBe(ErrorCode.INVALID_ARGUMENT);
    const closed = e.createSegment({ size: 4096 });
    closed.close();
    expect(await codeOf(t(req({ local: { segment: closed, offset: 0 } })))).toBe(ErrorCode.SEGMENT_CLOSED);
    // A descriptor of a closed segment: the request fails (per-request status), the batch still resolves.
    const gone = e.createSegment({ size: 4096 });
    const goneD = gone.descriptor();
    gone.close();
    for (const protocol of [undefined, 'tcp', 'shm'] as const) {
      const [r] = await e.transfer([req({ remote: { segment: goneD, offset: 0 } }) as never], protocol ? { protocol } : {});
      expect(r?.status).toBe('failed');
      expect(r?.code).toBe(ErrorCode.SEGMENT_NOT_FOUND);
    }
    expect(Segment).toBeDefined();
  });
});

describe('segment views', () => {
  it('view() windows share memory with buffer and are detached on close', () => {
    const e = new Engine({ onWarning: () => {} });
    engines.push(e);
    const s = e.createSegment({ size: 1 << 16 });
    const v = s.view(1000, 10);
    v.fill(9);
    expect(s.buffer[1005]).toBe(9);
    expect(() => s.view(65530, 10)).toThrow(expect.objectContaining({ code: ErrorCode.OUT_OF_RANGE }));
    s.close();
    expect(v.length).toBe(0);
    expect(() => s.view(0, 1)).toThrow(expect.objectContaining({ code: ErrorCode.SEGMENT_CLOSED }));
  });

  it('segments larger than one Buffer are reached through view()', () => {
    const e = new Engine({ onWarning: () => {} });
    engines.push(e);
    const big = e.createSegment({ size: 5 * 2 ** 30 }); // sparse memfd: only touched pages cost memory
    expect(() => big.buffer).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    const tail = big.view(big.size - 16, 16);
    tail.write('end of segment!!');
    expect(big.view(big.size - 16, 16).toString()).toBe('end of segment!!');
    big.close();
    expect(tail.length).toBe(0);
  });
});
