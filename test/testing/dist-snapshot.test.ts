/**
 * Real-process clusters run their nodes from a private copy of dist/ (src/testing/dist-snapshot.ts): a rebuild of
 * the checkout during a long run (a bench builds first) cannot change the code a restarted node loads.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { KvCluster, serverMainPath } from '../../bench/lib/kv-cluster.js';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

describe('KvCluster runs a private copy of dist/', () => {
  it('starts and restarts its nodes from the copy under its own root, not from the checkout', async () => {
    const cluster = await KvCluster.create({ size: 1, logLevel: 'warn' });
    cleanup.push(() => cluster.destroy());
    const copy = serverMainPath(path.join(cluster.root, 'snapshot', 'dist'));
    expect(readFileSync(copy, 'utf8')).toBe(readFileSync(serverMainPath(), 'utf8'));
    await cluster.start('n1');
    expect(cluster.node('n1').proc!.spawnargs).toContain(copy);
    await cluster.kill('n1');
    await cluster.start('n1');
    expect(cluster.node('n1').proc!.spawnargs).toContain(copy);
    await cluster.waitForLeader();
  }, 60_000);

  it('snapshot: false runs the checkout itself', async () => {
    const cluster = await KvCluster.create({ size: 1, logLevel: 'warn', snapshot: false });
    cleanup.push(() => cluster.destroy());
    await cluster.start('n1');
    expect(cluster.node('n1').proc!.spawnargs).toContain(serverMainPath());
  }, 60_000);
});
