/**
 * Exactly-once across a failover on real processes: a remove that was applied, retried with the same
 * (clientId, seq) on a new leader, gets its first reply — not OBJECT_HAS_LEASE from a lease the new leader keeps
 * (found by `mooring demo`: the client then believed a removed object still existed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { LocalCluster } from '../../src/cli/local-cluster.js';

/** Long enough that the leadership transfer below ends inside the read lease on 'kept'. */
const leaseTtlMs = 5_000;
let cluster: LocalCluster;
let client: MasterClient;

beforeAll(async () => {
  cluster = await LocalCluster.create({ extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 }, leaseTtlMs }, logLevel: 'warn' });
  await cluster.start();
  client = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, clientId: 'owner', retry: { maxAttempts: 30, initialBackoffMs: 20, maxBackoffMs: 200 } });
  await client.mountSegment({ id: 's1', name: 's1', base: 0, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:1' });
});
afterAll(async () => {
  await client?.close();
  await cluster?.destroy();
});

describe('exactly-once across a failover', () => {
  it('a retried remove gets its first reply from the new leader; a new remove of a leased key is still refused', async () => {
    for (const k of ['gone', 'kept']) {
      await client.putStart(k, 100);
      await client.putEnd(k);
    }
    const args = { key: 'gone', force: false, clientId: 'remover', seq: 1 };
    expect(await client.call('remove', args)).toBeNull();
    await client.getReplicaList('kept'); // a read lease under the old leader, which the new one must keep
    const leader = await cluster.waitLeader();
    const to = cluster.nodes.find((n) => n.id !== leader)!.id;
    await client.call('transferLeader', { to }, { timeoutMs: 10_000 });
    expect(await cluster.waitLeader(10_000, leader)).toBe(to);
    // The retry is answered from the session; the new remove of the key read under the old leader is refused.
    expect(await client.call('remove', args)).toBeNull();
    await expect(client.call('remove', { key: 'kept', force: false, clientId: 'remover', seq: 2 })).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    expect(await client.existKey('gone')).toBe(false);
    expect(await client.existKey('kept')).toBe(true);
  });
});
