/**
 * The task layer against lm-evaluation-harness 0.4.13 itself (test/goldens/lm-eval/, made by
 * test/goldens/lm-eval/make.py with lm-eval's own HF model): on the tiny Llama 3 of llama3-tiny.ts and
 * the committed documents of test/fixtures/tasks/, `mka eval tasks` gives every choice's loglikelihood
 * within 1e-3 of lm-eval's, the same is_greedy, acc and acc_norm for every document, the same doc, prompt
 * and target hashes (so the same prompts and targets), the same metrics and stderrs; raw requests
 * (trailing whitespace, empty contexts, BOS in the text, left truncation) score as lm-eval's HFLM scores
 * them; JSONL and hub copies of the data read the same; an interrupted run resumes to the same files.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../src/runtime/tf.ts';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCliInProcess, runCliUntil, assertUserError } from './cli-run.ts';
import { startFakeHub } from './hub-server.ts';
import { writeLlama3Tiny } from './llama3-tiny.ts';
import { SHARED } from './helpers.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadModel, disposeModel, type LlamaModel } from '../src/model/model.ts';
import { loadTokenizer, type Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { planRequests, requestEncoder } from '../src/eval/scoring/loglikelihood.ts';
import { MAX_PADDING, scorePlans } from '../src/eval/scoring/rows.ts';
import { evaluateTasks, TasksInterrupted } from '../src/eval/tasks/evaluate.ts';
import { loadTask } from '../src/eval/tasks/load.ts';
import { getTask, parseTasks } from '../src/eval/tasks/registry.ts';
import { runTasksEval } from '../src/eval/tasks/run.ts';
import { resolveTaskData } from '../src/hub/dataset.ts';
import { pyFloatStr, pyJson, PyFloat } from '../src/runtime/python.ts';
import { mcnemar, meanStderr } from '../src/eval/tasks/metrics.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('lm-eval-tasks');
const MODEL = join(TMP, 'tiny');
const FIX = join(process.cwd(), 'test', 'fixtures');
const LM_EVAL = join(process.cwd(), 'test', 'goldens', 'lm-eval');
const TASKS = ['hellaswag', 'arc_easy', 'arc_challenge', 'piqa', 'winogrande', 'boolq'];
const TOL = 1e-3;

interface GoldenSample { doc_id: number; target: unknown; arguments: [string | number, string][]; resps: [number, boolean][]; acc: number; acc_norm?: number; doc_hash: string; prompt_hash: string; target_hash: string }
interface GoldenTask { results: Record<string, unknown>; 'n-shot': number; version: number; 'n-samples': { original: number; effective: number }; samples: GoldenSample[]; task_hash: string }
const GOLDEN = JSON.parse(readFileSync(join(LM_EVAL, 'tasks.json'), 'utf8')) as { tasks: Record<string, GoldenTask> };

let model: LlamaModel;
/** The tiny Llama 3's tokenizer (Llama 3's own: a second to load), loaded once for every run of this file that takes one. */
let tokenizer: Tokenizer;

before(async () => {
  await writeLlama3Tiny(MODEL);
  await initBackend('auto', { log: () => {} }); // native kernels where built, as the CLI runs
  model = loadModel(MODEL);
  tokenizer = await loadTokenizer(MODEL);
});
after(() => {
  disposeModel(model);
  rmSync(TMP, { recursive: true, force: true });
});

