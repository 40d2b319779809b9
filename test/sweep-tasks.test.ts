/**
 * A sweep on several tasks: each point's metrics map holds every task's metrics as `eval TASK` computes
 * them on the same compressed model, results.csv has per-task columns with stderr, difference and the
 * paired test's p-value plus their average, summary.md marks differences within noise, each task gets
 * its chart with error bars; the paired test is McNemar's on the two models' per-document scores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { runSweep } from '../src/sweep/sweep.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { runTasksEval } from '../src/eval/tasks/run.ts';
import { runMmluEval } from '../src/eval/mmlu/run.ts';
import { mcnemar } from '../src/eval/tasks/metrics.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { resultColumns } from '../src/sweep/report.ts';
import { readStoredPoint } from '../src/sweep/point.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('sweep-tasks');
const FIX = join(process.cwd(), 'test', 'fixtures', 'tasks');

test('a sweep on hellaswag and boolq: the metrics of eval TASK, per-task columns with stderr and paired tests, their average, charts', async () => {
  await initBackend('wasm');
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'sweep');
  const tasks = ['hellaswag', 'boolq'];
  const taskData = { hellaswag: join(FIX, 'hellaswag.parquet'), boolq: join(FIX, 'boolq.jsonl') };
  const points = await runSweep({ model: 'models/demo', data, methods: ['reverse'], remove: [0, 3], ntrain: 5, tasks, taskData, out, quiet: true });
  assert.equal(points.length, 2);
  const [base, cut] = points;
  for (const p of points) assert.deepEqual(Object.keys(p.metrics), tasks);
  assert.equal(base.mmlu, null, 'no MMLU column without the mmlu task');

  // the same numbers as eval TASK on the model compress writes
  const dir = join(root, 'reverse-3');
  await compressModel({ model: 'models/demo', out: dir, method: 'reverse', remove: 3, data, quiet: true });
  const alone = await runTasksEval({ model: dir, tasks: tasks.map((name) => ({ name, data: taskData[name as keyof typeof taskData] })), out: join(root, 'eval-reverse-3') });
  assert.deepEqual(cut.metrics, alone.metrics);

  // paired tests: McNemar on the per-document scores of the original and the point
  const docs = (p: string) => readStoredPoint(out, p === 'original' ? { method: 'original', removed: 0 } : { method: 'reverse', removed: 3 })!.documents!;
  for (const t of tasks) {
    const m = t === 'hellaswag' ? 'acc_norm' : 'acc';
    const want = mcnemar([...docs('original')[t][m]].map(Number), [...docs('reverse:3')[t][m]].map(Number));
    assert.deepEqual(cut.paired![t][m], want);
    assert.equal(docs('original')[t][m].length, cut.metrics[t][m].n);
  }

  const csv = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  assert.deepEqual(csv[0], resultColumns(tasks));
  const col = (name: string, row: number) => csv[row][csv[0].indexOf(name)];
  // rows: the original, reverse at 0 (the original again), reverse at 3
  assert.equal(csv.length, 4);
  assert.equal(Number(col('boolq_acc', 3)), cut.metrics.boolq.acc.value);
  assert.equal(Number(col('boolq_acc_stderr', 3)), cut.metrics.boolq.acc.stderr);
  assert.ok(Math.abs(Number(col('boolq_acc_delta', 3)) - (cut.metrics.boolq.acc.value - base.metrics.boolq.acc.value)) < 1e-15);
  assert.equal(Number(col('hellaswag_acc_norm_p', 3)), cut.paired!.hellaswag.acc_norm.p);
  assert.ok(Math.abs(Number(col('average', 3)) - (cut.metrics.hellaswag.acc_norm.value + cut.metrics.boolq.acc.value) / 2) < 1e-15);
  assert.equal(col('hellaswag_acc_p', 1), '', 'the original is not tested against itself');

  const md = readFileSync(join(out, 'summary.md'), 'utf8');
  assert.match(md, /^\| method \| removed \| layers \| ratio \| MB \| size ratio \| hellaswag acc_norm \| boolq acc \| average \|$/m);
  assert.match(md, /\| reverse \| 3 \| 5 \| 37\.5% \| 0\.593 \| 31\.8% \| \d+\.\d\d% ± \d+\.\d\d( ≈)? \|/);
  assert.match(md, /≈ marks a point that an exact McNemar test/);
  for (const f of ['accuracy', 'accuracy-boolq', 'accuracy-average']) assert.ok(existsSync(join(out, `${f}.png`)), `${f}.png`);
  assert.match(readFileSync(join(out, 'accuracy.svg'), 'utf8'), /95% interval/, 'error bars');
  assert.ok(!existsSync(join(out, 'categories.png')), 'no MMLU categories without the mmlu task');
});

test('eval tasks with the paper\'s mmlu: its own evaluator and files in OUT/mmlu/, beside the other tasks in the metrics map', async () => {
  await initBackend('wasm');
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'eval-tasks');
  const r = await runTasksEval({ model: 'models/demo', tasks: [{ name: 'mmlu', data }, { name: 'boolq', data: join(FIX, 'boolq.jsonl') }], limit: 3, subjects: ['demo_facts'], out });
  const alone = await runMmluEval({ model: 'models/demo', data, ntrain: 5, limit: 3, subjects: ['demo_facts'], out: join(root, 'eval-mmlu') });
  assert.deepEqual(Object.keys(r.metrics), ['mmlu', 'boolq']);
  assert.equal(r.metrics.mmlu.acc.value, alone.summary!.overall.accuracy);
  assert.equal(readFileSync(join(out, 'mmlu', 'summary.json'), 'utf8').replace(/"(model|data)": "[^"]*"/g, ''), readFileSync(join(root, 'eval-mmlu', 'summary.json'), 'utf8').replace(/"(model|data)": "[^"]*"/g, ''));
  assert.equal(r.metrics.boolq.acc.n, 3);
});
