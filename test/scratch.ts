/**
 * Temporary directories of tests. scratchDir('name') makes a fresh directory `mka-name-XXXXXX` in the
 * temporary directory and removes it, with everything in it, when the test file's process ends: after
 * every test and hook of the file (its servers, workers and models are stopped by then), whether they
 * passed or not. Every file or directory a test writes goes in one: scripts/run-tests.mjs fails a test
 * file that leaves anything in its private temporary directory. A test that writes much may remove its
 * directory itself when done (removeTree).
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Removes `dir` and its contents, also when a test left read-only directories in it (as a non-root user). */
export function removeTree(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    const writable = (d: string): void => {
      try {
        chmodSync(d, 0o700);
        for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) writable(join(d, e.name));
      } catch {
        // not ours to change: rmSync below says why
      }
    };
    writable(dir);
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

const made: string[] = [];

/** Removes every directory scratchDir made; runs before the test guard's check for leftovers (prepended). */
function removeAll(): void {
  for (const dir of made.splice(0)) removeTree(dir);
}

/** A new empty directory `mka-<name>-XXXXXX` in the temporary directory, removed when this process ends. */
export function scratchDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mka-${name}-`));
  if (!made.length) process.prependOnceListener('exit', removeAll);
  made.push(dir);
  return dir;
}
