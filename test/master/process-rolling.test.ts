/**
 * Three real `mooring master` processes under client load (one session per worker, see demo-traffic.ts):
 * - SIGTERM on the leader: it exits 0, leadership moves, and no client operation fails;
 * - a rolling restart of all three (SIGTERM, restart from the same dir and config, wait until caught up) with
 *   ZERO failed client operations and every acknowledged object still present with its replicas.
 * Clients retry through each failover: maxAttempts 60 with 25 → 500 ms backoff (demoRetry), instead of the
 * library default of 3.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { Traffic, metadataOnlyDataPath, startStorageClient, verifyAcked, type StorageClient } from '../../src/cli/demo-traffic.js';

const leaseTtlMs = 2_000;
const extraConfig = { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 }, leaseTtlMs };
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function setup(): Promise<{ cluster: LocalCluster; traffic: Traffic; checker: MasterClient }> {
  const cluster = await LocalCluster.create({ extraConfig, logLevel: 'info' });
  cleanup.push(() => cluster.destroy());
  await cluster.start();
  const clients: StorageClient[] = [];
  for (let i = 0; i < 2; i++) clients.push(await startStorageClient(i, cluster.endpoints, cluster.clusterId, metadataOnlyDataPath, 4));
  cleanup.push(async () => { await Promise.all(clients.map((c) => c.close())); });
  const traffic = new Traffic({ clients, keys: 400, objectBytes: 4096, replicaNum: 2, leaseTtlMs, dataPath: metadataOnlyDataPath, seed: 7 });
  cleanup.push(() => traffic.stop());
  const checker = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, retry: { maxAttempts: 30, initialBackoffMs: 50, maxBackoffMs: 500 } });
  cleanup.push(() => checker.close());
  return { cluster, traffic, checker };
}

/** Waits until `id` has applied at least what the leader had committed when called. */
async function waitCaughtUp(cluster: LocalCluster, id: string, timeoutMs = 20_000): Promise<void> {
  const leader = await cluster.waitLeader();
  const commit = Number((await cluster.status(leader))?.commit ?? 0);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await cluster.status(id);
    if (s !== null && Number(s.applied) >= commit) return;
    if (Date.now() > deadline) throw new Error(`${id} did not catch up to ${commit}: ${JSON.stringify(s)}`);
    await sleep(50);
  }
}

function expectNoFailures(traffic: Traffic): void {
  const c = traffic.counters;
  expect({ errors: c.errors, byCode: c.errorsByCode, last: traffic.lastError, missing: c.missingOnRead, uncertain: traffic.uncertainCount() })
    .toEqual({ errors: 0, byCode: {}, last: null, missing: 0, uncertain: 0 });
}

describe('master processes: graceful stop and rolling restart under load', () => {
  it('SIGTERM on the leader: exit 0, leadership moves, no client operation fails', async () => {
    const { cluster, traffic, checker } = await setup();
    traffic.start();
    await sleep(1_000);
    const leader = await cluster.waitLeader();
    const before = traffic.ops;
    expect(await cluster.stop(leader)).toBe(0);
    const next = await cluster.waitLeader(10_000, leader);
    expect(next).not.toBe(leader);
    await sleep(1_000);
    await traffic.stop();
    expect(traffic.ops).toBeGreaterThan(before);
    expect(traffic.counters.puts).toBeGreaterThan(0);
    expectNoFailures(traffic);
    const { lost } = await verifyAcked(checker, traffic.ackedKeys(), 2);
    expect(lost).toEqual([]);
    expect(cluster.tail(leader, 100_000)).toContain('master stopped');
  });

  it('rolling restart of all three masters under load: zero failed client operations, nothing lost', async () => {
    const { cluster, traffic, checker } = await setup();
    traffic.start();
    await sleep(500);
    // Followers first, the leader of the moment last (the usual upgrade order; each stop is graceful anyway).
    const leader = await cluster.waitLeader();
    const order = [...cluster.nodes.map((n) => n.id).filter((id) => id !== leader), leader];
    for (const id of order) {
      const opsBefore = traffic.ops;
      expect(await cluster.stop(id)).toBe(0);
      await sleep(300);
      cluster.spawn(id);
      await cluster.waitReady(id);
      await waitCaughtUp(cluster, id);
      // Progress while this member was away and back.
      const t = Date.now();
      while (traffic.ops <= opsBefore && Date.now() - t < 10_000) await sleep(20);
      expect(traffic.ops).toBeGreaterThan(opsBefore);
    }
    await sleep(500);
    await traffic.stop();
    expectNoFailures(traffic);
    const acked = traffic.ackedKeys();
    expect(acked.length).toBeGreaterThan(0);
    const { lost } = await verifyAcked(checker, acked, 2);
    expect(lost).toEqual([]);
    // Every member restarted from its own disk and holds the same state.
    const deadline = Date.now() + 15_000;
    let hashes: unknown[] = [];
    while (Date.now() < deadline) {
      hashes = (await Promise.all(cluster.nodes.map((n) => cluster.status(n.id, { stateHash: true })))).map((s) => s?.stateHash);
      if (hashes[0] !== undefined && hashes.every((h) => h === hashes[0])) break;
      await sleep(100);
    }
    expect(new Set(hashes).size).toBe(1);
  });
});
