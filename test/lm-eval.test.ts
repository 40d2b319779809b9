/**
 * eval mmlu's lm-evaluation-harness-style results JSON: lm-eval's stderr formulas on hand-computed
 * cases, and the file a real run writes agrees with the run's own summary.json and the data's sizes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { buildPrompt } from '../src/eval/mmlu/prompt.ts';
import { join } from 'node:path';
import { accStderr, pooledStderr } from '../src/eval/tasks/metrics.ts';
import { runMmluEval } from '../src/eval/mmlu/run.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('lm-eval');

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

test('eval mmlu --log-samples: samples_mmlu_<subject>.jsonl in lm-eval\'s layout; a short context drops shots, and n-shot says so', async () => {
  await initBackend('wasm');
  const data = join(TMP, 'demo-mmlu');
  await ensureBenchmark(data);
  // the demo model with a 100-token context: its 5-shot prompts (about 140 tokens) must drop dev examples
  const model = join(TMP, 'short');
  cpSync('models/demo', model, { recursive: true });
  const config = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'));
  writeFileSync(join(model, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: 100 }));
  const out = join(TMP, 'short-eval');
  const r = await runMmluEval({ model, data, ntrain: 5, limit: 3, subjects: ['demo_facts'], out, logSamples: true });
  const fit = r.summary!.fitting;
  assert.ok(fit.promptsWithDroppedExamples === 3 && fit.droppedExamples > 0, JSON.stringify(fit));
  const j = JSON.parse(readFileSync(join(out, 'lm_eval_results.json'), 'utf8'));
  const kept = Math.min(...r.records.map((q) => q.ntrainKept));
  assert.ok(kept < 5);
  assert.equal(j['n-shot'].mmlu_demo_facts, kept, 'n-shot: what every prompt holds, not the 5 asked for');
  assert.deepEqual(j.config.mka.fitting, fit);
  const lines = readFileSync(join(out, 'samples_mmlu_demo_facts.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 3);
  const mmlu = loadMmlu(data, { subjects: ['demo_facts'] });
  lines.forEach((s, i) => {
    const q = mmlu.test.get('demo_facts')![i];
    assert.equal(s.doc_id, i);
    assert.deepEqual(s.doc, { question: q.question, subject: 'demo_facts', choices: q.choices, answer: 'ABCD'.indexOf(q.answer) });
    assert.equal(s.arguments.gen_args_0.arg_0, buildPrompt(mmlu, q, r.records[i].ntrainKept));
    assert.equal(s.prompt_hash, createHash('sha256').update(s.arguments.gen_args_0.arg_0).digest('hex'));
    assert.equal(s.acc, r.records[i].correct ? 1 : 0);
    assert.deepEqual(s.resps.map((x: string[][]) => Number(x[0][0])), r.records[i].answerLogits);
  });
});
