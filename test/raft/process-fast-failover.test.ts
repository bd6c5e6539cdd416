/**
 * Fast failover on real processes (run `npm run build:ts` first). Behaviour, not timing: a SIGKILLed leader is
 * replaced through a pre-vote started by the connection reset (the nodes' fastPreVotes counter), and a follower
 * whose connections to a healthy leader keep resetting never causes a leader change.
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { FaultProxy } from '../../src/testing/jepsen/proxy.js';
import { KvClient } from '../../src/kvstore/client.js';
import { KvCluster } from '../helpers/process-cluster.js';

let cluster: KvCluster | null = null;
const proxies: FaultProxy[] = [];
const clients: KvClient[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await cluster?.destroy();
  cluster = null;
  for (const p of proxies.splice(0)) await p.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function client(c: KvCluster): KvClient {
  const k = new KvClient({ endpoints: c.endpoints(), clusterId: c.clusterId, timeoutMs: 2_000, maxAttempts: 20, backoff: { initialMs: 10, maxMs: 200 } });
  clients.push(k);
  return k;
}

/** Every directed raft link a→b goes through its own proxy (node a's config names the proxy as b's address). */
async function proxied(c: KvCluster): Promise<Map<string, FaultProxy>> {
  const links = new Map<string, FaultProxy>();
  const ids = [...c.nodes.keys()];
  for (const a of ids) {
    const n = c.node(a);
    const peers = [];
    for (const p of n.config.peers) {
      if (p.id === a) {
        peers.push(p);
        continue;
      }
      const proxy = new FaultProxy(`${a}>${p.id}`, { host: '127.0.0.1', port: c.node(p.id).config.raft.port });
      await proxy.start();
      proxies.push(proxy);
      links.set(`${a}>${p.id}`, proxy);
      peers.push({ ...p, raftPort: proxy.port });
    }
    n.config.peers = peers;
    writeFileSync(n.configPath, JSON.stringify(n.config, null, 2));
  }
  return links;
}

describe('fast failover (real processes)', () => {
  it('a SIGKILLed leader is replaced through a pre-vote started by the connection reset', async () => {
    cluster = await KvCluster.create({ logLevel: 'warn', clusterId: 'ff-kill' });
    await cluster.startAll();
    const k = client(cluster);
    for (let i = 0; i < 20; i++) await k.put(`k${i}`, `v${i}`);
    for (let round = 0; round < 2; round++) {
      const leader = await cluster.waitForLeader();
      const survivors = cluster.running().filter((id) => id !== leader);
      const before = await Promise.all(survivors.map((id) => cluster!.status(id)));
      const fastBefore = before.reduce((n, s) => n + (s?.fastPreVotes ?? 0), 0);
      await cluster.kill(leader, 'SIGKILL');
      const next = await cluster.waitForLeader();
      expect(next).not.toBe(leader);
      const after = await Promise.all(survivors.map((id) => cluster!.status(id)));
      const fastAfter = after.reduce((n, s) => n + (s?.fastPreVotes ?? 0), 0);
      expect(fastAfter, 'no pre-vote was started by the connection reset').toBeGreaterThan(fastBefore);
      await k.put(`after-${round}`, 'x');
      await cluster.start(leader);
    }
    for (let i = 0; i < 20; i++) expect(await k.get(`k${i}`)).toBe(`v${i}`);
  }, 120_000);

  it('a follower whose connections to a healthy leader keep resetting causes no leader change', async () => {
    // A 500 ms election timeout (20 ticks): on this shared 2-core machine a process starved for 150 ms lets a
    // quorum's lease lapse and any pre-vote (fast or not) win; the cut below (100 ms) stays far shorter.
    cluster = await KvCluster.create({ logLevel: 'warn', clusterId: 'ff-flap', nodeConfig: { electionTimeoutTicks: 20 } });
    const links = await proxied(cluster);
    await cluster.startAll();
    const leader = await cluster.waitForLeader();
    const follower = [...cluster.nodes.keys()].find((id) => id !== leader)!;
    const k = client(cluster);
    await k.put('warm', 'up');
    await sleep(500);
    const before = new Map((await Promise.all(cluster.running().map((id) => cluster!.status(id)))).map((s) => [s!.id, s!]));
    let stop = false;
    let writes = 0;
    const load = (async () => {
      while (!stop) {
        await k.put(`w${writes}`, 'v');
        writes++;
      }
    })();
    for (let flap = 0; flap < 8; flap++) {
      // Reset both directions (the sockets close at once and reconnects are refused), for less than an election
      // timeout, then let the follower reconnect.
      links.get(`${leader}>${follower}`)!.setMode('cut');
      links.get(`${follower}>${leader}`)!.setMode('cut');
      await sleep(100);
      links.get(`${leader}>${follower}`)!.setMode('pass');
      links.get(`${follower}>${leader}`)!.setMode('pass');
      await sleep(600);
    }
    stop = true;
    await load;
    await cluster.waitForStatus(cluster.running(), (s) => s.every((x) => x.leader === leader), 10_000, 'follower back with the leader');
    const sts = await Promise.all(cluster.running().map((id) => cluster!.status(id)));
    const fol = sts.find((s) => s?.id === follower)!;
    expect(fol.fastPreVotes, 'the flapping follower never pre-voted: the test did not exercise the fast path').toBeGreaterThan(0);
    const view = JSON.stringify(sts.map((s) => s && { id: s.id, role: s.role, term: s.term, leaderChanges: s.leaderChanges, fast: s.fastPreVotes }));
    for (const s of sts) {
      const b = before.get(s!.id)!;
      expect(s!.leaderChanges - b.leaderChanges, `${s!.id} saw a leader change: ${view}`).toBe(0);
      expect(s!.term, view).toBe(b.term);
    }
    expect(writes).toBeGreaterThan(0);
  }, 120_000);
});
