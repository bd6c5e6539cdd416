/**
 * Three real `mooring master` processes of this version raise the cluster's state version to 2 by themselves (each
 * announces it in its peer handshakes; src/statemachine/state-version.ts), and a graceful drain of a segment with
 * more objects than one bounded DrainSegments drops (maxDrainObjectsPerCommand) then completes: every object on it
 * gone, the segment removed, the same state on every master.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';
import { maxDrainObjectsPerCommand } from '../../src/statemachine/limits.js';
import { supportedStateVersion } from '../../src/statemachine/state-version.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | null>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    const v = await fn().catch((e: unknown) => ((last = e), null));
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${String(last)}`);
    await sleep(100);
  }
}

describe('state version on real master processes', () => {
  it('is raised to the supported version once every master announces it, and a bounded drain of a large segment completes', async () => {
    const cluster = await LocalCluster.create({ logLevel: 'info' });
    cleanup.push(() => cluster.destroy());
    await cluster.start();
    const ids = cluster.nodes.map((nd) => nd.id);
    const statuses = async (): Promise<Array<Record<string, any>>> => (await Promise.all(ids.map((id) => cluster.status(id)))) as Array<Record<string, any>>;
    await until('state version 2 on every master', async () => {
      const sts = await statuses();
      return sts.every((s) => s?.stateVersion?.cluster === supportedStateVersion) ? sts : null;
    });

    const client = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, retry: { maxAttempts: 30, initialBackoffMs: 50, maxBackoffMs: 500 } });
    cleanup.push(() => client.close());
    // s2 is DISK: no repair can copy s1's DRAM replicas there (there is no storage node to copy them anyway), so the
    // drain drops them instead of waiting for repairs.
    await client.mountSegment({ id: 's1', name: 's1', base: 0, size: 2 ** 40, protocol: 'tcp', endpoint: '127.0.0.1:31001' });
    await client.mountSegment({ id: 's2', name: 's2', base: 0, size: 2 ** 40, protocol: 'tcp', endpoint: '127.0.0.1:31002', tier: 'DISK' });
    // More objects on s1 than two bounded drains take; one on s2 that must stay.
    const n = 2 * maxDrainObjectsPerCommand + 500;
    for (let i = 0; i < n; i += 1_000) {
      const keys = Array.from({ length: Math.min(1_000, n - i) }, (_, j) => `d/${i + j}`);
      await client.write('batchPutStart', { items: keys.map((key) => ({ key, size: 4096, replicaNum: 1, preferredSegments: ['s1'] })) });
      await client.write('batchPutEnd', { keys });
    }
    await client.write('batchPutStart', { items: [{ key: 'stay', size: 4096, replicaNum: 1, tier: 'DISK' }] });
    await client.write('batchPutEnd', { keys: ['stay'] });
    await until('every object on every master', async () => ((await statuses()).every((s) => s.stats.objectCount === n + 1) ? true : null));

    expect(await client.unmountSegment('s1', true)).toMatchObject({ segmentId: 's1', status: 'DRAINING' });
    const done = await until('the drain to finish on every master', async () => {
      const sts = await statuses();
      return sts.every((s) => s.stats.segmentCount === 1 && s.stats.objectCount === 1) ? sts : null;
    });
    expect(done.length).toBe(3);
    const reads = await client.batchGetReplicaList(['stay', 'd/0', `d/${n - 1}`]);
    expect(reads.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'OBJECT_NOT_FOUND', 'OBJECT_NOT_FOUND']);
    // The same state everywhere once all have applied the same index.
    const hashes = await until('equal state hashes', async () => {
      const sts = (await Promise.all(ids.map((id) => cluster.status(id, { stateHash: true })))) as Array<Record<string, any>>;
      return new Set(sts.map((s) => `${s.applied}/${s.stateHash}`)).size === 1 ? sts : null;
    });
    expect(hashes[0]!.stateVersion).toEqual({ cluster: supportedStateVersion, supported: supportedStateVersion });
  }, 90_000);
});
