import net from 'node:net';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { FrameDecoder, encodeFrame } from '../../src/transport/codec.js';
import { RpcClient, RpcServer, type RpcClientOptions, type RpcServerOptions } from '../../src/transport/rpc.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';
import { CaptureLogger, helloFrame, rawExchange, waitFor } from './helpers.js';

const cluster = 'rpc-cluster';
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function server(extra: Partial<RpcServerOptions> = {}): Promise<RpcServer> {
  const s = new RpcServer({ clusterId: cluster, nodeId: 'm1', listen: { host: '127.0.0.1', port: 0 }, ...extra });
  s.handle('echo', (args) => args);
  s.handle('add', (args) => {
    const { a, b } = args as { a: number; b: number };
    return a + b;
  });
  s.handle('notFound', () => {
    throw new MooringError(ErrorCode.NOT_LEADER, 'ask m2', { leaderHint: 'm2' });
  });
  s.handle('bug', () => {
    throw new TypeError('oops');
  });
  s.handle('whoami', (_args, ctx) => ctx.clientNodeId);
  await s.start();
  cleanups.push(() => s.close());
  return s;
}

function client(s: RpcServer, extra: Partial<RpcClientOptions> = {}): RpcClient {
  const c = new RpcClient({ host: '127.0.0.1', port: s.port, clusterId: cluster, ...extra });
  cleanups.push(() => c.close());
  return c;
}

const codeOf = async (p: Promise<unknown>): Promise<unknown> => p.then(() => 'resolved', (e: MooringError) => e.code);