/** Compares a samples_<task>.jsonl and its lm_eval_results.json entry with lm-eval's golden. */
function checkTask(name: string, dir: string, golden: GoldenTask, resultName = name, nShot = golden['n-shot']): void {
  const lines = readFileSync(join(dir, `samples_${resultName}.jsonl`), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, golden.samples.length, `${name}: documents`);
  let worst = 0;
  golden.samples.forEach((g, i) => {
    const s = lines[i];
    const what = `${name} document ${g.doc_id}`;
    assert.equal(s.doc_id, g.doc_id, what);
    const lls = (s.resps as [[string, string]][]).map((r) => Number(r[0][0]));
    assert.equal(lls.length, g.resps.length, what);
    g.resps.forEach(([ll, greedy], c) => {
      worst = Math.max(worst, Math.abs(lls[c] - ll));
      assert.ok(Math.abs(lls[c] - ll) < TOL, `${what} choice ${c}: loglikelihood ${lls[c]}, lm-eval ${ll}`);
      assert.equal(s.resps[c][0][1], greedy ? 'True' : 'False', `${what} choice ${c}: is_greedy`);
    });
    assert.equal(s.acc, g.acc, `${what}: acc`);
    if (g.acc_norm !== undefined) assert.equal(s.acc_norm, g.acc_norm, `${what}: acc_norm`);
    for (const h of ['doc_hash', 'prompt_hash', 'target_hash'] as const) assert.equal(s[h], g[h], `${what}: ${h}`);
    if (typeof g.arguments[0][0] === 'string') {
      assert.deepEqual(Object.values(s.arguments).map((a) => [(a as { arg_0: string }).arg_0, (a as { arg_1: string }).arg_1]), g.arguments, `${what}: requests`);
    }
  });
  assert.ok(worst < TOL);
  const r = JSON.parse(readFileSync(join(dir, 'lm_eval_results.json'), 'utf8'));
  assert.equal(r.task_hashes[resultName], golden.task_hash, `${name}: task hash`);
  for (const [k, v] of Object.entries(golden.results)) {
    if (k === 'name') continue;
    if (typeof v === 'number') assert.ok(Math.abs(r.results[resultName][k] - v) < 1e-12, `${name} ${k}: ${r.results[resultName][k]} vs lm-eval ${v}`);
    else assert.equal(r.results[resultName][k], v, `${name} ${k}`);
  }
  assert.equal(r['n-shot'][resultName], nShot);
  assert.deepEqual(r['n-samples'][resultName], golden['n-samples']);
}

test('mka eval tasks on the parquet files: per-choice loglikelihoods, is_greedy, acc, acc_norm, hashes and metrics as lm-eval 0.4.13', async () => {
  const out = join(TMP, 'all');
  const data = TASKS.map((t) => `${t}=${join(FIX, 'tasks', `${t}.parquet`)}`).join(',');
  const r = await runCliInProcess(['eval', 'tasks', '--model', MODEL, '--tasks', TASKS.join(','), '--data', data, '--log-samples', '--out', out, '--json']);
  assert.equal(r.status, 0, r.stderr);
  for (const t of TASKS) checkTask(t, out, GOLDEN.tasks[t]);
  const j = JSON.parse(readFileSync(join(out, 'lm_eval_results.json'), 'utf8'));
  for (const key of ['results', 'groups', 'group_subtasks', 'configs', 'versions', 'n-shot', 'higher_is_better', 'n-samples', 'config', 'date', 'pretty_env_info',
    'tokenizer_pad_token', 'tokenizer_eos_token', 'tokenizer_bos_token', 'eot_token_id', 'max_length', 'task_hashes', 'model_source', 'model_name',
    'start_time', 'end_time', 'total_evaluation_time_seconds']) assert.ok(key in j, `lm_eval_results.json has ${key}`);
  assert.deepEqual(j.tokenizer_bos_token, ['<|begin_of_text|>', '128000']);
  assert.equal(j.max_length, 2048);
  for (const t of TASKS) assert.equal(j.versions[t], GOLDEN.tasks[t].version);
  // stdout: the metrics map
  const metrics = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(metrics), TASKS);
  assert.equal(metrics.hellaswag.acc_norm.n, 6);
});

