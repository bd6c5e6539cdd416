/**
 * Issue 11, starvation, on three real `mooring master` processes: a stranger on one host (127.0.0.2) holds
 * 1,100 connections on each port of the leader (peer: TCP only, it has no token; RPC: handshaken; HTTP: idle
 * keep-alive sockets). With the per-address budgets, a client on another address (127.0.0.1) is still served,
 * /health and /ready answer, and a restarted member rejoins while the connections are held.
 * Needs `npm run build:ts` first (children run dist/).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { httpGet, LocalCluster } from '../../src/cli/local-cluster.js';
import { encodeFrame } from '../../src/transport/codec.js';
import { makeHello } from '../../src/transport/handshake.js';

const held = 1_100;
const strangerAddress = '127.0.0.2';
let cluster: LocalCluster;
const sockets: net.Socket[] = [];

beforeAll(async () => {
  cluster = await LocalCluster.create({ extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 } }, logLevel: 'warn' });
  await cluster.start();
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await cluster?.destroy();
});

/** Opens `count` connections from the stranger's address; `first` is written on each once connected. */
async function hold(port: number, count: number, first?: Uint8Array): Promise<void> {
  await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<void>((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress: strangerAddress });
        sockets.push(s);
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.on('connect', () => {
          if (first !== undefined) s.write(first);
          resolve();
        });
      }),
    ),
  );
}

describe('connection budgets', () => {
  it(`with ${held} held connections per port, a new client is served, /health and /ready answer, a restarted member rejoins`, async () => {
    const leader = cluster.node(await cluster.waitLeader());
    const follower = cluster.nodes.find((n) => n.id !== leader.id)!;
    await hold(leader.ports.raft, held);
    await hold(leader.ports.rpc, held, encodeFrame(makeHello(cluster.clusterId, 'stranger', 'client')));
    await hold(leader.ports.http, held, Buffer.from('GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n'));

    // A client on another address: served by the leader whose ports the stranger is holding.
    const c = new MasterClient({ endpoints: [`127.0.0.1:${leader.ports.rpc}`], clusterId: cluster.clusterId, requestTimeoutMs: 2_000, retry: { maxAttempts: 10, initialBackoffMs: 50, maxBackoffMs: 300 } });
    try {
      await c.mountSegment({ id: 'starve-seg', name: 'starve-seg', base: 0, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9' });
      expect(await c.existKey('nothing-here')).toBe(false);
    } finally {
      await c.close();
    }
    expect(await httpGet(leader.ports.http, '/health')).toEqual({ status: 200, body: 'ok' });
    expect((await httpGet(leader.ports.http, '/ready')).status).toBe(200);

    // A member restarted during the hold rejoins (its peer connection to the leader finds a slot).
    await cluster.kill(follower.id, 'SIGKILL');
    cluster.spawn(follower.id);
    await cluster.waitReady(follower.id, 30_000);
    for (const n of cluster.nodes) expect(n.proc, n.id).not.toBeNull();
    const m = await httpGet(leader.ports.http, '/metrics');
    expect(m.body).toMatch(/^mooring_rejected_frames_total\{port="rpc",reason="per_address_limit"\} [1-9]/m);
  }, 120_000);
});
