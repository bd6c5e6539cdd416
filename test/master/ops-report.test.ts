/**
 * What an operator reads off a running master (real MasterNode, real LevelDB in a temp dir, real sockets):
 * /status gives one applied index comparable with commit, admin CLI sessions are not storage clients,
 * mooring_snapshots_total counts snapshots, the leader log line carries the real term, and a data dir held by
 * another open store says so.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { parseConfig } from '../../src/master/config.js';
import { createLogger } from '../../src/master/logger.js';
import { MasterNode } from '../../src/master/master-node.js';
import { Wal } from '../../src/raft/wal/wal.js';
import { adminClientPrefix } from '../../src/statemachine/clients.js';
import { StateStore } from '../../src/statemachine/store.js';
import { freePorts } from '../helpers/ports.js';

let dir: string;
let node: MasterNode;
let httpPort: number;
let endpoint: string;
const lines: Array<Record<string, unknown>> = [];
const clients: MasterClient[] = [];

function client(clientId: string): MasterClient {
  const c = new MasterClient({ endpoints: [endpoint], clientId, retry: { maxAttempts: 20, initialBackoffMs: 20, maxBackoffMs: 200 } });
  clients.push(c);
  return c;
}

async function metric(name: string): Promise<number | undefined> {
  const body = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

async function status(): Promise<Record<string, unknown>> {
  return (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()) as Record<string, unknown>;
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'mooring-ops-'));
  const [raftPort, rpcPort, http] = await freePorts(3);
  httpPort = http!;
  endpoint = `127.0.0.1:${rpcPort}`;
  const config = parseConfig({ nodeId: 'm1', dataDir: path.join(dir, 'm1'), listen: { host: '127.0.0.1', raftPort, rpcPort, httpPort }, raft: { tickMs: 10 } });
  const sink = new Writable({ write(chunk: Buffer, _e, done) { for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); done(); } });
  node = await MasterNode.start(config, { logger: createLogger({ level: 'info', name: 'mooring-master', destination: sink }) });
  const deadline = Date.now() + 10_000;
  while (!node.isLeader && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('operator-facing reports of a master', () => {
  it('logs "became leader" with the term it was elected in, never term 0', () => {
    const became = lines.filter((l) => l.msg === 'became leader');
    expect(became.length).toBeGreaterThan(0);
    expect(became.every((l) => typeof l.term === 'number' && l.term >= 1)).toBe(true);
  });

  it('/status shows one applied index, comparable with commit, and counts admin sessions apart from storage clients', async () => {
    const storage = client('storage-1');
    await storage.mountSegment({ id: 's1', name: 's1', base: 0x10000000, size: 1 << 20, protocol: 'tcp', endpoint: '127.0.0.1:9', zone: 'z1' });
    const admin = client(`${adminClientPrefix}cli`);
    await admin.setNodeStatus('storage-1', 'MAINTENANCE');

    const s = await status();
    expect(s.applied).toBe(s.commit);
    // The whole-state hash is O(state) on the event loop: only on request.
    expect(s).not.toHaveProperty('stateHash');
    const withHash = (await (await fetch(`http://127.0.0.1:${httpPort}/status?stateHash=1`)).json()) as Record<string, unknown>;
    expect(withHash.stateHash).toMatch(/^[0-9a-f]{64}$/);
    expect(await admin.status()).not.toHaveProperty('stateHash'); // the status RPC: the same opt-in
    expect((await admin.status(undefined, { stateHash: true })).stateHash).toBe(withHash.stateHash);
    expect(s.stats).not.toHaveProperty('appliedIndex');
    expect((s.stats as { clientCount: number }).clientCount).toBe(1);
    const deadline = Date.now() + 5_000; // the gauge refreshes on a timer
    while ((await metric('mooring_active_clients')) !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await metric('mooring_active_clients')).toBe(1);
  });

  it('counts a snapshot in mooring_snapshots_total', async () => {
    expect(await metric('mooring_snapshots_total')).toBe(0);
    const admin = client(`${adminClientPrefix}snap`);
    const r = await admin.snapshot();
    expect(r.index).toBeGreaterThan(0);
    expect(await metric('mooring_snapshots_total')).toBe(1);
  });
});

describe('a data dir held by another open store', () => {
  it('says another process holds the log or the state store, not only "failed to open"', async () => {
    const logDir = path.join(dir, 'm1', 'raft-wal');
    await expect(Wal.open(logDir)).rejects.toMatchObject({
      code: ErrorCode.STORAGE_FAILED,
      message: expect.stringMatching(/another process holds/),
    });
    const stateDir = path.join(dir, 'locked-state');
    const first = await StateStore.open(stateDir);
    try {
      await expect(StateStore.open(stateDir)).rejects.toMatchObject({
        code: ErrorCode.STORAGE_FAILED,
        message: expect.stringMatching(/another process holds its lock/),
      });
    } finally {
      await first.close();
    }
  });
});
