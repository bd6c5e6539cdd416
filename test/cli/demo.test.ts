/**
 * `mooring demo --seconds 5` as a real process (no TTY): three master children, traffic, a leader SIGKILL;
 * it must exit 0, print its summary with zero lost objects, and leave no child process and no temp dir behind.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cliMainPath } from '../../src/cli/local-cluster.js';

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('mooring demo', () => {
  it('runs a small demo end to end: exit 0, summary, failover measured, nothing lost, nothing left behind', async () => {
    const p = spawn(process.execPath, [cliMainPath(), 'demo', '--seconds', '5', '--keys', '500'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const seen = new Set<number>();
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // Remember the master children while they run, to check afterwards that they are gone.
    const poll = setInterval(() => childrenOf(p.pid!).forEach((c) => seen.add(c)), 200);
    const code = await new Promise<number | null>((resolve) => p.on('exit', (c) => resolve(c)));
    clearInterval(poll);
    expect(err).toBe('');
    expect(code, out).toBe(0);
    expect(out).toMatch(/SIGKILL leader m\d/);
    expect(out).toMatch(/failover: kill → next acked write\s+\d+ ms/);
    expect(out).toMatch(/LOST acknowledged objects\s+0\n/);
    expect(out).toMatch(/acknowledged objects checked\s+[1-9]\d*/);
    expect(out).toMatch(/members identical \(state hash\)\s+yes, 3\/3/);
    expect(out).toContain('demo passed');
    expect(out).not.toContain('\x1b['); // no TTY: plain lines only
    const dir = /starting masters in (\S+)/.exec(out)?.[1];
    expect(dir).toBeDefined();
    expect(existsSync(dir!)).toBe(false);
    expect(seen.size).toBeGreaterThanOrEqual(3);
    for (const pid of seen) expect(alive(pid)).toBe(false);
  });

  it('cleans up children and the temp dir on SIGINT in the middle of the run', async () => {
    const p = spawn(process.execPath, [cliMainPath(), 'demo', '--seconds', '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 30_000;
    while (!out.includes('storage clients:') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const kids = childrenOf(p.pid!);
    expect(kids.length).toBe(3);
    p.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => p.on('exit', (c) => resolve(c)));
    expect(code).toBe(130);
    const dir = /starting masters in (\S+)/.exec(out)?.[1];
    expect(existsSync(dir!)).toBe(false);
    for (const pid of kids) expect(alive(pid)).toBe(false);
  });
});
