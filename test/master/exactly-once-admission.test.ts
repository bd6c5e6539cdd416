/**
 * The duplicate-reply table is consulted before leader-side admission (issue 17 item 4): a remove retried to the
 * same leader while its first attempt is still uncommitted, with a read lease granted in between, must get the
 * first attempt's reply — not OBJECT_HAS_LEASE for a remove that then applies anyway.
 * Three in-process masters on real sockets and LevelDB; the leader's appends are held back by filtering its peer
 * transport (heartbeats still flow, so it keeps its lease and serves reads).
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { RpcClient } from '../../src/transport/rpc.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();

describe('exactly-once before admission', () => {
  it('answers a remove retried while its first attempt is uncommitted with the first reply, not OBJECT_HAS_LEASE', async () => {
    // Slow elections: no spurious leader change on a loaded machine.
    const nodes = await startMasters(cleanup, { prefix: 'mooring-dup-', config: { raft: { tickMs: 50 }, leaseTtlMs: 200 } });
    // A settled leader: every member follows the same one (right after start a deposed leader may still say it leads).
    await waitFor(() => nodes.some((n) => n.isLeader) && nodes.every((n) => n.leaderId !== null && n.leaderId === nodes[0]!.leaderId));
    const leader = nodes.find((n) => n.isLeader)!;
    const at = `127.0.0.1:${leader.ports.rpc}`;
    const c = new MasterClient({ endpoints: [at] });
    cleanup.push(() => c.close());
    await c.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9001', zone: 'z' });
    await c.putStart('k', 4096);
    await c.putEnd('k');
    await new Promise((r) => setTimeout(r, 300)); // past any lease on k

    // Hold back the leader's appends (the entry stays uncommitted); report them unreachable so it re-sends later.
    const transport = (leader as unknown as { transport: { send(to: string, frame: unknown): boolean } }).transport;
    const send = transport.send.bind(transport);
    let holding = true;
    transport.send = (to, frame) => {
      const f = frame as { k?: string; m?: Array<{ type: string }> };
      if (!holding || f.k !== 'r' || !Array.isArray(f.m)) return send(to, frame);
      const rest = f.m.filter((m) => m.type !== 'app');
      if (rest.length > 0) send(to, { ...f, m: rest });
      return rest.length === f.m.length;
    };
    const raw = new RpcClient({ host: '127.0.0.1', port: leader.ports.rpc, clusterId: 'mooring', nodeId: 'raw' });
    cleanup.push(() => raw.close());
    const args = { key: 'k', force: false, clientId: 'dup-client', seq: 1 };
    const outcome = (p: Promise<unknown>) => p.then((v) => ({ ok: true, v }), (e: { code?: string }) => ({ ok: false, code: e.code }));
    const first = outcome(raw.call('remove', args, { timeoutMs: 10_000 }));
    const st = () => leader.raftNode.status();
    let settled: unknown = null;
    void first.then((r) => { settled = r; });
    await waitFor(() => st().lastIndex > st().commit || settled !== null);
    expect(settled).toBeNull(); // the first attempt is in flight, not answered
    // A lease on k while the remove is in flight. A read no longer grants one (it waits for the remove to settle:
    // lease-pending-remove.test.ts), so it is written into the leader's table, as a lease learned from a member is.
    (leader as unknown as { leases: { grant(key: string, nowMs: number): number } }).leases.grant('k', Date.now());
    const retry = outcome(raw.call('remove', args, { timeoutMs: 10_000 }));
    await new Promise((r) => setTimeout(r, 100));
    holding = false;
    await c.mountSegment({ id: 's2', name: 's2', base: 0x20000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9002', zone: 'z' });
    const [a, b] = await Promise.all([first, retry]);
    expect(a.ok).toBe(true);
    expect(b).toEqual(a); // the retry gets the first attempt's reply
    expect(await c.existKey('k')).toBe(false);
  });
});
