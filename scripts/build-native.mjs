#!/usr/bin/env node
// Builds mka's native kernels (native/*.c → native/build/Release/mka_native.node) with the node-gyp
// bundled with npm and Node's own headers: a C compiler is all it needs (no BLAS, no -march: the
// AVX-512 / AVX2 paths are chosen at run time). Runs as the package's install script and never fails
// the install: without a compiler it prints one line and exits 0, and mka then runs every op in
// WebAssembly. MKA_NO_NATIVE=1 skips the build and removes any old one.
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const buildDir = join(nativeDir, 'build');
const fallback = 'mka uses WebAssembly for matrix products';
const addonFile = 'mka_native.node';

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
    console.log(`mka: native kernels not built (MKA_NO_NATIVE=1); ${fallback}`);
    return;
  }
  const gyp = nodeGyp();
  if (!gyp) {
    console.log(`mka: native kernels not built (node-gyp not found next to npm); ${fallback}`);
    return;
  }
  const r = spawnSync(process.execPath, [gyp, 'rebuild', ...nodeDirArgs()], { cwd: nativeDir, encoding: 'utf8' });
  if (r.status === 0 && existsSync(join(buildDir, 'Release', addonFile))) {
    console.log(`mka: native kernels built (native/build/Release/${addonFile})`);
    return;
  }
  rmSync(buildDir, { recursive: true, force: true });
  const why = r.error ? r.error.message : firstError(`${r.stderr}\n${r.stdout}`);
  console.log(`mka: native kernels not built (${why}); ${fallback}. For speed: install a C compiler and make (Debian: apt-get install gcc make), then npm run build:native`);
}

try {
  main();
} catch (e) {
  console.log(`mka: native kernels not built (${e instanceof Error ? e.message : String(e)}); ${fallback}`);
}
process.exit(0);
