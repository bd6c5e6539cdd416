/**
 * Three real `mooring master` processes with TLS + mTLS on both the peer (raft) and the client (RPC) port,
 * certificates from test/helpers/tls.ts, and an admin token:
 * - a client with a certificate from the cluster CA works; one with a foreign certificate or no TLS is refused;
 * - the raft port refuses a foreign certificate and survives garbage;
 * - admin RPCs without the token are refused (library and CLI);
 * - /health, /ready, /metrics and /status of a live process answer (and /status leaks no token).
 */
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { MasterClient } from '../../src/master/client.js';
import { cliMainPath, httpGet, LocalCluster } from '../../src/cli/local-cluster.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';

const adminToken = 'tls-test-admin-token-4f2a';
let pki: TestPki;
let cluster: LocalCluster;
let caPath: string;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  pki = createTestPki();
  caPath = path.join(pki.dir, 'main-ca.crt');
  // One certificate per master (CN = node id); the same CA verifies peers and clients.
  const leaves = Object.fromEntries(['m1', 'm2', 'm3'].map((id) => [id, pki.leaf(id)]));
  cluster = await LocalCluster.create({
    extraConfig: { raft: { tickMs: 20, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 }, adminToken },
    logLevel: 'warn',
  });
  // Per-node TLS files: rewrite each node's config with its own certificate.
  const { readFileSync, writeFileSync } = await import('node:fs');
  const { parse, stringify } = await import('yaml');
  for (const n of cluster.nodes) {
    const cfg = parse(readFileSync(n.configPath, 'utf8')) as Record<string, unknown>;
    cfg.tls = { cert: leaves[n.id]!.certPath, key: leaves[n.id]!.keyPath, ca: caPath, requireClientCert: true };
    writeFileSync(n.configPath, stringify(cfg));
  }
  await cluster.start();
});
afterAll(async () => {
  for (const c of closers) await c();
  await cluster?.destroy();
  pki?.cleanup();
});

