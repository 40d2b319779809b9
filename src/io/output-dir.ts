/**
 * Output directories: mka writes only where it may, and recovers from runs that were killed.
 *
 * - Every output directory mka writes carries a marker file `.mka-output.json` {kind, version}. A run
 *   writes into (or replaces) `--out` only when it is absent, empty, or holds an earlier mka output of
 *   the same kind, or with --force. `--out` equal to or inside an input (the model) is always refused,
 *   symlinks resolved; so is a regular file given as a directory.
 * - Temporary entries `.<name>.tmp-<pid>-<hex>` (src/io/atomic.ts) left by a killed run are removed by
 *   the next run of the same output, only when that pid is no longer alive.
 * - A lock file `.<name>.mka-lock` next to the output holds the pid of the run writing it; a second
 *   run fails naming that pid. A lock whose pid is dead is stale and taken over.
 */
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../runtime/errors.ts';

/** What an output directory holds; only an output of the same kind may be replaced or resumed. */
export type OutputKind = 'hf-model' | 'tfjs-model' | 'mmlu-results' | 'sweep';

export const MARKER_FILE = '.mka-output.json';
const MARKER_VERSION = 1;

const KIND_LABEL: Record<OutputKind, string> = {
  'hf-model': 'Hugging Face model', 'tfjs-model': 'tfjs model', 'mmlu-results': 'MMLU results', sweep: 'sweep results',
};

/** Files by which outputs written before markers existed are still recognised. */
const LEGACY_FILES: Partial<Record<OutputKind, string>> = { 'mmlu-results': 'run-key.json', sweep: 'sweep-key.json' };

/** Writes the marker of `kind` into `dir` (a directory being built, or one written in place). */
export function writeMarker(dir: string, kind: OutputKind): void {
  writeFileSync(join(dir, MARKER_FILE), JSON.stringify({ kind, version: MARKER_VERSION }) + '\n');
}

/** The kind recorded in `dir`'s marker, or null when there is no readable marker. */
export function markerKind(dir: string): OutputKind | null {
  try {
    const m = JSON.parse(readFileSync(join(dir, MARKER_FILE), 'utf8')) as { kind?: unknown };
    return typeof m?.kind === 'string' && m.kind in KIND_LABEL ? (m.kind as OutputKind) : null;
  } catch {
    return null;
  }
}

/** True while a process with this pid exists. */
function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** The temporary names src/io/atomic.ts gives siblings of `name`; group 1 is the writer's pid. */
const tempPattern = (name: string) => new RegExp(`^\\.${escapeRe(name)}\\.tmp-(\\d+)-[0-9a-f]{12}$`);
const ANY_TEMP = /^\..+\.tmp-(\d+)-[0-9a-f]{12}$/;

/** Absolute path with symlinks resolved as far as the path exists. */
function realPath(p: string): string {
  const abs = resolve(p);
  if (existsSync(abs)) return realpathSync(abs);
  const parent = dirname(abs);
  return parent === abs ? abs : join(realPath(parent), basename(abs));
}

function removeIfDead(path: string, pid: number, removed: string[]): void {
  if (pid === process.pid || pidAlive(pid)) return;
  rmSync(path, { recursive: true, force: true });
  removed.push(path);
}

/**
 * Removes what killed runs of `out` left: siblings `.<out>.tmp-<pid>-*`, and inside an output mka
 * wrote (marked, or with the key file of an older version), temporaries `.<file>.tmp-<pid>-*` of its
 * files; only when that pid is dead.
 * Returns the removed paths.
 */
function removeStaleTemps(out: string): string[] {
  const abs = resolve(out);
  const removed: string[] = [];
  const parent = dirname(abs);
  const mine = tempPattern(basename(abs));
  if (existsSync(parent) && statSync(parent).isDirectory()) {
    for (const e of readdirSync(parent)) {
      const m = mine.exec(e);
      if (m) removeIfDead(join(parent, e), Number(m[1]), removed);
    }
  }
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const m = ANY_TEMP.exec(e.name);
      if (m) removeIfDead(join(dir, e.name), Number(m[1]), removed);
      else if (e.isDirectory()) walk(join(dir, e.name));
    }
  };
  if (existsSync(abs) && lstatSync(abs).isDirectory() && (markerKind(abs) !== null || Object.values(LEGACY_FILES).some((f) => existsSync(join(abs, f))))) walk(abs);
  return removed;
}

export interface OutputOptions {
  kind: OutputKind;
  /** Input paths (the model, a reference model) the output must not be or lie inside. */
  inputs?: (string | undefined)[];
  /** Replace or write into a directory that is not an earlier output of this kind. */
  force?: boolean;
  /** The option naming the output, for messages (default --out). */
  option?: string;
}

