/**
 * Writes that never leave half-written output: everything goes to a temporary path next to the
 * target and is renamed into place only when complete. The temporary path is removed when the write
 * fails, and when the process exits or is ended by a signal during the write (src/io/cleanup.ts).
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
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
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempName(path);
  const fd = openSync(tmp, 'w');
  const dispose = removeOnExit(tmp);
  try {
    await fill(fd);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    dispose();
  }
  moveIntoPlace(tmp, path);
}

/** Writes a text file atomically. */
export function atomicWriteText(path: string, text: string): void {
  checkFileTarget(path);
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempName(path);
  try {
    writeFileSync(tmp, text);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  moveIntoPlace(tmp, path);
}

/**
 * Builds a whole output directory in a temporary sibling and renames it to `dir` when `fill` succeeds.
 * An existing `dir` is replaced only then. With `kind`, the directory carries mka's output marker
 * (src/io/output-dir.ts), by which a later run knows it may replace it.
 */
export async function atomicWriteDir(dir: string, fill: (tmpDir: string) => Promise<void>, kind?: OutputKind): Promise<void> {
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = tempName(dir);
  mkdirSync(tmp, { recursive: true });
  const dispose = removeOnExit(tmp);
  try {
    await fill(tmp);
    if (kind) writeMarker(tmp, kind);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
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
      throw e;
    }
  }
}
