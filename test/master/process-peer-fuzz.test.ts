/**
 * Stateful fuzz of a live three-process `mooring master` cluster (issue 11). After a valid handshake (a member id
 * and the cluster's peer token on the peer port; a client hello on the RPC port), fast-check generates random
 * sequences of well-formed frames of every kind: Raft message batches of every message type (from the
 * connection's id, or lying about it; terms below the cluster's, so a stepped message is stale rather than a
 * Byzantine member rewriting the log), snapshot stream frames (start, data, final message, random sid/seq, acks,
 * aborts), unknown kinds, and RPC requests with random methods and arguments. Afterwards every process is alive
 * and a key written before is intact.
 *
 * Replay: the seed is printed (and fast-check prints seed/path on failure): MOORING_FUZZ_SEED=<seed>.
 * Soak mode: MOORING_SOAK_FRAMES=1000000 sends that many frames per port (peer, RPC), reports the figures (see
 * docs/operations.md) and checks each master's memory from its /metrics: once idle, heap used within
 * soakHeapSlackMB and RSS within soakRssSlackMB of the figures after the warm-up. Needs `npm run build:ts` first.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { LocalCluster, httpGet } from '../../src/cli/local-cluster.js';
import { encodeFrame } from '../../src/transport/codec.js';
import { makeHello } from '../../src/transport/handshake.js';
import { RawPeer, sleep } from '../helpers/raw-peer.js';

const adminToken = 'fuzz-admin-token';
const seed = Number(process.env.MOORING_FUZZ_SEED ?? Date.now() % 2 ** 31);
const soakFrames = Number(process.env.MOORING_SOAK_FRAMES ?? 0);
let cluster: LocalCluster;
let client: MasterClient;
let token: string;

beforeAll(async () => {
  console.log(`peer fuzz seed ${seed} (replay: MOORING_FUZZ_SEED=${seed})`);
  cluster = await LocalCluster.create({ extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 }, adminToken }, logLevel: 'warn' });
  await cluster.start();
  token = readFileSync(cluster.peerTokenFile, 'utf8').trim();
  client = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, requestTimeoutMs: 2_000, retry: { maxAttempts: 30, initialBackoffMs: 25, maxBackoffMs: 300 } });
  await client.mountSegment({ id: 'fuzz-seg', name: 'fuzz-seg', base: 0, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9' });
  await client.putStart('fuzz-key', 4096);
  await client.putEnd('fuzz-key');
  // The client must stay alive (ping) or the master expires it after clientTtlMs and unmounts its segment.
  client.startPing();
}, 60_000);

afterAll(async () => {
  await client?.close();
  await cluster?.destroy();
});

const messageTypes = ['preVote', 'preVoteResp', 'vote', 'voteResp', 'app', 'appResp', 'heartbeat', 'heartbeatResp', 'snap', 'timeoutNow', 'readIndex', 'readIndexResp'] as const;
const ids = ['m1', 'm2', 'm3', 'x'];

function raftMessage(from: fc.Arbitrary<string>, to: string, maxTerm: number): fc.Arbitrary<Record<string, unknown>> {
  const idx = fc.nat({ max: 1_000 });
  const entry = fc.record({ index: idx, term: fc.nat({ max: maxTerm }), type: fc.constantFrom('normal', 'confChange'), data: fc.uint8Array({ maxLength: 64 }) });
  const confState = fc.record({ voters: fc.subarray(ids), learners: fc.subarray(ids), votersOutgoing: fc.constant([]), learnersNext: fc.constant([]), autoLeave: fc.boolean() });
  return fc.record(
    {
      type: fc.constantFrom(...messageTypes),
      from,
      to: fc.constantFrom(to, to, 'm9'),
      term: fc.nat({ max: maxTerm }),
      index: idx,
      logTerm: fc.nat({ max: maxTerm }),
      commit: idx,
      reject: fc.boolean(),
      rejectHint: idx,
      context: fc.uint8Array({ maxLength: 16 }),
      entries: fc.array(entry, { maxLength: 4 }),
      snapshot: fc.record({ metadata: fc.record({ index: idx, term: fc.nat({ max: maxTerm }), confState }), data: fc.uint8Array({ maxLength: 32 }) }),
    },
    { requiredKeys: ['type', 'from', 'to', 'term'] },
  );
}

/** Every kind of peer frame, well formed, random fields. */
function peerFrame(self: string, target: string, maxTerm: number): fc.Arbitrary<unknown> {
  const from = fc.constantFrom(self, self, self, 'm3', 'x');
  const sid = fc.integer({ min: 1, max: 4 });
  const seq = fc.nat({ max: 6 });
  return fc.oneof(
    fc.record({ k: fc.constant('r'), m: fc.array(raftMessage(from, target, maxTerm), { minLength: 1, maxLength: 4 }) }),
    fc.record({ k: fc.constant('sc'), sid, seq: fc.constant(0), hdr: fc.record({ peers: fc.array(fc.record({ id: fc.constantFrom(...ids), host: fc.constant('127.0.0.1'), port: fc.integer({ min: 1, max: 65535 }) }), { maxLength: 3 }) }) }),
    fc.record({ k: fc.constant('sc'), sid, seq, data: fc.uint8Array({ maxLength: 4096 }) }),
    fc.record({ k: fc.constant('sc'), sid, seq, fin: raftMessage(from, target, maxTerm) }),
    fc.record({ k: fc.constantFrom('sa', 'sx'), sid, seq, reason: fc.string({ maxLength: 20 }) }),
    fc.record({ k: fc.constantFrom('zz', 'R', ''), m: fc.anything({ maxDepth: 2 }) }),
  );
}