test('eval hellaswag: a JSON Lines copy and a directory in the hub layout read the same documents', async () => {
  const a = join(TMP, 'hs-jsonl');
  await runTasksEval({ model: MODEL, tokenizer, tasks: [{ name: 'hellaswag', data: join(FIX, 'tasks', 'hellaswag.jsonl') }], out: a, logSamples: true });
  checkTask('hellaswag', a, GOLDEN.tasks.hellaswag);
  // a directory as the hub lays the dataset out, with a train split beside it that 0-shot does not read
  const dir = join(TMP, 'hs-dir');
  mkdirSync(join(dir, 'data'), { recursive: true });
  copyFileSync(join(FIX, 'tasks', 'hellaswag.parquet'), join(dir, 'data', 'validation-00000-of-00001.parquet'));
  copyFileSync(join(FIX, 'tasks', 'arc_easy.parquet'), join(dir, 'data', 'train-00000-of-00001.parquet'));
  const input = await loadTask(getTask('hellaswag'), dir);
  assert.equal(input.subtasks[0].docs.length, 6);
  assert.equal(input.subtasks[0].docs[3].query, 'Home and Garden: How to make a café-style latte at home. Heat the milk. Pour about 1 cup of milk into a small saucepan.');
});

test('--num-fewshot draws shots as lm-eval\'s seeded sampler does (one more and the document itself dropped when the task has no test split)', async () => {
  const golden = JSON.parse(readFileSync(join(LM_EVAL, 'fewshot.json'), 'utf8')) as Record<string, GoldenTask & { shots: number; train: string }>;
  for (const [task, g] of Object.entries(golden)) {
    const t = getTask(task);
    const dir = join(TMP, `fewshot-${task}`);
    const folder = join(dir, t.dataset.name ?? 'data');
    mkdirSync(folder, { recursive: true });
    copyFileSync(join(FIX, 'tasks', `${task}.parquet`), join(folder, `${t.dataset.split}-00000-of-00001.parquet`));
    copyFileSync(join(FIX, 'tasks', `${g.train}.parquet`), join(folder, 'train-00000-of-00001.parquet'));
    const out = join(TMP, `fewshot-${task}-out`);
    await runTasksEval({ model: MODEL, tokenizer, tasks: [{ name: task, data: dir }], shots: g.shots, out, logSamples: true });
    checkTask(task, out, g);
  }
});

test('raw loglikelihood requests score as lm-eval\'s HFLM: trailing whitespace, empty contexts, BOS in the text, is_greedy, left truncation', async () => {
  const golden = JSON.parse(readFileSync(join(LM_EVAL, 'scorer.json'), 'utf8')) as Record<string, { max_length: number; requests: { context: string; continuation: string; loglikelihood: number; is_greedy: boolean }[] }> & { max_length: number; requests: { context: string; continuation: string; loglikelihood: number; is_greedy: boolean }[] };
  const enc = requestEncoder(tokenizer);
  const before = tf.memory().numTensors;
  for (const [maxLength, reqs] of [[golden.max_length, golden.requests], [golden.truncated.max_length, golden.truncated.requests]] as const) {
    for (const cached of [true, false]) {
      const { plan, requests } = planRequests(enc, reqs, maxLength, cached);
      const [scores] = await scorePlans(model, [plan], { size: cached ? 4 : 0, maxPadding: MAX_PADDING }, async () => {});
      reqs.forEach((g, i) => {
        const s = scores[requests[i].row].spans[requests[i].span];
        assert.ok(Math.abs(s.logProb - g.loglikelihood) < TOL, `${JSON.stringify(g.context)} + ${JSON.stringify(g.continuation)}: ${s.logProb} vs ${g.loglikelihood}`);
        assert.equal(s.greedy, g.is_greedy, `${JSON.stringify(g.continuation)}: is_greedy`);
      });
      if (maxLength === 16) assert.ok(requests.every((r) => r.truncated > 0), 'both long requests are cut from the left');
    }
  }
  assert.ok(golden.requests.some((r) => r.is_greedy), 'the golden holds greedy continuations');
  assert.equal(tf.memory().numTensors, before);
});

