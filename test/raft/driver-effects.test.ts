// The driver (src/raft/node/) and the pure core (src/raft/core/) reach time, timers and the disk only through
// injected interfaces, so the simulator can run them on a virtual clock and disk. This checks the source text.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../../src/raft');

/** Direct uses of the process's clock, timers or file system; comments are stripped first. */
const forbidden: Array<[string, RegExp]> = [
  ['setTimeout', /\bsetTimeout\s*\(/],
  ['setInterval', /\bsetInterval\s*\(/],
  ['setImmediate', /\bsetImmediate\s*\(/],
  ['clearTimeout', /\bclearTimeout\s*\(/],
  ['clearInterval', /\bclearInterval\s*\(/],
  ['Date.now', /\bDate\.now\s*\(/],
  ['new Date', /\bnew Date\s*\(/],
  ['performance.now', /\bperformance\.now\s*\(/],
  ['process.hrtime', /\bprocess\.hrtime/],
  ['Math.random', /\bMath\.random\s*\(/],
  ['fs import', /from\s+'(node:)?fs(\/promises)?'/],
  ['level import', /from\s+'(level|classic-level)'/],
  ['net import', /from\s+'(node:)?(net|tls|dgram|child_process)'/],
];

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

export function effectViolations(dir: string, ownCalls: RegExp[] = []): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const code = stripComments(readFileSync(path.join(dir, name), 'utf8'));
    for (const [what, re] of forbidden) {
      // `ctx.clock.setTimeout(` is the injected clock, not the global one.
      const hits = code.split('\n').filter((line) => re.test(line) && !ownCalls.some((ok) => ok.test(line)));
      for (const line of hits) out.push(`${name}: ${what}: ${line.trim()}`);
    }
  }
  return out;
}

const injectedClock = [/\.(setTimeout|setInterval|setImmediate)\s*\(/, /^\s*(setTimeout|setInterval|setImmediate)\(fn: /];

describe('effects stay behind interfaces', () => {
  it('src/raft/node/ (the driver) calls no timer, clock or fs directly', () => {
    expect(effectViolations(path.join(root, 'node'), injectedClock)).toEqual([]);
  });

  it('src/raft/core/ (the pure core) does no I/O and reads no clock', () => {
    expect(effectViolations(path.join(root, 'core'))).toEqual([]);
  });

  it('src/raft/wal/ reaches the file system only through WalFs (node-fs.ts, the lock file, the 0.1 conversion)', () => {
    const allowed = new Set(['node-fs.ts', 'lock.ts', 'open.ts']);
    expect(effectViolations(path.join(root, 'wal')).filter((v) => !allowed.has(v.split(':')[0]!))).toEqual([]);
  });

  it('the check catches a direct call (control)', () => {
    const dir = path.join(root, 'effects'); // the production adapters are where the real calls live
    expect(effectViolations(dir, injectedClock).length).toBeGreaterThan(0);
  });
});
