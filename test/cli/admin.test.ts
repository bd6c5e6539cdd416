/**
 * `mooring admin` against three real `mooring master` processes: status, members, segments, node status
 * (MAINTENANCE stops new allocations on that node's segments), leadership transfer, snapshot, error exits.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { cliMainPath, LocalCluster } from '../../src/cli/local-cluster.js';

interface Run { code: number | null; stdout: string; stderr: string }

function runCli(args: string[], timeoutMs = 30_000, env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [cliMainPath(), ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`timeout: ${args.join(' ')}`)); }, timeoutMs);
    p.on('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

let cluster: LocalCluster;
let ep: string;
const clients: MasterClient[] = [];
const admin = (...args: string[]): Promise<Run> => runCli(['admin', ...args, '--endpoints', ep, '--cluster-id', cluster.clusterId]);

function storageClient(id: string): MasterClient {
  const c = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, clientId: id, retry: { maxAttempts: 30, initialBackoffMs: 25, maxBackoffMs: 300 } });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  cluster = await LocalCluster.create({ extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 } }, logLevel: 'warn' });
  await cluster.start();
  ep = cluster.endpoints.join(',');
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await cluster?.destroy();
});

describe('mooring admin against a three-process cluster', () => {
  it('status shows every member and exactly one leader; members --json lists three voters', async () => {
    const s = await admin('status', '--json');
    expect(s.code, s.stderr).toBe(0);
    const rows = JSON.parse(s.stdout) as Array<{ id: string; role: string; term: number }>;
    expect(rows.map((r) => r.id).sort()).toEqual(['m1', 'm2', 'm3']);
    expect(rows.filter((r) => r.role === 'leader')).toHaveLength(1);
    const t = await admin('status');
    expect(t.code).toBe(0);
    expect(t.stdout.split('\n')[0]).toMatch(/^ENDPOINT\s+ID\s+ROLE\s+TERM\s+LEADER/);
    const m = await admin('members', '--json');
    expect(m.code, m.stderr).toBe(0);
    const members = JSON.parse(m.stdout) as Array<{ id: string; role: string; isLeader: boolean }>;
    expect(members.map((x) => x.id).sort()).toEqual(['m1', 'm2', 'm3']);
    expect(members.every((x) => x.role === 'voter')).toBe(true);
    expect(members.filter((x) => x.isLeader)).toHaveLength(1);
  });

  it('mount-segment / list-segments / unmount-segment, and SEGMENT_NOT_FOUND exits 1', async () => {
    const mount = await admin('mount-segment', '--id', 'adm-seg', '--size', '64MiB', '--endpoint', '127.0.0.1:7777', '--zone', 'z9', '--client-id', 'admin-tool');
    expect(mount.code, mount.stderr).toBe(0);
    expect(mount.stdout).toContain('mounted adm-seg (64.0 MiB) for client admin-tool');
    const list = await admin('list-segments', '--json');
    const segs = JSON.parse(list.stdout) as Array<{ id: string; size: number; zone: string; clientId: string }>;
    expect(segs.find((s) => s.id === 'adm-seg')).toMatchObject({ size: 64 * 1024 * 1024, zone: 'z9', clientId: 'admin-tool' });
    const table = await admin('list-segments');
    expect(table.stdout).toMatch(/adm-seg\s+admin-tool\s+127\.0\.0\.1:7777\s+tcp\s+z9\s+DRAM\s+OK\s+64\.0 MiB\s+0\.0%/);
    const un = await admin('unmount-segment', '--id', 'adm-seg');
    expect(un.code, un.stderr).toBe(0);
    const again = await admin('unmount-segment', '--id', 'adm-seg');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error SEGMENT_NOT_FOUND: /m);
  });

  it('set-node-status MAINTENANCE: no new allocation lands on that node\'s segments; ACTIVE again restores them', async () => {
    const a = storageClient('node-a');
    const b = storageClient('node-b');
    a.startPing();
    b.startPing();
    await a.mountSegment({ id: 'a-seg', name: 'a-seg', base: 0, size: 1 << 26, protocol: 'tcp', endpoint: '127.0.0.1:8001', zone: 'za' });
    await b.mountSegment({ id: 'b-seg', name: 'b-seg', base: 0, size: 1 << 26, protocol: 'tcp', endpoint: '127.0.0.1:8002', zone: 'zb' });
    const m = await admin('set-node-status', '--node', 'node-a', '--status', 'MAINTENANCE');
    expect(m.code, m.stderr).toBe(0);
    for (let i = 0; i < 30; i++) {
      const replicas = await b.putStart(`maint-${i}`, 4096);
      expect(replicas.map((r) => r.segmentId)).toEqual(['b-seg']);
    }
    // Two replicas need two eligible segments: only b-seg is, so the put lands on it alone or fails NO_SPACE.
    try {
      const r = await b.putStart('maint-two', 4096, { replicaNum: 2 });
      expect(r.every((x) => x.segmentId === 'b-seg')).toBe(true);
    } catch (err) {
      expect(err).toBeInstanceOf(MooringError);
      expect((err as MooringError).code).toBe(ErrorCode.NO_SPACE);
    }
    const back = await admin('set-node-status', '--node', 'node-a', '--status', 'ACTIVE');
    expect(back.code, back.stderr).toBe(0);
    const used = new Set<string>();
    for (let i = 0; i < 40; i++) for (const r of await b.putStart(`active-${i}`, 4096)) used.add(r.segmentId);
    expect(used.has('a-seg')).toBe(true);
    const unknown = await admin('set-node-status', '--node', 'no-such-node', '--status', 'MAINTENANCE');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^error CLIENT_NOT_FOUND: /m);
  });

  it('transfer-leader moves leadership to the named member; snapshot reports an index', async () => {
    const leader = await cluster.waitLeader();
    const target = cluster.nodes.map((n) => n.id).find((id) => id !== leader)!;
    const t = await admin('transfer-leader', '--to', target);
    expect(t.code, t.stderr).toBe(0);
    expect(await cluster.waitLeader(10_000, leader)).toBe(target);
    const s = await admin('snapshot', '--json');
    expect(s.code, s.stderr).toBe(0);
    expect((JSON.parse(s.stdout) as { index: number }).index).toBeGreaterThan(0);
  });

  it('takes the cluster id from --config or MOORING_CLUSTER_ID, and a mismatch says how to pass it', async () => {
    // --config alone: cluster id and endpoints come from a master's YAML.
    const fromFile = await runCli(['admin', 'status', '--json', '--config', cluster.nodes[0]!.configPath]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect((JSON.parse(fromFile.stdout) as Array<{ id: string }>).map((r) => r.id).sort()).toEqual(['m1', 'm2', 'm3']);

    const fromEnv = await runCli(['admin', 'members', '--json', '--endpoints', ep], 30_000, { MOORING_CLUSTER_ID: cluster.clusterId });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);

    const wrong = await runCli(['admin', 'members', '--endpoints', ep, '--timeout', '2000'], 60_000, { MOORING_CLUSTER_ID: '' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^error CLUSTER_MISMATCH: .*--cluster-id.*MOORING_CLUSTER_ID.*--config/m);
  });
});
