#!/usr/bin/env node
// Builds the native addon with cmake-js against the Node-API headers (nothing downloaded).
// A failed native build does not fail `npm install`: the control plane works without the data path, and
// importing `mooring/engine` then explains what is missing. Set MOORING_REQUIRE_NATIVE=1 to make it fatal.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(path.join(root, 'native', 'CMakeLists.txt'))) {
  console.log('build-native: no native/CMakeLists.txt yet; skipping');
  process.exit(0);
}
const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const result = spawnSync(process.execPath, [cmakeJs, 'compile', '--directory', 'native', '--out', 'native/build'], {
  cwd: root,
  stdio: 'inherit',
});
if (result.status !== 0) {
  const msg = 'build-native: the native addon did not build; mooring/engine will be unavailable (install cmake and g++, then run `npm run build:native`)';
  if (process.env.MOORING_REQUIRE_NATIVE === '1') {
    console.error(msg);
    process.exit(1);
  }
  console.warn(msg);
}
