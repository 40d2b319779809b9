/**
 * The MMLU evaluation on stories260K (converted from llama2.c; 512-token context, so 5-shot prompts
 * lose dev examples and long history questions are cut to their last tokens):
 * - the prefix-cached, batched path gives the naive path's predictions, answer logits and losses, and
 *   both match an independent computation from the full logits of forward() on tokenize(buildPrompt);
 * - results are resumable: an interrupted run (hook, abort signal, SIGINT and SIGKILL of the CLI)
 *   resumed ends with the bytes of an uninterrupted run; a different run is refused;
 * - --dump-prompts writes buildPrompt's text; --dry-run runs no model;
 * - no tensors leak; a reference model equal to the model gives agreement 1 and KL 0.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { convertLlama2c } from '../src/convert/llama2c.ts';
import { loadTokenizer, type Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { loadMmlu, type MmluData } from '../src/eval/mmlu/data.ts';
import { buildPrompt, formatExample } from '../src/eval/mmlu/prompt.ts';
import { evaluateMmlu, EvaluationInterrupted, klDivergence, type QuestionRecord } from '../src/eval/mmlu/evaluate.ts';
import { answerTokenIds } from '../src/eval/mmlu/question-plan.ts';
import { estimateMmluCost } from '../src/eval/mmlu/cost.ts';
import { quantizeModelWeights } from '../src/weights/quantize.ts';
import { UserError } from '../src/runtime/errors.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('mmlu-eval');

const MODEL = join(TMP, 'stories260K');
const DATA = SHARED ? join(SHARED, 'data/mmlu') : '';
/** Short algebra questions (dev examples dropped, prefix groups) and long history ones (cut). */
const SUBJECTS = ['abstract_algebra', 'high_school_european_history'];
const RESUME_SUBJECTS = ['abstract_algebra', 'anatomy', 'astronomy'];

let model: LlamaModel, tokenizer: Tokenizer, data: MmluData;

before(async () => {
  if (!SHARED) return;
  await initBackend('wasm');
  const src = join(SHARED, 'models/stories260K');
  await convertLlama2c({ checkpoint: join(src, 'stories260K.bin'), tokenizer: join(src, 'tok512.bin'), out: MODEL });
  model = loadModel(MODEL);
  tokenizer = await loadTokenizer(MODEL);
  data = loadMmlu(DATA, { subjects: [...new Set([...SUBJECTS, ...RESUME_SUBJECTS])] });
});
after(() => model && disposeModel(model));

/**
 * The paper's numbers for one question computed independently: ids of tokenize(buildPrompt) (last
 * max_position_embeddings of them when too long), logits of every position from forward(), the 4
 * answer logits at the last position and the summed NLL of the last len(tokenize(question part)) tokens.
 */
function reference(r: QuestionRecord): { answerLogits: number[]; nll: number; nllTokens: number } {
  const q = data.test.get(r.subject)![r.index];
  const max = model.config.max_position_embeddings;
  const ids = tokenizer.encode(buildPrompt(data, q, r.ntrainKept)).slice(-max);
  const logits = forward(model, [ids], { logits: 'all' }).logits!;
  const rows = (logits.arraySync() as number[][][])[0];
  logits.dispose();
  const answerIds = answerTokenIds(tokenizer, 'letter', model.config.vocab_size);
  const nllTokens = Math.min(tokenizer.encode(formatExample(q, false)).length, ids.length - 1);
  let nll = 0;
  for (let t = ids.length - nllTokens; t < ids.length; t++) {
    const row = rows[t - 1];
    const m = Math.max(...row);
    nll += m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0)) - row[ids[t]];
  }
  return { answerLogits: answerIds.map((id) => rows[ids.length - 1][id]), nll, nllTokens };
}

const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((v, i) => Math.abs(v - b[i])));

