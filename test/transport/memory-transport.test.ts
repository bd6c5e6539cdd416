import { afterEach, describe, expect, it } from 'vitest';
import { MemoryNetwork, type MemoryPeerTransport } from '../../src/transport/memory-transport.js';
import { SeededRng } from '../../src/util/rng.js';
import { Inbox, waitFor } from './helpers.js';

const open: MemoryPeerTransport[] = [];
afterEach(async () => {
  while (open.length > 0) await open.pop()!.close();
});

async function nodes(net: MemoryNetwork, ids: string[], maxQueuedFrames?: number): Promise<Array<{ t: MemoryPeerTransport; inbox: Inbox }>> {
  const out = [];
  for (const id of ids) {
    const t = net.transport(id, { peers: ids.filter((x) => x !== id), ...(maxQueuedFrames !== undefined ? { maxQueuedFrames } : {}) });
    const inbox = new Inbox();
    t.onFrame(inbox.handler);
    await t.start();
    open.push(t);
    out.push({ t, inbox });
  }
  return out;
}

describe('MemoryPeerTransport', () => {
  it('delivers in order, asynchronously, as a copy', async () => {
    const net = new MemoryNetwork();
    const [a, b] = await nodes(net, ['a', 'b']);
    const frame = { n: 1, data: new Uint8Array([1, 2]) };
    expect(a!.t.send('b', frame)).toBe(true);
    expect(b!.inbox.frames).toEqual([]); // not synchronous
    frame.data[0] = 99; // the sender's later mutation must not leak to the receiver
    for (let i = 2; i <= 10; i++) a!.t.send('b', { n: i });
    await waitFor(() => b!.inbox.frames.length === 10, 'frames');
    expect(b!.inbox.frames.map((f) => (f.frame as { n: number }).n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(Array.from((b!.inbox.frames[0]!.frame as { data: Uint8Array }).data)).toEqual([1, 2]);
    expect(a!.t.send('stranger', {})).toBe(false);
  });

  it('partitions (both ways and one way) and heals', async () => {
    const net = new MemoryNetwork();
    const [a, b, c] = await nodes(net, ['a', 'b', 'c']);
    net.partition('a', 'b', true); // a → b blocked, b → a open
    a!.t.send('b', { x: 'ab' });
    b!.t.send('a', { x: 'ba' });
    a!.t.send('c', { x: 'ac' });
    await waitFor(() => a!.inbox.frames.length === 1 && c!.inbox.frames.length === 1, 'unblocked frames');
    await new Promise((r) => setTimeout(r, 10));
    expect(b!.inbox.frames).toEqual([]);
    net.isolate('c');
    a!.t.send('c', { x: 'ac2' });
    c!.t.send('b', { x: 'cb' });
    await new Promise((r) => setTimeout(r, 10));
    expect(c!.inbox.frames).toHaveLength(1);
    expect(b!.inbox.frames).toEqual([]);
    net.heal();
    a!.t.send('b', { x: 'ab2' });
    await waitFor(() => b!.inbox.frames.length === 1, 'healed');
  });

  it('drops at the configured rate with a seeded choice, and bounds frames in flight', async () => {
    const net = new MemoryNetwork();
    const rng = new SeededRng(1);
    net.setDropRate(0.5, () => rng.nextFloat());
    const [a, b] = await nodes(net, ['a', 'b'], 1000);
    for (let i = 0; i < 1000; i++) expect(a!.t.send('b', { i })).toBe(true);
    expect(a!.t.send('b', { over: true })).toBe(false); // 1000 in flight: the bound
    await new Promise((r) => setTimeout(r, 50));
    const n = b!.inbox.frames.length;
    expect(n).toBeGreaterThan(350);
    expect(n).toBeLessThan(650);
    expect(a!.t.send('b', { after: true })).toBe(true); // drained
  });

  it('a closed transport neither sends nor receives', async () => {
    const net = new MemoryNetwork();
    const [a, b] = await nodes(net, ['a', 'b']);
    await b!.t.close();
    expect(b!.t.send('a', {})).toBe(false);
    a!.t.send('b', { lost: true });
    await new Promise((r) => setTimeout(r, 10));
    expect(b!.inbox.frames).toEqual([]);
  });
});
