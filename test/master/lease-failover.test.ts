/**
 * Read leases across a leader change (issue 17; design in docs/raft.md "Read leases across a leader change"): the
 * new leader learns the old leader's leases from a majority instead of treating every object as leased for a TTL.
 * Three in-process masters on real sockets and LevelDB; the leader is stopped gracefully (leadership handed over).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { parseConfig } from '../../src/master/config.js';
import { MasterNode } from '../../src/master/master-node.js';
import { MasterClient } from '../../src/master/client.js';
import { silentLogger } from '../../src/master/logger.js';
import { freePorts } from '../helpers/ports.js';

/** Long enough that the failover below surely ends inside the read's lease, even on a loaded machine. */
const leaseTtlMs = 6_000;
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('read leases across a leader change', () => {
  it('removes an object nobody read at once, and keeps one read under the old leader until its lease ends', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'mooring-lease-'));
    cleanup.push(() => rmSync(root, { recursive: true, force: true }));
    const ports = await freePorts(9);
    const peers = [0, 1, 2].map((i) => ({ id: `m${i + 1}`, host: '127.0.0.1', raftPort: ports[i * 3]!, rpcPort: ports[i * 3 + 1]!, httpPort: ports[i * 3 + 2]! }));
    const nodes = await Promise.all(peers.map((p) => MasterNode.start(parseConfig({
      peerToken: 'test-peer-token', // peers authenticate (the only way a multi-node master starts)
      nodeId: p.id, dataDir: path.join(root, p.id),
      listen: { host: '127.0.0.1', raftPort: p.raftPort, rpcPort: p.rpcPort, httpPort: p.httpPort },
      peers, raft: { tickMs: 10 }, leaseTtlMs,
    }), { logger: silentLogger(), http: false })));
    cleanup.push(async () => { await Promise.all(nodes.map((m) => m.stop())); });
    await waitFor(() => nodes.some((n) => n.isLeader));
    const c = new MasterClient({ endpoints: peers.map((p) => `127.0.0.1:${p.rpcPort}`) });
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
    // ...and removable once it ended.
    await new Promise((r) => setTimeout(r, readAt + leaseTtlMs + 100 - Date.now()));
    await expect(c.remove('hot')).resolves.toBeDefined();
  });
});
