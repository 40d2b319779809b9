/** Running the real CLI from tests: one process per call, a few at a time, and the user-error contract. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';

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
