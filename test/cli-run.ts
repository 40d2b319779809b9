/**
 * Running the CLI from tests: the real one (one process per call, a few at a time), or the same
 * src/cli/run.ts in this process (no node, tsx and tfjs start-up per call: the cheap way to check many
 * command lines), and the user-error contract.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { format } from 'node:util';

export const CLI = join(process.cwd(), 'bin', 'mka.mjs');

export interface CliResult { args: string[]; status: number | null; stdout: string; stderr: string }

/** The uid and gid of `nobody` when tests run as root (which permissions do not stop), else none. */
export const UNPRIVILEGED = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

/**
 * Runs `mka args...` to completion (in `cwd`, with environment `env`: default this process's);
 * `unprivileged` runs it as `nobody` when the tests run as root, so read-only permissions hold.
 */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; unprivileged?: boolean } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.unprivileged ? UNPRIVILEGED : {}) });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ args, status, stdout, stderr }));
  });
}

/** In-process runs share stdout, stderr, the working directory and the environment: one at a time. */
let inProcessQueue: Promise<unknown> = Promise.resolve();

/**
 * Runs `mka args...` as src/cli/run.ts in this process (in `cwd`, with environment `env`), capturing
 * stdout and stderr; runs end one at a time. What a process would do at its end is done too: handlers
 * the run left on 'exit' (lock releases) run, signal handlers are removed, the tfjs backend the test
 * had is set again (a command line's --backend changes it). For what needs a real process
 * (signals, another user, a blocking read), use runCli.
 */
export function runCliInProcess(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const run = inProcessQueue.then(() => inProcess(args, opts));
  inProcessQueue = run.catch(() => {});
  return run;
}

/** A stand-in for process.stdout/stderr that keeps what is written. */
function captureStream(): Writable & { text: string } {
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      w.text += chunk.toString('utf8');
      cb();
    },
  }) as Writable & { text: string };
  w.text = '';
  return w;
}

async function inProcess(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv }): Promise<CliResult> {
  const { runCli: run } = await import('../src/cli/run.ts');
  // process.stdout and stderr are replaced (not patched: the test runner writes its own reports to the real ones)
  const out = captureStream(), err = captureStream();
  const streams = { stdout: Object.getOwnPropertyDescriptor(process, 'stdout')!, stderr: Object.getOwnPropertyDescriptor(process, 'stderr')! };
  const consoleMethods = { log: console.log, info: console.info, warn: console.warn, error: console.error };
  const exitListeners = new Set(process.listeners('exit'));
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const signalListeners = Object.fromEntries(signals.map((e) => [e, new Set(process.listeners(e))]));
  const cwd = process.cwd(), argv = process.argv;
  const envBefore = { ...process.env };
  const setEnv = (env: NodeJS.ProcessEnv) => {
    for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
    for (const [k, v] of Object.entries(env)) if (v !== undefined && process.env[k] !== v) process.env[k] = v;
  };
  Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => out });
  Object.defineProperty(process, 'stderr', { configurable: true, enumerable: true, get: () => err });
  const line = (w: Writable) => (...a: unknown[]) => { w.write(format(...a) + '\n'); };
  Object.assign(console, { log: line(out), info: line(out), warn: line(err), error: line(err) });
  // the run sets the tfjs backend of this process; the test's own computations go on with theirs
  const tf = (globalThis as { _tfengine?: unknown })._tfengine ? (await import('../src/runtime/tf.ts')).tf : null;
  const backend = tf?.getBackend();
  let status: number;
  try {
    if (opts.env) setEnv(opts.env);
    if (opts.cwd) process.chdir(opts.cwd);
    process.argv = [process.execPath, CLI, ...args]; // as the process would have it (some checks read the raw arguments)
    status = await run(args, { exitProcess: false });
    // what the process's end would do: the handlers the run left on 'exit' run (lock releases)
    for (const l of process.listeners('exit')) {
      if (exitListeners.has(l)) continue;
      process.off('exit', l);
      l(status);
    }
  } finally {
    for (const e of signals) for (const l of process.listeners(e)) if (!signalListeners[e].has(l)) process.off(e, l);
    process.chdir(cwd);
    process.argv = argv;
    setEnv(envBefore);
    Object.defineProperty(process, 'stdout', streams.stdout);
    Object.defineProperty(process, 'stderr', streams.stderr);
    Object.assign(console, consoleMethods);
    if (tf && backend && tf.getBackend() !== backend) await tf.setBackend(backend);
  }
  await new Promise((r) => setImmediate(r)); // writes still in the streams' buffers
  return { args, status, stdout: out.text, stderr: err.text };
}

/** runCliInProcess for many command lines, results in input order. */
export async function runAllInProcess(cases: string[][]): Promise<CliResult[]> {
  const results: CliResult[] = [];
  for (const c of cases) results.push(await runCliInProcess(c));
  return results;
}

/** Runs `mka args...` and sends it SIGINT (Ctrl-C) once `when()` holds (checked every 20 ms). */
export function runCliUntil(args: string[], when: () => boolean): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setInterval(() => {
      if (!when()) return;
      clearInterval(timer);
      child.kill('SIGINT');
    }, 20);
    child.on('error', reject);
    child.on('close', (status) => {
      clearInterval(timer);
      resolve({ args, status, stdout, stderr });
    });
  });
}

/** Runs many command lines, `parallel` at a time, results in input order. */
export async function runAllCli(cases: string[][], parallel = 3): Promise<CliResult[]> {
  const results: CliResult[] = new Array(cases.length);
  let next = 0;
  const worker = async () => {
    while (next < cases.length) {
      const i = next++;
      results[i] = await runCli(cases[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, cases.length) }, worker));
  return results;
}

/** Asserts a user error: exit 1, exactly one stderr line `mka: ...` holding every `needle`, no stack. */
export function assertUserError(r: CliResult, ...needles: string[]): void {
  const what = `mka ${r.args.join(' ')}\n${r.stderr}`;
  assert.equal(r.status, 1, `exit code ${r.status}: ${what}`);
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  assert.equal(lines.length, 1, `expected one stderr line: ${what}`);
  assert.match(lines[0], /^mka: /, what);
  assert.doesNotMatch(lines[0], /internal error|    at /, what);
  for (const n of needles) assert.ok(lines[0].includes(n), `stderr should name ${JSON.stringify(n)}: ${what}`);
}

/** Every path under `dir` (relative, sorted, directories marked with a trailing /) with file sizes, symlinks with their targets. */
export function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name), r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isSymbolicLink()) {
        out.push(`${r} -> ${readlinkSync(p)}`);
      } else if (e.isDirectory()) {
        out.push(`${r}/`);
        walk(p, r);
      } else {
        out.push(`${r} ${statSync(p).size}`);
      }
    }
  };
  walk(dir, '');
  return out;
}

/** Entries under `dir` (recursively) named like mka's temporaries or locks. */
export function leftovers(dir: string): string[] {
  return tree(dir).filter((p) => /\.tmp-\d+-|\.mka-lock/.test(p));
}
