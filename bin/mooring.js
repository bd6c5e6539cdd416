#!/usr/bin/env node
// The `mooring` command: runs the compiled CLI (npm install builds it; `npm run build:ts` rebuilds it).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'src', 'cli', 'main.js');
if (!existsSync(main)) {
  console.error('mooring: dist/ is missing; run `npm install` (or `npm run build:ts`) in the mooring checkout first');
  process.exit(1);
}
await import(pathToFileURL(main).href);
