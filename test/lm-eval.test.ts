/**
 * eval mmlu's lm-evaluation-harness-style results JSON: lm-eval's stderr formulas on hand-computed
 * cases, and the file a real run writes agrees with the run's own summary.json and the data's sizes.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { accStderr, pooledStderr } from '../src/eval/mmlu/lm-eval.ts';
import { runMmluEval } from '../src/eval/mmlu/run.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { initBackend } from '../src/runtime/backend.ts';

const TMP = mkdtempSync(join(tmpdir(), 'mka-lm-eval-'));
after(() => rmSync(TMP, { recursive: true, force: true }));

test('stderr as lm-eval computes it: sample stddev (n − 1) over √n, pooled over size-weighted subtasks', () => {
  // 3 of 4 correct: values 1,1,1,0, mean .75, sample variance (3·.0625 + .5625)/3 = .25, stderr √.25/√4 = .25
  assert.ok(Math.abs(accStderr(3, 4) - 0.25) < 1e-15);
  assert.ok(Math.abs(accStderr(1, 2) - 0.5) < 1e-15);
  assert.equal(accStderr(1, 1), 0);
  // pooled: ((4−1)·.25²·4 + (2−1)·.5²·2) / (6 − 2) = .3125, over N = 6: √(.3125/6)
  assert.ok(Math.abs(pooledStderr([0.25, 0.5], [4, 2]) - Math.sqrt(0.3125 / 6)) < 1e-15);
});

test('eval mmlu writes lm_eval_results.json beside its own files, in lm-eval\'s layout', async () => {
  await initBackend('wasm');
  const data = join(TMP, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(TMP, 'eval');
  const r = await runMmluEval({ model: 'models/demo', data, ntrain: 5, limit: 3, subjects: ['demo_arithmetic', 'demo_facts'], out });
  const j = JSON.parse(readFileSync(join(out, 'lm_eval_results.json'), 'utf8'));
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as { subjects: { name: string; questions: number; correct: number; accuracy: number }[] };
  assert.equal(j.results.mmlu['acc,none'], r.summary!.overall.accuracy);
  assert.equal(j.results.mmlu.alias, 'mmlu');
  assert.deepEqual(j.group_subtasks.mmlu, ['mmlu_other']);
  assert.deepEqual(j.group_subtasks.mmlu_other, ['mmlu_demo_arithmetic', 'mmlu_demo_facts']);
  assert.equal(summary.subjects.length, 2);
  for (const { name: subject, questions, correct, accuracy } of summary.subjects) {
    const t = j.results[`mmlu_${subject}`];
    assert.equal(t['acc,none'], accuracy);
    assert.equal(t['acc_stderr,none'], accStderr(correct, questions));
    assert.equal(j['n-samples'][`mmlu_${subject}`].effective, 3);
    const lines = readFileSync(join(data, 'test', `${subject}_test.csv`), 'utf8').trim().split('\n').length;
    assert.equal(j['n-samples'][`mmlu_${subject}`].original, lines, 'original: every test question of the subject');
    assert.equal(j['n-shot'][`mmlu_${subject}`], 5);
  }
  assert.equal(j.config.limit, 3);
});
