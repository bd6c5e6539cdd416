/**
 * The package as an embedder gets it: `npm pack` the checkout, `npm install <tarball>` into a fresh project outside
 * the repo (the registry supplies the dependencies; the install script builds the native addon there), and in
 * that project: import mooring, mooring/testing and mooring/engine, run `mooring --version`, start
 * examples/custom-master against a YAML config, and put/get bytes with a StoreClient through the installed package.
 * Runs against dist/ as `npm test` just built it (packed with --ignore-scripts so no rebuild races other tests).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/ports.js';
import { repoRoot } from '../../src/util/repo-root.js';

const run = promisify(execFile);
const root = repoRoot(import.meta.url);
const installTimeoutMs = 300_000; // a cold npm cache plus a native build on a loaded machine
const version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;

// The outer `npm test` exports npm_config_* / npm_package_* into our env; a nested npm must not inherit them.
const cleanEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k) && k !== 'INIT_CWD' && k !== 'MOORING_ENGINE_ADDON'),
);

let tmp: string;
let project: string;
let tarball: string;
let master: ChildProcess | undefined;

async function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = cleanEnv): Promise<string> {
  const { stdout, stderr } = await run('npm', [...args, '--no-audit', '--no-fund'], { cwd, env, maxBuffer: 64 << 20, timeout: installTimeoutMs });
  return `${stdout}\n${stderr}`;
}

/** Runs an ES module inside the scratch project (so bare `mooring` resolves to the installed package). */
async function inProject(name: string, code: string): Promise<string> {
  writeFileSync(path.join(project, name), code);
  const { stdout } = await run(process.execPath, [name], { cwd: project, env: cleanEnv, timeout: 60_000 });
  return stdout.trim();
}

beforeAll(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'mooring-pack-'));
  expect(path.relative(root, tmp).startsWith('..')).toBe(true); // outside the repo: nothing resolves from it
  const packed = await npm(['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], root);
  const info = JSON.parse(packed.slice(packed.indexOf('['), packed.lastIndexOf(']') + 1)) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = path.join(tmp, info[0]!.filename);
  const files = info[0]!.files.map((f) => f.path);
  // What ships: compiled code, the CLI, the examples, the native sources; not tests, benches or CI.
  expect(files).toContain('dist/src/index.js');
  expect(files).toContain('dist/examples/custom-master.js');
  expect(files).toContain('native/CMakeLists.txt');
  expect(files).toContain('native/src/addon.cc');
  expect(files.filter((f) => /^(test|bench|\.ci|native\/test|native\/build|dist\/test|dist\/bench)\//.test(f))).toEqual([]);

  project = path.join(tmp, 'app');
  rmSync(project, { recursive: true, force: true });
  await run('mkdir', ['-p', project]);
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'embedder', private: true, type: 'module' }));
  // A failed native build is fatal here: the StoreClient below needs the engine. Foreground scripts: the build's
  // own output is shown, and it is one line (cmake-js's argument dumps stay out unless MOORING_NATIVE_VERBOSE=1).
  const installed = await npm(['install', '--foreground-scripts', tarball], project, { ...cleanEnv, MOORING_REQUIRE_NATIVE: '1' });
  expect(installed).toContain('build-native: built native/build/Release/mooring_engine.node');
  expect(installed).not.toMatch(/INFO RUN|-DCMAKE_JS_VERSION|Detecting CXX compiler/);
}, installTimeoutMs);

afterAll(async () => {
  if (master && master.exitCode === null) master.kill('SIGKILL');
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('the packed tarball installed outside the repo', () => {
  it('imports mooring, mooring/raft and mooring/engine, names fast-check when mooring/testing lacks it, and prints --version', async () => {
    expect(existsSync(path.join(project, 'node_modules', 'mooring', 'native', 'build', 'Release', 'mooring_engine.node'))).toBe(true);
    const out = await inProject('imports.mjs', `
      const root = await import('mooring');
      const engine = await import('mooring/engine');
      const raft = await import('mooring/raft');
      let testing;
      try { await import('mooring/testing'); testing = 'loaded'; } catch (e) { testing = e.message; }
      console.log(JSON.stringify({ root: typeof root.MasterNode, store: typeof root.StoreClient, engine: typeof engine.Engine, testing,
        internalsAtRoot: typeof root.Progress, raftCore: typeof raft.RaftCore, raftProgress: typeof raft.Progress }));
    `);
    const got = JSON.parse(out) as Record<string, string>;
    expect(got).toMatchObject({ root: 'function', store: 'function', engine: 'function' });
    // Raft internals live under mooring/raft, not at the root.
    expect(got).toMatchObject({ internalsAtRoot: 'undefined', raftCore: 'function', raftProgress: 'function' });
    expect(got.testing).toMatch(/mooring\/testing needs fast-check.*npm install/);

    const { stdout } = await run('npx', ['mooring', '--version'], { cwd: project, env: cleanEnv });
    expect(stdout.trim()).toBe(version);
  });

  it('loads mooring/testing once fast-check (the optional peer) is installed', async () => {
    await npm(['install', 'fast-check@4.10.2'], project);
    const out = await inProject('testing.mjs', `
      const t = await import('mooring/testing');
      const r = t.runSchedule(7, t.scheduleForSeed(7, { maxEvents: 2 }));
      console.log(JSON.stringify({ arb: typeof t.scheduleArb, ok: r.violations.length === 0 }));
    `);
    expect(JSON.parse(out)).toEqual({ arb: 'function', ok: true });
  }, installTimeoutMs);

  it('runs examples/custom-master from a YAML config and serves a StoreClient put/get', async () => {
    const [raftPort, rpcPort, httpPort] = await freePorts(3);
    writeFileSync(path.join(project, 'master.yaml'), [
      'nodeId: m1',
      'clusterId: embedder',
      `dataDir: ${path.join(project, 'data', 'm1')}`,
      `listen: { host: 127.0.0.1, raftPort: ${raftPort}, rpcPort: ${rpcPort}, httpPort: ${httpPort} }`,
      'log: { level: warn }',
      '',
    ].join('\n'));
    master = spawn(process.execPath, [path.join('node_modules', 'mooring', 'dist', 'examples', 'custom-master.js'), 'master.yaml'], {
      cwd: project, env: cleanEnv, stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    master.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ready = await fetch(`http://127.0.0.1:${httpPort}/ready`).then((r) => r.ok, () => false);
      if (ready) break;
      if (master.exitCode !== null || Date.now() > deadline) throw new Error(`custom-master never became ready: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const out = await inProject('store.mjs', `
      import { StoreClient } from 'mooring';
      const store = await StoreClient.create({ masters: ['127.0.0.1:${rpcPort}'], clusterId: 'embedder', memory: { size: 4 << 20 }, stagingSlotBytes: 1 << 20, stagingSlots: 2 });
      const bytes = Buffer.from('bytes through the installed package');
      await store.put('greeting', bytes);
      const back = await store.get('greeting');
      await store.close();
      console.log(JSON.stringify({ same: back.equals(bytes), length: back.length }));
    `);
    expect(JSON.parse(out)).toEqual({ same: true, length: 35 });

    const exited = new Promise<number | null>((r) => master!.once('exit', (code) => r(code)));
    master.kill('SIGTERM');
    expect(await exited).toBe(0); // the example's graceful stop
  });
});
