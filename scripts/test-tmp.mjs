// The private temporary directories of a test run (scripts/run-tests.mjs): the run gets one root
// (MKA_TEST_TMP), each test file a directory of its own in it, which its process and every process it
// starts (mka, workers, servers, Chromium) see as TMPDIR. What is left in a file's directory when the
// file ends was left behind by that file. tsx's compile cache (TMPDIR/tsx-UID) is a link to the real
// one, so that processes run through tsx keep their cache and leave nothing.
import { existsSync, lstatSync, mkdirSync, readdirSync, symlinkSync, chmodSync } from 'node:fs';
import { basename, dirname, join, relative, sep } from 'node:path';

const uid = () => (process.geteuid ? process.geteuid() : 'user');
const tsxLink = () => `tsx-${uid()}`;

/**
 * The name of a test file's directory in the run's root: its path relative to test/, '+' for '/', without
 * `.test.ts` (short: Chromium's and Redis's sockets live below it, and a socket path has at most 107 bytes).
 */
export function privateName(file, root) {
  const rel = relative(join(root, 'test'), file);
  return (rel.startsWith('..') ? basename(file) : rel).replace(/\.test\.ts$/, '').split(sep).join('+');
}

/** Makes `dir` (world-writable and sticky like /tmp: tests also run mka as another user) with the tsx cache link. */
export function makePrivateTmp(dir, realTmp) {
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o1777);
  const cache = join(realTmp, tsxLink());
  mkdirSync(cache, { recursive: true, mode: 0o700 });
  symlinkSync(cache, join(dir, tsxLink()));
}

/** Names of what is in a private temporary directory besides the tsx cache link. */
export function leftovers(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((e) => !(e === tsxLink() && lstatSync(join(dir, e)).isSymbolicLink())).sort();
}

/** The real temporary directory above a run's root. */
export const realTmpOf = (runRoot) => dirname(runRoot);
