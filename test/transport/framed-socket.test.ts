/**
 * FramedSocket's write coalescing, on real sockets on 127.0.0.1: a lone frame leaves at once; the frames of one
 * event-loop turn share one write; on a busy connection (its last turn sent several) the first frame waits for the
 * turn's write too; a connection ended with a last frame still delivers what the turn had queued, in order.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FramedSocket } from '../../src/transport/framed-socket.js';
import { encodeFrame } from '../../src/transport/codec.js';

const maxFrameBytes = 1 << 20;
const cleanup: Array<() => void> = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A connected pair: `a` sends (its socket's writes counted), `b` collects the frames it receives. */
async function pair(): Promise<{ a: FramedSocket; writes: () => number; got: unknown[]; closed: Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', () => r()));
  const serverSide = await accepted;
  cleanup.push(() => { client.destroy(); serverSide.destroy(); server.close(); });
  let n = 0;
  const realWrite = client.write.bind(client) as (chunk: Uint8Array) => boolean;
  // Counts the socket writes FramedSocket makes (each reaches the kernel as one write call).
  (client as unknown as { write: (chunk: Uint8Array) => boolean }).write = (chunk: Uint8Array) => { n++; return realWrite(chunk); };
  const a = new FramedSocket(client, maxFrameBytes);
  const b = new FramedSocket(serverSide, maxFrameBytes);
  const got: unknown[] = [];
  b.setHandler((f) => got.push(f));
  const closed = new Promise<void>((r) => b.onClose(() => r()));
  return { a, writes: () => n, got, closed };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(() => setImmediate(r)));

async function until(cond: () => boolean): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > 5_000) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('FramedSocket write coalescing', () => {
  it('a lone frame leaves at once; a turn of frames shares one write after the first', async () => {
    const p = await pair();
    p.a.send(encodeFrame({ i: 0 }));
    expect(p.writes()).toBe(1); // synchronously: no added latency for a lone call
    await turn();
    expect(p.writes()).toBe(1);
    // An idle connection: the turn's first frame goes at once, the other two share the flush's write.
    await turn();
    p.a.send(encodeFrame({ i: 1 }));
    p.a.send(encodeFrame({ i: 2 }));
    p.a.send(encodeFrame({ i: 3 }));
    expect(p.writes()).toBe(2);
    await turn();
    expect(p.writes()).toBe(3);
    await until(() => p.got.length === 4);
    expect(p.got).toEqual([0, 1, 2, 3].map((i) => ({ i })));
  });

  it('on a busy connection the first frame of a turn waits too (one write per turn), until a turn is lone again', async () => {
    const p = await pair();
    p.a.send(encodeFrame({ i: 0 }));
    p.a.send(encodeFrame({ i: 1 }));
    await turn();
    expect(p.writes()).toBe(2); // the first at once, the second at the flush: the connection is now busy
    p.a.send(encodeFrame({ i: 2 }));
    expect(p.writes()).toBe(2); // busy: waits for the turn's write
    p.a.send(encodeFrame({ i: 3 }));
    await turn();
    expect(p.writes()).toBe(3); // both in one write
    // A turn with one frame (still deferred: the previous turn had two) makes the connection idle again.
    p.a.send(encodeFrame({ i: 4 }));
    expect(p.writes()).toBe(3);
    await turn();
    expect(p.writes()).toBe(4);
    p.a.send(encodeFrame({ i: 5 }));
    expect(p.writes()).toBe(5); // idle again: at once
    await until(() => p.got.length === 6);
    expect(p.got).toEqual([0, 1, 2, 3, 4, 5].map((i) => ({ i })));
  });

  it('ending with a last frame still delivers the frames queued this turn, before it', async () => {
    const p = await pair();
    p.a.send(encodeFrame({ i: 0 }));
    p.a.send(encodeFrame({ i: 1 }));
    await turn(); // busy now: the next frames are all queued for the turn's write
    p.a.send(encodeFrame({ i: 2 }));
    p.a.send(encodeFrame({ i: 3 }));
    p.a.endWith(encodeFrame({ last: true }), null);
    await p.closed;
    expect(p.got).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }, { i: 3 }, { last: true }]);
  });
});