test('a streamed model scores several tasks in one pass over its layers, as the resident model does', async () => {
  const inputs = [await loadTask(getTask('hellaswag'), join(FIX, 'tasks', 'hellaswag.parquet')), await loadTask(getTask('boolq'), join(FIX, 'tasks', 'boolq.jsonl'))];
  const resident = await evaluateTasks({ model, tokenizer, tasks: inputs });
  const streamed = loadModel(MODEL, { streaming: true });
  try {
    const r = await evaluateTasks({ model: streamed, tokenizer, tasks: inputs });
    assert.equal(streamed.stats.layerLoads, streamed.config.num_hidden_layers, 'each layer read once for both tasks');
    r.results.forEach((t, i) => t.subtasks[0].records.forEach((rec, d) => {
      const want = resident.results[i].subtasks[0].records[d];
      assert.ok(rec.lls.every((ll, c) => Math.abs(ll - want.lls[c]) < 1e-4), `${t.task.name} document ${d}`);
      assert.equal(rec.acc, want.acc);
    }));
  } finally {
    disposeModel(streamed);
  }
});

test('an interrupted evaluation resumes from its saved shards to the same results; the run key refuses another run', async () => {
  const task = getTask('arc_easy');
  const input = await loadTask(task, join(FIX, 'tasks', 'arc_easy.parquet'));
  const out = join(TMP, 'resume');
  const ac = new AbortController();
  let docs = 0;
  await assert.rejects(evaluateTasks({
    model, tokenizer, tasks: [input], out, shardDocs: 2, batchSize: 2, signal: ac.signal,
    onProgress: (p) => { if ((docs += p.docs) > 2.5) ac.abort(); }, // in the second shard
  }), TasksInterrupted);
  const resumed = await evaluateTasks({ model, tokenizer, tasks: [input], out, shardDocs: 2, batchSize: 2 });
  assert.equal(resumed.resumedShards, 1);
  const whole = await evaluateTasks({ model, tokenizer, tasks: [input], shardDocs: 2, batchSize: 2 });
  assert.deepEqual(resumed.results[0].subtasks[0].records, whole.results[0].subtasks[0].records);
  // an edited shard is refused by its schema, naming the file, the field and the fix
  const shard = join(out, 'arc_easy', 'shards', readdirSync(join(out, 'arc_easy', 'shards')).sort()[0]);
  const stored = JSON.parse(readFileSync(shard, 'utf8'));
  writeFileSync(shard, JSON.stringify({ ...stored, records: [{ ...stored.records[0], lls: 'none' }, ...stored.records.slice(1)] }));
  await assert.rejects(evaluateTasks({ model, tokenizer, tasks: [input], out, shardDocs: 2, batchSize: 2 }),
    (e: Error) => e.message === `${shard}: not a valid task results shard (records[0].lls must be an array, not "none"); delete the file to recompute the shard, or add --fresh to recompute every shard`);
  await assert.rejects(evaluateTasks({ model, tokenizer, tasks: [{ ...input, limit: 3 }], out, shardDocs: 2 }), /holds arc_easy results of a different run/);
});

test('mka eval tasks after Ctrl-C: exit 130 naming what is saved, and the same command resumes to lm-eval\'s results', async () => {
  const out = join(TMP, 'cli-interrupt');
  const tasks = ['hellaswag', 'winogrande', 'boolq'];
  const data = tasks.map((t) => `${t}=${join(FIX, 'tasks', `${t}.parquet`)}`).join(',');
  const args = ['eval', 'tasks', '--model', MODEL, '--tasks', tasks.join(','), '--data', data, '--log-samples', '--out', out, '--naive'];
  const saved = () => tasks.reduce((n, t) => n + (existsSync(join(out, t, 'shards')) ? readdirSync(join(out, t, 'shards')).filter((f) => f.endsWith('.json')).length : 0), 0);
  const first = await runCliUntil(args, () => saved() >= 1);
  assert.equal(first.status, 130, first.stderr);
  assert.match(first.stderr, /interrupted; \d+ of \d+ documents are saved in .*: run the same command again to resume/);
  const kept = saved();
  assert.ok(kept >= 1 && kept < tasks.length, `${kept} shards saved`);
  assert.ok(!existsSync(join(out, 'lm_eval_results.json')));
  const last = await runCliInProcess(args);
  assert.equal(last.status, 0, last.stderr);
  assert.match(last.stderr, new RegExp(`\\(${kept} shards? loaded from an earlier run\\)`));
  for (const t of tasks) checkTask(t, out, GOLDEN.tasks[t]);
});

