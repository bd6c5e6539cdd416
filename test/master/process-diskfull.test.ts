/**
 * Disk full = crash-stop: a `mooring master` process whose data dir sits on a 40 MiB tmpfs (room for its first
 * preallocated 16 MiB WAL segment, not for the next one and the state store) is filled through
 * its client API; it must stop serving and exit 70 (never keep acknowledging what it could not persist).
 * Needs permission to mount a tmpfs (root, as on the project's machines and CI); skipped elsewhere.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MasterClient } from '../../src/master/client.js';
import { cliMainPath, freeLoopbackPorts, httpGet } from '../../src/cli/local-cluster.js';

const mnt = mkdtempSync(path.join(tmpdir(), 'mooring-full-'));
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', mnt], { stdio: 'pipe' });
  mounted = true;
} catch {
  // no permission to mount: the test is skipped
}
afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', mnt]);
  rmSync(mnt, { recursive: true, force: true });
});

describe('disk full', () => {
  it.skipIf(!mounted)('a master whose disk fills up stops serving and exits 70 (crash-stop)', async () => {
    const [raft, rpc, http] = await freeLoopbackPorts(3);
    const proc = spawn(process.execPath, [cliMainPath(), 'master', '--node-id', 'full', '--data-dir', path.join(mnt, 'data'),
      '--raft-port', String(raft), '--rpc-port', String(rpc), '--http-port', String(http), '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
    const c = new MasterClient({ endpoints: [`127.0.0.1:${rpc}`], retry: { maxAttempts: 40, initialBackoffMs: 25, maxBackoffMs: 100 }, requestTimeoutMs: 5_000 });
    try {
      await c.mountSegment({ id: 's', name: 's', base: 0, size: 2 ** 40, protocol: 'tcp', endpoint: '127.0.0.1:1' });
      expect((await httpGet(http!, '/ready')).status).toBe(200);
      // ~800 KB per batch of long keys: a few dozen fill 40 MiB; each acknowledged batch was persisted first.
      let failed = false;
      for (let i = 0; i < 100 && !failed; i++) {
        try {
          await c.batchPutStart(Array.from({ length: 200 }, (_, j) => ({ key: `${i}-${j}-`.padEnd(4000, 'x'), size: 10, replicaNum: 1 })));
        } catch {
          failed = true;
        }
      }
      expect(failed).toBe(true);
      expect(await exited).toBe(70);
      expect(out).toContain('crash-stop');
    } finally {
      proc.kill('SIGKILL');
      await c.close();
    }
  });
});