describe('RPC', () => {
  it('round-trips calls, pipelined on one connection, with binary args and results', async () => {
    const s = await server();
    const c = client(s, { nodeId: 'tester' });
    await c.connect();
    const calls = Array.from({ length: 500 }, (_, i) => c.call<number>('add', { a: i, b: 1 }));
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    const bytes = (await c.call<{ x: Uint8Array }>('echo', { x: new Uint8Array([9, 8, 7]) })).x;
    expect(Array.from(bytes)).toEqual([9, 8, 7]);
    expect(await c.call('whoami')).toBe('tester');
    expect(await c.call('echo')).toBeUndefined();
    expect(s.connectionCount).toBe(1);
  });

  it('returns errors with their codes: Mooring errors as is, unknown method INVALID_ARGUMENT, bugs INTERNAL (logged)', async () => {
    const logger = new CaptureLogger();
    const s = await server({ logger });
    const c = client(s);
    const err = await c.call('notFound').catch((e: MooringError) => e);
    expect(err).toBeInstanceOf(MooringError);
    expect(err).toMatchObject({ code: ErrorCode.NOT_LEADER, message: 'ask m2', leaderHint: 'm2' });
    expect(await codeOf(c.call('nope'))).toBe(ErrorCode.INVALID_ARGUMENT);
    const bug = await c.call('bug').catch((e: MooringError) => e);
    expect(bug).toMatchObject({ code: ErrorCode.INTERNAL });
    expect((bug as Error).message).not.toContain('oops'); // internals stay in the server log
    expect(logger.lines.some((l) => l.level === 'error' && String(l.obj.err).includes('oops'))).toBe(true);
    expect(await c.call('add', { a: 2, b: 3 })).toBe(5); // the connection survived all of it
  });

  it('times out a call with TIMEOUT and ignores its late reply', async () => {
    const s = await server();
    let release: () => void = () => {};
    s.handle('slow', () => new Promise((r) => (release = () => r('late'))));
    const c = client(s);
    expect(await codeOf(c.call('slow', null, { timeoutMs: 50 }))).toBe(ErrorCode.TIMEOUT);
    expect(c.pendingCalls).toBe(0);
    release();
    expect(await c.call('add', { a: 1, b: 1 })).toBe(2);
  });

  it('rejects pending calls with UNAVAILABLE when the connection drops, and reconnects for the next call', async () => {
    const s = await server();
    s.handle('hang', () => new Promise(() => {}));
    const c = client(s);
    const pending = codeOf(c.call('hang', null, { timeoutMs: 30_000 }));
    await waitFor(() => s.connectionCount === 1, 'connected');
    await s.close();
    expect(await pending).toBe(ErrorCode.UNAVAILABLE);
    expect(await codeOf(c.call('add', { a: 1, b: 1 }))).toBe(ErrorCode.UNAVAILABLE); // nobody listening
    const s2 = await server({ listen: { host: '127.0.0.1', port: s.port } });
    expect(s2.port).toBe(s.port);
    expect(await c.call('add', { a: 1, b: 2 })).toBe(3);
  });

  it('answers UNAVAILABLE (definite: the call was never sent) when the connection closes or resets during the handshake', async () => {
    // A listener that accepts and then closes (or resets) before answering the hello: a server going down mid-dial.
    for (const how of ['end', 'reset'] as const) {
      const socks: net.Socket[] = [];
      const raw = net.createServer((sock) => {
        socks.push(sock);
        if (how === 'end') sock.end();
        else sock.resetAndDestroy();
      });
      await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
      cleanups.push(() => {
        for (const sk of socks) sk.destroy();
        return new Promise<void>((r) => raw.close(() => r()));
      });
      const port = (raw.address() as net.AddressInfo).port;
      const c = new RpcClient({ host: '127.0.0.1', port, clusterId: cluster });
      cleanups.push(() => c.close());
      const err = await c.call('add', { a: 1, b: 1 }, { timeoutMs: 5000 }).catch((e: MooringError) => e);
      expect(err, how).toMatchObject({ code: ErrorCode.UNAVAILABLE, definite: true });
    }
  });

  it('a call whose timeout ends before the connection is ready fails definite (never sent), not as an unknown outcome', async () => {
    // A listener that accepts and never answers the hello: the dial hangs past the call's timeout.
    const socks: net.Socket[] = [];
    const raw = net.createServer((sock) => { socks.push(sock); });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      for (const sk of socks) sk.destroy();
      return new Promise<void>((r) => raw.close(() => r()));
    });
    const port = (raw.address() as net.AddressInfo).port;
    const c = new RpcClient({ host: '127.0.0.1', port, clusterId: cluster, connectTimeoutMs: 10_000 });
    cleanups.push(() => c.close());
    const err = await c.call('add', { a: 1, b: 1 }, { timeoutMs: 150 }).catch((e: MooringError) => e);
    expect(err).toMatchObject({ code: ErrorCode.UNAVAILABLE, definite: true });
    expect((err as MooringError).message).toMatch(/was not sent/);
    // Once sent, a missing reply is an unknown outcome.
    const s = await server();
    s.handle('silent', () => new Promise(() => {}));
    const sent = await client(s).call('silent', {}, { timeoutMs: 150 }).catch((e: MooringError) => e);
    expect(sent).toMatchObject({ code: ErrorCode.TIMEOUT, definite: false });
  });

  it('bounds in-flight requests per connection with QUEUE_FULL replies', async () => {
    const s = await server({ maxInflightRequestsPerConnection: 4 });
    const releases: Array<() => void> = [];
    s.handle('held', () => new Promise((r) => releases.push(() => r('done'))));
    const c = client(s);
    const held = Array.from({ length: 4 }, () => c.call('held'));
    await waitFor(() => releases.length === 4, 'handlers running');
    expect(await codeOf(c.call('held'))).toBe(ErrorCode.QUEUE_FULL);
    for (const r of releases) r();
    expect(await Promise.all(held)).toEqual(['done', 'done', 'done', 'done']);
    const more = c.call('held');
    await waitFor(() => releases.length === 5, 'slot freed');
    releases[4]!();
    expect(await more).toBe('done');
  });

  it('requires the token when configured and refuses a wrong or missing one', async () => {
    const logger = new CaptureLogger();
    const s = await server({ token: 'tok-123', logger });
    expect(await codeOf(client(s, { token: 'wrong' }).call('add', { a: 1, b: 1 }))).toBe(ErrorCode.UNAUTHORIZED);
    expect(await codeOf(client(s).call('add', { a: 1, b: 1 }))).toBe(ErrorCode.UNAUTHORIZED);
    expect(await client(s, { token: 'tok-123' }).call('add', { a: 1, b: 1 })).toBe(2);
    expect(logger.codes()).toContain(ErrorCode.UNAUTHORIZED);
  });

  it('refuses a client of another cluster with CLUSTER_MISMATCH', async () => {
    const s = await server();
    const c = new RpcClient({ host: '127.0.0.1', port: s.port, clusterId: 'other' });
    cleanups.push(() => c.close());
    expect(await codeOf(c.call('add', { a: 1, b: 1 }))).toBe(ErrorCode.CLUSTER_MISMATCH);
  });

  it('survives raw garbage and malformed requests, and keeps serving good clients', async () => {
    const s = await server({ handshakeTimeoutMs: 200, maxFrameBytes: 4096 });
    const hello = helloFrame(cluster, 'raw', 'client');
    // A request without an id: the connection is closed.
    const noId = await rawExchange(s.port, [hello, encodeFrame({ method: 'add' })], 0, 20);
    expect(noId.closedByServer).toBe(true);
    // A request with an id but a bad method name gets an error reply, not a close.
    const badMethod = await rawExchange(s.port, [hello, encodeFrame({ id: 5, method: 42 })], 200, 20);
    const replies = new FrameDecoder().push(badMethod.received);
    expect(replies[1]).toMatchObject({ id: 5, error: { code: ErrorCode.INVALID_ARGUMENT } });
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => [Buffer.from(b)]), fc.uint8Array({ minLength: 1, maxLength: 200 }).map((b) => [hello, Buffer.from(b)])), async (chunks) => {
        await rawExchange(s.port, chunks, 20);
      }),
      { numRuns: 60 },
    );
    const c = client(s);
    expect(await c.call('add', { a: 20, b: 22 })).toBe(42);
  });

  it('close() rejects pending calls with SHUTTING_DOWN', async () => {
    const s = await server();
    s.handle('hang', () => new Promise(() => {}));
    const c = client(s);
    const p = codeOf(c.call('hang'));
    await waitFor(() => s.connectionCount === 1, 'connected');
    await c.close();
    expect(await p).toBe(ErrorCode.SHUTTING_DOWN);
    expect(await codeOf(c.call('add', { a: 1, b: 1 }))).toBe(ErrorCode.SHUTTING_DOWN);
  });
});

describe('RPC over mTLS', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = createTestPki();
  });
  afterAll(() => pki.cleanup());

  it('serves a client with a CA-signed cert and refuses one without', async () => {
    const srv = pki.leaf('server');
    const cli = pki.leaf('client');
    const s = await server({ tls: { cert: srv.cert, key: srv.key, ca: pki.caCert, requireClientCert: true } });
    const good = client(s, { tls: { cert: cli.cert, key: cli.key, ca: pki.caCert } });
    expect(await good.call('add', { a: 1, b: 2 })).toBe(3);
    const foreign = pki.foreignLeaf('stranger');
    const bad = client(s, { tls: { cert: foreign.cert, key: foreign.key, ca: pki.caCert } });
    const code = await codeOf(bad.call('add', { a: 1, b: 2 }, { timeoutMs: 3000 }));
    expect(code).toBe(ErrorCode.UNAVAILABLE);
    expect(await good.call('add', { a: 2, b: 2 })).toBe(4);
  });
});
