/**
 * The master CLI's process guard on a real child process: an uncaught exception or unhandled rejection from
 * anything but storage is logged and the process keeps running; an uncaught storage failure crash-stops with
 * exit 70. Needs `npm run build:ts` first (the child imports dist/).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/cli/local-cluster.js';

function runChild(body: string): Promise<{ code: number | null; out: string }> {
  const mod = pathToFileURL(path.join(packageRoot(), 'dist', 'src', 'cli', 'master-cmd.js')).href;
  const errors = pathToFileURL(path.join(packageRoot(), 'dist', 'src', 'errors.js')).href;
  const script = `
    import { installProcessGuard } from '${mod}';
    import { ErrorCode, MooringError } from '${errors}';
    const log = (lvl) => (o, m) => process.stdout.write(JSON.stringify({ lvl, m, ...o }) + '\\n');
    installProcessGuard({ error: log('error'), fatal: log('fatal') }, () => process.exit(70));
    ${body}
  `;
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--input-type=module', '-e', script]);
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => resolve({ code, out }));
  });
}

describe('master process guard', () => {
  it('logs uncaught network-style errors (boundedly) and keeps running', async () => {
    const r = await runChild(`
      for (let i = 0; i < 50; i++) setTimeout(() => { throw new MooringError(ErrorCode.MALFORMED_FRAME, 'bad frame ' + i); }, 1);
      setTimeout(() => Promise.reject(new Error('stray rejection')), 5);
      setTimeout(() => { process.stdout.write('STILL ALIVE\\n'); process.exit(0); }, 300);
    `);
    expect(r.code).toBe(0);
    expect(r.out).toContain('STILL ALIVE');
    // 10 lines per interval at most, however many errors.
    expect(r.out.split('\n').filter((l) => l.includes('node keeps running')).length).toBeLessThanOrEqual(10);
    expect(r.out.split('\n').filter((l) => l.includes('node keeps running')).length).toBeGreaterThan(0);
  });

  it('crash-stops with exit 70 on an uncaught storage failure', async () => {
    const r = await runChild(`
      setTimeout(() => { throw new MooringError(ErrorCode.STORAGE_FAILED, 'fsync failed'); }, 1);
      setTimeout(() => process.exit(0), 2000);
    `);
    expect(r.code).toBe(70);
    expect(r.out).toMatch(/storage failure, crash-stop/);
  });
});
