/**
 * A sweep stopped by its signal (Ctrl-C in the CLI) keeps its finished points and resumes without
 * recalibrating to the uninterrupted run's results; the original is evaluated once (no reference
 * model); a sweep that cannot fit in memory stops before writing anything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { runSweep, SweepInterrupted, type SweepOptions } from '../src/sweep/sweep.ts';
import { RESULT_COLUMNS } from '../src/sweep/report.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { UserError } from '../src/runtime/errors.ts';
import { openSweep } from '../src/sweep/context.ts';
import { calibrateSweep } from '../src/sweep/calibrate.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('sweep-resume');
const DATA = join(root, 'demo-mmlu');
await ensureBenchmark(DATA);

const options = (out: string): SweepOptions => ({
  model: 'models/demo', data: DATA, methods: ['reverse', 'shortgpt'], remove: [0, 1, 2], ntrain: 5, limit: 3,
  evalSubjects: ['demo_arithmetic', 'demo_facts'], perSubject: 4, out, quiet: true,
});

/** results.csv without its seconds column. */
function results(dir: string): string {
  const i = RESULT_COLUMNS.indexOf('seconds');
  return readFileSync(join(dir, 'results.csv'), 'utf8').trim().split('\n').map((l) => l.split(',').filter((_, k) => k !== i).join(',')).join('\n');
}

const runJson = (dir: string) => JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'));

test('an interrupted sweep keeps its finished points and resumes, without recalibrating, to the uninterrupted results', async () => {
  await initBackend('wasm');
  const full = join(root, 'full');
  await runSweep(options(full));
  assert.ok(runJson(full).seconds.analysis > 0, 'the first run calibrates');
  const original = JSON.parse(readFileSync(join(full, 'points', 'original.json'), 'utf8'));
  assert.equal(original.summary.overall.agreement, null, 'the original is evaluated without itself as reference model');
  assert.equal(original.agreement, 1);
  assert.equal(original.kl, 0);

  const cut = join(root, 'cut');
  const stop = new AbortController();
  // stop as soon as the original's point is saved: during the next point's evaluation
  const watch = setInterval(() => {
    if (existsSync(join(cut, 'points', 'original.json'))) stop.abort();
  }, 2);
  try {
    await assert.rejects(runSweep({ ...options(cut), signal: stop.signal }), (e: unknown) => {
      assert.ok(e instanceof SweepInterrupted, String(e));
      assert.ok(e.pointsDone >= 1 && e.pointsDone < e.pointsTotal, `${e.pointsDone} of ${e.pointsTotal} points done`);
      return true;
    });
  } finally {
    clearInterval(watch);
  }
  assert.ok(!existsSync(join(cut, 'results.csv')));
  await runSweep(options(cut));
  assert.equal(runJson(cut).seconds.analysis, undefined, 'the resumed run read the stored plans instead of recalibrating');
  assert.equal(results(cut), results(full));
});

test('points added to a sweep are planned from analysis.json, without a calibration pass, as a fresh calibration plans them', async () => {
  await initBackend('wasm');
  /** Runs only the sweep's calibration step; returns its log. */
  const calibrateOnly = async (opts: SweepOptions): Promise<string[]> => {
    const logs: string[] = [];
    const ctx = await openSweep({ ...opts, log: (m) => logs.push(m) });
    try {
      await calibrateSweep(ctx);
    } finally {
      ctx.dispose();
    }
    return logs;
  };
  const grown = join(root, 'grown'), fresh = join(root, 'fresh');
  const sweep = (out: string, remove: number[]): SweepOptions => ({ ...options(out), methods: ['mka', 'shortgpt'], remove });
  await calibrateOnly(sweep(grown, [0, 1]));
  assert.ok(!existsSync(join(grown, 'plans', 'mka-2.json')));
  const logs = await calibrateOnly(sweep(grown, [0, 1, 2]));
  assert.ok(logs.some((l) => /^sweep: 2 new points planned from .*analysis\.json \(no calibration pass\)$/.test(l)), logs.join('\n'));
  await calibrateOnly(sweep(fresh, [0, 1, 2]));
  for (const f of ['mka-1.json', 'mka-2.json', 'shortgpt-1.json', 'shortgpt-2.json']) {
    assert.equal(readFileSync(join(grown, 'plans', f), 'utf8'), readFileSync(join(fresh, 'plans', f), 'utf8'), f);
  }
});

test('mka sweep stops on Ctrl-C after the current batch: exit 130, finished points kept, lock released', async () => {
  const out = join(root, 'ctrl-c');
  const child = spawn(process.execPath, ['bin/mka.mjs', 'sweep', '--model', 'models/demo', '--data', DATA, '--methods', 'reverse,shortgpt', '--remove', '0,1,2',
    '--limit', '20', '--eval-subjects', 'demo_arithmetic,demo_facts', '--per-subject', '4', '--out', out, '--backend', 'wasm', '--quiet'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const started = Date.now();
  while (!existsSync(join(out, 'points', 'original.json')) && child.exitCode === null && Date.now() - started < 120_000) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /^mka: interrupted; [1-4] of 5 points .* are saved in .*: run the same command again to resume$/m);
  assert.ok(!existsSync(join(out, 'results.csv')), 'the sweep stopped before its report');
  assert.ok(readdirSync(join(out, 'points')).includes('original.json'));
  assert.ok(!readdirSync(root).some((f) => f.includes('mka-lock')), 'the lock is released');
});

test('a sweep that cannot fit in memory stops with one line before writing anything', async () => {
  await initBackend('wasm');
  const out = join(root, 'too-big');
  process.env.MKA_MEMORY_LIMIT = '50M';
  try {
    await assert.rejects(runSweep(options(out)), (e: unknown) => e instanceof UserError && /^sweep needs .* but 52 MB is available/.test(e.message) && !e.message.includes('\n'));
  } finally {
    delete process.env.MKA_MEMORY_LIMIT;
  }
  assert.ok(!existsSync(out));
});
