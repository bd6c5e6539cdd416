/**
 * One process per data dir: a second KV node process started on a running node's data dir stops at once with
 * "another process holds <dir>" (the WAL's lock file) and the running node is unaffected.
 * Needs `npm run build:ts` first.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KvClient } from '../../src/kvstore/client.js';
import { serverMainPath } from '../../bench/lib/kv-cluster.js';
import { KvCluster } from '../helpers/process-cluster.js';

let cluster: KvCluster | null = null;
let client: KvClient | null = null;
afterEach(async () => {
  await client?.close();
  await cluster?.destroy();
  cluster = null;
  client = null;
});

describe('data dir lock (real processes)', () => {
  it('a second process on the same data dir exits with "another process holds DIR"; the first keeps serving', async () => {
    cluster = await KvCluster.create({ size: 1 });
    await cluster.startAll();
    await cluster.waitForLeader();
    const n = cluster.node('n1');
    const second = spawnSync(process.execPath, [serverMainPath(), '--config', n.configPath], { encoding: 'utf8', timeout: 30_000 });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`another process holds ${path.resolve(n.config.dataDir, 'wal')} (pid ${n.proc!.pid}`);
    client = new KvClient({ endpoints: cluster.endpoints(), clusterId: cluster.clusterId, maxAttempts: 20 });
    await client.put('still', 'serving');
    expect(await client.get('still')).toBe('serving');
  }, 60_000);
});
