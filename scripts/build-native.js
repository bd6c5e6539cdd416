#!/usr/bin/env node
// Builds the native addon with cmake-js against the Node-API headers (nothing downloaded: native/package.json
// declares napi_versions, so cmake-js uses the node-api-headers package).
// A failed native build does not fail `npm install`: the control plane works without the data path, and
// importing `mooring/engine` then explains what is missing (this script leaves the reason in
// native/build/build-error.txt for it). Set MOORING_REQUIRE_NATIVE=1 to make a failure fatal.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.join(root, 'native', 'build');
const errorFile = path.join(buildDir, 'build-error.txt');
const maxReasonLines = 30;

if (!existsSync(path.join(root, 'native', 'CMakeLists.txt'))) {
  console.log('build-native: no native/CMakeLists.txt yet; skipping');
  process.exit(0);
}

function fail(reason, detail) {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(errorFile, `${reason}\n${detail ?? ''}`);
  const msg = `build-native: the native addon did not build (${reason}); mooring/engine will be unavailable. ` +
    'Install cmake and g++ (optionally liburing-dev and libibverbs-dev), then run `npm run build:native`.';
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

const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
if (!existsSync(cmakeJs)) fail('cmake-js is not installed (run npm install)');
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', 'native', '--out', 'native/build'], {
  cwd: root,
  encoding: 'utf8',
  maxBuffer: 64 * 1024 * 1024,
});
process.stdout.write(result.stdout ?? '');
process.stderr.write(result.stderr ?? '');
if (result.status !== 0) {
  const out = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.split('\n');
  const errors = out.filter((l) => /error|not found|fatal/i.test(l)).slice(0, maxReasonLines);
  fail(errors[0]?.trim() || `cmake-js exited with status ${result.status}`, errors.join('\n'));
}
rmSync(errorFile, { force: true });
