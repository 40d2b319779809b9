/**
 * The output guard: every command that writes a file or a directory claims it here first, so mka
 * writes only where it may and recovers from runs that were killed.
 *
 * - Directories: every output directory mka writes carries a marker file `.mka-output.json` {kind,
 *   version}. A run writes into (or replaces) `--out` only when it is absent, empty, or holds an
 *   earlier mka output of the same kind, or with --force (`claimOutputDir`).
 * - Files (`claimOutputFile`): an existing file is replaced only when it is empty or mka wrote it (its
 *   first bytes are those of the output kind), or with --force; never a directory, a FIFO or another
 *   non-regular file.
 * - Always refused, --force or not: an output equal to, inside or containing an input (every path
 *   option the command reads, symlinks resolved), the filesystem root, a replaced directory holding
 *   the working directory, a symlink to nothing, a path under a regular file.
 * - Temporary entries `.<name>.tmp-<pid>-<hex>` (src/io/atomic.ts) left by a killed run are removed by
 *   the next run of the same output, only when that pid is no longer alive.
 * - Runs that write into a shared output beside each other without its lock (a sweep's `--point` runs
 *   and queue workers, possibly on several hosts) record themselves in `OUT/.mka-writers/` (pid, host,
 *   start time, as a lock does) and, when they start, remove what dead writers of their own host left
 *   (`joinSharedOutput`). A writer of another host cannot be checked: its files are never removed.
 * - A lock file `.<name>.mka-lock` next to an output directory holds the pid, host and start time of
 *   the run writing it; a second run fails naming them. A lock is stale, and taken over, when its
 *   process is gone, is a zombie (exited, not yet reaped) or is another process that reused the pid;
 *   a lock of another host (a shared filesystem) cannot be checked and is never taken over.
 */
import { existsSync, linkSync, lstatSync, mkdirSync, openSync, closeSync, readSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { basename, dirname, join, parse, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UserError } from '../runtime/errors.ts';
import { isBelow, isInside } from './paths.ts';
import { type OptionSpec, flag } from '../runtime/options.ts';
import { FORCE_DIR, FORCE_FILE, OUT } from './output-options.ts';

/** What an output directory holds; only an output of the same kind may be replaced or resumed. */
export type OutputKind = 'hf-model' | 'tfjs-model' | 'mmlu-results' | 'task-results' | 'ppl-results' | 'sweep' | 'demo-benchmark';

export const MARKER_FILE = '.mka-output.json';
const MARKER_VERSION = 1;

const KIND_LABEL: Record<OutputKind, string> = {
  'hf-model': 'Hugging Face model', 'tfjs-model': 'tfjs model', 'mmlu-results': 'MMLU results', 'task-results': 'task results', 'ppl-results': 'perplexity results', sweep: 'sweep results',
  'demo-benchmark': 'demo benchmark',
};

/** Kinds a run writes into (resumes) rather than replaces. */
const WRITTEN_INTO = new Set<OutputKind>(['mmlu-results', 'task-results', 'ppl-results', 'sweep']);

/** Entries by which outputs written before markers existed are still recognised (all must be present). */
const LEGACY_ENTRIES: Partial<Record<OutputKind, string[]>> = {
  'mmlu-results': ['run-key.json', 'subjects'], 'ppl-results': ['run-key.json', 'windows'], sweep: ['sweep-key.json'],
};

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

/** True when `dir` holds an earlier mka output of `kind` (its marker, or the files of an older version). */
export function isOwnOutput(dir: string, kind: OutputKind): boolean {
  if (markerKind(dir) === kind) return true;
  const legacy = LEGACY_ENTRIES[kind];
  return markerKind(dir) === null && !!legacy && legacy.every((f) => existsSync(join(dir, f)));
}

/** Fields 3 (state) and 22 (start time in clock ticks) of /proc/<pid>/stat, or null off Linux. */
function procStat(pid: number): { state: string; start: string } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0], start: rest[19] };
}

