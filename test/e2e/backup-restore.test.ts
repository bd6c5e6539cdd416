/**
 * Disaster recovery on real processes: three master processes and two storage-node processes; objects written
 * (bytes verified), `mooring admin backup` (the CLI, a real child process), more objects written, every master
 * stopped and its data dir deleted, `mooring restore` into three new data dirs, masters started again on them.
 * Objects from before the backup read back exactly (every one has a replica on a storage node that kept running),
 * later ones are absent, a storage node replaced after the backup remounts (NEED_REMOUNT), and a restored member
 * refuses the Raft handshake of a member of the old cluster. Run `npm run build:ts` first.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { StoreClient } from '../../src/store/index.js';
import { ProcessCluster, repoRoot, sleep } from '../../src/testing/jepsen/harness.js';
import { FramedSocket } from '../../src/transport/framed-socket.js';
import { dialHandshake, makeHello } from '../../src/transport/handshake.js';
import { pattern } from '../store/helpers.js';

const run = promisify(execFile);
const cli = path.join(repoRoot(), 'dist/src/cli/main.js');
const sizeOf = (seed: number): number => 1 + ((seed * 7919) % 6_000);
const transient = new Set<string>([ErrorCode.NOT_LEADER, ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.LEASE_EXPIRED, ErrorCode.RPC_FAILED, ErrorCode.SHUTTING_DOWN, ErrorCode.TRANSFER_FAILED]);

let cluster: ProcessCluster;
let client: StoreClient;
let work: string;

async function read(key: string, seed: number): Promise<'ok' | 'missing' | string> {
  for (let attempt = 0; ; attempt++) {
    try {
      const got = await client.get(key);
      return got.equals(pattern(seed, sizeOf(seed))) ? 'ok' : `WRONG BYTES for ${key}`;
    } catch (e) {
      if (e instanceof MooringError && (e.code === ErrorCode.OBJECT_NOT_FOUND || e.code === ErrorCode.OBJECT_NOT_READY)) return 'missing';
      if (!(e instanceof MooringError) || !transient.has(e.code) || attempt >= 20) return `${key}: ${String(e)}`;
      await sleep(250);
    }
  }
}

async function putAll(first: number, n: number): Promise<void> {
  for (let s = first; s < first + n; s++) await client.put(`dr-${s}`, pattern(s, sizeOf(s)), { replicas: 2 });
}

/** Raft handshake on a master's peer port with this cluster id; resolves with the error code or 'accepted'. */
async function peerHandshake(port: number, clusterId: string, token: string): Promise<string> {
  const sock = net.connect(port, '127.0.0.1');
  await once(sock, 'connect');
  const conn = new FramedSocket(sock, 1 << 20);
  try {
    await dialHandshake(conn, makeHello(clusterId, 'm1', 'peer', token), { clusterId, role: 'peer' }, 3_000);
    return 'accepted';
  } catch (e) {
    return e instanceof MooringError ? e.code : String(e);
  } finally {
    conn.destroy(new Error('done'));
  }
}

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'mooring-dr-'));
  cluster = await ProcessCluster.start({ masters: 3, storageNodes: 3, proxies: false, storage: { memoryBytes: 32 << 20, pingMs: 300 } });
  client = await StoreClient.create({ masters: cluster.endpoints, retry: { maxAttempts: 12, initialBackoffMs: 50, maxBackoffMs: 500 }, stagingSlotBytes: 64 << 10 });
}, 120_000);

afterAll(async () => {
  await client?.close();
  await cluster?.close();
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
}, 60_000);

describe('backup and restore (real processes)', () => {
  it('restores exactly the backed-up objects into a new cluster that refuses old members', async () => {
    const before = 40;
    const after = 20;
    await putAll(0, before);
    for (let s = 0; s < before; s++) expect(await read(`dr-${s}`, s)).toBe('ok');

    const file = path.join(work, 'state.mbak');
    const { stdout } = await run(process.execPath, [cli, 'admin', 'backup', file, '--endpoints', cluster.endpoints.join(','), '--json'], { timeout: 60_000 });
    const info = JSON.parse(stdout) as { header: { index: number; objectCount: number } };
    expect(info.header.objectCount).toBe(before);

    // After the backup a storage node is replaced (a new client id the backup does not know), more objects come.
    await cluster.killStorage(2);
    await cluster.startStorage(2);
    const newcomer = cluster.storage[2]!.clientId;
    await putAll(before, after);
    for (let s = before; s < before + after; s++) expect(await read(`dr-${s}`, s)).toBe('ok');

    // Disaster: every master gone with its disk.
    await Promise.all(cluster.masters.map((m) => m.proc.terminate()));
    for (const m of cluster.masters) rmSync(String(m.config.dataDir), { recursive: true, force: true });

    for (const m of cluster.masters) {
      const cfgFile = path.join(work, `${m.id}.json`);
      writeFileSync(cfgFile, JSON.stringify(m.config));
      const dataDir = path.join(work, `${m.id}-restored`);
      const r = await run(process.execPath, [cli, 'restore', '--from', file, '--config', cfgFile, '--data-dir', dataDir, '--json'], { timeout: 60_000 });
      const res = JSON.parse(r.stdout) as { index: number; objectCount: number; clusterUid: string };
      expect(res.index).toBe(info.header.index);
      expect(res.objectCount).toBe(before);
      m.config.dataDir = dataDir;
    }
    await Promise.all(cluster.masters.map((_, i) => cluster.startMaster(i)));
    await cluster.waitForLeader();

    for (let s = 0; s < before; s++) expect(await read(`dr-${s}`, s)).toBe('ok');
    for (let s = before; s < before + after; s++) expect(await read(`dr-${s}`, s)).toBe('missing');
    // The replaced node is unknown to the restored state: told NEED_REMOUNT, it mounts its segment again.
    const admin = new MasterClient({ endpoints: cluster.endpoints, retry: { maxAttempts: 12, initialBackoffMs: 50, maxBackoffMs: 500 } });
    try {
      for (let i = 0; ; i++) {
        const segs = (await admin.listSegments()) as Array<{ clientId: string }>;
        if (segs.some((g) => g.clientId === newcomer)) break;
        if (i > 100) throw new Error(`${newcomer} did not remount`);
        await sleep(200);
      }
    } finally {
      await admin.close();
    }
    // The restored cluster takes writes.
    await putAll(1000, 5);
    for (let s = 1000; s < 1005; s++) expect(await read(`dr-${s}`, s)).toBe('ok');

    // An old member's Raft handshake is refused; one with the new identity is accepted.
    const raftPort = Number((cluster.masters[1]!.config.listen as { raftPort: number }).raftPort);
    // With the cluster's peer token (an old member has it): only the identity tells the clusters apart.
    const token = String(cluster.masters[1]!.config.peerToken);
    expect(await peerHandshake(raftPort, 'mooring', token)).toBe(ErrorCode.CLUSTER_MISMATCH);
    const identity = JSON.parse(readFileSync(path.join(String(cluster.masters[1]!.config.dataDir), 'identity.json'), 'utf8')) as { clusterUid: string };
    expect(await peerHandshake(raftPort, `mooring/${identity.clusterUid}`, token)).toBe('accepted');
  }, 240_000);
});