/** Throws unless `out` may be written as an output of `opts.kind` (see the file comment). */
export function checkOutputDir(out: string, opts: OutputOptions): void {
  const option = opts.option ?? '--out';
  const target = realPath(out);
  for (const input of opts.inputs ?? []) {
    if (!input || !existsSync(input)) continue;
    const src = realpathSync(input);
    if (target === src) throw new UserError(`${out}: ${option} is the input ${input}; mka never writes into its input, choose another ${option}`);
    if (target.startsWith(src + sep)) throw new UserError(`${out}: ${option} lies inside the input ${input}; mka never writes into its input, choose a path outside it`);
    if (src.startsWith(target + sep) && existsSync(target)) {
      throw new UserError(`${out}: ${option} contains the input ${input}; writing it would destroy the input, choose another ${option}`);
    }
  }
  let ancestor = dirname(target);
  while (!existsSync(ancestor)) ancestor = dirname(ancestor);
  if (!statSync(ancestor).isDirectory()) throw new UserError(`${out}: ${option} lies under ${ancestor}, which is a file, not a directory; choose another ${option}`);
  if (!existsSync(target)) return;
  if (!statSync(target).isDirectory()) throw new UserError(`${out}: ${option} is an existing file, not a directory; choose a directory path (mka never replaces a file it did not write)`);
  const entries = readdirSync(target);
  if (entries.length === 0 || opts.force) return;
  const kind = markerKind(target);
  if (kind === opts.kind) return;
  const legacy = LEGACY_FILES[opts.kind];
  if (kind === null && legacy && entries.includes(legacy)) return;
  const holds = kind ? `holds ${KIND_LABEL[kind]} output of mka, not ${KIND_LABEL[opts.kind]}` : `is not empty and was not written by mka (no ${MARKER_FILE})`;
  throw new UserError(`${out}: ${option} ${holds}; choose a new or empty directory, or add --force to ${opts.kind === 'mmlu-results' || opts.kind === 'sweep' ? 'write into' : 'replace'} it`);
}

/** Throws unless `path` may be written as an output file: not a directory, not inside an input. */
export function checkOutputFile(path: string, option: string, inputs: (string | undefined)[] = []): void {
  const target = realPath(path);
  for (const input of inputs) {
    if (!input || !existsSync(input)) continue;
    const src = realpathSync(input);
    if (target === src || target.startsWith(src + sep)) throw new UserError(`${path}: ${option} is inside the input ${input}; write it elsewhere`);
  }
  if (existsSync(target) && statSync(target).isDirectory()) throw new UserError(`${path}: ${option} is a directory; give a file path`);
  let ancestor = dirname(target);
  while (!existsSync(ancestor)) ancestor = dirname(ancestor);
  if (!statSync(ancestor).isDirectory()) throw new UserError(`${path}: ${option} lies under ${ancestor}, which is a file, not a directory`);
}

/** The lock file of an output. */
export function lockPath(out: string): string {
  const abs = resolve(out);
  return join(dirname(abs), `.${basename(abs)}.mka-lock`);
}

function lockHolder(lock: string): number | null {
  try {
    const pid = (JSON.parse(readFileSync(lock, 'utf8')) as { pid?: unknown }).pid;
    return typeof pid === 'number' ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Creates `lock` holding `body`, failing with EEXIST when it exists: as a hard link to the written
 * `tmp` (content and name appear at once), or where hard links are not supported, exclusively.
 */
function createLock(tmp: string, lock: string, body: string): void {
  try {
    linkSync(tmp, lock);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
    writeFileSync(lock, body, { flag: 'wx' });
  }
}

/**
 * Takes the lock of output `out` for this process, creating missing parent directories; returns the
 * function that releases it (also run at exit), which removes the parents it created if still empty.
 */
function lockOutput(out: string, command: string): () => void {
  const abs = resolve(out);
  const created: string[] = [];
  for (let d = dirname(abs); !existsSync(d); d = dirname(d)) created.unshift(d);
  if (created.length) mkdirSync(created[created.length - 1], { recursive: true });
  const lock = lockPath(abs);
  const body = JSON.stringify({ pid: process.pid, command, started: new Date().toISOString() }) + '\n';
  const tmp = `${lock}.${process.pid}-${randomBytes(6).toString('hex')}`;
  writeFileSync(tmp, body);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        createLock(tmp, lock, body);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) {
          throw new UserError(`${lock}: cannot create the lock file of ${out} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        }
      }
      const holder = lockHolder(lock);
      if (holder !== null && holder !== process.pid && pidAlive(holder)) {
        throw new UserError(`${out}: in use by another mka run (pid ${holder}, lock ${lock}); wait for it to finish, or choose another --out`);
      }
      rmSync(lock, { force: true }); // stale: its process is gone
    }
  } finally {
    unlinkSync(tmp);
  }
  const release = () => {
    process.off('exit', release);
    if (lockHolder(lock) === process.pid) rmSync(lock, { force: true });
    for (const d of created.reverse()) {
      try {
        rmdirSync(d);
      } catch {
        break;
      }
    }
    created.length = 0;
  };
  process.on('exit', release);
  return release;
}

/**
 * Everything a command does before writing output directory `out`: takes its lock, checks it may be
 * written (checkOutputDir) and removes what killed runs left. Returns the lock's release function.
 */
export function claimOutputDir(out: string, command: string, opts: OutputOptions): () => void {
  checkOutputDir(out, opts);
  const release = lockOutput(out, command);
  try {
    checkOutputDir(out, opts);
    removeStaleTemps(out);
  } catch (e) {
    release();
    throw e;
  }
  return release;
}

/**
 * Everything a command does before writing output file `path` (written whole by atomicWriteFile): takes
 * its lock, checks it may be written (not a directory, not inside an input; an existing file only when
 * `isOurs` says mka wrote it, or with --force) and removes what killed runs left. Returns the release.
 */
export function claimOutputFile(
  path: string, command: string,
  opts: { inputs?: (string | undefined)[]; force?: boolean; option?: string; isOurs: (path: string) => boolean; what: string },
): () => void {
  const option = opts.option ?? '--out';
  const check = () => {
    checkOutputFile(path, option, opts.inputs);
    if (existsSync(path) && !opts.force && !opts.isOurs(path)) {
      throw new UserError(`${path}: ${option} exists and is not ${opts.what} mka wrote; choose a new path, or add --force to replace it`);
    }
  };
  check();
  const release = lockOutput(path, command);
  try {
    check();
    removeStaleTemps(path);
  } catch (e) {
    release();
    throw e;
  }
  return release;
}
