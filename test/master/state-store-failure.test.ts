/**
 * A master whose state store (LevelDB) fails behind an apply stops at once (crash-stop), not at its next apply.
 * Applies reply from memory and LevelDB is written behind them (MasterState, waitForWrite: false), so the write that
 * fails has no caller waiting; before this, an idle leader went on serving reads and leases until the next write
 * came (~20 s in one jepsen run). One real master in-process, real LevelDB in a temp dir, real sockets: the store's
 * database is closed under it, the real way a LevelDB write is refused.
 */
import { describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import type { StateStore } from '../../src/statemachine/store.js';
import { supportedStateVersion } from '../../src/statemachine/state-version.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();

describe('state store failure', () => {
  it('a failed write behind an apply stops the node at once, with no later apply needed', async () => {
    const node = (await startMasters(cleanup, { prefix: 'mooring-sm-fail-', count: 1, config: { raft: { tickMs: 10 } } }))[0]!;
    const c = new MasterClient({ endpoints: [`127.0.0.1:${node.ports.rpc}`], retry: { maxAttempts: 1 } });
    cleanup.push(() => c.close());
    await c.mountSegment({ id: 's', name: 's', base: 0, size: 2 ** 30, protocol: 'tcp', endpoint: '127.0.0.1:1' });
    await c.putStart('before', 100);
    // The leader's own first housekeeping write (it raises a new cluster's state version): after it the node is idle,
    // so no later apply can be what stops it.
    await waitFor(() => node.masterState.stateVersion >= supportedStateVersion, 10_000, 20);
    expect(node.masterState.stateVersion).toBe(supportedStateVersion);
    await node.masterState.flush();

    const fatal = new Promise<Error>((resolve) => node.raftNode.once('fatal', resolve));
    const store = (node.masterState as unknown as { store: StateStore }).store;
    await store.db.close();
    // Applied in memory and answered (the Raft log holds it durably); its LevelDB write behind then fails. The stop
    // can come before the reply leaves: then the client is told the outcome is unknown (the entry is in the log).
    const t0 = Date.now();
    await c.putStart('after', 100).catch((e: { code?: string }) => expect(e.code).toBe('OUTCOME_UNKNOWN'));
    const err = await Promise.race([fatal, new Promise<null>((r) => setTimeout(() => r(null), 3_000))]);
    expect(err, 'the node did not stop within 3 s of the failed write').not.toBeNull();
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect((err as Error & { code?: string }).code).toBe('STORAGE_FAILED');
    expect((err as Error).message).toContain('state store write failed');
    // Stopped: nothing more is served.
    await expect(c.getReplicaList('before')).rejects.toBeDefined();
  });
});