const rpcMethods = ['getReplicaList', 'batchGetReplicaList', 'existKey', 'listSegments', 'stats', 'ping', 'status', 'members', 'removeMember', 'snapshot', 'putStart', 'mountSegment', 'nope'];
const rpcFrame = fc.record({ id: fc.oneof(fc.nat(), fc.string({ maxLength: 8 })), method: fc.constantFrom(...rpcMethods), args: fc.oneof(fc.anything({ maxDepth: 2 }), fc.record({ key: fc.string({ maxLength: 12 }), keys: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), size: fc.nat() })) });

async function currentTerm(): Promise<number> {
  const terms = await Promise.all(cluster.nodes.map(async (n) => Number((await cluster.status(n.id))?.term ?? 0)));
  return Math.min(...terms);
}

async function stillServingIntact(): Promise<void> {
  for (const n of cluster.nodes) expect(n.proc, `${n.id} exited (${n.lastExit}): ${cluster.tail(n.id)}`).not.toBeNull();
  for (const n of cluster.nodes) await cluster.waitReady(n.id, 30_000);
  expect(await client.existKey('fuzz-key')).toBe(true);
  expect((await client.getReplicaList('fuzz-key')).replicas).toHaveLength(1);
}

/** Soak bounds, against the figures after the warm-up (see bench/RESULTS.md, issue 11 soak). */
const soakHeapSlackMB = 5;
const soakRssSlackMB = 20;
const soakSeriesSlack = 30;
const soakIdleMaxMs = 180_000;

interface Memory {
  heapUsedMB: number;
  heapTotalMB: number;
  externalMB: number;
  rssMB: number;
  series: number;
}

/** Each master's memory from its own /metrics (prom-client's process_* and nodejs_* gauges), in MB. */
async function memory(): Promise<Memory[]> {
  return Promise.all(cluster.nodes.map(async (n) => {
    const body = (await httpGet(n.ports.http, '/metrics')).body;
    const lines = body.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    const mb = (name: string): number => {
      const line = lines.find((l) => l.startsWith(`${name} `));
      return line === undefined ? NaN : Math.round(Number(line.split(' ')[1]) / 1e5) / 10;
    };
    return {
      heapUsedMB: mb('nodejs_heap_size_used_bytes'),
      heapTotalMB: mb('nodejs_heap_size_total_bytes'),
      externalMB: mb('nodejs_external_memory_bytes'),
      rssMB: mb('process_resident_memory_bytes'),
      series: lines.length,
    };
  }));
}

async function rpcConnect(port: number): Promise<RawPeer> {
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve) => {
    s.once('connect', () => resolve());
    s.once('error', () => resolve());
  });
  s.write(encodeFrame(makeHello(cluster.clusterId, 'fuzz-client', 'client')));
  return RawPeer.wrap(s);
}

