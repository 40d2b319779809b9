/**
 * What the queue tests share: a tiny sweep of the committed demo model (3 subjects, 2 questions each,
 * so a point evaluates in seconds), the CLI to run it, and the results of a sweep with every timing
 * field removed, for byte-for-byte comparison between a local sweep and a distributed one.
 */
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { runCliInProcess, type CliResult } from './cli-run.ts';

export const CLI = join(process.cwd(), 'bin', 'mka.mjs');
export const SUBJECTS = ['demo_arithmetic', 'demo_facts', 'demo_sequences'];

/** Writes the demo benchmark and a copy of the demo model into `root` (a worker's --root) and returns the sweep options (without --out). */
export async function tinySweepArgs(root: string, methods = 'mka,shortgpt', remove = '0,2', subjects = SUBJECTS): Promise<string[]> {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const model = join(root, 'demo-model');
  if (!existsSync(model)) cpSync('models/demo', model, { recursive: true });
  return ['--model', model, '--data', data, '--methods', methods, '--remove', remove, '--limit', '2',
    '--eval-subjects', subjects.join(','), '--per-subject', '4', '--backend', 'wasm', '--quiet'];
}

/** Runs the CLI to completion; throws with its stderr when it fails. */
export function mka(args: string[]): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mka ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

/** Runs the CLI to completion in this process (src/cli/run.ts); throws with its stderr when it fails. */
export async function mkaInProcess(args: string[]): Promise<CliResult> {
  const r = await runCliInProcess(args);
  if (r.status !== 0) throw new Error(`mka ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

/** results.csv and results.json of a sweep with the seconds (the only timing field) removed. */
export function resultsWithoutTimings(dir: string): { csv: string; json: string } {
  const lines = readFileSync(join(dir, 'results.csv'), 'utf8').split('\n');
  const i = lines[0].split(',').indexOf('seconds');
  const csv = lines.map((l) => l.split(',').filter((_, k) => k !== i).join(',')).join('\n');
  const json = readFileSync(join(dir, 'results.json'), 'utf8').replace(/\n\s*"seconds": [0-9.e+-]+,?/g, '');
  return { csv, json };
}

/** Why the queue tests skip (redis-server not installed), or false. */
export const NO_REDIS: string | false = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).status === 0
  ? false : 'redis-server is not installed: queue tests skipped (apt-get install redis-server; .ci/run installs it)';

/** A free TCP port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Starts a private redis-server on a loopback port (no persistence, data in `dir`); returns its URL and a stop. */
export async function startRedis(dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const { createConnection } = await import('node:net');
  const port = await freePort();
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const c = createConnection(port, '127.0.0.1').once('connect', () => { c.end(); resolve(true); }).once('error', () => resolve(false));
    });
    if (up) break;
    if (i > 100 || server.exitCode !== null) throw new Error(`redis-server did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    stop: () => new Promise<void>((resolve) => {
      if (server.exitCode !== null) return resolve();
      server.once('exit', () => resolve());
      server.kill('SIGTERM');
    }),
  };
}
