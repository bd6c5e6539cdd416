import net from 'node:net';
import tls from 'node:tls';
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { FrameDecoder, encodeFrame } from '../../src/transport/codec.js';
import { TcpPeerTransport, type TcpPeerTransportOptions } from '../../src/transport/tcp-transport.js';
import type { PeerAddress } from '../../src/transport/types.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';
import { CaptureLogger, Inbox, helloFrame, rawExchange, waitFor } from './helpers.js';

const cluster = 'c1';
const open: TcpPeerTransport[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function node(id: string, extra: Partial<TcpPeerTransportOptions> = {}, port = 0): Promise<{ t: TcpPeerTransport; inbox: Inbox; addr: PeerAddress }> {
  // Most tests here are about the transport's mechanics: any node id is accepted unless a test says otherwise.
  const t = new TcpPeerTransport({ nodeId: id, clusterId: cluster, listen: { host: '127.0.0.1', port }, peers: [], acceptUnknownPeers: true, ...extra });
  const inbox = new Inbox();
  t.onFrame(inbox.handler);
  await t.start();
  open.push(t);
  return { t, inbox, addr: { id, host: '127.0.0.1', port: t.port } };
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Decodes every frame in a buffer a server sent back before closing. */
function framesIn(buf: Buffer): unknown[] {
  try {
    return new FrameDecoder().push(buf);
  } catch {
    return [];
  }
}

async function expectServes(a: { t: TcpPeerTransport }, b: { t: TcpPeerTransport; inbox: Inbox }, tag: string): Promise<void> {
  expect(a.t.send(b.t.nodeId, { tag })).toBe(true);
  await waitFor(() => b.inbox.frames.some((f) => (f.frame as { tag?: string }).tag === tag), `frame ${tag}`);
}

/** `a` (fast reconnects) has served b1; b1 goes away and `a` notices. Returns b1's port, for b to come back on. */
async function peerGoesAway(): Promise<{ a: Awaited<ReturnType<typeof node>>; port: number }> {
  const a = await node('a', { reconnectInitialMs: 10, reconnectMaxMs: 50 });
  const b1 = await node('b');
  a.t.setPeer(b1.addr);
  await expectServes(a, b1, 'before');
  const port = b1.t.port;
  await b1.t.close();
  open.splice(open.indexOf(b1.t), 1);
  // (Frames written before `a` notices the close are lost with the socket; Raft re-sends. Wait for the notice.)
  await waitFor(() => !a.t.stats().b!.connected, 'a notices b is gone');
  return { a, port };
}

describe('TcpPeerTransport', () => {
  it('learns the state version each peer announces in its handshake; an older peer (none announced) counts as 1', async () => {
    const a = await node('a', { stateVersion: 2 });
    const b = await node('b', { stateVersion: 7 });
    const old = await node('old'); // announces none, as a Mooring from before state versions
    expect(a.t.peerStateVersion('b')).toBeUndefined(); // never connected
    a.t.setPeer(b.addr);
    b.t.setPeer(a.addr);
    a.t.setPeer(old.addr);
    await expectServes(a, b, 'to-b');
    await expectServes(a, old, 'to-old');
    await expectServes(b, a, 'to-a');
    expect(a.t.peerStateVersion('b')).toBe(7);
    expect(a.t.peerStateVersion('old')).toBe(1);
    expect(b.t.peerStateVersion('a')).toBe(2);
    // The accepting side learns it from the dialer's Hello too.
    expect(old.t.peerStateVersion('a')).toBe(2);
  });

  it('two nodes exchange frames both ways, in order, with binary payloads', async () => {
    const a = await node('a');
    const b = await node('b');
    a.t.setPeer(b.addr);
    b.t.setPeer(a.addr);
    for (let i = 0; i < 200; i++) expect(a.t.send('b', { seq: i, data: new Uint8Array([i & 255, 7]) })).toBe(true);
    expect(b.t.send('a', { hello: 'from b' })).toBe(true);
    await waitFor(() => b.inbox.frames.length === 200 && a.inbox.frames.length === 1, 'frames');
    expect(b.inbox.from('a').map((f) => (f as { seq: number }).seq)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    const f7 = b.inbox.frames[7]!.frame as { data: Uint8Array };
    expect(f7.data).toBeInstanceOf(Uint8Array);
    expect(Array.from(f7.data)).toEqual([7, 7]);
    expect(a.inbox.frames[0]).toEqual({ from: 'b', frame: { hello: 'from b' } });
    expect(a.t.send('nobody', { x: 1 })).toBe(false); // unknown peer: dropped, not thrown
    // Every accepted frame was handed to the socket (none left queued, none dropped).
    expect(a.t.stats().b).toMatchObject({ sent: 200, queuedFrames: 0, queuedBytes: 0, dropped: 0, connected: true });
  });

  it('three nodes, all to all', async () => {
    const ns = [await node('n1'), await node('n2'), await node('n3')];
    for (const x of ns) for (const y of ns) if (x !== y) x.t.setPeer(y.addr);
    for (const x of ns) for (const y of ns) if (x !== y) x.t.send(y.t.nodeId, { from: x.t.nodeId, to: y.t.nodeId });
    await waitFor(() => ns.every((n) => n.inbox.frames.length === 2), 'all-to-all');
    for (const n of ns) {
      for (const f of n.inbox.frames) expect(f.frame).toEqual({ from: f.from, to: n.t.nodeId });
      expect(new Set(n.inbox.frames.map((f) => f.from)).size).toBe(2);
    }
  });

  it('reconnects after a peer restarts on the same port', async () => {
    const { a, port } = await peerGoesAway();
    // Sent while b is down: queued (within bounds) and delivered once b is back.
    expect(a.t.send('b', { tag: 'while-down' })).toBe(true);
    const b2 = await node('b', {}, port);
    await waitFor(() => b2.inbox.frames.some((f) => (f.frame as { tag?: string }).tag === 'while-down'), 'queued frame after restart');
    await expectServes(a, b2, 'after');
    expect(a.t.stats().b!.connects).toBeGreaterThanOrEqual(2);
  });

  it('keeps an idle link warm: after its peer restarts it is connected again before anything is sent to it', async () => {
    // Two followers send each other nothing until their leader dies; their election must not wait for a dial.
    const { a, port } = await peerGoesAway();
    // b comes back knowing nobody (it dials nothing): only a's own redial can connect the link.
    const b2 = await node('b', {}, port);
    await waitFor(() => a.t.stats().b!.connected, 'a redialed b with nothing to send', 3_000);
    expect(a.t.stats().b!.connects).toBe(2);
    expect(b2.inbox.frames).toEqual([]);
    await expectServes(a, b2, 'after');
  });

  it('a peer that dials us is up again: our link to it stops waiting out its reconnect backoff', async () => {
    // a's backoff for b has grown long while b was down (a restarted member would hear nothing from a for that long).
    const port = await freePort();
    const a = await node('a', { reconnectInitialMs: 10_000, reconnectMaxMs: 10_000 });
    let refused = 0;
    a.t.onPeerDown((_peer, reason) => { if (reason === 'connect-failed') refused++; });
    a.t.setPeer({ id: 'b', host: '127.0.0.1', port });
    expect(a.t.send('b', { tag: 'while-down' })).toBe(true); // dial refused: the next try is 5-10 s away
    await waitFor(() => refused === 1, 'first dial refused');
    const b = await node('b', {}, port);
    b.t.setPeer(a.addr);
    expect(b.t.send('a', { tag: 'hello-from-b' })).toBe(true); // b dials a
    await waitFor(() => a.inbox.frames.length === 1, 'b reached a');
    const t0 = Date.now();
    await waitFor(() => b.inbox.frames.some((f) => (f.frame as { tag?: string }).tag === 'while-down'), 'a redials b at once', 3_000);
    expect(Date.now() - t0).toBeLessThan(2_000);
    await expectServes(a, b, 'after');
  });

  it('a node dials its known peers when it starts, so a peer backing off towards it redials at once', async () => {
    // b restarts knowing a but with nothing to send (a follower without a leader sends nothing): its start alone must
    // make a stop waiting out the backoff it built up while b was down.
    const port = await freePort();
    let refused = 0;
    const a = await node('a', { reconnectInitialMs: 10_000, reconnectMaxMs: 10_000 });
    a.t.onPeerDown((_peer, reason) => { if (reason === 'connect-failed') refused++; });
    a.t.setPeer({ id: 'b', host: '127.0.0.1', port });
    expect(a.t.send('b', { tag: 'heartbeat' })).toBe(true);
    await waitFor(() => refused === 1, 'first dial refused');
    const b = await node('b', { peers: [a.addr] }, port);
    await waitFor(() => b.inbox.frames.some((f) => (f.frame as { tag?: string }).tag === 'heartbeat'), 'a redials b after b started', 3_000);
  });

  it('bounds the queue for a dead peer: send() returns false once full, memory stays bounded', async () => {
    const deadPort = await freePort();
    const a = await node('a', { maxQueuedFrames: 16, maxQueuedBytes: 1 << 20, reconnectInitialMs: 10, reconnectMaxMs: 20 });
    a.t.setPeer({ id: 'dead', host: '127.0.0.1', port: deadPort });
    const results = Array.from({ length: 100 }, (_, i) => a.t.send('dead', { i }));
    expect(results.slice(0, 16).every(Boolean)).toBe(true);
    expect(results.slice(16).some(Boolean)).toBe(false);
    // Keep trying across several reconnect attempts: the queue never grows past its bound.
    for (let round = 0; round < 5; round++) {
      await new Promise((r) => setTimeout(r, 30));
      expect(a.t.send('dead', { more: round })).toBe(false);
      expect(a.t.stats().dead!.queuedFrames).toBe(16);
    }
    expect(a.t.stats().dead!.dropped).toBe(84 + 5);

    // The byte bound applies independently of the frame bound.
    const b = await node('b2', { maxQueuedFrames: 1000, maxQueuedBytes: 10_000 });
    b.t.setPeer({ id: 'dead', host: '127.0.0.1', port: deadPort });
    let accepted = 0;
    for (let i = 0; i < 50; i++) if (b.t.send('dead', { blob: new Uint8Array(1000) })) accepted++;
    expect(accepted).toBeLessThan(10);
    expect(b.t.stats().dead!.queuedBytes).toBeLessThanOrEqual(10_000);
  });

  it('bounds memory for a slow peer that accepts but never reads', async () => {
    // A raw "peer" that completes the handshake, then stops reading: the socket pushes back, the queue fills.
    const sockets: net.Socket[] = [];
    const slow = net.createServer((s) => {
      sockets.push(s);
      const d = new FrameDecoder();
      s.on('data', (chunk) => {
        if (d.push(chunk).length > 0) {
          s.write(helloFrame(cluster, 'slow'));
          s.pause();
          s.removeAllListeners('data');
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
    try {
      const maxQueuedBytes = 2 * 1024 * 1024;
      const a = await node('a', { maxQueuedFrames: 100_000, maxQueuedBytes });
      a.t.setPeer({ id: 'slow', host: '127.0.0.1', port: (slow.address() as net.AddressInfo).port });
      a.t.send('slow', { first: true });
      await waitFor(() => a.t.stats().slow!.connected, 'connected to the slow peer'); // so refusals below come from backpressure
      const blob = new Uint8Array(64 * 1024);
      let refused = 0;
      for (let round = 0; round < 200 && refused === 0; round++) {
        for (let i = 0; i < 16; i++) if (!a.t.send('slow', { blob })) refused++;
        await new Promise((r) => setTimeout(r, 2));
      }
      expect(refused).toBeGreaterThan(0);
      const st = a.t.stats().slow!;
      expect(st.connected).toBe(true);
      expect(st.queuedBytes).toBeLessThanOrEqual(maxQueuedBytes);
      // What left the queue sits in kernel and socket buffers, which backpressure keeps bounded too.
      expect(st.sent * blob.byteLength).toBeLessThan(64 * 1024 * 1024);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => slow.close(() => r()));
    }
  });

  it('refuses a wrong cluster id, a wrong protocol, random bytes, truncated and oversize frames, and keeps serving', async () => {
    const logger = new CaptureLogger();
    const b = await node('b', { logger, handshakeTimeoutMs: 300, maxFrameBytes: 64 * 1024 });
    const a = await node('a');
    a.t.setPeer(b.addr);

    const wrongCluster = await rawExchange(b.t.port, [helloFrame('other-cluster', 'x')]);
    expect(wrongCluster.closedByServer).toBe(true);
    expect(framesIn(wrongCluster.received)).toMatchObject([{ magic: 'mooring', error: { code: ErrorCode.CLUSTER_MISMATCH } }]);

    const wrongProto = await rawExchange(b.t.port, [helloFrame(cluster, 'x', 'peer', undefined, 999)]);
    expect(framesIn(wrongProto.received)).toMatchObject([{ error: { code: ErrorCode.PROTOCOL_MISMATCH } }]);

    const clientRole = await rawExchange(b.t.port, [helloFrame(cluster, 'x', 'client')]);
    expect(framesIn(clientRole.received)).toMatchObject([{ error: { code: ErrorCode.INVALID_ARGUMENT } }]);

    const garbage = await rawExchange(b.t.port, [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]);
    expect(garbage.closedByServer).toBe(true);
    expect(framesIn(garbage.received)).toEqual([]);

    // Header promises 100 bytes, only 10 arrive: the handshake timeout closes the connection.
    const truncated = Buffer.concat([Buffer.from([0, 0, 0, 100]), Buffer.alloc(10)]);
    expect((await rawExchange(b.t.port, [truncated])).closedByServer).toBe(true);

    // A good handshake followed by an oversize frame header.
    const oversize = await rawExchange(b.t.port, [helloFrame(cluster, 'x'), Buffer.from([0x7f, 0xff, 0xff, 0xff])], 0, 30);
    expect(oversize.closedByServer).toBe(true);
    expect(framesIn(oversize.received)).toMatchObject([{ magic: 'mooring', nodeId: 'b' }]); // the hello reply, then close

    // A good handshake followed by a frame that does not decode.
    const malformed = await rawExchange(b.t.port, [helloFrame(cluster, 'x'), Buffer.from([0, 0, 0, 1, 0xc1])], 0, 30);
    expect(malformed.closedByServer).toBe(true);

    await expectServes(a, b, 'still-alive');
    const codes = logger.codes();
    for (const c of [ErrorCode.CLUSTER_MISMATCH, ErrorCode.PROTOCOL_MISMATCH, ErrorCode.MALFORMED_FRAME, ErrorCode.TIMEOUT, ErrorCode.FRAME_TOO_LARGE]) {
      expect(codes).toContain(c);
    }
    await waitFor(() => b.t.inboundConnections === 1, 'bad connections cleaned up');
  });

  it('fuzz: random and mutated frames on raw sockets never stop the transport', async () => {
    const b = await node('b', { handshakeTimeoutMs: 200, maxFrameBytes: 4096 });
    const a = await node('a');
    a.t.setPeer(b.addr);
    const hello = helloFrame(cluster, 'fuzzer');
    const good = encodeFrame({ type: 'app', term: 3, entries: [{ index: 1, data: new Uint8Array([1, 2, 3]) }] });
    const stream = Buffer.concat([hello, good]);
    const caseArb = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 200 }).map((bytes) => [Buffer.from(bytes)]),
      fc.array(fc.tuple(fc.nat(stream.byteLength - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }).map((muts) => {
        const s = Buffer.from(stream);
        for (const [i, v] of muts) s[i] = v;
        return [s];
      }),
      fc.uint8Array({ minLength: 1, maxLength: 100 }).map((bytes) => [hello, Buffer.from(bytes)]),
    );
    await fc.assert(
      fc.asyncProperty(caseArb, async (chunks) => {
        await rawExchange(b.t.port, chunks, 30);
      }),
      { numRuns: 60 },
    );
    await expectServes(a, b, 'after-fuzz');
    // Frames reach the handler only after a handshake that passed every check, attributed to the id it announced
    // (a mutation may well produce a valid hello with another id: without a token or mTLS any member may connect).
    for (const f of b.inbox.frames) {
      expect(typeof f.from).toBe('string');
      expect(f.from.length).toBeGreaterThan(0);
      expect(f.from.length).toBeLessThanOrEqual(256);
    }
    expect(b.inbox.from('a')).toContainEqual({ tag: 'after-fuzz' });
  });

  it('refuses a peer with a wrong token and accepts the right one', async () => {
    const logger = new CaptureLogger();
    const b = await node('b', { token: 's3cret', logger });
    const bad = await node('a', { token: 'wrong', reconnectInitialMs: 10 });
    bad.t.setPeer(b.addr);
    bad.t.send('b', { tag: 'nope' });
    await waitFor(() => logger.codes().includes(ErrorCode.UNAUTHORIZED), 'UNAUTHORIZED logged');
    expect(b.inbox.frames).toEqual([]);
    const goodPeer = await node('c', { token: 's3cret' });
    goodPeer.t.setPeer(b.addr);
    await expectServes(goodPeer, b, 'with-token');
  });

  it('accepts only known peers: a stranger id is refused with UNAUTHORIZED, a removed member is cut off', async () => {
    const logger = new CaptureLogger();
    const b = await node('b', { token: 't0k', logger, acceptUnknownPeers: false });
    const stranger = await node('x', { token: 't0k', reconnectInitialMs: 10 });
    stranger.t.setPeer(b.addr);
    stranger.t.send('b', { tag: 'from-stranger' });
    await waitFor(() => logger.codes().includes(ErrorCode.UNAUTHORIZED), 'UNAUTHORIZED logged');
    const a = await node('a', { token: 't0k', reconnectInitialMs: 10 });
    a.t.setPeer(b.addr);
    b.t.setPeer(a.addr); // a is a member now
    await expectServes(a, b, 'from-member');
    expect(b.inbox.frames.map((f) => f.from)).not.toContain('x');
    b.t.removePeer('a');
    await waitFor(() => !a.t.stats()['b']!.connected, 'member connection closed after removePeer');
    const before = b.inbox.frames.length;
    a.t.send('b', { tag: 'after-removal' });
    await new Promise((r) => setTimeout(r, 300));
    expect(b.inbox.frames.length).toBe(before);
  });

  it('refuses to deliver to a node that answers with another id', async () => {
    const b = await node('b');
    const a = await node('a', { reconnectInitialMs: 10 });
    a.t.setPeer({ id: 'not-b', host: '127.0.0.1', port: b.t.port });
    a.t.send('not-b', { tag: 'misrouted' });
    await new Promise((r) => setTimeout(r, 100));
    expect(b.inbox.frames).toEqual([]);
    expect(a.t.stats()['not-b']!.connected).toBe(false);
  });
});

describe('TcpPeerTransport over TLS', () => {
  let pki: TestPki;
  let certs: Record<string, { cert: string; key: string; certPath: string; keyPath: string }>;
  beforeAll(() => {
    pki = createTestPki();
    certs = { a: pki.leaf('a'), b: pki.leaf('b') };
  });
  afterAll(() => pki.cleanup());

  it('exchanges frames over TLS (PEM contents) and mTLS (file paths)', async () => {
    const tlsA = { cert: certs.a!.cert, key: certs.a!.key, ca: pki.caCert };
    const a = await node('a', { tls: tlsA });
    const b = await node('b', { tls: { cert: certs.b!.certPath, key: certs.b!.keyPath, ca: `${pki.dir}/main-ca.crt`, requireClientCert: true } });
    a.t.setPeer(b.addr);
    b.t.setPeer(a.addr);
    await expectServes(a, b, 'tls-a-to-b');
    await expectServes(b, a, 'tls-b-to-a');
  });

  it('under mTLS, refuses a client without a certificate and one from a foreign CA, and keeps serving', async () => {
    const logger = new CaptureLogger();
    const b = await node('b', { logger, tls: { cert: certs.b!.cert, key: certs.b!.key, ca: pki.caCert, requireClientCert: true } });
    const noCert = await new Promise<{ frames: unknown[]; closed: boolean }>((resolve) => {
      const got: Buffer[] = [];
      const s = tls.connect({ host: '127.0.0.1', port: b.t.port, ca: pki.caCert }, () => s.write(helloFrame(cluster, 'intruder')));
      s.on('data', (d) => got.push(d));
      s.on('error', () => {});
      s.on('close', () => resolve({ frames: framesIn(Buffer.concat(got)), closed: true }));
    });
    expect(noCert.closed).toBe(true);
    expect(noCert.frames).toEqual([]); // no hello reply: refused at the TLS layer

    const foreign = pki.foreignLeaf('mallory');
    const intruder = await node('mallory', { tls: { cert: foreign.cert, key: foreign.key, ca: pki.caCert }, reconnectInitialMs: 10 });
    intruder.t.setPeer(b.addr);
    intruder.t.send('b', { tag: 'evil' });
    await waitFor(() => logger.lines.filter((l) => l.msg === 'TLS handshake refused').length >= 2, 'TLS refusals logged');
    expect(b.inbox.frames).toEqual([]);

    const a = await node('a', { tls: { cert: certs.a!.cert, key: certs.a!.key, ca: pki.caCert } });
    a.t.setPeer(b.addr);
    await expectServes(a, b, 'mtls-ok');
  });

  it('with verifyPeerIdentity, a member certificate cannot speak as another node', async () => {
    const logger = new CaptureLogger();
    const b = await node('b', { logger, tls: { cert: certs.b!.cert, key: certs.b!.key, ca: pki.caCert, requireClientCert: true, verifyPeerIdentity: true } });
    // Node 'c' holds a valid cluster certificate, but it is a's (CN=a).
    const impostor = await node('c', { tls: { cert: certs.a!.cert, key: certs.a!.key, ca: pki.caCert }, reconnectInitialMs: 10 });
    impostor.t.setPeer(b.addr);
    impostor.t.send('b', { tag: 'spoofed' });
    await waitFor(() => logger.codes().includes(ErrorCode.UNAUTHORIZED), 'identity mismatch logged');
    expect(b.inbox.frames).toEqual([]);
    const a = await node('a', { tls: { cert: certs.a!.cert, key: certs.a!.key, ca: pki.caCert } });
    a.t.setPeer(b.addr);
    await expectServes(a, b, 'genuine-a');
  });

  it('a plain-TCP peer cannot talk to a TLS listener', async () => {
    const b = await node('b', { tls: { cert: certs.b!.cert, key: certs.b!.key, ca: pki.caCert } });
    const res = await rawExchange(b.t.port, [helloFrame(cluster, 'plain')], 300);
    expect(framesIn(res.received)).toEqual([]);
    expect(b.inbox.frames).toEqual([]);
  });
});
