#!/usr/bin/env node
// Entry point of `mka`. Runs the compiled CLI in dist/ (built by `npm run build`, which `npm ci` and
// `npm pack` run as the `prepare` script) when it is there and no source file is newer than it;
// otherwise, in a checkout with edited sources, the TypeScript sources through tsx (a dev dependency).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const built = join(root, 'dist', 'BUILT');
const sources = join(root, 'src');

/** Whether some file under `dir` was modified after `time` (ms). */
function newerThan(dir, time) {
  return readdirSync(dir, { recursive: true }).some((f) => statSync(join(dir, f)).mtimeMs > time);
}

if (existsSync(built) && !(existsSync(sources) && newerThan(sources, statSync(built).mtimeMs))) {
  await import(pathToFileURL(join(root, 'dist', 'cli', 'main.js')).href);
} else {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write(`mka: ${existsSync(built) ? 'dist/ is older than src/' : 'dist/ is not built'} and tsx is not installed: run \`npm run build\` in ${root}\n`);
    process.exit(1);
  }
  register();
  await import(pathToFileURL(join(sources, 'cli', 'main.ts')).href);
}
