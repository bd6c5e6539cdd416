/**
 * Read leases across a leader change (issue 17; design in docs/raft.md "Read leases across a leader change"): the
 * new leader learns the old leader's leases from a majority instead of treating every object as leased for a TTL.
 * Three in-process masters on real sockets and LevelDB; the leader is stopped gracefully (leadership handed over).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { maxAnnounceAheadMs } from '../../src/master/lease-sync.js';
import { ErrorCode } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

/** Long enough that the failover below surely ends inside the read's lease, even on a loaded machine. */
const leaseTtlMs = 6_000;
const cleanup = cleanupAfterEach();

describe('read leases across a leader change', () => {
  it('removes an object nobody read at once, and keeps one read under the old leader until its lease ends', async () => {
    const nodes = await startMasters(cleanup, { prefix: 'mooring-lease-', config: { raft: { tickMs: 10 }, leaseTtlMs } });
    await waitFor(() => nodes.some((n) => n.isLeader));
    const c = new MasterClient({ endpoints: nodes.map((n) => `127.0.0.1:${n.ports.rpc}`) });
    cleanup.push(() => c.close());
    await c.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z' });
    for (const k of ['cold', 'hot']) {
      await c.putStart(k, 4096);
      await c.putEnd(k);
    }
    const readAt = Date.now();
    await c.getReplicaList('hot'); // a lease until readAt + leaseTtlMs, granted by the old leader

    const old = nodes.find((n) => n.isLeader)!;
    await old.stop();
    await waitFor(() => nodes.some((n) => n !== old && n.isLeader));

    // Never read: removable right after the change (the old code refused it for a whole TTL).
    await expect(c.remove('cold')).resolves.toBeDefined();
    expect(await c.existKey('cold')).toBe(false);
    // Read under the old leader: still protected while that read's lease lasts...
    await expect(c.remove('hot')).rejects.toMatchObject({ code: ErrorCode.OBJECT_HAS_LEASE });
    // ...and removable once it ended (members were told it lasts up to maxAnnounceAheadMs longer: lease-sync.ts).
    await new Promise((r) => setTimeout(r, readAt + leaseTtlMs + maxAnnounceAheadMs + 100 - Date.now()));
    await expect(c.remove('hot')).resolves.toBeDefined();
  });
});