test('prefix-cached batched evaluation equals the naive one and an independent forward()', { skip: NO_SHARED }, async () => {
  const n0 = tf.memory().numTensors;
  // 3 algebra questions (all keep 2 examples: one cached prefix, a padded batch of 2 and a batch of 1) and a history question (cut).
  const run = async (cached: boolean) => {
    const records: QuestionRecord[] = [];
    for (const [subject, limit] of [[SUBJECTS[0], 3], [SUBJECTS[1], 1]] as const) {
      records.push(...(await evaluateMmlu({ model, tokenizer, data, ntrain: 5, limit, subjects: [subject], batchSize: 2, maxPadding: 1, cached })).records);
    }
    return records;
  };
  const fast = { records: await run(true) };
  const naive = { records: await run(false) };
  assert.equal(tf.memory().numTensors, n0, 'evaluateMmlu leaks no tensors');
  assert.equal(fast.records.length, 4);
  // The cases this must cover: cached questions in multi-question groups, dropped examples, cut questions.
  assert.equal(fast.records.filter((r) => r.cached).length, 3, 'questions on a cached prefix');
  assert.ok(fast.records.some((r) => r.cached && r.ntrainKept > 0 && r.ntrainKept < 5), 'a cached prompt with dev examples dropped');
  assert.ok(fast.records.some((r) => r.truncated), 'a question cut to its last tokens');
  assert.ok(naive.records.every((r) => !r.cached));
  for (const [i, r] of fast.records.entries()) {
    const n = naive.records[i];
    assert.equal(r.index, n.index);
    assert.equal(r.prediction, n.prediction, `${r.subject} ${r.index}: prediction`);
    assert.ok(maxDiff(r.answerLogits, n.answerLogits) < 1e-4, `${r.subject} ${r.index}: answer logits ${r.answerLogits} vs ${n.answerLogits}`);
    assert.equal(r.nllTokens, n.nllTokens);
    assert.ok(Math.abs(r.nll / r.nllTokens - n.nll / n.nllTokens) < 1e-4, `${r.subject} ${r.index}: mean loss`);
    const ref = reference(r);
    assert.ok(maxDiff(r.answerLogits, ref.answerLogits) < 1e-4, `${r.subject} ${r.index}: answer logits vs forward()`);
    assert.equal(r.nllTokens, ref.nllTokens);
    assert.ok(Math.abs(r.nll / r.nllTokens - ref.nll / ref.nllTokens) < 1e-4, `${r.subject} ${r.index}: mean loss vs forward()`);
    assert.equal(r.prediction, 'ABCD'[ref.answerLogits.indexOf(Math.max(...ref.answerLogits))]);
    assert.equal(r.correct, r.prediction === data.test.get(r.subject)![r.index].answer);
  }
});

test('a streamed model evaluates every subject in one pass over its layers, with the resident model\'s records', { skip: NO_SHARED }, async () => {
  const n0 = tf.memory().numTensors;
  const streamed = loadModel(MODEL, { streaming: true });
  const reference = loadModel(MODEL, { streaming: true });
  try {
    const common = { tokenizer, data, ntrain: 5, limit: 3, subjects: [...SUBJECTS, ...RESUME_SUBJECTS], batchSize: 2 };
    const resident = await evaluateMmlu({ ...common, model });
    const steps: number[] = [];
    const r = await evaluateMmlu({ ...common, model: streamed, referenceModel: reference, onProgress: (p) => steps.push(p.questions) });
    // 5 subjects in one pass: each layer read once, however many prefixes and batches there are
    assert.equal(streamed.stats.layerLoads, streamed.config.num_hidden_layers);
    assert.equal(reference.stats.layerLoads, reference.config.num_hidden_layers);
    assert.ok(streamed.stats.forwardCalls > 5, 'the pass holds several forward jobs');
    // the same kernels on the same rows: the records are the resident run's, bit for bit
    assert.deepEqual(r.records.map(({ referencePrediction, agreement, kl, ...own }) => own), resident.records);
    assert.ok(r.records.every((x) => x.agreement === true && x.kl === 0));
    assert.ok(r.records.some((x) => x.cached) && r.records.some((x) => x.truncated));
    // progress moves layer by layer and adds up to every question
    assert.ok(steps.filter((n) => n > 0).length >= streamed.config.num_hidden_layers);
    assert.ok(Math.abs(steps.reduce((a, n) => a + n, 0) - r.records.length) < 1e-9);
  } finally {
    disposeModel(streamed);
    disposeModel(reference);
  }
  assert.equal(tf.memory().numTensors, n0);
});