/** This process's start time as /proc records it (null off Linux): tells a pid's holder from a later process reusing it. */
const OWN_START = procStat(process.pid)?.start ?? null;

/**
 * True while a process with this pid runs: it exists, is not a zombie (exited, waiting to be reaped
 * by its parent) and, when `start` is known, started at that time (not a later process with the same pid).
 */
export function pidAlive(pid: number, start?: string | null): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const st = procStat(pid);
  if (st === null) return true; // no /proc (or hidden): kill(0) is all there is
  if (st.state === 'Z' || st.state === 'X') return false;
  return !start || st.start === start;
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

/** The directory in a shared output where its writers record themselves. */
export const WRITERS_DIR = '.mka-writers';

/** The writers recorded in `out`: each record's path and body (unreadable records are skipped). */
function writerRecords(out: string): { path: string; body: LockBody }[] {
  const dir = join(out, WRITERS_DIR);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => f.endsWith('.json')).flatMap((f) => {
    const body = readLock(join(dir, f));
    return body ? [{ path: join(dir, f), body }] : [];
  });
}

/** Pids recorded by writers of other hosts: their temporaries are never removed here (their pid says nothing on this host). */
function foreignPids(out: string): Set<number> {
  return new Set(writerRecords(out).filter((r) => r.body.host && r.body.host !== hostname()).map((r) => r.body.pid));
}

/** Records of this host's writers of `out` whose process is gone (no process has the pid). */
function deadWriters(out: string): { path: string; body: LockBody }[] {
  const host = hostname();
  return writerRecords(out).filter((r) => (r.body.host ?? host) === host && r.body.pid !== process.pid && !pidAlive(r.body.pid));
}

/** Walks `dir` for temporaries `.<name>.tmp-<pid>-<hex>` and removes those of `remove(pid)`. */
function removeTemps(dir: string, remove: (pid: number) => boolean, removed: string[]): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const m = ANY_TEMP.exec(e.name);
    if (m) {
      if (remove(Number(m[1]))) {
        rmSync(join(dir, e.name), { recursive: true, force: true });
        removed.push(join(dir, e.name));
      }
    } else if (e.isDirectory() && e.name !== WRITERS_DIR) {
      removeTemps(join(dir, e.name), remove, removed);
    }
  }
}

/**
 * Removes what killed runs of `out` left: siblings `.<out>.tmp-<pid>-*`, and inside an output mka
 * wrote (marked, or with the key file of an older version), temporaries `.<file>.tmp-<pid>-*` of its
 * files; only when that pid is dead.
 * Returns the removed paths.
 */
function removeStaleTemps(out: string, kind: OutputKind): string[] {
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
  if (existsSync(abs) && lstatSync(abs).isDirectory() && isOwnOutput(abs, kind)) {
    const foreign = foreignPids(abs);
    removeTemps(abs, (pid) => pid !== process.pid && !foreign.has(pid) && !pidAlive(pid), removed);
    for (const r of deadWriters(abs)) rmSync(r.path, { force: true });
  }
  return removed;
}

/**
 * Records this process as a writer of the shared output directory `out` (mka's output of `kind`), which
 * runs write into beside each other without its lock: a sweep's `--point` runs and queue workers, on
 * one host or several. The record OUT/.mka-writers/HOST.PID.json holds the pid, host and start time.
 * First removes what dead writers of this host left: their temporaries (`.NAME.tmp-PID-*`) anywhere in
 * `out`, then their records. A writer is dead when no process has its pid (a pid taken again by another
 * process keeps the files: they might be that process's). Writers of other hosts, and temporaries of no
 * recorded writer (left to the lock-holding run of the output, claimOutputDir), are never touched.
 * Says what it removed through `log` (one line, with the count). Returns the removed paths and the release
 * of the record (also run at exit).
 */
