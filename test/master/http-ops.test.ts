import { request } from 'node:http';
import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/master/logger.js';
import { createMasterMetrics } from '../../src/master/metrics.js';
import { startHttpOps, type HttpOps, type Readiness } from '../../src/master/http-ops.js';

const HOST = '127.0.0.1';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(port: number, path: string, method = 'GET', body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, method, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** Sends raw bytes and collects whatever comes back until the server closes the connection. */
function raw(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, HOST, () => s.write(bytes));
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => (text += c));
    s.on('close', () => resolve(text));
    s.on('error', reject);
  });
}

function captureLogger(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', name: 'test', nodeId: 'm1', destination }), lines };
}

let ops: HttpOps | undefined;
afterEach(async () => {
  await ops?.close();
  ops = undefined;
});

async function start(opts: { ready?: () => Readiness | Promise<Readiness>; status?: () => unknown } = {}) {
  const metrics = createMasterMetrics({ processMetrics: false });
  const { logger, lines } = captureLogger();
  ops = await startHttpOps({
    host: HOST,
    port: 0,
    metrics,
    logger,
    status: opts.status ?? (() => ({ nodeId: 'm1', role: 'leader', term: 4 })),
    ready: opts.ready ?? (() => ({ ready: true })),
  });
  return { port: ops.port, metrics, lines };
}

describe('startHttpOps over a real socket', () => {
  it('/health answers 200 ok', async () => {
    const { port } = await start();
    expect(port).toBeGreaterThan(0);
    const r = await get(port, '/health');
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok');
  });

  it('/ready follows ready(): 200 when ready, 503 with the reason otherwise, 503 when the check throws', async () => {
    let state: Readiness = { ready: true };
    let fail = false;
    const { port } = await start({
      ready: async () => {
        if (fail) throw new Error('raft node stopped');
        return state;
      },
    });
    const ok = await get(port, '/ready');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ ready: true });
    state = { ready: false, reason: 'applied 10 < commit 12' };
    const no = await get(port, '/ready');
    expect(no.status).toBe(503);
    expect(no.headers['content-type']).toBe('application/json');
    expect(JSON.parse(no.body)).toEqual({ ready: false, reason: 'applied 10 < commit 12' });
    fail = true;
    const broken = await get(port, '/ready');
    expect(broken.status).toBe(503);
    expect(JSON.parse(broken.body).reason).toContain('raft node stopped');
  });

  it('/ready treats a malformed answer from ready() as not ready', async () => {
    const { port } = await start({ ready: () => undefined as unknown as Readiness });
    const r = await get(port, '/ready');
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toEqual({ ready: false, reason: 'readiness check returned nothing' });
  });

  it('/metrics serves the registry in Prometheus text format', async () => {
    const { port, metrics } = await start();
    metrics.setRaft({ term: 12, role: 'follower', commitIndex: 33 });
    metrics.countRpc('ping');
    const r = await get(port, '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    expect(r.body).toContain('# TYPE mooring_raft_term gauge');
    expect(r.body).toMatch(/^mooring_raft_term 12$/m);
    expect(r.body).toMatch(/^mooring_raft_role\{role="follower"\} 1$/m);
    expect(r.body).toMatch(/^mooring_rpc_requests_total\{method="ping"\} 1$/m);
  });

  it('/status serves status() as JSON (the state hash only with ?stateHash=1), and a throwing status() is a 500', async () => {
    let n = 0;
    const asked: boolean[] = [];
    const { port, lines } = await start({
      status: (o: { stateHash: boolean }) => {
        n++;
        asked.push(o.stateHash);
        if (n === 3) throw new Error('boom');
        return { nodeId: 'm1', term: 4, big: 10n };
      },
    });
    const r = await get(port, '/status?verbose=1');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ nodeId: 'm1', term: 4, big: '10' });
    expect((await get(port, '/status?stateHash=1')).status).toBe(200);
    expect(asked).toEqual([false, true]);
    const bad = await get(port, '/status');
    expect(bad.status).toBe(500);
    expect(lines.some((l) => l.level === 'error' && String(l.msg).includes('handler failed'))).toBe(true);
    // The server keeps serving after the failure.
    expect((await get(port, '/health')).status).toBe(200);
  });

  it('404 for unknown paths, 405 (with Allow) for anything but GET', async () => {
    const { port } = await start();
    expect((await get(port, '/nope')).status).toBe(404);
    expect((await get(port, '/health/')).status).toBe(404);
    for (const method of ['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']) {
      const r = await get(port, '/health', method);
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe('GET');
    }
  });

  it('never reads a request body and closes such connections', async () => {
    const { port } = await start();
    const big = 'x'.repeat(4096);
    const r = await get(port, '/metrics', 'POST', big);
    expect(r.status).toBe(405);
    expect(r.headers.connection).toBe('close');
    // A GET announcing a body: answered, then the connection is closed instead of parsing the body as a request.
    const text = await raw(port, `GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n`);
    expect(text).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(text).not.toContain('404');
  });

  it('survives malformed HTTP and oversized headers, answering 4xx', async () => {
    const { port } = await start();
    const garbage = await raw(port, 'NOT HTTP AT ALL\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400/);
    const huge = await raw(port, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
    expect(huge).toMatch(/^HTTP\/1\.1 4\d\d/);
    expect((await get(port, '/health')).status).toBe(200);
  });

  it('close() frees the port and is idempotent', async () => {
    const { port } = await start();
    const o = ops!;
    await Promise.all([o.close(), o.close()]);
    ops = undefined;
    await expect(get(port, '/health')).rejects.toThrow(/ECONNREFUSED/);
  });

  it('rejects when the port is taken', async () => {
    const { port } = await start();
    const { logger } = captureLogger();
    await expect(
      startHttpOps({ host: HOST, port, metrics: createMasterMetrics({ processMetrics: false }), logger, status: () => ({}), ready: () => ({ ready: true }) }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('createLogger (used by http-ops)', () => {
  it('writes one JSON line per event with level word, ISO time, name and nodeId', async () => {
    const { lines } = await start();
    const listening = lines.find((l) => l.msg === 'http-ops listening');
    expect(listening).toBeDefined();
    expect(listening!.level).toBe('info');
    expect(listening!.name).toBe('test');
    expect(listening!.nodeId).toBe('m1');
    expect(listening!.component).toBe('http-ops');
    expect(typeof listening!.port).toBe('number');
    expect(new Date(String(listening!.time)).toISOString()).toBe(listening!.time);
  });

  it('respects the level and renders pretty lines when asked', () => {
    const out: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _e, done) {
        out.push(chunk.toString());
        done();
      },
    });
    const log = createLogger({ level: 'warn', name: 'master', nodeId: 'm2', destination, pretty: true });
    log.info('hidden');
    log.warn({ term: 5 }, 'stepped down');
    const text = out.join('');
    expect(text).not.toContain('hidden');
    expect(text).toMatch(/^\d\d:\d\d:\d\d\.\d{3} WARN  master\[m2\] stepped down term=5\n$/);
  });
});
