/**
 * Client sessions end to end (three MasterNodes in one process, real LevelDB in temp dirs, real sockets on
 * 127.0.0.1): MasterClient opens a session before its first write once the cluster's state version is 3. A second
 * process started with the same client id (a restarted storage node) gets replies to its own writes — before
 * sessions it got the first process's reply to the same seq (a PutStart answered with another key's replicas) — and
 * the first process's writes are refused with SESSION_EXPIRED from then on.
 */
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { sessionEpochStateVersion } from '../../src/statemachine/state-version.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';

const cleanup = cleanupAfterEach();
const segment = (id: string) => ({ id, name: id, base: 0x10000000, size: 1 << 30, protocol: 'tcp' as const, endpoint: '127.0.0.1:9000', zone: 'z1' });

function client(endpoints: string[], clientId: string): MasterClient {
  const c = new MasterClient({ endpoints, clientId, retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 } });
  cleanup.push(() => c.close());
  return c;
}

describe('client sessions', () => {
  it('a second client with the same id gets its own replies; the first one is refused with SESSION_EXPIRED', async () => {
    const nodes = await startMasters(cleanup, { prefix: 'mooring-sess-', config: { raft: { tickMs: 25, electionTimeoutTicks: 10 } } });
    // Every master announces version 3 in its handshake; the leader raises the cluster's version in housekeeping.
    await waitFor(() => nodes.every((n) => (n.statusReport().stateVersion as { cluster: number }).cluster >= sessionEpochStateVersion), 20_000);
    const endpoints = nodes.map((n) => `127.0.0.1:${n.ports.rpc}`);
    const first = client(endpoints, 'node-1');
    await first.mountSegment(segment('s1'));
    const a = await first.putStart('key-A', 4096);
    const second = client(endpoints, 'node-1');
    // Its first write is seq 1 of a new session: executed, not answered with the first client's seq 1 (the mount).
    const b = await second.putStart('key-B', 4096);
    expect(Array.isArray(b) && b.length).toBe(1);
    expect(b).not.toEqual(a);
    expect(await second.existKey('key-B')).toBe(false); // allocated, not yet complete
    await second.putEnd('key-B');
    expect(await second.existKey('key-B')).toBe(true);
    // The first client's next write is refused, not applied; its following write opens a session again.
    await expect(first.putEnd('key-A')).rejects.toMatchObject({ code: ErrorCode.SESSION_EXPIRED });
    expect(await first.existKey('key-A')).toBe(false);
    await first.putEnd('key-A');
    expect(await first.existKey('key-A')).toBe(true);
  }, 60_000);
});
