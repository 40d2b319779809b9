/**
 * MMLU scoring with or without BOS (`eval mmlu --bos/--no-bos`, `--protocol released`), on the demo
 * model and benchmark:
 * - without BOS every prompt's ids are the with-BOS ids minus the leading BOS, and the answer logits
 *   equal an independent forward() of tokenizer.encode(buildPrompt, { addBos: false });
 * - both score; summary.json, lm_eval_results.json and run-key.json record which; a resume never
 *   mixes the two, and a results directory written before the option existed still resumes;
 * - the CLI: --no-bos, --protocol released and --protocol released --bos;
 * - a sweep's points follow its --protocol.
 * `--protocol released` scores as transformers' tokenizer with add_bos_token=False does: without BOS for
 * a Llama-2-style tokenizer (LlamaTokenizerFast: the demo model with that class, L2), with it for the
 * demo's own PreTrainedTokenizerFast, which ignores the flag (test/released-protocol.test.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { loadTokenizer, type Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { loadMmlu, type MmluData } from '../src/eval/mmlu/data.ts';
import { buildPrompt } from '../src/eval/mmlu/prompt.ts';
import { evaluateMmlu } from '../src/eval/mmlu/evaluate.ts';
import { answerTokenIds, planSubject, scoringTokenizer } from '../src/eval/mmlu/question-plan.ts';
import { defaultMmluOut, runMmluEval } from '../src/eval/mmlu/run.ts';
import { UserError } from '../src/runtime/errors.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { openSweep } from '../src/sweep/context.ts';
import { runPoint } from '../src/sweep/point.ts';
import { evalDir, pointFile } from '../src/sweep/points.ts';
import { runAllInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('mmlu-bos');

const MODEL = 'models/demo';
/** The demo model with a Llama-2-style tokenizer_config (LlamaTokenizerFast, which obeys add_bos_token). */
const L2 = join(TMP, 'demo-llama2-tokenizer');
const DATA = join(TMP, 'demo-mmlu');
const SUBJECT = 'demo_facts';
let model: LlamaModel, tokenizer: Tokenizer, data: MmluData;

