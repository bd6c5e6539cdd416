/**
 * Read leases across SIGKILL restarts, on real `mooring master` processes (src/testing/jepsen/harness.ts): a member
 * keeps what it acknowledged in its lease file (src/master/lease-file.ts), so a member restarted after SIGKILL on the
 * same boot still counts for a new leader's lease collection. Before, every restarted member answered "amnesic" for
 * a whole TTL: with two restarted members the new leader could not finish its collection and refused every remove
 * for the TTL (OBJECT_HAS_LEASE after waiting leaseWaitMs). Run `npm run build:ts` first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { ProcessCluster } from '../../src/testing/jepsen/harness.js';

/** Long enough that every step below ends inside the read's lease and inside every restarted member's old amnesia. */
const leaseTtlMs = 60_000;

let cluster: ProcessCluster;
let client: MasterClient;


beforeAll(async () => {
  cluster = await ProcessCluster.start({ masters: 3, storageNodes: 0, proxies: false, masterConfig: { leaseTtlMs } });
  client = new MasterClient({ endpoints: cluster.endpoints });
}, 120_000);

afterAll(async () => {
  await client?.close();
  await cluster?.close();
}, 60_000);

describe('read leases after SIGKILL restarts (real processes)', () => {
  it('a member restarted after SIGKILL vouches for the lease it acknowledged; an unread object is removable after the leader change', async () => {
    await client.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z' });
    for (const k of ['cold', 'hot']) {
      await client.putStart(k, 4096);
      await client.putEnd(k);
    }
    const leader = await cluster.waitForLeader();
    const [f1, f2] = [0, 1, 2].filter((i) => i !== leader) as [number, number];

    // f2 is down while 'hot' is read: only the leader and f1 acknowledge its lease.
    await cluster.masters[f2]!.proc.kill();
    await client.getReplicaList('hot');
    await cluster.restartMaster(f2);
    // f1, which acknowledged it, is SIGKILLed and restarted: it must still know the lease.
    await cluster.masters[f1]!.proc.kill();
    await cluster.restartMaster(f1);
    // The old leader dies: the new leader's collection is answered by f1 and f2, both restarted.
    await cluster.masters[leader]!.proc.kill();
    const next = await cluster.waitForLeader();
    expect([f1, f2]).toContain(next);

    // Never read: removable at once (before, refused for the TTL: the restarted members answered "amnesic").
    const t0 = Date.now();
    await expect(client.remove('cold')).resolves.toBeDefined();
    const removeMs = Date.now() - t0;
    expect(await client.existKey('cold')).toBe(false);
    // Read under the old leader and known only to f1 (restarted): still protected.
    await expect(client.remove('hot')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    expect(await client.existKey('hot')).toBe(true);
    console.log(`remove of an unread object after the leader change answered in ${removeMs} ms`);
  }, 120_000);
});
