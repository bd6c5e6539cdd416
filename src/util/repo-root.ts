import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The checkout root (the nearest folder above `fromUrl` holding package.json). dist/ has no package.json, so this is
 * the same root whether the caller runs from src/, bench/ or dist/.
 */
export function repoRoot(fromUrl: string = import.meta.url): string {
  let dir = path.dirname(fileURLToPath(fromUrl));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('package.json not found above ' + fileURLToPath(fromUrl));
    dir = up;
  }
  return dir;
}
