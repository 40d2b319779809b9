#!/usr/bin/env node
// Builds the optional native BLAS addon (native/ → native/build/Release/mka_blas.node) with the
// node-gyp bundled with npm. Runs as the package's install script and never fails the install:
// without a C compiler or OpenBLAS (Debian: libopenblas-dev) it prints one line and exits 0, and
// mka then runs every op in WebAssembly. MKA_NO_NATIVE=1 skips the build and removes any old one.
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const buildDir = join(nativeDir, 'build');
const fallback = 'mka uses WebAssembly for matrix products';

/** node-gyp's entry point: the one npm names for its scripts, else the one bundled with npm. */
function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((p) => p && existsSync(p)) ?? null;
}

/** Node's headers installed beside the node binary (Debian's nodejs, the official tarballs), so node-gyp needs no download. */
function nodeDirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = join(dirname(process.execPath), '..');
  return existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

/** The first line of the build log that says what went wrong. */
function firstError(log) {
  const lines = log.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.find((l) => /fatal error|error:|not found|cannot find/i.test(l) && !l.startsWith('gyp ERR! stack')) ??
    lines.find((l) => l.startsWith('gyp ERR!')) ?? 'unknown error').slice(0, 200);
}

function main() {
  if (process.env.MKA_NO_NATIVE === '1') {
    rmSync(buildDir, { recursive: true, force: true });
    console.log(`mka: native BLAS addon not built (MKA_NO_NATIVE=1); ${fallback}`);
    return;
  }
  const gyp = nodeGyp();
  if (!gyp) {
    console.log(`mka: native BLAS addon not built (node-gyp not found next to npm); ${fallback}`);
    return;
  }
  const r = spawnSync(process.execPath, [gyp, 'rebuild', ...nodeDirArgs()], { cwd: nativeDir, encoding: 'utf8' });
  if (r.status === 0 && existsSync(join(buildDir, 'Release', 'mka_blas.node'))) {
    console.log('mka: native BLAS addon built (native/build/Release/mka_blas.node)');
    return;
  }
  rmSync(buildDir, { recursive: true, force: true });
  const why = r.error ? r.error.message : firstError(`${r.stderr}\n${r.stdout}`);
  console.log(`mka: native BLAS addon not built (${why}); ${fallback}. For speed: apt-get install gcc make libopenblas-dev, then npm run build:native`);
}

try {
  main();
} catch (e) {
  console.log(`mka: native BLAS addon not built (${e instanceof Error ? e.message : String(e)}); ${fallback}`);
}
process.exit(0);
