/**
 * Read leases count on the lease clock (src/raft/effects/system-clock.ts: the wall clock at process start plus the
 * monotonic time since), not on Date.now(): a forward step of the wall clock (NTP, a resumed VM) must not end a
 * reader's lease early. A real in-process master (sockets, LevelDB); Date.now is stepped a minute forward.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();
afterEach(() => {
  vi.restoreAllMocks();
});

describe('read leases and the wall clock', () => {
  it('a wall clock stepped a minute forward does not end a read lease: the remove is still refused', async () => {
    const nodes = await startMasters(cleanup, { count: 1, prefix: 'mooring-clockstep-', config: { raft: { tickMs: 10 }, leaseTtlMs: 5_000 } });
    await waitFor(() => nodes[0]!.isLeader, 10_000, 20);
    const c = new MasterClient({ endpoints: [`127.0.0.1:${nodes[0]!.ports.rpc}`], retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 }, readFrom: 'leader' });
    cleanup.push(() => c.close());
    await c.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z1' });
    await c.putStart('k', 64);
    await c.putEnd('k');
    await c.getReplicaList('k'); // leased for 5 s
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 60_000);
    await expect(c.callRaw('remove', { key: 'k', clientId: 'w', seq: 1 })).rejects.toMatchObject({ code: 'OBJECT_HAS_LEASE' });
    vi.restoreAllMocks();
    // The lease still ends on time (the object is removable after it).
    const until = Date.now() + 15_000;
    let removed = false;
    for (let seq = 2; !removed && Date.now() < until; seq++) {
      removed = await c.callRaw('remove', { key: 'k', clientId: 'w', seq }).then(() => true, () => false);
      if (!removed) await new Promise((r) => setTimeout(r, 200));
    }
    expect(removed).toBe(true);
    await expect(c.getReplicaList('k')).rejects.toMatchObject({ code: 'OBJECT_NOT_FOUND' });
  }, 30_000);
});
