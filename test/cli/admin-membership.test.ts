/**
 * Membership through `mooring admin` on real processes, as docs/operations.md describes it: a fourth master
 * started with `join: true` is added (learner → voter), serves, and is removed again; then the leader is removed.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { cliMainPath, LocalCluster } from '../../src/cli/local-cluster.js';

const run = promisify(execFile);
let cluster: LocalCluster | undefined;
afterAll(async () => {
  await cluster?.destroy();
});

describe('mooring admin add-member / remove-member', () => {
  it('adds a joining fourth master as a voter, removes it again, then removes the leader', async () => {
    const c = (cluster = await LocalCluster.create({ size: 4, extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 } }, logLevel: 'warn' }));
    // m1..m3 bootstrap the cluster; m4 joins it (peers = the existing members to contact).
    for (const n of c.nodes) {
      const cfg = parse(readFileSync(n.configPath, 'utf8')) as { peers: Array<{ id: string }>; join?: boolean };
      cfg.peers = cfg.peers.filter((p) => p.id !== 'm4');
      if (n.id === 'm4') cfg.join = true;
      writeFileSync(n.configPath, stringify(cfg));
    }
    await c.start(['m1', 'm2', 'm3']);
    c.spawn('m4');
    const endpoints = c.endpoints.slice(0, 3).join(',');
    const adminAt = async (eps: string, ...args: string[]): Promise<string> =>
      (await run(process.execPath, [cliMainPath(), 'admin', ...args, '--endpoints', eps, '--cluster-id', c.clusterId])).stdout;
    const admin = (...args: string[]): Promise<string> => adminAt(endpoints, ...args);
    const m4 = c.node('m4');
    const added = await admin('add-member', '--id', 'm4', '--host', '127.0.0.1', '--raft-port', String(m4.ports.raft), '--rpc-port', String(m4.ports.rpc), '--http-port', String(m4.ports.http));
    expect(added).toContain('added m4; voters m1, m2, m3, m4');
    const members = JSON.parse(await admin('members', '--json')) as Array<{ id: string; role: string }>;
    expect(members.map((m) => `${m.id}:${m.role}`).sort()).toEqual(['m1:voter', 'm2:voter', 'm3:voter', 'm4:voter']);
    await c.waitReady('m4');
    const removed = await admin('remove-member', '--id', 'm4');
    expect(removed).toContain('removed m4; voters m1, m2, m3');
    const after = JSON.parse(await admin('members', '--json')) as Array<{ id: string }>;
    expect(after.map((m) => m.id).sort()).toEqual(['m1', 'm2', 'm3']);
    // Removing the leader: it hands leadership to another voter, whose answer the CLI follows; the removed node can
    // then be stopped at once and the two left still elect and serve.
    const old = await c.waitLeader();
    const out = await admin('remove-member', '--id', old);
    expect(out).toContain(`removed ${old}; voters`);
    await c.stop(old);
    const rest = ['m1', 'm2', 'm3'].filter((id) => id !== old);
    const leader = await c.waitLeader(undefined, old);
    expect(rest).toContain(leader);
    const restEndpoints = rest.map((id) => c.endpoints[c.nodes.findIndex((n) => n.id === id)]).join(',');
    const left = JSON.parse(await adminAt(restEndpoints, 'members', '--json')) as Array<{ id: string; role: string }>;
    expect(left.map((m) => `${m.id}:${m.role}`).sort()).toEqual(rest.map((id) => `${id}:voter`));
  });
});
