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
import { MooringError } from '../../src/errors.js';
import { RpcServer } from '../../src/transport/rpc.js';
import { cleanupAfterEach, startMasters, waitFor } from '../helpers/in-process-masters.js';
import { freePorts } from '../helpers/ports.js';

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

  /** One RPC server on 127.0.0.1 playing a leader: `openSession` and `putEnd` as given; every putEnd's args kept. */
  async function fakeMaster(openSession: () => Promise<unknown>, putEnd: (args: Record<string, unknown>) => Promise<unknown>): Promise<string> {
    const [port] = await freePorts(1);
    const s = new RpcServer({ clusterId: 'mooring', nodeId: 'm1', listen: { host: '127.0.0.1', port: port! } });
    s.handle('openSession', async () => openSession());
    s.handle('putEnd', async (args) => putEnd(args as Record<string, unknown>));
    await s.start();
    cleanup.push(() => s.close());
    return `127.0.0.1:${port}`;
  }

  it('against a master without sessions (an older version) writes go without an epoch, and it is not asked again at once', async () => {
    let asked = 0;
    const writes: Array<Record<string, unknown>> = [];
    const ep = await fakeMaster(
      async () => { asked++; throw new MooringError(ErrorCode.INVALID_ARGUMENT, "unknown method 'openSession'"); },
      async (args) => { writes.push(args); return null; },
    );
    const c = client([ep], 'old-cluster');
    for (let i = 0; i < 3; i++) await c.putEnd(`k${i}`);
    expect(asked).toBe(1);
    expect(writes.map((w) => [w.seq, w.epoch])).toEqual([[1, undefined], [2, undefined], [3, undefined]]);
  }, 20_000);

  it('a write refused SESSION_EXPIRED fails (outcome not definite) and the next write opens a new session', async () => {
    let epoch = 40;
    const writes: Array<Record<string, unknown>> = [];
    const ep = await fakeMaster(
      async () => ({ epoch: ++epoch }),
      async (args) => {
        writes.push(args);
        if (args.epoch === 41) throw new MooringError(ErrorCode.SESSION_EXPIRED, 'session 41 of client c is not open');
        return null;
      },
    );
    const c = client([ep], 'c');
    const err = await c.putEnd('a').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MooringError);
    expect(err).toMatchObject({ code: ErrorCode.SESSION_EXPIRED, definite: false });
    await c.putEnd('b');
    expect(writes.map((w) => [w.key, w.epoch])).toEqual([['a', 41], ['b', 42]]);
  }, 20_000);
});
