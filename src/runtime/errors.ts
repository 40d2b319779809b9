/**
 * Errors the user can fix (bad file, impossible option). The CLI prints their message on one line and
 * exits with 1; any other error is an internal one (exit 2, with a hint to report it).
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** Operating-system errors the user can act on (space, permissions), and what to do. */
const SYSTEM_ERRORS: Record<string, [what: string, fix: string]> = {
  EACCES: ['permission denied', 'choose a location you may write, or fix its permissions'],
  EPERM: ['operation not permitted', 'choose a location you may write, or fix its permissions'],
  EROFS: ['read-only file system', 'choose a location on a writable file system'],
  ENOSPC: ['no space left on the device', 'free some space, or choose a location on another device'],
  EDQUOT: ['disk quota exceeded', 'free some space, or choose a location on another device'],
  EMFILE: ['too many open files', 'raise the limit (ulimit -n)'],
  ENFILE: ['too many open files in the system', 'close other programs or raise the limit'],
  ENAMETOOLONG: ['file name too long', 'choose a shorter path'],
  ELOOP: ['too many levels of symbolic links', 'fix the symbolic links on the path'],
  EIO: ['input/output error', 'check the disk'],
};

/**
 * A one-line message for an operating-system error the user can act on (no space left, permission
 * denied, a read-only file system), naming the path; null for any other error.
 */
export function systemErrorMessage(e: unknown): string | null {
  const err = e as NodeJS.ErrnoException | null;
  const known = err && typeof err.code === 'string' ? SYSTEM_ERRORS[err.code] : undefined;
  if (!known) return null;
  const [what, fix] = known;
  const op = err!.syscall ? ` (${err!.syscall})` : '';
  return `${err!.path ? `${err!.path}: ` : ''}${what}${op}; ${fix}`;
}
