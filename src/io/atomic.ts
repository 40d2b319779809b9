/**
 * Writes that never leave half-written output: everything goes to a temporary path next to the
 * target and is renamed into place only when complete. The temporary path is removed when the write
 * fails, and when the process exits or is ended by a signal during the write (src/io/cleanup.ts).
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../runtime/errors.ts';
import { type OutputKind, writeMarker } from './output-dir.ts';
import { removeOnExit } from './cleanup.ts';

/** A fresh sibling name for `target` (unique per call: two calls within one millisecond must not collide). */
function tempName(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
}

/** Writes all of `buf` to `fd` (writeSync may write less than asked). */
export function writeAll(fd: number, buf: Uint8Array): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** Refuses to write a file over a directory (the rename would fail and leave the temporary file). */
function checkFileTarget(path: string): void {
  if (existsSync(path) && statSync(path).isDirectory()) throw new UserError(`${path}: is a directory; give a file path to write to`);
}

/**
 * Creates directory `dir` with its missing parents; returns what undoes that when a write fails: the
 * directories it created are removed again, deepest first, as long as they are empty (nothing else is).
 */
function makeParents(dir: string): () => void {
  const first = mkdirSync(dir, { recursive: true });
  return () => {
    if (first === undefined) return;
    for (let d = dir; ; d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        return; // not empty (someone else's file), or gone
      }
      if (d === first || dirname(d) === d) return;
    }
  };
}

/** Renames a finished temporary file into place, removing it if that fails. */
function moveIntoPlace(tmp: string, path: string): void {
  try {
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Opens a temporary file, lets `fill` write it, then renames it to `path`. */
export async function atomicWriteFile(path: string, fill: (fd: number) => void | Promise<void>): Promise<void> {
  checkFileTarget(path);
  const unmake = makeParents(dirname(path));
  const tmp = tempName(path);
  const dispose = removeOnExit(tmp);
  try {
    const fd = openSync(tmp, 'w');
    try {
      await fill(fd);
      closeSync(fd);
    } catch (e) {
      closeSync(fd);
      rmSync(tmp, { force: true });
      throw e;
    }
    moveIntoPlace(tmp, path);
  } catch (e) {
    unmake();
    throw e;
  } finally {
    dispose();
  }
}

/** Writes a text file atomically. */
export function atomicWriteText(path: string, text: string): void {
  checkFileTarget(path);
  const unmake = makeParents(dirname(path));
  const tmp = tempName(path);
  try {
    try {
      writeFileSync(tmp, text);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    moveIntoPlace(tmp, path);
  } catch (e) {
    unmake();
    throw e;
  }
}

/**
 * Builds a whole output directory in a temporary sibling and renames it to `dir` when `fill` succeeds.
 * An existing `dir` is replaced only then. With `kind`, the directory carries mka's output marker
 * (src/io/output-dir.ts), by which a later run knows it may replace it.
 */
export async function atomicWriteDir(dir: string, fill: (tmpDir: string) => Promise<void>, kind?: OutputKind): Promise<void> {
  const unmake = makeParents(dirname(dir));
  const tmp = tempName(dir);
  const dispose = removeOnExit(tmp);
  try {
    mkdirSync(tmp, { recursive: true });
    await fill(tmp);
    if (kind) writeMarker(tmp, kind);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    unmake();
    throw e;
  } finally {
    dispose();
  }
  if (existsSync(dir)) {
    const old = tempName(dir);
    renameSync(dir, old);
    try {
      renameSync(tmp, dir);
    } catch (e) {
      renameSync(old, dir); // the earlier output stays as it was
      rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    rmSync(old, { recursive: true, force: true });
  } else {
    try {
      renameSync(tmp, dir);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      unmake();
      throw e;
    }
  }
}