function client(opts: Partial<ConstructorParameters<typeof MasterClient>[0]>): MasterClient {
  const c = new MasterClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId, requestTimeoutMs: 2_000, retry: { maxAttempts: 20, initialBackoffMs: 25, maxBackoffMs: 300 }, ...opts });
  closers.push(() => c.close());
  return c;
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cliMainPath(), ...args]);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('TLS + mTLS on both ports, admin token', () => {
  it('a client with a certificate from the cluster CA works (writes, reads, admin with the token)', async () => {
    const leaf = pki.leaf('client-ok');
    const c = client({ tls: { cert: leaf.cert, key: leaf.key, ca: pki.caCert }, adminToken });
    await c.mountSegment({ id: 'tls-seg', name: 'tls-seg', base: 0, size: 1 << 24, protocol: 'tcp', endpoint: '127.0.0.1:9' });
    await c.putStart('tls-key', 1024);
    await c.putEnd('tls-key');
    expect((await c.getReplicaList('tls-key')).replicas).toHaveLength(1);
    expect((await c.members()).map((m) => m.id).sort()).toEqual(['m1', 'm2', 'm3']);
  });

  it('refuses a client with a foreign certificate and a client without TLS', async () => {
    const foreign = pki.foreignLeaf('intruder');
    const bad = client({ tls: { cert: foreign.cert, key: foreign.key, ca: pki.caCert }, retry: { maxAttempts: 1 }, requestTimeoutMs: 1_000 });
    await expect(bad.existKey('tls-key')).rejects.toBeInstanceOf(MooringError);
    const plain = client({ retry: { maxAttempts: 1 }, requestTimeoutMs: 1_000 });
    await expect(plain.existKey('tls-key')).rejects.toBeInstanceOf(MooringError);
    // Still serving the right clients afterwards.
    const leaf = pki.leaf('client-after');
    const good = client({ tls: { cert: leaf.cert, key: leaf.key, ca: pki.caCert } });
    expect(await good.existKey('tls-key')).toBe(true);
  });

  it('refuses admin RPCs without the admin token, through the library and the CLI', async () => {
    const leaf = pki.leaf('client-noadmin');
    const anon = client({ tls: { cert: leaf.cert, key: leaf.key, ca: pki.caCert } });
    await expect(anon.members()).rejects.toMatchObject({ code: ErrorCode.UNAUTHORIZED });
    await expect(anon.setNodeStatus('x', 'MAINTENANCE')).rejects.toMatchObject({ code: ErrorCode.UNAUTHORIZED });
    await expect(anon.snapshot()).rejects.toMatchObject({ code: ErrorCode.UNAUTHORIZED });
    const base = ['admin', 'members', '--endpoints', cluster.endpoints.join(','), '--cluster-id', cluster.clusterId, '--ca', caPath, '--cert', leaf.certPath, '--key', leaf.keyPath];
    const no = await runCli(base);
    expect(no.code).toBe(1);
    expect(no.stderr).toMatch(/^error UNAUTHORIZED: /m);
    const wrong = await runCli([...base, '--token', 'not-the-token']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^error UNAUTHORIZED: /m);
    const yes = await runCli([...base, '--token', adminToken, '--json']);
    expect(yes.code, yes.stderr).toBe(0);
    expect((JSON.parse(yes.stdout) as unknown[]).length).toBe(3);
    // Without TLS material the CLI cannot talk to an mTLS cluster at all.
    const plain = await runCli(['admin', 'members', '--endpoints', cluster.endpoints[0]!, '--cluster-id', cluster.clusterId, '--token', adminToken, '--timeout', '500']);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/^error [A-Z_]+: /m);
  });

  it('the raft port refuses a foreign certificate and survives garbage; every member stays up', async () => {
    const n = cluster.nodes[0]!;
    const foreign = pki.foreignLeaf('intruder2');
    const refused = await new Promise<boolean>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port: n.ports.raft, cert: foreign.cert, key: foreign.key, ca: pki.caCert }, () => {
        // TLS 1.3: the server's refusal of our certificate arrives after our side considers the handshake done.
        s.write('hello');
      });
      s.on('error', () => resolve(true));
      s.on('close', () => resolve(true));
      setTimeout(() => { s.destroy(); resolve(false); }, 5_000);
    });
    expect(refused).toBe(true);
    await new Promise<void>((resolve) => {
      const s = net.connect(n.ports.raft, '127.0.0.1', () => s.end(Buffer.from('\x16\x03\x01 not a tls hello at all \x00\xff'.repeat(50))));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    for (const m of cluster.nodes) expect(m.proc).not.toBeNull();
    await cluster.waitReady(n.id, 10_000);
  });

  it('/health, /ready, /metrics and /status answer on a live process; /status holds no token', async () => {
    for (const n of cluster.nodes) {
      const health = await httpGet(n.ports.http, '/health');
      expect(health).toEqual({ status: 200, body: 'ok' });
      const ready = await httpGet(n.ports.http, '/ready');
      expect(ready.status).toBe(200);
      expect(JSON.parse(ready.body)).toEqual({ ready: true });
      const metrics = await httpGet(n.ports.http, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toMatch(/^mooring_raft_term \d+/m);
      expect(metrics.body).toMatch(/^mooring_raft_commit_index \d+/m);
      const status = await httpGet(n.ports.http, '/status');
      expect(status.status).toBe(200);
      const s = JSON.parse(status.body) as { id: string; role: string; members: unknown[] };
      expect(s.id).toBe(n.id);
      expect(['leader', 'follower']).toContain(s.role);
      expect(s.members).toHaveLength(3);
      expect(status.body).not.toContain(adminToken);
    }
    const leader = await cluster.waitLeader();
    const m = await httpGet(cluster.node(leader).ports.http, '/metrics');
    expect(m.body).toMatch(/^mooring_rpc_requests_total\{[^}]*method="putStart"[^}]*\} [1-9]/m);
  });
});
