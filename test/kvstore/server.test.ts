/**
 * KvServer (the KV node the Raft benchmarks and process tests run) on real sockets: requests that find no leader wait
 * for one without a listener each.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { KvClient } from '../../src/kvstore/client.js';
import { KvServer } from '../../src/kvstore/server.js';
import { freePorts } from '../helpers/ports.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
});

describe('KvServer', () => {
  it('requests parked while no leader is known share one leaderChange listener, and fail NOT_LEADER when the wait runs out', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'mooring-kvserver-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    // One of three voters: it can never be elected, so every write waits for a leader that does not come.
    const ports = await freePorts(6);
    const peers = [0, 1, 2].map((i) => ({ id: `n${i + 1}`, host: '127.0.0.1', raftPort: ports[2 * i]!, rpcPort: ports[2 * i + 1]! }));
    const server = await KvServer.start({
      id: 'n1', clusterId: 'solo', dataDir: path.join(root, 'n1'), bootstrap: true,
      raft: { host: '127.0.0.1', port: peers[0]!.raftPort }, rpc: { host: '127.0.0.1', port: peers[0]!.rpcPort },
      peers, tickMs: 20, electionTimeoutTicks: 10,
    });
    cleanups.push(() => server.stop());
    const base = new KvClient({ endpoints: [`127.0.0.1:${peers[0]!.rpcPort}`], clusterId: 'solo', maxAttempts: 1 });
    cleanups.push(() => base.close());
    const listeners = server.node.listenerCount('leaderChange');
    let settled = 0;
    const calls = Array.from({ length: 20 }, (_, i) => base.fork().put(`k${i}`, 'v').then(
      () => 'applied',
      (e: unknown) => (e instanceof MooringError ? e.code : String(e)),
    ).finally(() => settled++));
    await new Promise((r) => setTimeout(r, 150)); // the wait is 2 election timeouts: 400 ms
    expect(settled).toBe(0); // all 20 are waiting for a leader...
    expect(server.node.listenerCount('leaderChange')).toBe(listeners); // ...without a listener each
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 20 }, () => ErrorCode.NOT_LEADER));
  }, 20_000);
});
