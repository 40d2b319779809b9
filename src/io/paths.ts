/**
 * Path containment: every path mka builds from data it did not choose (a --revision, a hub listing's
 * file names and checksums, a queue job's payload, a URL) goes through `joinInside`, which refuses
 * anything that would leave its root; files served or read where symlinks could lead elsewhere go
 * through `realInside`, which resolves them first.
 */
import { realpathSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { UserError } from '../runtime/errors.ts';

/** True when `path` is `root` or lies below it (both resolved lexically; symlinks are not followed). */
export function isInside(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

/** True when `path` lies strictly below `root`. */
export function isBelow(root: string, path: string): boolean {
  return isInside(root, path) && resolve(root) !== resolve(path);
}

/**
 * Why `rel` is not a plain relative path of named segments (empty, absolute, a NUL byte, a backslash,
 * or an empty, `.` or `..` segment), or null when it is one.
 */
export function unsafeRelative(rel: string): string | null {
  if (typeof rel !== 'string' || rel === '') return 'it is empty';
  if (rel.includes('\0')) return 'it holds a NUL byte';
  if (rel.includes('\\')) return 'it holds a backslash';
  if (isAbsolute(rel)) return 'it is an absolute path';
  if (rel.split('/').some((s) => s === '' || s === '.' || s === '..')) return 'it has an empty, "." or ".." part';
  return null;
}

/**
 * `root`/`rel` after checking that `rel` is a plain relative path (see `unsafeRelative`) that stays
 * inside `root`; otherwise a UserError naming `what` (e.g. "--revision", "the hub's file name").
 */
export function joinInside(root: string, rel: string, what: string): string {
  const why = unsafeRelative(rel);
  const p = join(root, rel);
  if (why !== null || !isBelow(root, p)) throw new UserError(`${what} ${JSON.stringify(rel)}: not a plain relative path inside ${root} (${why ?? 'it leaves it'}); refused`);
  return p;
}

/**
 * The real path of `path` (symlinks resolved) when it exists and lies inside the real path of
 * `root`; null otherwise (missing, or a symlink out of the root).
 */
export function realInside(root: string, path: string): string | null {
  try {
    const realRoot = realpathSync(root);
    const real = realpathSync(path);
    return isInside(realRoot, real) ? real : null;
  } catch {
    return null;
  }
}
