#!/usr/bin/env node
// Runs the compiled CLI (npm run build:ts writes dist/). Falls back to the TypeScript sources
// through tsx when dist/ is missing, e.g. in a development checkout.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const compiled = join(root, 'dist', 'cli.js');
// `start` loads LibTorch (≈ 0.35 s of linking) on a worker thread while the server's modules are evaluated
// (src/native.ts preloadAddonInBackground; bench/NOTES.md §27): a shorter start-up on a machine with 2 cores.
const preload = process.argv[2] === 'start' && process.env.TORCHD_NO_PRELOAD === undefined;
if (existsSync(compiled)) {
  if (preload) void (await import(pathToFileURL(join(root, 'dist', 'native.js')).href)).preloadAddonInBackground();
  await import(pathToFileURL(compiled).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  if (preload) void (await import(pathToFileURL(join(root, 'src', 'native.ts')).href)).preloadAddonInBackground();
  await import(pathToFileURL(join(root, 'src', 'cli.ts')).href);
}