export function joinSharedOutput(out: string, kind: OutputKind, command: string, log: (msg: string) => void = () => {}): { removed: string[]; release: () => void } {
  const abs = resolve(out);
  const removed: string[] = [];
  if (!isOwnOutput(abs, kind)) return { removed, release: () => {} };
  const host = hostname();
  const dead = deadWriters(abs);
  if (dead.length) {
    const foreign = foreignPids(abs);
    const pids = new Set(dead.map((r) => r.body.pid).filter((pid) => !foreign.has(pid)));
    removeTemps(abs, (pid) => pids.has(pid), removed);
    for (const r of dead) rmSync(r.path, { force: true });
  }
  if (removed.length) log(`removed ${removed.length} temporary file${removed.length === 1 ? '' : 's'} left in ${out} by killed runs on this host`);
  const record = join(abs, WRITERS_DIR, `${encodeURIComponent(host)}.${process.pid}.json`);
  mkdirSync(dirname(record), { recursive: true });
  writeFileSync(record, JSON.stringify({ pid: process.pid, host, ...(OWN_START ? { start: OWN_START } : {}), command, started: new Date().toISOString() }) + '\n');
  const release = () => {
    process.off('exit', release);
    if (readLock(record)?.pid === process.pid) rmSync(record, { force: true });
    try {
      rmdirSync(dirname(record)); // the last writer out removes the directory
    } catch {
      // other writers' records remain
    }
  };
  process.on('exit', release);
  return { removed, release };
}

/** What every output claim shares. */
interface ClaimOptions {
  /** Input paths (model, data, corpus, activations, ...) the output must not be, lie inside or contain. */
  inputs?: (string | undefined)[];
  /** Replace, or write into, what mka did not write (never an input). */
  force?: boolean;
  /** The option naming the output, for messages (default OUT). */
  option?: Pick<OptionSpec, 'option'>;
}

export interface OutputOptions extends ClaimOptions {
  kind: OutputKind;
}

/** Checks every output shares: not a dangling symlink, not the root, not under a file, not an input's relative. Returns the real target. */
function checkPlacement(out: string, option: string, inputs: (string | undefined)[], isDir: boolean): string {
  let link: ReturnType<typeof lstatSync> | undefined;
  try {
    link = lstatSync(out);
  } catch {
    // absent
  }
  if (link?.isSymbolicLink() && !existsSync(out)) {
    throw new UserError(`${out}: ${option} is a symbolic link to a path that does not exist; remove the link or choose another ${option}`);
  }
  const target = realPath(out);
  if (target === parse(target).root) throw new UserError(`${out}: ${option} is the root of the filesystem; choose a directory of its own`);
  for (const input of inputs) {
    if (!input || !existsSync(input)) continue;
    const src = realpathSync(input);
    const what = `${option} ${out}`;
    if (target === src) throw new UserError(`${what} is the input ${input}; mka never writes over its input, choose another ${option}`);
    if (isBelow(src, target)) throw new UserError(`${what} lies inside the input ${input}; mka never writes into its input, choose a path outside it`);
    if (isBelow(target, src) && existsSync(target)) throw new UserError(`${what} contains the input ${input}; writing it would destroy the input, choose another ${option}`);
  }
  let ancestor = dirname(target);
  while (!existsSync(ancestor)) ancestor = dirname(ancestor);
  if (!statSync(ancestor).isDirectory()) throw new UserError(`${out}: ${option} lies under ${ancestor}, which is a file, not a directory; choose another ${option}`);
  if (existsSync(target)) {
    const st = statSync(target);
    if (isDir && !st.isDirectory()) {
      throw new UserError(`${out}: ${option} is an existing ${st.isFile() ? 'file' : 'special file (not a directory)'}; choose a directory path (mka never replaces a file it did not write)`);
    }
    if (!isDir && st.isDirectory()) throw new UserError(`${out}: ${option} is a directory; give a file path`);
    if (!isDir && !st.isFile()) throw new UserError(`${out}: ${option} is not a regular file (a FIFO, socket or device); give the path of a regular file`);
  }
  return target;
}