describe('stateful fuzz of the peer and RPC ports', () => {
  it('random sequences of well-formed frames of every kind leave every process up and the data intact', async () => {
    const maxTerm = Math.max(0, (await currentTerm()) - 1);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 2 }).chain((ti) => {
          const self = cluster.nodes[(ti + 1) % 3]!.id;
          return fc.tuple(fc.constant(ti), fc.array(peerFrame(self, cluster.nodes[ti]!.id, maxTerm), { minLength: 1, maxLength: 60 }), fc.array(rpcFrame, { maxLength: 30 }));
        }),
        async ([ti, frames, requests]) => {
        const target = cluster.nodes[ti]!;
        const self = cluster.nodes[(ti + 1) % 3]!.id;
        const p = await RawPeer.connect(target.ports.raft, cluster.clusterId, self, token);
        expect(p.reply).toMatchObject({ magic: 'mooring' });
        await p.send(...frames);
        const r = await rpcConnect(target.ports.rpc);
        await r.send(...requests);
        await sleep(50);
        p.destroy();
        r.destroy();
      }),
      { seed, numRuns: 25 },
    );
    await stillServingIntact();
  }, 180_000);

  it.skipIf(soakFrames === 0)(`soak: ${soakFrames} frames per port`, async () => {
    const maxTerm = Math.max(0, (await currentTerm()) - 1);
    let warm: Memory[] = [];
    let halfway: Memory[] = [];
    const warmupRounds = 6;
    const started = Date.now();
    const batch = 500;
    let sent = 0;
    let round = 0;
    while (sent < soakFrames) {
      const ti = round % 3;
      const target = cluster.nodes[ti]!;
      const self = cluster.nodes[(ti + 1) % 3]!.id;
      const p = await RawPeer.connect(target.ports.raft, cluster.clusterId, self, token);
      await p.send(...fc.sample(peerFrame(self, target.id, maxTerm), { numRuns: batch, seed: seed + round }));
      const r = await rpcConnect(target.ports.rpc);
      await r.send(...fc.sample(rpcFrame, { numRuns: batch, seed: seed + round }));
      await sleep(20);
      p.destroy();
      r.destroy();
      sent += batch;
      round++;
      // Baseline after a short warm-up (code paths compiled, buffers and pools allocated once).
      if (round === warmupRounds) warm = await memory();
      if (halfway.length === 0 && sent >= soakFrames / 2) halfway = await memory();
    }
    const seconds = Math.round((Date.now() - started) / 1000);
    const end = await memory();
    // Idle: V8's memory reducer runs a full GC and gives back the young generation and old-space slack the load grew
    // (heap total ~30 → 60–95 MB, RSS +40–70 MB while frames flow), typically 30–60 s after the traffic stops. The
    // lowest figure per node over the idle window is the live heap, not garbage awaiting collection.
    const idle = cluster.nodes.map(() => ({ heapUsedMB: Infinity, rssMB: Infinity }));
    const idleStarted = Date.now();
    const settled = (): boolean => idle.every((m, i) => m.heapUsedMB <= warm[i]!.heapUsedMB + soakHeapSlackMB && m.rssMB <= warm[i]!.rssMB + soakRssSlackMB);
    while (Date.now() - idleStarted < soakIdleMaxMs) {
      await sleep(5_000);
      (await memory()).forEach((m, i) => {
        idle[i]!.heapUsedMB = Math.min(idle[i]!.heapUsedMB, m.heapUsedMB);
        idle[i]!.rssMB = Math.min(idle[i]!.rssMB, m.rssMB);
      });
      if (Date.now() - idleStarted >= 10_000 && settled()) break;
    }
    const after = await memory();
    console.log(JSON.stringify({
      soakFramesPerPort: sent, seconds, idleSeconds: Math.round((Date.now() - idleStarted) / 1000), loadavg: os.loadavg().map((x) => x.toFixed(2)),
      warmup: warm, halfway, end, lowestWhileIdle: idle, afterIdle: after, alive: cluster.nodes.map((n) => n.proc !== null),
    }));
    await stillServingIntact();
    cluster.nodes.forEach((n, i) => {
      // Anything kept per frame, connection, client id or method (≥ 5 bytes per frame at 1M frames) fails here.
      expect(idle[i]!.heapUsedMB, `${n.id} heap used after the soak (MB)`).toBeLessThanOrEqual(warm[i]!.heapUsedMB + soakHeapSlackMB);
      expect(idle[i]!.rssMB, `${n.id} RSS after the soak (MB)`).toBeLessThanOrEqual(warm[i]!.rssMB + soakRssSlackMB);
      // Metric label sets stay bounded (method names, reject reasons, error codes come from the network).
      expect(after[i]!.series, `${n.id} metric series`).toBeLessThanOrEqual(warm[i]!.series + soakSeriesSlack);
    });
  }, 24 * 3600_000);
});
