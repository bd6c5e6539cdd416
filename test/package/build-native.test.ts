/**
 * scripts/build-native.js when the host has no toolchain: `npm install` must still succeed with one clear line,
 * and the reason is left where `mooring/engine` quotes it. Run on a copy of the script and the native sources
 * (so the checkout's own build is untouched) with a PATH that has node but no cmake or compiler.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../src/util/repo-root.js';

const root = repoRoot(import.meta.url);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'mooring-build-native-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function copyPackage(): string {
  const pkg = path.join(tmp, `pkg-${Math.random().toString(36).slice(2)}`);
  mkdirSync(path.join(pkg, 'scripts'), { recursive: true });
  cpSync(path.join(root, 'scripts', 'build-native.js'), path.join(pkg, 'scripts', 'build-native.js'));
  cpSync(path.join(root, 'native', 'CMakeLists.txt'), path.join(pkg, 'native', 'CMakeLists.txt'));
  cpSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
  return pkg;
}

/** A PATH holding only `node`. */
function nodeOnlyPath(): string {
  const bin = path.join(tmp, 'bin');
  if (!existsSync(bin)) {
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, 'node'));
  }
  return bin;
}

describe('build-native without a toolchain', () => {
  it('exits 0 with one line naming what is missing, and records the reason for mooring/engine', () => {
    const pkg = copyPackage();
    const r = spawnSync(process.execPath, ['scripts/build-native.js'], { cwd: pkg, encoding: 'utf8', env: { PATH: nodeOnlyPath() } });
    expect(r.status).toBe(0);
    const lines = `${r.stdout}${r.stderr}`.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^build-native: the native addon did not build \(cmake not found\).*control plane works.*npm rebuild mooring/);
    expect(readFileSync(path.join(pkg, 'native', 'build', 'build-error.txt'), 'utf8')).toMatch(/^cmake not found/);
  });

  it('fails the install with MOORING_REQUIRE_NATIVE=1, and does nothing with MOORING_SKIP_NATIVE=1', () => {
    const pkg = copyPackage();
    const required = spawnSync(process.execPath, ['scripts/build-native.js'], { cwd: pkg, encoding: 'utf8', env: { PATH: nodeOnlyPath(), MOORING_REQUIRE_NATIVE: '1' } });
    expect(required.status).toBe(1);
    expect(required.stderr).toContain('cmake not found');
    const skipped = spawnSync(process.execPath, ['scripts/build-native.js'], { cwd: copyPackage(), encoding: 'utf8', env: { PATH: nodeOnlyPath(), MOORING_SKIP_NATIVE: '1' } });
    expect(skipped.status).toBe(0);
    expect(skipped.stdout).toMatch(/^build-native: MOORING_SKIP_NATIVE=1; not building/);
  });
});
