// Without a built addon, importing mooring/engine throws ENGINE_UNAVAILABLE saying why and how to fix it,
// while the control plane (mooring) still imports.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { addonPath, loadAddon } from '../../src/engine/native.js';
import { ErrorCode, MooringError } from '../../src/errors.js';
import { refusal } from '../helpers/refusal.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const saved = process.env.MOORING_ENGINE_ADDON;
afterEach(() => {
  if (saved === undefined) delete process.env.MOORING_ENGINE_ADDON;
  else process.env.MOORING_ENGINE_ADDON = saved;
});

const loadError = (): MooringError => refusal(() => loadAddon());

describe('engine unavailable', () => {
  it('finds the built addon by default', () => {
    expect(addonPath()).toBe(path.join(root, 'native', 'build', 'Release', 'mooring_engine.node'));
    expect(loadAddon().abiVersion).toBe(1);
  });

  it('a missing addon: ENGINE_UNAVAILABLE with the fix', () => {
    process.env.MOORING_ENGINE_ADDON = path.join(root, 'no-such-dir', 'mooring_engine.node');
    const e = loadError();
    expect(e.code).toBe(ErrorCode.ENGINE_UNAVAILABLE);
    expect(e.message).toMatch(/not built/);
    expect(e.message).toMatch(/npm run build:native/);
  });

  it('a failed build: the recorded reason is part of the message', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mooring-nobuild-'));
    writeFileSync(path.join(dir, 'build-error.txt'), 'cmake not found\n');
    process.env.MOORING_ENGINE_ADDON = path.join(dir, 'Release', 'mooring_engine.node');
    const e = loadError();
    rmSync(dir, { recursive: true, force: true });
    expect(e.code).toBe(ErrorCode.ENGINE_UNAVAILABLE);
    expect(e.message).toMatch(/the last build failed: cmake not found/);
  });

  it('a file that is not an addon: ENGINE_UNAVAILABLE with the loader reason', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'mooring-bogus-'));
    const bogus = path.join(dir, 'mooring_engine.node');
    writeFileSync(bogus, 'not an ELF shared object');
    process.env.MOORING_ENGINE_ADDON = bogus;
    const e = loadError();
    rmSync(dir, { recursive: true, force: true });
    expect(e.code).toBe(ErrorCode.ENGINE_UNAVAILABLE);
    expect(e.message).toMatch(/failed to load/);
  });

  it('importing mooring/engine throws at import; mooring itself still imports', () => {
    const dist = path.join(root, 'dist', 'src');
    if (!existsSync(path.join(dist, 'engine', 'index.js'))) throw new Error('run `npm run build:ts` first');
    const script = `
      try { await import(${JSON.stringify(path.join(dist, 'engine', 'index.js'))}); console.log('imported'); }
      catch (e) { console.log(e.code + ' ' + e.message); }
      const m = await import(${JSON.stringify(path.join(dist, 'errors.js'))});
      console.log(typeof m.MooringError);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, MOORING_ENGINE_ADDON: '/nonexistent/mooring_engine.node' },
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    const [first, second] = r.stdout.trim().split('\n');
    expect(first).toMatch(/^ENGINE_UNAVAILABLE mooring\/engine: the native addon was not built/);
    expect(second).toBe('function');
  });
});