test('scores: per subject, subcategory, category, overall; perplexity as the paper (exp of the mean question loss)', { skip: NO_SHARED }, async () => {
  const r = await evaluateMmlu({ model, tokenizer, data, ntrain: 0, limit: 3, subjects: RESUME_SUBJECTS });
  const s = r.summary!;
  assert.equal(s.overall.questions, 9);
  assert.equal(s.overall.correct, r.records.filter((x) => x.correct).length);
  assert.deepEqual(s.subjects.map((x) => [x.name, x.subcategory, x.category]),
    [['abstract_algebra', 'math', 'STEM'], ['anatomy', 'health', 'other (business, health, misc.)'], ['astronomy', 'physics', 'STEM']]);
  assert.deepEqual(s.categories.map((x) => [x.name, x.questions]), [['STEM', 6], ['other (business, health, misc.)', 3]]);
  assert.deepEqual(s.subcategories.map((x) => x.name), ['physics', 'math', 'health']);
  const loss = (xs: QuestionRecord[]) => xs.reduce((a, x) => a + x.nll / x.nllTokens, 0) / xs.length;
  for (const sub of s.subjects) {
    const xs = r.records.filter((x) => x.subject === sub.name);
    assert.ok(Math.abs(sub.perplexity - Math.exp(loss(xs))) < 1e-9 * sub.perplexity);
    assert.equal(sub.accuracy, xs.filter((x) => x.correct).length / 3);
  }
  assert.ok(Math.abs(s.overall.perplexity - Math.exp(loss(r.records))) < 1e-9 * s.overall.perplexity);
  assert.equal(s.overall.macroAccuracy, s.subjects.reduce((a, x) => a + x.accuracy, 0) / 3);
  assert.equal(s.overall.agreement, null);
  assert.equal(s.fitting.droppedExamples, 0);
});

test('answer tokens: the last token of "A" (default) or of " A"', { skip: NO_SHARED }, () => {
  const letter = answerTokenIds(tokenizer, 'letter', 512);
  assert.deepEqual(letter, ['A', 'B', 'C', 'D'].map((l) => tokenizer.encode(l).at(-1)));
  assert.deepEqual(answerTokenIds(tokenizer, 'space', 512), ['A', 'B', 'C', 'D'].map((l) => tokenizer.encode(` ${l}`).at(-1)));
  assert.throws(() => answerTokenIds(tokenizer, 'letter', 300), UserError);
});

test('a reference model: agreement 1 and KL 0 with itself, KL > 0 with rounded weights', { skip: NO_SHARED }, async () => {
  const n0 = tf.memory().numTensors;
  const same = loadModel(MODEL);
  const rounded = quantizeModelWeights(model, 'uint8');
  try {
    const common = { model, tokenizer, data, ntrain: 5, limit: 3, subjects: ['abstract_algebra'] };
    const r = await evaluateMmlu({ ...common, referenceModel: same });
    assert.ok(r.records.every((x) => x.agreement === true && x.kl === 0));
    assert.equal(r.summary!.overall.agreement, 1);
    assert.equal(r.summary!.overall.kl, 0);
    const q = await evaluateMmlu({ ...common, model: rounded, referenceModel: model });
    assert.ok(q.summary!.overall.kl! > 0);
    const first = q.records[0];
    const own = r.records[0];
    assert.ok(Math.abs(first.kl! - klDivergence(own.answerLogits, first.answerLogits)) < 1e-9);
  } finally {
    disposeModel(same);
    disposeModel(rounded);
  }
  assert.equal(tf.memory().numTensors, n0);
  assert.ok(Math.abs(klDivergence([1, 2, 3, 4], [4, 3, 2, 1]) - 1.9853) < 1e-3, 'KL of two known distributions');
});

test('--dump-prompts writes buildPrompt for the kept examples; --dry-run runs no model', { skip: NO_SHARED }, async () => {
  const dump = join(TMP, 'prompts.jsonl');
  const calls = model.stats.forwardCalls;
  const r = await evaluateMmlu({ model, tokenizer, data, ntrain: 5, limit: 4, subjects: SUBJECTS, dumpPrompts: dump, dryRun: true });
  assert.equal(model.stats.forwardCalls, calls, 'a dry run calls no forward pass');
  assert.equal(r.records.length, 0);
  assert.equal(r.stats.questions, 8);
  assert.ok(r.stats.cachedTokens < r.stats.naiveTokens);
  const lines = readFileSync(dump, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 8);
  for (const l of lines) {
    const q = data.test.get(l.subject)![l.index];
    assert.equal(l.prompt, buildPrompt(data, q, l.ntrain));
    assert.equal(l.answer, q.answer);
    if (l.truncated) assert.equal(l.ntrain, 0);
    else assert.ok(tokenizer.encode(l.prompt).length <= model.config.max_position_embeddings);
    if (!l.truncated && l.ntrain < 5) {
      assert.ok(tokenizer.encode(buildPrompt(data, q, l.ntrain + 1)).length > model.config.max_position_embeddings, 'the next longer prompt did not fit');
    }
  }
  assert.ok(lines.some((l) => l.truncated) && lines.some((l) => !l.truncated && l.ntrain < 5));
});

