#!/usr/bin/env node
// Builds the native addon with cmake-js against the Node-API headers (nothing downloaded: native/package.json
// declares napi_versions, so cmake-js uses the node-api-headers package). Runs as the package's `install` script,
// in the checkout and in a project that installed the tarball.
// Built at install rather than shipped prebuilt: the addon links liburing and libibverbs when the host has them, so
// a binary built elsewhere would either need those libraries or silently lack io_uring/RDMA.
// A failed native build does not fail `npm install`: the control plane works without the data path, and
// importing `mooring/engine` then explains what is missing (this script leaves the reason in
// native/build/build-error.txt for it). MOORING_REQUIRE_NATIVE=1 makes a failure fatal;
// MOORING_SKIP_NATIVE=1 skips the build; MOORING_NATIVE_VERBOSE=1 shows the cmake output (quiet by default).
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.join(root, 'native', 'build');
const addonFile = path.join(buildDir, 'Release', 'mooring_engine.node');
const errorFile = path.join(buildDir, 'build-error.txt');
const maxReasonLines = 30;
const verbose = process.env.MOORING_NATIVE_VERBOSE === '1';

if (!existsSync(path.join(root, 'native', 'CMakeLists.txt'))) {
  console.log('build-native: no native/CMakeLists.txt; skipping');
  process.exit(0);
}
if (process.env.MOORING_SKIP_NATIVE === '1') {
  console.log('build-native: MOORING_SKIP_NATIVE=1; not building the native addon (mooring/engine unavailable)');
  process.exit(0);
}

function fail(reason, detail) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(errorFile, `${reason}\n${detail ?? ''}`);
  const msg = `build-native: the native addon did not build (${reason}); mooring/engine will be unavailable, ` +
    'the control plane works. Install cmake and g++ (optionally liburing-dev and libibverbs-dev), then run ' +
    '`npm rebuild mooring` (in the mooring checkout: `npm run build:native`).';
  if (process.env.MOORING_REQUIRE_NATIVE === '1') {
    console.error(msg);
    process.exit(1);
  }
  console.warn(msg);
  process.exit(0);
}

for (const tool of ['cmake', 'c++']) {
  const probe = spawnSync(tool, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) fail(`${tool} not found`);
}

// cmake-js is a dependency: next to this package in a consumer's node_modules, or in the checkout's.
let cmakeJs;
try {
  cmakeJs = path.join(path.dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
} catch {
  fail('cmake-js is not installed (run npm install)');
}
const args = [cmakeJs, 'compile', '--directory', 'native', '--out', 'native/build'];
if (!verbose) args.push('--log-level', 'warn'); // cmake-js's INFO lines are its argument arrays
const result = spawnSync(process.execPath, args, {
  cwd: root,
  encoding: 'utf8',
  maxBuffer: 64 * 1024 * 1024,
  stdio: verbose ? 'inherit' : 'pipe',
});
if (result.error || result.status !== 0) {
  const out = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.split('\n');
  if (!verbose) process.stderr.write(out.slice(-maxReasonLines).join('\n') + '\n');
  const errors = out.filter((l) => /error|not found|fatal/i.test(l)).slice(0, maxReasonLines);
  fail(errors[0]?.trim() || result.error?.message || `cmake-js exited with status ${result.status}`, errors.join('\n'));
}
rmSync(errorFile, { force: true });
// One line: where the addon is and which optional features the host's libraries enabled.
// (cmake prints them only when it configures, i.e. on a fresh build.)
const out = `${result.stdout ?? ''}`;
const features = [];
if (/io_uring NVMe path enabled/.test(out)) features.push('io_uring on');
if (/liburing not found/.test(out)) features.push('io_uring off: no liburing-dev');
if (/RDMA \(libibverbs\) compiled in/.test(out)) features.push('RDMA on');
if (/libibverbs not found/.test(out)) features.push('RDMA off: no libibverbs-dev');
console.log(`build-native: built ${path.relative(root, addonFile)}` + (features.length ? ` (${features.join('; ')})` : ''));
