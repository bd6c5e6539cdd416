/**
 * A follower restarted far behind is caught up without disturbing the leader (real processes; run `npm run build:ts`
 * first). Found in the failover bench: every restarted follower was sent its whole backlog in one Ready (256 appends
 * × up to 1 MiB), a 20–60 MB frame. Encoding it held the leader's event loop for ~0.5 s, so its heartbeats stopped and
 * the other follower elected itself; the transport then refused the frame as over maxFrameBytes. The pipelining
 * window is now bounded by bytes too (maxInflightBytes) and a round's messages are cut into frames.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KvClient } from '../../src/kvstore/client.js';
import { KvCluster } from '../helpers/process-cluster.js';

let cluster: KvCluster | null = null;
const clients: KvClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await cluster?.destroy();
  cluster = null;
});

describe('catch-up of a restarted follower (real processes)', () => {
  it('a follower 32 MB behind catches up with no leader change and no frame over maxFrameBytes', async () => {
    cluster = await KvCluster.create({ logLevel: 'warn', clusterId: 'catch-up' });
    await cluster.startAll();
    const leader = await cluster.waitForLeader();
    const follower = cluster.running().find((id) => id !== leader)!;
    const other = cluster.running().find((id) => id !== leader && id !== follower)!;
    const base = new KvClient({ endpoints: cluster.endpoints(), clusterId: cluster.clusterId });
    clients.push(base);
    await base.put('warm', 'x');
    await cluster.kill(follower, 'SIGKILL');

    // 2,048 values of 16 KiB (32 MiB of log) while the follower is down; the default snapshot interval (10,000
    // entries) keeps all of it in the log, so the follower is caught up by appends, not by a snapshot.
    const value = 'v'.repeat(16 * 1024);
    const writers = Array.from({ length: 8 }, () => base.fork());
    await Promise.all(writers.map(async (w, i) => {
      for (let n = i; n < 2048; n += writers.length) await w.put(`k${n}`, value);
    }));
    const before = await Promise.all([leader, other].map((id) => cluster!.status(id)));

    await cluster.start(follower);
    const target = before[0]!.commit;
    await cluster.waitForStatus([follower], (s) => s[0]!.applied >= target, 60_000, 'the restarted follower caught up');
    // Let a few election timeouts pass: a leader stalled by the catch-up would have been replaced by now.
    await new Promise((r) => setTimeout(r, 1_000));

    const after = await Promise.all([leader, other].map((id) => cluster!.status(id)));
    expect(after[0]!.role, `${leader} lost its leadership during the catch-up`).toBe('leader');
    expect(after.map((s) => s!.term)).toEqual(before.map((s) => s!.term));
    expect(after.map((s) => s!.leaderChanges)).toEqual(before.map((s) => s!.leaderChanges));
    const leaderLog = readFileSync(cluster.node(leader).logPath, 'utf8');
    expect(leaderLog).not.toContain('frame not sent');
    expect(await base.get('k2047')).toBe(value);
  }, 120_000);
});
