#!/usr/bin/env node
// Compiles src/ to dist/ (JavaScript, relative imports rewritten from .ts to .js) with the project's
// TypeScript: the package's `prepare` script, so `npm ci` and `npm pack` build it. The new tree is
// written beside dist/ and renamed into place, so a failed build leaves the previous one intact.
// dist/BUILT's modification time is when the build started: bin/mka.mjs runs dist/ only when no
// source file is newer, and the TypeScript sources through tsx otherwise.
import { existsSync, mkdirSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

let tsc;
try {
  tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
} catch {
  console.log('mka: TypeScript is not installed (a production install): dist/ not built; bin/mka.mjs runs the sources through tsx');
  process.exit(0);
}

const started = new Date();
const tmp = `${dist}.tmp-${randomBytes(4).toString('hex')}`;
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', tmp], { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  rmSync(tmp, { recursive: true, force: true });
  console.error('mka: build failed (see the TypeScript errors above); dist/ left as it was');
  process.exit(1);
}
mkdirSync(tmp, { recursive: true });
writeFileSync(join(tmp, 'BUILT'), `${started.toISOString()}\n`);
utimesSync(join(tmp, 'BUILT'), started, started);
const old = `${dist}.old-${randomBytes(4).toString('hex')}`;
if (existsSync(dist)) renameSync(dist, old);
renameSync(tmp, dist);
rmSync(old, { recursive: true, force: true });
console.log('mka: compiled src/ to dist/');