test('a target outside its choices is said once with counts and recorded, and scored as wrong as lm-eval scores it', async () => {
  const lines = readFileSync(join(FIX, 'tasks', 'boolq.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  lines[1].label = 7;
  const file = join(TMP, 'boolq-bad-label.jsonl');
  writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  const logs: string[] = [];
  const out = join(TMP, 'bad-label');
  const r = await runTasksEval({ model: MODEL, tokenizer, tasks: [{ name: 'boolq', data: file }], out, log: (m) => logs.push(m) });
  assert.deepEqual(logs.filter((l) => l.includes('none of their choices')), [
    `boolq: 1 of ${lines.length} documents have a target that is none of their choices (scored as wrong, as lm-eval scores them; recorded in summary.json)`,
  ]);
  const recs = r.results[0].subtasks[0].records;
  assert.equal(recs[1].gold, -100);
  assert.equal(recs[1].acc, 0);
  assert.equal(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).tasks.boolq.targetsOutOfRange, 1);
});

test('--data from the hub look-alike: the task\'s configuration folder and split are fetched into the hub cache, then read offline', async () => {
  const hub = await startFakeHub([{
    type: 'dataset', name: 'allenai/ai2_arc', sha: 'a'.repeat(40), lfs: () => true,
    files: {
      'README.md': Buffer.from('# ai2_arc\n'),
      'ARC-Easy/test-00000-of-00001.parquet': readFileSync(join(FIX, 'tasks', 'arc_easy.parquet')),
      'ARC-Easy/train-00000-of-00001.parquet': readFileSync(join(FIX, 'tasks', 'piqa.parquet')),
      'ARC-Challenge/test-00000-of-00001.parquet': readFileSync(join(FIX, 'tasks', 'arc_challenge.parquet')),
    },
  }]);
  try {
    const task = getTask('arc_challenge');
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(TMP, 'hub'), HF_TOKEN: '' };
    // arc_challenge's own dataset (the default of --data): allenai/ai2_arc, configuration ARC-Challenge
    const dir = await resolveTaskData(task.dataset.path, task, 0, { env, quiet: true });
    assert.ok(!hub.requests.some((q) => q.path.includes('ARC-Easy')), 'only the ARC-Challenge files are fetched');
    const out = join(TMP, 'arc-hub');
    await runTasksEval({ model: MODEL, tokenizer, tasks: [{ name: 'arc_challenge', data: dir }], out, logSamples: true });
    checkTask('arc_challenge', out, GOLDEN.tasks.arc_challenge);
    const offline = await resolveTaskData('allenai/ai2_arc', task, 0, { env: { ...env, HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_OFFLINE: '1' }, quiet: true });
    assert.equal(offline, dir);
    await assert.rejects(resolveTaskData('allenai/ai2_arc', getTask('arc_easy'), 0, { env: { ...env, HF_HUB_CACHE: join(TMP, 'empty'), HF_HUB_OFFLINE: '1' }, quiet: true }), /not in the hub cache .* HF_HUB_OFFLINE is set/);
  } finally {
    await hub.close();
  }
});