/** Throws unless `out` may be written as an output directory of `opts.kind` (see the file comment). */
export function checkOutputDir(out: string, opts: OutputOptions): void {
  const option = flag(opts.option ?? OUT);
  const target = checkPlacement(out, option, opts.inputs ?? [], true);
  if (!WRITTEN_INTO.has(opts.kind) && existsSync(target)) {
    if (isInside(target, realPath(process.cwd()))) {
      throw new UserError(`${out}: ${option} is or contains the working directory; replacing it would delete what you are working in, choose another ${option}`);
    }
    const home = realPath(homedir());
    if (home !== parse(home).root && isInside(target, home)) {
      throw new UserError(`${out}: ${option} is or contains your home directory; replacing it would delete it, choose another ${option}`);
    }
  }
  if (!existsSync(target)) return;
  const entries = readdirSync(target);
  if (entries.length === 0 || opts.force) return;
  if (isOwnOutput(target, opts.kind)) return;
  const kind = markerKind(target);
  const holds = kind ? `holds ${KIND_LABEL[kind]} output of mka, not ${KIND_LABEL[opts.kind]}` : `is not empty and was not written by mka (no ${MARKER_FILE})`;
  throw new UserError(`${out}: ${option} ${holds}; choose a new or empty directory, or add ${flag(FORCE_DIR)} to ${WRITTEN_INTO.has(opts.kind) ? 'write into' : 'replace'} it`);
}

/** A file output: how mka recognises its own earlier file of this kind (it replaces only those). */
export interface OutputFileKind {
  /** What the file holds, for messages ("forward JSON"). */
  label: string;
  /** The first bytes of every file of this kind mka writes. */
  prefix: string;
  /**
   * When the prefix is not mka's alone (a GGUF file's "GGUF"), whether a file with it is one mka wrote
   * (read from its contents); absent: the prefix decides.
   */
  owned?: (path: string) => boolean;
}

/** The file outputs of mka's commands. */
export const OUTPUT_FILES = {
  forward: { label: 'forward JSON', prefix: '{"input_ids":' },
  similarity: { label: 'similarity JSON', prefix: '{"metric":' },
  prompts: { label: 'prompt dump', prefix: '{"subject":' },
} satisfies Record<string, OutputFileKind>;

/** The first `n` bytes of a file. */
function head(path: string, n: number): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    return buf.subarray(0, readSync(fd, buf, 0, n, 0)).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Throws unless `path` may be written as an output file of `kind`: absent, empty, or an earlier file
 * of that kind (or any regular file with `force`); and never an input, a directory or a special file.
 */
export function claimOutputFile(path: string, kind: OutputFileKind, opts: ClaimOptions = {}): void {
  const option = flag(opts.option ?? OUT);
  const target = checkPlacement(path, option, opts.inputs ?? [], false);
  if (!existsSync(target) || opts.force || statSync(target).size === 0) return;
  if (head(target, kind.prefix.length) === kind.prefix && (!kind.owned || kind.owned(target))) return;
  throw new UserError(`${path}: ${option} is an existing file that mka did not write (not ${kind.label}); choose another path, or add ${flag(FORCE_FILE)} to replace it`);
}

/** The lock file of an output. */
export function lockPath(out: string): string {
  const abs = resolve(out);
  return join(dirname(abs), `.${basename(abs)}.mka-lock`);
}

/** What a lock file records. */
interface LockBody {
  pid: number;
  /** Host name of the holder (absent in locks of older versions: this host). */
  host?: string;
  /** The holder's start time in /proc's clock ticks, when known. */
  start?: string;
  command?: string;
}

