/**
 * MasterNode + MasterClient in one process: three masters with real LevelDB stores in temp dirs, real sockets
 * on 127.0.0.1 (peer, RPC and HTTP ports). Real-process clusters are in test/master/process-*.test.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { parseConfig, type MasterConfig } from '../../src/master/config.js';
import { MasterNode } from '../../src/master/master-node.js';
import { MasterClient } from '../../src/master/client.js';
import { silentLogger } from '../../src/master/logger.js';
import { freePorts } from '../helpers/ports.js';
import { RpcServer } from '../../src/transport/rpc.js';
import { sessionReplyWindow } from '../../src/statemachine/limits.js';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function cluster(n: number, extra: Record<string, unknown> = {}): Promise<{ configs: MasterConfig[]; nodes: MasterNode[]; endpoints: string[] }> {
  const root = mkdtempSync(path.join(tmpdir(), 'mooring-master-'));
  cleanup.push(() => rmSync(root, { recursive: true, force: true }));
  const ports = await freePorts(n * 3);
  const peers = Array.from({ length: n }, (_, i) => ({ id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 3]!, rpcPort: ports[i * 3 + 1]!, httpPort: ports[i * 3 + 2]! }));
  const configs = peers.map((p) => parseConfig({
    peerToken: 'test-peer-token', // peers authenticate (the only way a multi-node master starts)
    nodeId: p.id,
    dataDir: path.join(root, p.id),
    listen: { host: '127.0.0.1', raftPort: p.raftPort, rpcPort: p.rpcPort, httpPort: p.httpPort },
    peers,
    raft: { tickMs: 10 },
    ...extra,
  }));
  const nodes = await Promise.all(configs.map((c) => MasterNode.start(c, { logger: silentLogger() })));
  cleanup.push(async () => { await Promise.all(nodes.map((m) => m.stop())); });
  return { configs, nodes, endpoints: peers.map((p) => `127.0.0.1:${p.rpcPort}`) };
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function client(endpoints: string[], opts: Partial<ConstructorParameters<typeof MasterClient>[0]> = {}): MasterClient {
  const c = new MasterClient({ endpoints, retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 }, ...opts });
  cleanup.push(() => c.close());
  return c;
}

const segment = (id: string, size = 1 << 20, zone = 'z1') => ({ id, name: id, base: 0x10000000 * (Number(id.replace(/\D/g, '')) + 1), size, protocol: 'tcp' as const, endpoint: `127.0.0.1:${9000 + Number(id.replace(/\D/g, ''))}`, zone });

describe('MasterNode with MasterClient', () => {
  it('serves the put / get / remove cycle through the leader and keeps replicas on distinct segments', async () => {
    const { nodes, endpoints } = await cluster(3);
    await waitFor(() => nodes.some((n) => n.isLeader));
    // Start from a follower's endpoint: the client must follow the NOT_LEADER hint.
    const follower = nodes.find((n) => !n.isLeader)!;
    const c = client([`127.0.0.1:${follower.ports.rpc}`]);
    await c.mountSegment(segment('s1'));
    await c.mountSegment(segment('s2'));
    const replicas = await c.putStart('obj-1', 4096, { replicaNum: 2 });
    expect(replicas).toHaveLength(2);
    expect(new Set(replicas.map((r) => r.segmentId)).size).toBe(2);
    await expect(c.getReplicaList('obj-1')).rejects.toMatchObject({ code: ErrorCode.OBJECT_NOT_READY });
    await c.putEnd('obj-1');
    const got = await c.getReplicaList('obj-1');
    expect(got.replicas.map((r) => r.segmentId).sort()).toEqual(replicas.map((r) => r.segmentId).sort());
    expect(got.leaseTtlMs).toBeGreaterThan(0);
    expect(got).toMatchObject({ size: 4096, status: 'COMPLETE' }); // size and status travel with the replicas
    expect(await c.existKey('obj-1')).toBe(true);
    // Under a read lease the object cannot be removed; force can.
    await expect(c.remove('obj-1')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    await c.remove('obj-1', true);
    expect(await c.existKey('obj-1')).toBe(false);
    await expect(c.putStart('', 10)).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT });
  });

  it('replicates state to every member (equal state hashes) and answers stale reads on followers', async () => {
    const { nodes, endpoints } = await cluster(3);
    await waitFor(() => nodes.some((n) => n.isLeader));
    const c = client(endpoints);
    await c.mountSegment(segment('s1', 1 << 22));
    for (let i = 0; i < 50; i++) {
      await c.putStart(`k${i}`, 1000);
      await c.putEnd(`k${i}`);
    }
    await waitFor(() => new Set(nodes.map((n) => n.masterState.stateHash())).size === 1);
    const follower = nodes.find((n) => !n.isLeader)!;
    const fc = client([`127.0.0.1:${follower.ports.rpc}`], { retry: { maxAttempts: 1 } });
    expect(await fc.existKey('k49', { stale: true })).toBe(true);
  });

  it('keeps every acknowledged object when the leader stops, and a retried write applies once', async () => {
    const { nodes, endpoints } = await cluster(3);
    await waitFor(() => nodes.some((n) => n.isLeader));
    const c = client(endpoints);
    await c.mountSegment(segment('s1', 1 << 22));
    await c.mountSegment(segment('s2', 1 << 22));
    for (let i = 0; i < 20; i++) {
      await c.putStart(`k${i}`, 1000, { replicaNum: 2 });
      await c.putEnd(`k${i}`);
    }
    const leader = nodes.find((n) => n.isLeader)!;
    await leader.stop();
    const rest = nodes.filter((n) => n !== leader);
    await waitFor(() => rest.some((n) => n.isLeader));
    for (let i = 0; i < 20; i++) expect(await c.existKey(`k${i}`)).toBe(true);
    // Exactly-once: the same (clientId, seq) sent twice returns the first reply and changes nothing.
    const args = { key: 'dup', size: 100, replicaNum: 1, clientId: c.clientId, seq: 1_000_000 };
    const first = await c.call('putStart', args);
    const again = await c.call('putStart', args);
    expect(again).toEqual(first);
  });

  it('refuses admin operations without the admin token', async () => {
    const { nodes, endpoints } = await cluster(1, { adminToken: 'sekret' });
    await waitFor(() => nodes[0]!.isLeader);
    const anon = client(endpoints, { retry: { maxAttempts: 1 } });
    await expect(anon.members()).rejects.toMatchObject({ code: ErrorCode.UNAUTHORIZED });
    await expect(anon.setNodeStatus('c1', 'MAINTENANCE')).rejects.toMatchObject({ code: ErrorCode.UNAUTHORIZED });
    const admin = client(endpoints, { adminToken: 'sekret' });
    const members = await admin.members();
    expect(members.map((m) => m.id)).toEqual(['m1']);
  });

  it('answers a ping from an unknown client with NEED_REMOUNT and remounts its segments', async () => {
    const { nodes, endpoints } = await cluster(1);
    await waitFor(() => nodes[0]!.isLeader);
    const c = client(endpoints);
    expect((await c.ping()).status).toBe('NEED_REMOUNT');
    await c.mountSegment(segment('s7'));
    expect((await c.ping()).status).toBe('OK');
  });
});

describe('MasterNode peer authentication', () => {
  it('refuses to start a cluster member whose peers would not authenticate; insecure: true is the explicit way out', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'mooring-master-'));
    cleanup.push(() => rmSync(root, { recursive: true, force: true }));
    const ports = await freePorts(6);
    const peers = [0, 1].map((i) => ({ id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 3]!, rpcPort: ports[i * 3 + 1]!, httpPort: ports[i * 3 + 2]! }));
    const base = { nodeId: 'm1', dataDir: path.join(root, 'm1'), listen: { host: '127.0.0.1', raftPort: peers[0]!.raftPort, rpcPort: peers[0]!.rpcPort, httpPort: peers[0]!.httpPort }, peers };
    await expect(MasterNode.start(parseConfig(base), { logger: silentLogger() })).rejects.toMatchObject({ code: ErrorCode.INVALID_CONFIG, message: expect.stringMatching(/peerTokenFile/) });
    const insecure = await MasterNode.start(parseConfig({ ...base, insecure: true }), { logger: silentLogger() });
    await insecure.stop();
  });
});

describe('MasterClient session window', () => {
  it('keeps at most sessionReplyWindow writes of one session in flight (each retry still finds its reply)', async () => {
    // A real RPC server standing in for the leader: it holds each write briefly and records the concurrency.
    const [port] = await freePorts(1);
    const server = new RpcServer({ clusterId: 'mooring', nodeId: 'fake', listen: { host: '127.0.0.1', port: port! } });
    let inFlight = 0;
    let peak = 0;
    const seqs: number[] = [];
    server.handle('putEnd', async (args) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      seqs.push((args as { seq: number }).seq);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return null;
    });
    await server.start();
    cleanup.push(() => server.close());
    const c = client([`127.0.0.1:${port}`]);
    await Promise.all(Array.from({ length: 100 }, (_, i) => c.putEnd(`k${i}`)));
    expect(seqs).toHaveLength(100);
    expect(new Set(seqs).size).toBe(100);
    expect(peak).toBeLessThanOrEqual(sessionReplyWindow);
    expect(peak).toBeGreaterThan(1); // still pipelined
  });
});

describe('MasterNode admission', () => {
  it('a leader elected after a failover runs the eviction checks (only a leader keeps their timer)', async () => {
    const { nodes, endpoints } = await cluster(3, { eviction: { highWatermark: 0.5, target: 0.3 } });
    await waitFor(() => nodes.some((n) => n.isLeader));
    const first = nodes.find((n) => n.isLeader)!;
    await first.stop();
    const rest = nodes.filter((n) => n !== first);
    await waitFor(() => rest.some((n) => n.isLeader));
    const c = client(endpoints);
    await c.mountSegment(segment('s1', 64 * 1024));
    const keys = Array.from({ length: 10 }, (_, i) => `e${i}`);
    for (const k of keys) {
      await c.putStart(k, 5 * 1024);
      await c.putEnd(k);
    }
    // 50 KiB of 64 KiB is over the high watermark: the new leader's checks evict (10 → 6 objects, below it again).
    const leader = rest.find((n) => n.isLeader)!;
    await waitFor(() => keys.filter((k) => leader.masterState.objects.has(k)).length <= 6);
  });

  it('ignores leader-only fields a client sends: a forged evictable list cannot evict a leased object', async () => {
    // No background eviction (the segment is 94% full): only the put below could evict the victim.
    const { nodes, endpoints } = await cluster(1, { eviction: { highWatermark: 0.99, target: 0.9 } });
    await waitFor(() => nodes[0]!.isLeader);
    const c = client(endpoints, { retry: { maxAttempts: 1 } });
    await c.mountSegment(segment('s1', 64 * 1024));
    await c.putStart('victim', 60 * 1024);
    await c.putEnd('victim');
    await c.getReplicaList('victim'); // the victim is now under a read lease
    const createdIndex = nodes[0]!.masterState.objects.get('victim')!.createdIndex;
    // The segment is full: this put can only succeed by evicting the victim, which the leader must refuse.
    await expect(c.write('putStart', { key: 'attacker', size: 32 * 1024, replicaNum: 1, evictable: [{ key: 'victim', createdIndex }] }))
      .rejects.toMatchObject({ code: ErrorCode.NO_SPACE });
    expect(await c.existKey('victim')).toBe(true);
  });
});

describe('MasterNode restart', () => {
  it('reopens after concurrent (batched) writes with every object intact and keeps applying', async () => {
    const { configs, nodes, endpoints } = await cluster(1, { raft: { tickMs: 10, snapshotEveryEntries: 20 } });
    await waitFor(() => nodes[0]!.isLeader);
    const c = client(endpoints);
    await c.mountSegment(segment('s1', 1 << 22));
    const keys = Array.from({ length: 60 }, (_, i) => `k${i}`);
    await Promise.all(keys.map(async (k) => { await c.putStart(k, 100); await c.putEnd(k); }));
    // (The state hash covers the applied index, which the new term's no-op moves: compare the objects instead.)
    const placements = (m: MasterNode) => JSON.stringify(keys.map((k) => m.masterState.objects.get(k)?.replicas ?? null));
    const before = placements(nodes[0]!);
    await nodes[0]!.stop();
    const again = await MasterNode.start(configs[0]!, { logger: silentLogger() });
    cleanup.push(() => again.stop());
    await waitFor(() => again.isLeader);
    expect(placements(again)).toBe(before);
    const c2 = client(endpoints);
    expect((await c2.batchExistKey(keys)).every(Boolean)).toBe(true);
    await c2.putStart('after-restart', 100);
    await c2.putEnd('after-restart');
    expect(await c2.existKey('after-restart')).toBe(true);
  });
});