test('the --dry-run estimate of a streamed model reads its first layer only, once, and counts the passes', { skip: NO_SHARED }, async () => {
  const n0 = tf.memory().numTensors;
  const streamed = loadModel(MODEL, { streaming: true });
  try {
    const r = await evaluateMmlu({ model: streamed, tokenizer, data, ntrain: 5, limit: 4, subjects: SUBJECTS, dryRun: true });
    const e = estimateMmluCost(streamed, r.stats, 16);
    assert.equal(streamed.stats.layerLoads, 1, 'one layer read for the whole estimate');
    assert.deepEqual(e.streamedPasses, { naive: 1, cached: 1 });
    assert.ok(e.cachedSeconds > 0 && e.naiveSeconds > 0 && e.layerReadSeconds >= 0);
    const resident = estimateMmluCost(model, r.stats, 16);
    assert.deepEqual(resident.streamedPasses, { naive: 0, cached: 0 });
  } finally {
    disposeModel(streamed);
  }
  assert.equal(tf.memory().numTensors, n0);
});

const files = (dir: string) => ({ csv: readFileSync(join(dir, 'mmlu.csv'), 'utf8'), summary: readFileSync(join(dir, 'summary.json'), 'utf8') });

test('interrupted and resumed runs end with the bytes of an uninterrupted one; another run is refused', { skip: NO_SHARED }, async () => {
  const common = { model, tokenizer, data, ntrain: 5, limit: 2, subjects: RESUME_SUBJECTS, keyExtra: { quantize: 'none', bos: true } }; // as the CLI's defaults
  const whole = join(TMP, 'whole');
  await evaluateMmlu({ ...common, out: whole });
  const expected = files(whole);
  assert.match(expected.csv, /^subject,subcategory,category,questions,correct,accuracy,perplexity,agreement\n/);
  assert.equal(expected.csv.trimEnd().split('\n').length, 4);

  // A hook that fails after the first subject, then an abort signal after the second.
  const out = join(TMP, 'resumed');
  await assert.rejects(evaluateMmlu({ ...common, out, onSubjectDone: () => { throw new Error('crash'); } }), /crash/);
  assert.deepEqual(readdirSync(join(out, 'subjects')), ['abstract_algebra.json']);
  assert.ok(!existsSync(join(out, 'mmlu.csv')));
  const ac = new AbortController();
  await assert.rejects(evaluateMmlu({ ...common, out, signal: ac.signal, onSubjectDone: () => ac.abort() }), EvaluationInterrupted);
  assert.equal(readdirSync(join(out, 'subjects')).length, 2);
  const calls = model.stats.forwardCalls;
  const r = await evaluateMmlu({ ...common, out });
  assert.deepEqual(r.resumedSubjects, ['abstract_algebra', 'anatomy']);
  assert.ok(model.stats.forwardCalls > calls);
  assert.deepEqual(files(out), expected);

  // Everything done: a rerun computes nothing.
  const again = await evaluateMmlu({ ...common, out });
  assert.equal(again.computedQuestions, 0);
  assert.deepEqual(files(out), expected);

  // A different run in the same directory is refused, unless --fresh.
  await assert.rejects(evaluateMmlu({ ...common, out, ntrain: 4 }), (e: Error) => e instanceof UserError && /ntrain differ.*--fresh/.test(e.message));
  const fresh = await evaluateMmlu({ ...common, subjects: ['anatomy'], out, ntrain: 4, fresh: true });
  assert.equal(fresh.resumedSubjects.length, 0);
  assert.deepEqual(readdirSync(join(out, 'subjects')), ['anatomy.json']);
});

