// Runs the compiled CLI (npm test builds dist first; run `npm run build:ts` before running this file alone).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const cli = new URL('../../dist/src/testing/sim-cli.js', import.meta.url).pathname;

function sim(args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe.skipIf(!existsSync(cli))('sim CLI', () => {
  it('prints one JSON summary line and exits 0 when every schedule passes', () => {
    const r = sim(['--seeds', '5', '--json', '--no-remove-leader']);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(1);
    const summary = JSON.parse(lines[0]!);
    expect(summary).toMatchObject({ schedules: 5, violations: 0, nonLinearizable: 0, livenessFailures: 0 });
    expect(typeof summary.seconds).toBe('number');
  });

  it('exits non-zero on a broken configuration, printing the failing seed, its schedule and a replay that reproduces it', () => {
    const r = sim(['--seeds', '6', '--json', '--read-modes', 'localUnsafe']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out.trim()).nonLinearizable).toBeGreaterThan(0);
    const m = /replay: npm run sim -- --seed (\d+) --read-modes localUnsafe/.exec(r.err);
    expect(m).not.toBeNull();
    expect(r.err).toContain('schedule: {');
    expect(r.err).toContain('is not linearizable');
    const replay = sim(['--seed', m![1]!, '--read-modes', 'localUnsafe', '--json']);
    expect(replay.code).toBe(1);
    expect(JSON.parse(replay.out.trim())).toMatchObject({ schedules: 1, nonLinearizable: 1 });
  });

  it('rejects bad arguments with a usage message', () => {
    const r = sim(['--seeds', 'many']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('usage');
  });
});
