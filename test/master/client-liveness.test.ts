/**
 * The leader's client-liveness table (pings are not logged; the leader remembers each client's last ping) keeps
 * only registered clients: a stranger pinging made-up client ids over a real RPC connection does not grow it.
 */
import { describe, expect, it } from 'vitest';
import { ClientLiveness } from '../../src/statemachine/clients.js';
import { RpcClient } from '../../src/transport/rpc.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();
const seg = { id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z' };

describe('client liveness table', () => {
  it('pings with made-up client ids are answered NEED_REMOUNT and leave no entry; a registered client keeps its one', async () => {
    const nodes = await startMasters(cleanup, { prefix: 'mooring-liveness-', config: { raft: { tickMs: 50 } } });
    await waitFor(() => nodes.some((n) => n.isLeader) && nodes.every((n) => n.leaderId !== null && n.leaderId === nodes[0]!.leaderId));
    const leader = nodes.find((n) => n.isLeader)!;
    const c = new RpcClient({ host: '127.0.0.1', port: leader.ports.rpc, clusterId: 'mooring', nodeId: 'stranger' });
    cleanup.push(() => c.close());
    await c.call('mountSegment', { segment: seg, clientId: 'real-client', seq: 1 });
    expect(await c.call('ping', { clientId: 'real-client' })).toMatchObject({ status: 'OK' });
    const strangers = 5_000;
    for (let i = 0; i < strangers; i += 500) {
      const replies = await Promise.all(Array.from({ length: 500 }, (_, j) => c.call<{ status: string }>('ping', { clientId: `made-up-${i + j}-${Math.random()}` })));
      expect(replies.every((r) => r.status === 'NEED_REMOUNT')).toBe(true);
    }
    // Before the fix: 5,001 entries (every id ever pinged, kept until the next leader change).
    expect(leader.clientLivenessEntries).toBe(1);
  }, 60_000);

  it('retainRegistered drops the pings of clients that are not (or no longer) registered', () => {
    const l = new ClientLiveness();
    l.touch('a', 1);
    l.touch('b', 2);
    l.touch('gone', 3);
    l.retainRegistered(new Map([['a', {}], ['b', {}]]));
    expect(l.size).toBe(2);
    expect(l.lastSeenMs('a')).toBe(1);
    expect(l.lastSeenMs('gone')).toBeUndefined();
  });
});
