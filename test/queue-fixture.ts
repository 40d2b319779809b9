/**
 * What the queue tests share: a tiny sweep of the committed demo model (3 subjects, 2 questions each,
 * so a point evaluates in seconds), the CLI to run it, and the results of a sweep with every timing
 * field removed, for byte-for-byte comparison between a local sweep and a distributed one.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { ensureBenchmark } from '../src/demo/benchmark.ts';
import { RESULT_COLUMNS } from '../src/sweep/report.ts';

export const CLI = join(process.cwd(), 'bin', 'mka.mjs');
export const SUBJECTS = ['demo_arithmetic', 'demo_facts', 'demo_sequences'];

/** Writes the demo benchmark into `root` and returns the sweep options (without --out). */
export async function tinySweepArgs(root: string, methods = 'mka,shortgpt', remove = '0,2'): Promise<string[]> {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  return ['--model', 'models/demo', '--data', data, '--methods', methods, '--remove', remove, '--limit', '2',
    '--eval-subjects', SUBJECTS.join(','), '--per-subject', '4', '--backend', 'wasm', '--quiet'];
}

/** Runs the CLI to completion; throws with its stderr when it fails. */
export function mka(args: string[]): SpawnSyncReturns<string> {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mka ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

/** results.csv and results.json of a sweep with the seconds (the only timing field) removed. */
export function resultsWithoutTimings(dir: string): { csv: string; json: string } {
  const i = RESULT_COLUMNS.indexOf('seconds');
  const csv = readFileSync(join(dir, 'results.csv'), 'utf8').split('\n').map((l) => l.split(',').filter((_, k) => k !== i).join(',')).join('\n');
  const json = readFileSync(join(dir, 'results.json'), 'utf8').replace(/\n\s*"seconds": [0-9.e+-]+,?/g, '');
  return { csv, json };
}
