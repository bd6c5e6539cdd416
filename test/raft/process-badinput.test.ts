/**
 * Hostile bytes against a live node's Raft port, from raw sockets: wrong cluster id, random bytes, truncated and
 * oversize frames, and (after a valid handshake) frames that decode but are not protocol messages. fast-check
 * generates them (the seed is printed on failure; pass it to fc.assert to replay). Afterwards every process is
 * still alive and the cluster still commits writes. The same live cluster also checks the KV put's `prev` argument
 * (returned only when asked; a non-boolean is INVALID_ARGUMENT). Needs `npm run build:ts` first.
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvClient } from '../../src/kvstore/client.js';
import { decodePayload, defaultMaxFrameBytes, encodeFrame } from '../../src/transport/codec.js';
import { makeHello } from '../../src/transport/handshake.js';
import { KvCluster } from '../helpers/process-cluster.js';

let cluster: KvCluster;
let client: KvClient;
let target: string;
let targetPort: number;

beforeAll(async () => {
  cluster = await KvCluster.create({ size: 3, logLevel: 'warn' });
  await cluster.startAll();
  target = await cluster.waitForLeader(); // the leader: the node whose crash would hurt most
  targetPort = cluster.node(target).config.raft.port;
  client = new KvClient({ endpoints: cluster.endpoints(), clusterId: cluster.clusterId, timeoutMs: 2_000, maxAttempts: 12 });
  await client.put('before', 'x');
}, 60_000);

afterAll(async () => {
  await client?.close();
  await cluster?.destroy();
});

/** How long to wait for the node to react to one connection's bytes before moving on. */
const settleMs = 40;

/** Writes `chunks` to the Raft port; resolves with whatever came back and whether the node closed the socket. */
function exchange(chunks: Uint8Array[], waitMs = settleMs): Promise<{ received: Buffer; closedByPeer: boolean }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: targetPort });
    const got: Buffer[] = [];
    let closedByPeer = false;
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve({ received: Buffer.concat(got), closedByPeer });
    };
    sock.on('data', (d) => got.push(d));
    sock.on('error', () => {});
    sock.on('close', () => {
      closedByPeer = true;
      finish();
    });
    sock.on('connect', () => {
      for (const c of chunks) sock.write(c);
      setTimeout(finish, waitMs);
    });
  });
}

function firstFrame(buf: Buffer): unknown {
  if (buf.length < 4) return undefined;
  const len = buf.readUInt32BE(0);
  return buf.length >= 4 + len ? decodePayload(buf.subarray(4, 4 + len)) : undefined;
}

async function stillServing(): Promise<void> {
  for (const id of cluster.running()) expect(cluster.isRunning(id)).toBe(true);
  expect(cluster.running().length).toBe(3);
  const key = `after-${Date.now()}`;
  await client.put(key, 'ok');
  expect(await client.get(key)).toBe('ok');
}

describe('the KV put over RPC', () => {
  it('returns the previous value only when asked (prevKv), and refuses a prev that is not a boolean', async () => {
    const key = `prev-${Date.now()}`;
    expect(await client.put(key, 'one')).toEqual({});
    expect(await client.put(key, 'two', { prev: true })).toEqual({ prev: 'one' });
    expect(await client.put(`${key}-new`, 'x', { prev: true })).toEqual({ prev: null });
    await expect(client.call('put', { key, value: 'three', prev: 'yes' }, undefined, true)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await client.get(key)).toBe('two');
  });
});

describe('bad input on the Raft port of a live node', () => {
  it('refuses a peer from another cluster with CLUSTER_MISMATCH and closes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 40 }).filter((s) => s !== cluster.clusterId), async (clusterId) => {
        const { received, closedByPeer } = await exchange([encodeFrame(makeHello(clusterId, 'n2', 'peer'))], 2_000);
        expect(closedByPeer).toBe(true);
        expect(firstFrame(received)).toMatchObject({ error: { code: 'CLUSTER_MISMATCH' } });
      }),
      { numRuns: 20 },
    );
    await stillServing();
  }, 60_000);

  it('survives random bytes, truncated frames and oversize length headers', async () => {
    const header = (n: number): Uint8Array => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(n >>> 0);
      return b;
    };
    const hello = encodeFrame(makeHello('kv-test', 'n2', 'peer'));
    const garbage = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 512 }).map((b) => [b]),
      // A frame cut short: the header promises more than arrives.
      fc.tuple(fc.integer({ min: 1, max: 1 << 20 }), fc.uint8Array({ maxLength: 64 })).map(([n, body]) => [header(n + body.length), body]),
      // A length beyond maxFrameBytes: must be refused from the header alone.
      fc.integer({ min: defaultMaxFrameBytes + 1, max: 0xffffffff }).map((n) => [header(n), Uint8Array.of(1, 2, 3)]),
      // A valid handshake, then the same kinds of garbage.
      fc.uint8Array({ minLength: 1, maxLength: 256 }).map((b) => [hello, b]),
      fc.integer({ min: defaultMaxFrameBytes + 1, max: 0xffffffff }).map((n) => [hello, header(n)]),
    );
    await fc.assert(
      fc.asyncProperty(garbage, async (chunks) => {
        await exchange(chunks);
      }),
      { numRuns: 150 },
    );
    await stillServing();
  }, 90_000);

  it('survives well-formed frames that are not protocol messages, after a valid handshake', async () => {
    const hello = encodeFrame(makeHello('kv-test', 'n2', 'peer'));
    const value = fc.oneof(
      fc.anything({ maxDepth: 3 }),
      fc.record({ k: fc.constantFrom('r', 'sc', 'sa', 'sx', 'zz'), m: fc.array(fc.anything({ maxDepth: 2 }), { maxLength: 4 }) }),
      fc.record({
        k: fc.constant('r'),
        m: fc.array(fc.record({ type: fc.constantFrom('app', 'appResp', 'vote', 'heartbeat', 'bogus'), from: fc.constantFrom('n2', 'n9'), to: fc.constant('x'), term: fc.oneof(fc.integer(), fc.double()), index: fc.integer() }), { maxLength: 3 }),
      }),
      fc.record({ k: fc.constantFrom('sa', 'sx'), sid: fc.oneof(fc.integer(), fc.string()), seq: fc.oneof(fc.integer(), fc.string()) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(value, { minLength: 1, maxLength: 5 }), async (frames) => {
        const encoded: Uint8Array[] = [];
        for (const f of frames) {
          try {
            encoded.push(encodeFrame(f));
          } catch {
            // a value msgpack cannot carry: skip it
          }
        }
        await exchange([hello, ...encoded]);
      }),
      { numRuns: 150 },
    );
    await stillServing();
  }, 90_000);
});