test('bad data and options: one line naming the file or option, before any model is loaded', async () => {
  assertUserError(await runCliInProcess(['eval', 'piqa', '--model', MODEL, '--data', join(FIX, 'tasks', 'boolq.parquet'), '--out', join(TMP, 'bad1')]), 'boolq.parquet', '"goal"');
  assert.throws(() => parseTasks('piqa,hellaswog'), /unknown task "hellaswog"; tasks: mmlu, hellaswag/);
  await assert.rejects(loadTask(getTask('piqa'), join(FIX, 'tasks', 'piqa.parquet'), { shots: 2 }), /piqa\.parquet: --num-fewshot 2 draws examples from the train split, which a single file does not hold/);
  await assert.rejects(loadTask(getTask('piqa'), join(FIX, 'tasks', 'piqa.jsonl'), { limit: 0 }), /--limit 0/);
  await assert.rejects(loadTask(getTask('boolq'), join(FIX, 'tasks')), /cannot tell which files hold the validation split/);
});

test('Python-compatible output: floats as str() prints them, json.dumps layout, lm-eval\'s stderr, McNemar', () => {
  assert.equal(pyFloatStr(-12), '-12.0');
  assert.equal(pyFloatStr(-482.4149475097656), '-482.4149475097656');
  assert.equal(pyFloatStr(1.5e-5), '1.5e-05');
  assert.equal(pyFloatStr(2e16), '2e+16');
  assert.equal(pyJson({ a: [1, 'é'], b: new PyFloat(0), c: {} }, 2), '{\n  "a": [\n    1,\n    "é"\n  ],\n  "b": 0.0,\n  "c": {}\n}');
  assert.equal(pyJson({ a: [1, 2], b: 'x' }), '{"a": [1, 2], "b": "x"}');
  assert.equal(meanStderr([1, 1, 1, 0]), 0.25);
  assert.equal(meanStderr([1]), null);
  const same = mcnemar([1, 0, 1, 1], [1, 0, 1, 1]);
  assert.equal(same.p, 1);
  assert.ok(same.withinNoise);
  // 10 documents only the base gets right, none the other way: p = 2 · 0.5^10
  const drop = mcnemar(new Array(20).fill(1), [...new Array(10).fill(0), ...new Array(10).fill(1)]);
  assert.ok(Math.abs(drop.p - 2 / 1024) < 1e-12);
  assert.equal(drop.withinNoise, false);
  assert.equal(drop.difference, -0.5);
});

test('mmlu_lmeval on real MMLU subjects, 5-shot: lm-eval\'s loglikelihoods, prompts (by hash) and left truncation', { skip: SHARED ? false : 'MKA_SHARED is not set' }, async () => {
  const golden = JSON.parse(readFileSync(join(LM_EVAL, 'mmlu.json'), 'utf8')) as { subjects: string[]; limit: number; tasks: Record<string, GoldenTask> };
  const out = join(TMP, 'mmlu');
  const r = await runCliInProcess(['eval', 'mmlu_lmeval', '--model', MODEL, '--data', join(SHARED!, 'data', 'mmlu'), '--subjects', golden.subjects.join(','),
    '--limit', String(golden.limit), '--log-samples', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  // lm-eval claims 5 shots where the prompts were cut; mka says how many every prompt holds in full
  for (const s of golden.subjects) checkTask(s, out, golden.tasks[s], `mmlu_${s}`, s === 'high_school_european_history' ? 3 : 5);
  // high_school_european_history's 5-shot prompts exceed the model's 2048 tokens: said on the console, recorded, n-shot lowered
  assert.match(r.stderr, /mmlu_lmeval: 6 of 18 prompts were longer than the model's 2048 tokens/);
  const j = JSON.parse(readFileSync(join(out, 'lm_eval_results.json'), 'utf8'));
  assert.ok(j['n-shot'].mmlu_high_school_european_history < 5);
  assert.equal(j['n-shot'].mmlu_abstract_algebra, 5);
  assert.equal(j.mka.truncation.mmlu_high_school_european_history.prompts_truncated, 6);
  assert.deepEqual(j.group_subtasks.mmlu, ['mmlu_humanities', 'mmlu_stem']);
});