test('a streamed pass stops between the jobs of a layer, not at its end; finished subjects stay saved and the rerun completes', { skip: NO_SHARED }, async () => {
  const streamed = loadModel(MODEL, { streaming: true });
  try {
    const common = { model: streamed, tokenizer, data, ntrain: 5, limit: 2, keyExtra: { quantize: 'none', bos: true } };
    const out = join(TMP, 'streamed-stop');
    await evaluateMmlu({ ...common, subjects: ['abstract_algebra'], out });
    const saved = readFileSync(join(out, 'subjects', 'abstract_algebra.json'), 'utf8');
    // the second run puts its two new subjects in one pass over the layers; stop at its first step inside layer 0
    const ac = new AbortController();
    const loads = streamed.stats.layerLoads;
    await assert.rejects(evaluateMmlu({
      ...common, subjects: RESUME_SUBJECTS, out, signal: ac.signal,
      onProgress: (p) => { if (p.questions === 0 && p.subjectsDone === 1) ac.abort(); },
    }), EvaluationInterrupted);
    assert.equal(streamed.stats.layerLoads - loads, 1, 'stopped inside the first layer it read');
    assert.deepEqual(readdirSync(join(out, 'subjects')).sort(), ['abstract_algebra.json']);
    assert.equal(readFileSync(join(out, 'subjects', 'abstract_algebra.json'), 'utf8'), saved);
    const r = await evaluateMmlu({ ...common, subjects: RESUME_SUBJECTS, out });
    assert.deepEqual(r.resumedSubjects, ['abstract_algebra']);
    assert.equal(readdirSync(join(out, 'subjects')).length, 3);
  } finally {
    disposeModel(streamed);
  }
});

/** Runs the CLI; `onLine` sees stderr as it comes and may return a signal to send. */
function runCli(args: string[], until?: () => NodeJS.Signals | null): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['bin/mka.mjs', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', stdout = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = until ? setInterval(() => {
      const sig = until();
      if (sig) {
        clearInterval(timer!);
        p.kill(sig);
      }
    }, 20) : null;
    p.on('close', (code, signal) => {
      if (timer) clearInterval(timer);
      resolve({ code, signal, stderr, stdout });
    });
  });
}

test('CLI: Ctrl-C and a kill mid-run, then the same command finishes with the same files', { skip: NO_SHARED }, async () => {
  const whole = join(TMP, 'whole');
  if (!existsSync(join(whole, 'mmlu.csv'))) return assert.fail('needs the uninterrupted run of the previous test');
  const out = join(TMP, 'cli');
  const args = ['eval', 'mmlu', '--backend', 'wasm', '--model', MODEL, '--data', DATA, '--subjects', RESUME_SUBJECTS.join(','), '--limit', '2', '--out', out];
  const done = () => (existsSync(join(out, 'subjects')) ? readdirSync(join(out, 'subjects')).filter((f) => f.endsWith('.json')).length : 0);

  const first = await runCli(args, () => (done() >= 1 ? 'SIGINT' : null));
  assert.equal(first.code, 130, first.stderr);
  assert.match(first.stderr, /interrupted; \d of 3 subjects are saved in .*: run the same command again to resume/);
  const afterInt = done();
  assert.ok(afterInt >= 1 && afterInt < 3, `${afterInt} subjects saved`);

  const second = await runCli(args, () => (done() > afterInt ? 'SIGKILL' : null));
  assert.equal(second.signal, 'SIGKILL', second.stderr);
  assert.ok(!existsSync(join(out, 'mmlu.csv')));

  const last = await runCliInProcess(args); // no signal for this one: it may run in the test's process
  assert.equal(last.status, 0, last.stderr);
  assert.match(last.stderr, /subjects loaded from an earlier run/);
  // each accuracy carries lm-eval's standard error: sqrt(p(1-p)/(n-1)) over the questions
  const overall = /overall \(mean over questions\)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)\s/.exec(last.stdout);
  assert.ok(overall, last.stdout);
  const [n, p] = [Number(overall[1]), Number(overall[2]) / 100];
  assert.ok(Math.abs(Number(overall[3]) - 100 * Math.sqrt((p * (1 - p)) / (n - 1))) <= 0.051, `stderr ${overall[3]} for ${n} questions at ${p}`);
  assert.deepEqual(files(out), files(whole));
});