function readLock(lock: string): LockBody | null {
  try {
    const b = JSON.parse(readFileSync(lock, 'utf8')) as LockBody;
    return typeof b?.pid === 'number' ? b : null;
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

/** A one-line UserError for a file-system error while taking a lock. */
function lockError(e: unknown, lock: string, out: string): UserError {
  const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  const why = code === 'EACCES' || code === 'EPERM' ? `permission denied: choose an ${flag(OUT)} in a directory you may write`
    : code === 'EROFS' ? `the file system is read-only: choose an ${flag(OUT)} on a writable one`
      : code === 'ENOSPC' || code === 'EDQUOT' ? 'no space left on the device' : code;
  return new UserError(`${lock}: cannot create the lock file of ${out} (${why})`);
}

/**
 * Takes the lock of output `out` for this process, creating missing parent directories; returns the
 * function that releases it (also run at exit), which removes the parents it created if still empty.
 */
function lockOutput(out: string, command: string): () => void {
  const abs = resolve(out);
  const lock = lockPath(abs);
  const created: string[] = [];
  for (let d = dirname(abs); !existsSync(d); d = dirname(d)) created.unshift(d);
  const body = JSON.stringify({ pid: process.pid, host: hostname(), ...(OWN_START ? { start: OWN_START } : {}), command, started: new Date().toISOString() }) + '\n';
  const tmp = `${lock}.${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    if (created.length) mkdirSync(created[created.length - 1], { recursive: true });
    writeFileSync(tmp, body);
  } catch (e) {
    throw lockError(e, lock, out);
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        createLock(tmp, lock, body);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw lockError(e, lock, out);
      }
      if (lstatSync(lock).isDirectory()) throw new UserError(`${lock}: a directory stands where the lock file of ${out} goes; remove it, or choose another ${flag(OUT)}`);
      const holder = readLock(lock);
      if (holder && holder.host && holder.host !== hostname()) {
        throw new UserError(`${out}: in use by mka run pid ${holder.pid} on host ${holder.host} (lock ${lock}); wait for it to finish, or delete the lock if that run is gone`);
      }
      if (holder && holder.pid !== process.pid && pidAlive(holder.pid, holder.start)) {
        throw new UserError(`${out}: in use by another mka run (pid ${holder.pid}, lock ${lock}); wait for it to finish, or choose another ${flag(OUT)}`);
      }
      rmSync(lock, { force: true }); // stale: its process is gone
    }
  } finally {
    rmSync(tmp, { force: true });
  }
  const release = () => {
    process.off('exit', release);
    if (readLock(lock)?.pid === process.pid) rmSync(lock, { force: true });
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

/** What a directory written in place holds before its first result: the marker, the run's key file, empty folders. */
const SCAFFOLD = new Set([MARKER_FILE, 'run-key.json', 'sweep-key.json']);

/** True when `dir` holds nothing but SCAFFOLD files and directories. */
function onlyScaffold(dir: string): boolean {
  return readdirSync(dir, { withFileTypes: true }).every((e) => (e.isDirectory() ? onlyScaffold(join(dir, e.name)) : SCAFFOLD.has(e.name)));
}

/**
 * Everything a command does before writing output directory `out`: takes its lock, checks it may be
 * written (checkOutputDir) and removes what killed runs left. Returns the lock's release function;
 * `release(true)` after a failed run also removes what the run began in a directory that was absent or
 * empty when claimed, as long as it holds no result yet (only its marker, key file and empty folders):
 * a results directory written in place (eval, sweep) is then left as it was found. Results a run saved
 * before failing stay, to be resumed.
 */
export function claimOutputDir(out: string, command: string, opts: OutputOptions): (failed?: boolean) => void {
  checkOutputDir(out, opts);
  const release = lockOutput(out, command);
  let absent: boolean, empty: boolean;
  try {
    checkOutputDir(out, opts);
    removeStaleTemps(out, opts.kind);
    absent = !existsSync(out);
    empty = absent || readdirSync(out).length === 0;
  } catch (e) {
    release();
    throw e;
  }
  return (failed = false) => {
    if (failed && empty && existsSync(out) && lstatSync(out).isDirectory() && onlyScaffold(out)) {
      if (absent) rmSync(out, { recursive: true, force: true });
      else for (const e of readdirSync(out)) rmSync(join(out, e), { recursive: true, force: true });
    }
    release();
  };
}