before(async () => {
  await initBackend('wasm');
  await ensureBenchmark(DATA);
  cpSync(MODEL, L2, { recursive: true });
  writeFileSync(join(L2, 'tokenizer_config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(MODEL, 'tokenizer_config.json'), 'utf8')), tokenizer_class: 'LlamaTokenizerFast' }));
  model = loadModel(MODEL);
  tokenizer = await loadTokenizer(MODEL);
  data = loadMmlu(DATA, { subjects: [SUBJECT] });
});
after(() => model && disposeModel(model));

test('without BOS the prompts lose exactly their leading BOS, and the scores are an independent forward() of those ids', async () => {
  assert.equal(tokenizer.bos, 1);
  const opts = { ntrain: 5, limit: 3, maxTokens: model.config.max_position_embeddings };
  const withBos = planSubject(tokenizer, data, SUBJECT, opts);
  const without = planSubject(scoringTokenizer(tokenizer, false), data, SUBJECT, opts);
  for (let i = 0; i < 3; i++) {
    const a = withBos.questions[i].ids, b = without.questions[i].ids;
    assert.equal(a[0], tokenizer.bos);
    assert.notEqual(b[0], tokenizer.bos);
    assert.deepEqual(a.slice(1), b);
    assert.equal(without.questions[i].prompt, withBos.questions[i].prompt, 'the same text');
  }
  assert.equal(scoringTokenizer(tokenizer, true), tokenizer);
  assert.deepEqual(answerTokenIds(scoringTokenizer(tokenizer, false), 'letter', 512), answerTokenIds(tokenizer, 'letter', 512));

  const n0 = tf.memory().numTensors;
  const run = (bos: boolean) => evaluateMmlu({ model, tokenizer: scoringTokenizer(tokenizer, bos), data, ntrain: 5, limit: 3, keyExtra: { bos } });
  const [on, off] = [await run(true), await run(false)];
  assert.equal(tf.memory().numTensors, n0);
  assert.equal(on.summary!.bos, true);
  assert.equal(off.summary!.bos, false);
  const answerIds = answerTokenIds(tokenizer, 'letter', model.config.vocab_size);
  for (const [i, r] of off.records.entries()) {
    const q = data.test.get(SUBJECT)![r.index];
    const ids = tokenizer.encode(buildPrompt(data, q, r.ntrainKept), { addBos: false });
    const logits = forward(model, [ids], { logits: 'all' }).logits!;
    const last = (logits.arraySync() as number[][][])[0][ids.length - 1];
    logits.dispose();
    const expected = answerIds.map((id) => last[id]);
    assert.ok(Math.max(...expected.map((v, k) => Math.abs(v - r.answerLogits[k]))) < 1e-4, `question ${r.index}`);
    assert.ok(Math.max(...on.records[i].answerLogits.map((v, k) => Math.abs(v - r.answerLogits[k]))) > 1e-3, 'BOS changes the logits');
  }
});

test('results record BOS; a resume never mixes the two; a directory from before the option resumes', async () => {
  const out = join(TMP, 'eval');
  const common = { model: MODEL, data: DATA, ntrain: 5, limit: 2, subjects: [SUBJECT], out };
  const off = await runMmluEval({ ...common, bos: false });
  assert.equal(off.summary!.bos, false);
  const lm = JSON.parse(readFileSync(join(out, 'lm_eval_results.json'), 'utf8'));
  assert.equal(lm.config.mka.bos, false);
  assert.match(lm.config.model_args, /,add_bos_token=False$/);
  assert.equal(JSON.parse(readFileSync(join(out, 'run-key.json'), 'utf8')).bos, false);
  assert.equal(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).bos, false);
  await assert.rejects(runMmluEval({ ...common, bos: true }), (e: Error) => e instanceof UserError && /bos differ.*--fresh/.test(e.message));

  const on = await runMmluEval({ ...common, bos: true, fresh: true });
  assert.equal(on.summary!.bos, true);
  assert.match(JSON.parse(readFileSync(join(out, 'lm_eval_results.json'), 'utf8')).config.model_args, /,add_bos_token=True$/);

  // A run key written before `bos` existed (no such field) means BOS: it resumes a BOS run, not a BOS-less one.
  const keyFile = join(out, 'run-key.json');
  const key = JSON.parse(readFileSync(keyFile, 'utf8'));
  delete key.bos;
  const legacy = JSON.stringify(key, null, 2) + '\n';
  writeFileSync(keyFile, legacy);
  const subjectFile = join(out, 'subjects', `${SUBJECT}.json`);
  const stored = JSON.parse(readFileSync(subjectFile, 'utf8'));
  const { createHash } = await import('node:crypto');
  writeFileSync(subjectFile, JSON.stringify({ ...stored, runKey: createHash('sha256').update(legacy).digest('hex').slice(0, 16) }) + '\n');
  const resumed = await runMmluEval({ ...common, bos: true });
  assert.deepEqual(resumed.resumedSubjects, [SUBJECT]);
  assert.equal(resumed.summary!.overall.accuracy, on.summary!.overall.accuracy);
  assert.equal(readFileSync(keyFile, 'utf8'), legacy, 'the old key file is kept');
  await assert.rejects(runMmluEval({ ...common, bos: false }), /bos differ/);

  assert.equal(defaultMmluOut('m', 'none', false), join('results', 'mmlu', 'm-nobos'));
  assert.equal(defaultMmluOut('m', 'uint8', true), join('results', 'mmlu', 'm-uint8'));
});

test('CLI: --no-bos scores without BOS, --protocol released as add_bos_token=False gives the tokenizer, --protocol released --bos with it', async () => {
  const base = (model: string) => ['eval', 'mmlu', '--model', model, '--data', DATA, '--subjects', SUBJECT, '--limit', '1', '--backend', 'wasm', '--quiet', '--json'];
  const cases: [string[], boolean][] = [
    [[...base(MODEL), '--no-bos'], false], [[...base(L2), '--protocol', 'released'], false], [[...base(MODEL), '--protocol', 'released'], true],
    [[...base(L2), '--protocol', 'released', '--bos'], true],
  ];
  const outs = cases.map((_, i) => join(TMP, `cli-${i}`));
  const results = await runAllInProcess(cases.map(([args], i) => [...args, '--out', outs[i]]));
  for (const [i, r] of results.entries()) {
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).bos, cases[i][1], r.args.join(' '));
    assert.equal(JSON.parse(readFileSync(join(outs[i], 'run-key.json'), 'utf8')).bos, cases[i][1]);
  }
});

test('a sweep with --protocol released scores its points without BOS for a Llama-2-style tokenizer (and records it); the default with BOS', async () => {
  for (const protocol of ['released', 'mka'] as const) {
    const out = join(TMP, `sweep-${protocol}`);
    const ctx = await openSweep({ model: L2, data: DATA, methods: ['reverse'], remove: [1], ntrain: 5, limit: 1, evalSubjects: [SUBJECT], out, protocol, quiet: true });
    try {
      await runPoint(ctx, { method: 'original', removed: 0 });
    } finally {
      ctx.dispose();
    }
    const want = protocol === 'mka';
    const point = JSON.parse(readFileSync(pointFile(out, { method: 'original', removed: 0 }), 'utf8'));
    assert.equal(point.summary.bos, want, protocol);
    assert.equal(JSON.parse(readFileSync(join(evalDir(out, { method: 'original', removed: 0 }), 'run-key.json'), 'utf8')).bos, want);
  }
});
