/**
 * A private copy of the compiled code for the real-process clusters (jepsen harness, KvCluster of the benchmarks and
 * process tests): a rebuild of the shared checkout during a long run (`tsc`, another `npm run bench:*`, which build
 * first) cannot change or break the processes the run starts or restarts.
 */
import { copyFileSync, cpSync, existsSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../util/repo-root.js';

/**
 * Copies dist/src (without source maps and declarations) and the engine addon under `dir`, with a package.json and
 * the checkout's node_modules linked in. Returns the dist root to run children from and the env they need.
 */
export function snapshotDist(dir: string): { distRoot: string; env: Record<string, string> } {
  const root = repoRoot(import.meta.url);
  const distRoot = path.join(dir, 'dist');
  cpSync(path.join(root, 'dist', 'src'), path.join(distRoot, 'src'), { recursive: true, filter: (p) => !p.endsWith('.map') && !p.endsWith('.d.ts') });
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'mooring-snapshot', type: 'module', private: true }));
  symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
  const env: Record<string, string> = {};
  const addon = path.join(root, 'native', 'build', 'Release', 'mooring_engine.node');
  if (existsSync(addon)) {
    copyFileSync(addon, path.join(dir, 'mooring_engine.node'));
    env.MOORING_ENGINE_ADDON = path.join(dir, 'mooring_engine.node');
  }
  return { distRoot, env };
}
