/**
 * The installable package: `npm pack` gives a tarball (dist/ built by the `prepare` script; here built
 * first only when a source is newer than it, then packed without scripts) that `npm i -g --prefix TMP`
 * installs outside the repository, and the installed `mka` runs --help, info and a small compress on
 * the bundled demo model from a directory unrelated to the checkout, on compiled JavaScript only (tsx
 * and the sources are not in the package). The install runs with MKA_NO_NATIVE=1 (its install script
 * then builds no addon: `npm ci` already compiles the same sources, and the compile is most of this
 * test's time); the package must hold every source binding.gyp compiles and every header they include.
 * Needs the registry or npm's cache for the dependencies (`--prefer-offline`): skips with a message
 * when neither is reachable.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { scratchDir } from './scratch.ts';

const ROOT = process.cwd();
const TMP = scratchDir('package');

const NETWORK = /ENOTCACHED|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|network/;

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return spawnSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'], { cwd, encoding: 'utf8', env: { ...process.env, npm_config_update_notifier: 'false', ...env } });
}

/** Whether dist/ is built and no file under src/ is newer than the build (as bin/mka.mjs decides). */
function distIsCurrent(): boolean {
  const built = join(ROOT, 'dist', 'BUILT');
  if (!existsSync(built)) return false;
  const t = statSync(built).mtimeMs;
  return !readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).some((f) => statSync(join(ROOT, 'src', f)).mtimeMs > t);
}

/** The files the native build needs: binding.gyp's sources and the local headers they include, transitively. */
function nativeBuildFiles(dir: string): string[] {
  const gyp = JSON.parse(readFileSync(join(dir, 'binding.gyp'), 'utf8')) as { targets: { sources: string[] }[] };
  const need = new Set(gyp.targets.flatMap((t) => t.sources));
  for (const f of [...need]) collectIncludes(dir, f, need);
  return [...need].sort();
}

function collectIncludes(dir: string, file: string, need: Set<string>): void {
  if (!existsSync(join(dir, file))) return;
  for (const m of readFileSync(join(dir, file), 'utf8').matchAll(/^#include "([^"]+)"/gm)) {
    if (need.has(m[1])) continue;
    need.add(m[1]);
    collectIncludes(dir, m[1], need);
  }
}

test('npm pack gives a tarball that installs elsewhere and runs --help, info and compress from dist/', async (t) => {
  if (!distIsCurrent()) {
    const build = npm(['run', 'build'], ROOT);
    assert.equal(build.status, 0, `npm run build failed:\n${build.stderr}`);
  }
  const pack = npm(['pack', '--ignore-scripts', '--pack-destination', TMP], ROOT);
  assert.equal(pack.status, 0, `npm pack failed:\n${pack.stderr}`);
  const tarball = readdirSync(TMP).find((f) => /^mka-\d+\.\d+\.\d+.*\.tgz$/.test(f));
  assert.ok(tarball, `no mka-x.y.z.tgz in ${TMP}`);

  const prefix = join(TMP, 'prefix');
  const install = npm(['install', '--global', '--prefix', prefix, '--prefer-offline', '--omit=optional', join(TMP, tarball)], TMP, { MKA_NO_NATIVE: '1' });
  if (install.status !== 0 && NETWORK.test(install.stderr)) {
    t.skip(`npm could not fetch a dependency (no registry and not in npm's cache): ${install.stderr.split('\n').find((l) => NETWORK.test(l))}`);
    return;
  }
  assert.equal(install.status, 0, `npm install of the tarball failed:\n${install.stderr}`);

  const pkg = join(prefix, 'lib', 'node_modules', 'mka');
  assert.ok(existsSync(join(pkg, 'dist', 'cli', 'main.js')), 'dist/ is not in the package');
  assert.ok(!existsSync(join(pkg, 'src')), 'the TypeScript sources are in the package');
  assert.ok(!existsSync(join(pkg, 'test')), 'the tests are in the package');
  assert.ok(!existsSync(join(pkg, 'node_modules', 'tsx')), 'tsx (a dev dependency) was installed');
  assert.ok(existsSync(join(pkg, 'native', 'binding.gyp')) && existsSync(join(pkg, 'scripts', 'build-native.mjs')), 'the native addon sources are missing');
  const nativeFiles = nativeBuildFiles(join(ROOT, 'native'));
  assert.ok(nativeFiles.length > 3 && nativeFiles.some((f) => f.endsWith('.h')), `binding.gyp and its includes: ${nativeFiles.join(', ')}`);
  assert.deepEqual(nativeFiles.filter((f) => !existsSync(join(pkg, 'native', f))), [], 'native sources or headers missing from the package');
  const dist = readdirSync(join(pkg, 'dist'), { recursive: true, encoding: 'utf8' });
  const training = [...readdirSync(join(pkg, 'scripts')), ...dist]
    .filter((f) => /demo-training|train-demo/.test(f) || (f.endsWith('.js') && readFileSync(join(pkg, 'dist', f), 'utf8').includes('trainBpe')));
  assert.deepEqual(training, [], 'the demo-model training code (scripts/demo-training) is in the package');

  const work = join(TMP, 'work'); // a directory with nothing of the repository in it
  const mka = (...args: string[]) => spawnSync(join(prefix, 'bin', 'mka'), args, { cwd: TMP, encoding: 'utf8' });
  const help = mka('--help');
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /mka info/);
  assert.match(help.stdout, /mka compress/);

  const demo = join(pkg, 'models', 'demo');
  const info = mka('info', '--model', demo, '--json');
  assert.equal(info.status, 0, info.stderr);
  assert.equal(JSON.parse(info.stdout).layers, 8);

  writeFileSync(join(TMP, 'calibration.txt'), Array.from({ length: 12 }, (_, i) => `Question ${i}: what is ${i} plus ${i}?`).join('\n') + '\n');
  const out = join(work, 'demo-mka-2');
  const compress = mka('compress', '--model', demo, '--method', 'mka', '--remove', '2', '--calibration', join(TMP, 'calibration.txt'), '--k-entropy', '5', '--out', out, '--quiet');
  assert.equal(compress.status, 0, compress.stderr);
  const merged = mka('info', '--model', out, '--json');
  assert.equal(merged.status, 0, merged.stderr);
  assert.equal(JSON.parse(merged.stdout).layers, 6);
});
