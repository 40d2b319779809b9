/**
 * The sweep end to end on the committed demo model and benchmark (no shared data needed): every report
 * file, the same numbers as `compress` + `eval mmlu` for the same points, and a killed-then-rerun sweep
 * ending with the uninterrupted run's results.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { initBackend } from '../src/runtime/backend.ts';
import { runSweep } from '../src/sweep/sweep.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { runMmluEval } from '../src/eval/mmlu/run.ts';
import { RESULT_COLUMNS } from '../src/sweep/report.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('sweep');
const MODEL = 'models/demo';
const DATA = join(root, 'demo-mmlu');
await ensureBenchmark(DATA);
const SUBJECTS = ['demo_arithmetic', 'demo_facts', 'demo_sequences'];
const LIMIT = 4;

function sweepArgs(out: string): string[] {
  return ['sweep', '--model', MODEL, '--data', DATA, '--methods', 'mka,reverse,shortgpt', '--remove', '0,1,2',
    '--limit', String(LIMIT), '--eval-subjects', SUBJECTS.join(','), '--per-subject', '4', '--out', out, '--backend', 'wasm', '--quiet'];
}

/** results.csv without its seconds column (timings differ between any two runs). */
function resultsWithoutSeconds(dir: string): string {
  const i = RESULT_COLUMNS.indexOf('seconds');
  return readFileSync(join(dir, 'results.csv'), 'utf8').trim().split('\n').map((l) => l.split(',').filter((_, k) => k !== i).join(',')).join('\n');
}

function isPng(path: string): boolean {
  const b = readFileSync(path);
  return b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) && b.readUInt32BE(16) > 200 && b.readUInt32BE(20) > 150;
}

test('sweep of the demo model writes every report file and matches compress + eval mmlu', async () => {
  await initBackend('wasm');
  const model = MODEL, data = DATA;
  const out = join(root, 'sweep-a');
  const points = await runSweep({
    model, data, methods: ['mka', 'reverse', 'shortgpt'], remove: [0, 1, 2], ntrain: 5, limit: LIMIT,
    evalSubjects: SUBJECTS, perSubject: 4, out, quiet: true,
  });
  assert.equal(points.length, 9);
  for (const f of ['results.csv', 'results.json', 'summary.md', 'run.json', 'similarity.svg', 'accuracy.svg', 'categories.svg']) {
    assert.ok(existsSync(join(out, f)), `${f} missing`);
  }
  for (const f of ['similarity.png', 'accuracy.png', 'categories.png']) assert.ok(isPng(join(out, f)), `${f} is not a plausible PNG`);
  const csv = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n');
  assert.equal(csv[0], RESULT_COLUMNS.join(','));
  assert.equal(csv.length, 1 + 1 + 9);
  const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8'));
  assert.ok(run.versions.mka && run.backend && run.seed === 1);
  assert.match(readFileSync(join(out, 'summary.md'), 'utf8'), /!\[accuracy\]\(accuracy\.png\)/);

  // the same points through the individual commands' library functions
  for (const [method, remove] of [['mka', 2], ['shortgpt', 1]] as const) {
    const dir = join(root, `${method}-${remove}`);
    await compressModel({ model, out: dir, method, remove, data, perSubject: 4, quiet: true });
    const r = await runMmluEval({ model: dir, data, ntrain: 5, limit: LIMIT, subjects: SUBJECTS, referenceModel: model, out: join(root, `eval-${method}-${remove}`) });
    const p = points.find((x) => x.method === method && x.layers_removed === remove)!;
    assert.equal(p.mmlu, r.summary!.overall.accuracy, `${method}-${remove} accuracy`);
    assert.ok(Math.abs(p.perplexity! - r.summary!.overall.perplexity) < 1e-6 * p.perplexity!, `${method}-${remove} perplexity`);
    assert.equal(p.agreement, r.summary!.overall.agreement);
  }
});

test('a sweep killed mid-way and rerun ends with the uninterrupted run\'s results', async () => {
  // the uninterrupted run is the previous test's (same options through the library)
  const full = join(root, 'sweep-a'), killed = join(root, 'sweep-killed');
  const cli = join(process.cwd(), 'bin', 'mka.mjs');
  if (!existsSync(join(full, 'results.csv'))) {
    const r1 = spawnSync(process.execPath, [cli, ...sweepArgs(full)], { encoding: 'utf8' });
    assert.equal(r1.status, 0, r1.stderr);
  }
  // the same sweep through the CLI, killed once a few points are saved
  const child = spawn(process.execPath, [cli, ...sweepArgs(killed)], { stdio: 'ignore' });
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const done = existsSync(join(killed, 'points')) ? readdirSync(join(killed, 'points')).length : 0;
      if (done >= 3 || child.exitCode !== null) {
        clearInterval(timer);
        child.kill('SIGKILL');
        resolve();
      }
    }, 50);
  });
  await new Promise((r) => child.once('exit', r));
  assert.ok(!existsSync(join(killed, 'results.csv')), 'the kill came too late to interrupt the sweep');
  const r2 = await runCliInProcess(sweepArgs(killed)); // the rerun needs no process of its own
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(resultsWithoutSeconds(killed), resultsWithoutSeconds(full));
  // results.json: the same points with the same keys (points loaded from disk carry no summary or plan)
  const noSeconds = (dir: string) => JSON.stringify(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')), (k, v) => (k === 'seconds' ? undefined : v));
  assert.equal(noSeconds(killed), noSeconds(full));
  assert.deepEqual(readdirSync(killed).sort(), readdirSync(full).sort(), 'the same files');
});
