/**
 * `mooring master` and `mooring admin` as real processes (compiled dist/: run `npm run build:ts` first):
 * configuration errors exit 2 naming the field; flags and env override the file; admin errors exit 1 with
 * `error CODE: message`.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliMainPath, freeLoopbackPorts, httpGet } from '../../src/cli/local-cluster.js';

const dir = mkdtempSync(path.join(tmpdir(), 'mooring-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run { code: number | null; stdout: string; stderr: string }

function runCli(args: string[], env: Record<string, string> = {}, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [cliMainPath(), ...args], { env: { ...process.env, ...env }, cwd: dir });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`timeout: ${args.join(' ')}\n${stdout}\n${stderr}`)); }, timeoutMs);
    p.on('exit', (code) => { clearTimeout(t); resolve({ code, stdout, stderr }); });
  });
}

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('mooring master: configuration errors', () => {
  it('exits 2 and names the bad field from the file', async () => {
    const cfg = file('bad.yaml', 'nodeId: m1\nraft:\n  tickMs: -5\nlisten:\n  rpcPort: 99999\n');
    const r = await runCli(['master', '--config', cfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('raft.tickMs');
    expect(r.stderr).toContain('listen.rpcPort');
    expect(r.stdout).toBe('');
  });

  it('exits 2 for an unknown key, a bad flag value and a bad MOORING_ env value, naming each', async () => {
    const cfg = file('typo.yaml', 'nodeId: m1\nleaseTTLms: 5\n');
    const r = await runCli(['master', '--config', cfg]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('leaseTTLms');

    const ok = file('ok.yaml', 'nodeId: m1\n');
    const f = await runCli(['master', '--config', ok, '--log-level', 'loud']);
    expect(f.code).toBe(2);
    expect(f.stderr).toContain('log.level');

    const e = await runCli(['master', '--config', ok], { MOORING_CLIENT_TTL_MS: 'soon' });
    expect(e.code).toBe(2);
    expect(e.stderr).toContain('clientTtlMs');
    expect(e.stderr).toContain('MOORING_CLIENT_TTL_MS');

    const s = await runCli(['master', '--config', ok, '--set', 'raft.bogusField=1']);
    expect(s.code).toBe(2);
    expect(s.stderr).toContain('raft.bogusField');
  });

  it('reports every --set problem at once: a malformed one and an unknown field', async () => {
    const ok = file('ok-set.yaml', 'nodeId: m1\n');
    const r = await runCli(['master', '--config', ok, '--set', 'a=1', '--set', 'nofield']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('2 problems');
    expect(r.stderr).toContain('--set "nofield" must be field=value');
    expect(r.stderr).toContain('a is not a known setting');
  });

  it('exits 2 on a usage error (unknown option)', async () => {
    const r = await runCli(['master', '--no-such-flag']);
    expect(r.code).toBe(2);
  });

  it('flags override the file: a single node starts on the flag ports, logs a JSON ready line, exits 0 on SIGTERM', async () => {
    const [raft, rpc, http] = await freeLoopbackPorts(3);
    const cfg = file('single.yaml', `nodeId: from-file\nlisten: { host: 127.0.0.1, raftPort: 1, rpcPort: 2, httpPort: 3 }\n`);
    const p = spawn(process.execPath, [cliMainPath(), 'master', '--config', cfg, '--node-id', 'solo', '--data-dir', path.join(dir, 'solo'),
      '--raft-port', String(raft), '--rpc-port', String(rpc), '--http-port', String(http), '--set', 'raft.tickMs=10'], { cwd: dir });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => p.on('exit', (code) => r(code)));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('"msg":"ready"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const ready = out.split('\n').find((l) => l.includes('"msg":"ready"'));
      expect(ready).toBeDefined();
      const line = JSON.parse(ready!) as Record<string, unknown>;
      expect(line.level).toBe('info');
      expect(line.nodeId).toBe('solo');
      expect(line.ports).toMatchObject({ raft, rpc, http });
      const status = JSON.parse((await httpGet(http!, '/status')).body) as Record<string, unknown>;
      expect(status.id).toBe('solo');
    } finally {
      p.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(out).toContain('master stopped');
  });
});

describe('mooring admin: errors', () => {
  it('prints `error CODE: message` and exits 1 when no master answers', async () => {
    const [port] = await freeLoopbackPorts(1);
    const r = await runCli(['admin', 'members', '--endpoints', `127.0.0.1:${port}`, '--timeout', '300']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error (UNAVAILABLE|TIMEOUT|RPC_FAILED): /m);
    const s = await runCli(['admin', 'status', '--endpoints', `127.0.0.1:${port}`, '--timeout', '300']);
    expect(s.code).toBe(1);
    expect(s.stderr).toMatch(/^error UNAVAILABLE: no master answered/m);
  });

  it('rejects a bad argument before calling anything', async () => {
    const r = await runCli(['admin', 'set-node-status', '--node', 'x', '--status', 'SLEEPING', '--endpoints', '127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error INVALID_ARGUMENT: --status must be one of ACTIVE, MAINTENANCE, DRAINING/m);
  });
});
