/**
 * The bundled demo: benchmark generator (data/demo-mmlu, generated on first use), training text,
 * tokenizer, the committed models/demo, the wasm training kernels and the training step. No shared data needed.
 * `mka demo` itself (what `npm start` runs) is checked on the README's `npm start` (test/readme.test.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { Tokenizer } from '@huggingface/tokenizers';
import { initBackend } from '../src/runtime/backend.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { answerTokenIds } from '../src/eval/mmlu/question-plan.ts';
import { disposeModel, loadModel, modelFromTensors } from '../src/model/model.ts';
import {
  DEMO_BENCHMARK_SEED, DEMO_SUBJECTS, benchmarkFiles, ensureBenchmark, generateBenchmark, heldOutKeys, questionKey, trainingDocuments,
} from '../src/eval/mmlu/demo-benchmark.ts';
import { SPACE, allowedToken, bpeFromTokenizerJson, pieceEncoder, tokenizerConfigJson, tokenizerJson, trainBpe } from '../scripts/demo-training/bpe.ts';
import { dropLayers } from '../scripts/demo-training/score.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { layerDropText } from '../scripts/demo-training/model-card.ts';
import { demoConfig, documentBatcher, initialWeights, learningRateAt, trainModel, type Batch, type TrainSettings } from '../scripts/demo-training/train.ts';
import { installWasmTrainingKernels } from '../scripts/demo-training/wasm-kernels.ts';
import { scratchDir } from './scratch.ts';

const MODEL_DIR = 'models/demo';

await initBackend('wasm');
/** This file's own copy of the demo benchmark (data/demo-mmlu is generated, not committed). */
const DATA_DIR = join(scratchDir('demo-data'), 'demo-mmlu');
await ensureBenchmark(DATA_DIR);

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
/** sha256 of every file of the benchmark of DEMO_BENCHMARK_SEED (path, newline, CSV text, in order). */
const BENCHMARK_SHA256 = '5f5a79a3efc6770f440d63bb26b55490ee9fa92ec9a4a65368a683789dc9ebaf';
const allCsv = (files: Map<string, string>) => [...files].map(([k, v]) => `${k}\n${v}`).join('');

test('benchmark: deterministic for a seed, different for another, 5 dev and 250 test rows per subject', () => {
  const a = allCsv(benchmarkFiles(generateBenchmark(DEMO_BENCHMARK_SEED)));
  const b = allCsv(benchmarkFiles(generateBenchmark(DEMO_BENCHMARK_SEED)));
  assert.equal(sha256(a), sha256(b));
  assert.equal(sha256(a), BENCHMARK_SHA256, 'the generator changed: retrain models/demo (npm run train-demo) and update this hash');
  assert.notEqual(sha256(allCsv(benchmarkFiles(generateBenchmark(DEMO_BENCHMARK_SEED + 1)))), sha256(a));
  const bench = generateBenchmark(DEMO_BENCHMARK_SEED);
  assert.deepEqual(bench.subjects, [...DEMO_SUBJECTS]);
  for (const s of DEMO_SUBJECTS) {
    assert.equal(bench.dev.get(s)!.length, 5);
    assert.equal(bench.test.get(s)!.length, 250);
    const keys = new Set([...bench.dev.get(s)!, ...bench.test.get(s)!].map(questionKey));
    assert.equal(keys.size, 255, `${s}: dev and test questions are all distinct`);
  }
});

test('benchmark: answers are right (checked by recomputing each subject)', () => {
  const bench = generateBenchmark(DEMO_BENCHMARK_SEED);
  const capital = new Map(bench.world.countries.map((c) => [c.name, c]));
  for (const [s, qs] of bench.test) {
    for (const q of qs) {
      const given = q.choices['ABCD'.indexOf(q.answer)];
      let m: RegExpExecArray | null;
      let want: string;
      if ((m = /^What is (\d+) ([+-]) (\d+)\?$/.exec(q.question))) want = String(m[2] === '+' ? +m[1] + +m[3] : +m[1] - +m[3]);
      else if ((m = /^Which number is the (largest|smallest)\?$/.exec(q.question))) {
        const v = q.choices.map(Number);
        want = String(m[1] === 'largest' ? Math.max(...v) : Math.min(...v));
      } else if ((m = /^Which letter comes (after|before) ([a-z])\?$/.exec(q.question))) {
        want = String.fromCharCode(m[2].charCodeAt(0) + (m[1] === 'after' ? 1 : -1));
      } else if ((m = /^What comes next: (\d+), (\d+), (\d+), (\d+)\?$/.exec(q.question))) want = String(2 * +m[4] - +m[3]);
      else if ((m = /^What is the capital of (\w+)\?$/.exec(q.question))) want = capital.get(m[1])!.capital;
      else if ((m = /^What is the national animal of (\w+)\?$/.exec(q.question))) want = capital.get(m[1])!.animal;
      else if ((m = /^What color is the flag of (\w+)\?$/.exec(q.question))) want = capital.get(m[1])!.color;
      else throw new Error(`${s}: unexpected question ${q.question}`);
      assert.equal(given, want, `${s}: ${q.question}`);
      assert.equal(new Set(q.choices).size, 4, `${s}: four distinct choices`);
    }
  }
});

test('ensureBenchmark writes the benchmark when missing, edited or extended, leaves an exact copy alone; it loads as MMLU', async () => {
  const bench = generateBenchmark(DEMO_BENCHMARK_SEED);
  for (const [rel, text] of benchmarkFiles(bench)) assert.equal(readFileSync(join(DATA_DIR, rel), 'utf8'), text, rel);
  const data = loadMmlu(DATA_DIR);
  assert.deepEqual(data.subjects, [...DEMO_SUBJECTS]);
  for (const s of DEMO_SUBJECTS) {
    const strip = (q: { question: string; choices: string[]; answer: string }) => [q.question, ...q.choices, q.answer];
    assert.deepEqual(data.test.get(s)!.map(strip), bench.test.get(s)!.map(strip), s);
    assert.deepEqual(data.dev.get(s)!.map(strip), bench.dev.get(s)!.map(strip), s);
  }

  const dir = join(scratchDir('ensure'), 'demo-mmlu');
  try {
    await ensureBenchmark(dir);
    const facts = join(dir, 'test', 'demo_facts_test.csv');
    const inode = statSync(facts).ino;
    await ensureBenchmark(dir);
    assert.equal(statSync(facts).ino, inode, 'an exact copy is left alone');
    writeFileSync(facts, 'edited');
    await ensureBenchmark(dir);
    assert.equal(readFileSync(facts, 'utf8'), benchmarkFiles(bench).get(join('test', 'demo_facts_test.csv')));
    writeFileSync(join(dir, 'test', 'extra_test.csv'), 'q,a,b,c,d,A\n');
    await ensureBenchmark(dir);
    assert.ok(!existsSync(join(dir, 'test', 'extra_test.csv')), 'an extra subject is removed');
  } finally {
    rmSync(dirname(dir), { recursive: true, force: true });
  }
});

test('training text never contains a dev or test question verbatim (and would without the exclusion)', () => {
  const bench = generateBenchmark(DEMO_BENCHMARK_SEED);
  const held = heldOutKeys(bench);
  const found = (docs: string[]) => [...held].filter((k) => docs.some((d) => d.includes(`\n\n${k}`)));
  const clean = Array.from({ length: 400 }, trainingDocuments(bench.world, 1, held));
  assert.deepEqual(found(clean), []);
  const unfiltered = Array.from({ length: 400 }, trainingDocuments(bench.world, 1, new Set()));
  assert.ok(found(unfiltered).length > 0, 'the check finds test questions in unfiltered text');
});

test('tokenizer: merge rules, deterministic training, piece encoder equals tokenizers.js', () => {
  for (const t of [`${SPACE}A`, '\nA.', `${SPACE}Answer:`, '\nAnswer:', `${SPACE}42`, `${SPACE}+`, 'land']) assert.ok(allowedToken(t), t);
  for (const t of [`${SPACE}A\n`, `${SPACE}7?`, 'mor.', `${SPACE}a${SPACE}b`, `${SPACE}123`, 'x\ny']) assert.ok(!allowedToken(t), JSON.stringify(t));
  const bench = generateBenchmark(DEMO_BENCHMARK_SEED);
  const corpus = Array.from({ length: 150 }, trainingDocuments(bench.world, 7, heldOutKeys(bench)));
  const a = trainBpe(corpus, 400), b = trainBpe(corpus, 400);
  assert.deepEqual(a, b);
  assert.equal(a.vocab.length, 400);
  const tok = new Tokenizer(tokenizerJson(a), tokenizerConfigJson(1024));
  const fast = pieceEncoder(a);
  for (const doc of corpus.slice(0, 20)) {
    const ids = tok.encode(doc, { add_special_tokens: false }).ids;
    assert.deepEqual(fast(doc), ids);
    assert.equal(tok.decode(ids), doc);
  }
});

test('committed tokenizer: "A" alone ends in the token that follows "Answer:", for A–D; text round-trips', async () => {
  const json = JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer.json'), 'utf8'));
  const tok = new Tokenizer(json, JSON.parse(readFileSync(join(MODEL_DIR, 'tokenizer_config.json'), 'utf8')));
  const encode = (t: string) => tok.encode(t).ids;
  const letters = answerTokenIds(await loadTokenizer(MODEL_DIR), 'letter', Object.keys(json.model.vocab).length); // what evaluateMmlu scores
  assert.equal(new Set(letters).size, 4);
  for (const [i, l] of ['A', 'B', 'C', 'D'].entries()) {
    assert.equal(tok.id_to_token(letters[i]), `${SPACE}${l}`);
    const ids = encode(`What is 2 + 2?\nA. 4\nB. 5\nC. 3\nD. 6\nAnswer: ${l}\n\n`);
    const at = ids.length - 3; // the letter, then "\n", "\n"
    assert.equal(ids[at], letters[i]);
    assert.equal(tok.id_to_token(ids[at - 1]), '\nAnswer:');
  }
  assert.equal(encode('A')[0], 1, 'BOS first');
  const fast = pieceEncoder(bpeFromTokenizerJson(json));
  for (const text of benchmarkFiles(generateBenchmark(DEMO_BENCHMARK_SEED)).values()) {
    const ids = tok.encode(text, { add_special_tokens: false }).ids;
    assert.ok(!ids.includes(0), 'no <unk>');
    assert.equal(tok.decode(ids), text);
    assert.deepEqual(fast(text), ids);
  }
});

test('train-demo.ts: the same seed writes the same weights, tokenizer and scores; another seed does not (tiny model)', () => {
  const tmp = scratchDir('train');
  try {
    const run = (name: string, seed: number, backend: string[] = ['--backend', 'wasm']) => {
      const out = join(tmp, name);
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/train-demo.ts', ...backend, '--seed', String(seed),
        '--steps', '8', '--bare-steps', '2', '--single-steps', '2', '--layers', '2', '--hidden', '16', '--heads', '2', '--kv-heads', '1',
        '--intermediate', '24', '--single-batch', '4', '--batch', '2', '--seq-len', '48', '--eval-limit', '4', '--out', out, '--data', join(tmp, 'data')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      // training needs gradients: the default backend never resolves to `native` (fused kernels, none)
      assert.doesNotMatch(r.stderr, /^backend: native/m);
      const log = JSON.parse(readFileSync(join(out, 'training-log.json'), 'utf8'));
      return {
        weights: sha256(readFileSync(join(out, 'model.safetensors')).toString('base64')),
        tokenizer: readFileSync(join(out, 'tokenizer.json'), 'utf8'),
        losses: log.lossCurve, accuracy: log.accuracy,
      };
    };
    const a = run('a', 1), b = run('b', 1), c = run('c', 2, []);
    assert.deepEqual(b, a);
    assert.notEqual(c.weights, a.weights);
    assert.equal(readFileSync(join(tmp, 'data', 'test', 'demo_facts_test.csv'), 'utf8'), readFileSync(join(DATA_DIR, 'test', 'demo_facts_test.csv'), 'utf8'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('dropLayers renumbers the kept layers and shares their tensors', () => {
  const config = demoConfig({ vocabSize: 16, layers: 3, hidden: 8, heads: 2, kvHeads: 1, intermediate: 12, maxPositions: 32 });
  const vars = initialWeights(config, 3);
  const model = modelFromTensors(config, vars);
  const d = dropLayers(model, [1]);
  assert.equal(d.config.num_hidden_layers, 2);
  assert.equal(d.tensors.get('model.layers.1.mlp.up_proj.weight'), model.tensors.get('model.layers.2.mlp.up_proj.weight'));
  assert.equal(d.tensors.get('model.layers.0.mlp.up_proj.weight'), model.tensors.get('model.layers.0.mlp.up_proj.weight'));
  assert.throws(() => dropLayers(model, [0, 1, 2]));
  disposeModel(model);
});

test('wasm training kernels: BatchMatMul with transposes/batches and the gather gradient match references', () => {
  const before = tf.memory().numTensors;
  const ref = (a: number[][], b: number[][]) => a.map((r) => b[0].map((_, j) => r.reduce((s, x, k) => s + x * b[k][j], 0)));
  const T = (m: number[][]) => m[0].map((_, j) => m.map((r) => r[j]));
  const rand = (r: number, c: number, s: number) => Array.from({ length: r }, (_, i) => Array.from({ length: c }, (_, j) => Math.sin(s + 7 * i + 3 * j)));
  const a = rand(5, 3, 1), b = rand(3, 4, 2);
  const a2 = rand(5, 3, 3), b2 = rand(3, 4, 4);
  const expected = [ref(a, b), ref(a2, b2)];
  installWasmTrainingKernels();
  tf.tidy(() => {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      const A = tf.tensor3d([ta ? T(a) : a, ta ? T(a2) : a2]), B = tf.tensor3d([tb ? T(b) : b, tb ? T(b2) : b2]);
      const got = tf.matMul(A, B, ta, tb).arraySync() as number[][][];
      for (let k = 0; k < 2; k++) assert.ok(Math.max(...got[k].flat().map((x, i) => Math.abs(x - expected[k].flat()[i]))) < 1e-5, `batched ${ta} ${tb}`);
      const got2 = tf.matMul(tf.tensor2d(ta ? T(a) : a), tf.tensor2d(tb ? T(b) : b), ta, tb).arraySync() as number[][];
      assert.ok(Math.max(...got2.flat().map((x, i) => Math.abs(x - expected[0].flat()[i]))) < 1e-5, `2-D ${ta} ${tb}`);
    }
    const w = tf.tensor2d(rand(6, 3, 5));
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.gather(x, tf.tensor2d([[1, 4, 1], [5, 1, 0]], [2, 3], 'int32')), tf.tensor1d([1, 2, 3]))))(w);
    assert.deepEqual(g.arraySync(), [[1, 2, 3], [3, 6, 9], [0, 0, 0], [0, 0, 0], [1, 2, 3], [1, 2, 3]]);
  });
  assert.equal(tf.memory().numTensors, before);
});

test('training: a few steps lower the loss on a fixed batch, deterministically, without leaking tensors', async () => {
  installWasmTrainingKernels();
  const config = demoConfig({ vocabSize: 32, layers: 2, hidden: 16, heads: 2, kvHeads: 1, intermediate: 24, maxPositions: 64 });
  const row = Array.from({ length: 17 }, (_, i) => (i * 5) % 32);
  const batch: Batch = { inputs: [row.slice(0, -1)], targets: [row.slice(1)], weights: [row.slice(1).map(() => 1)], answers: [row.slice(1).map(() => 0)] };
  const s: TrainSettings = { steps: 8, lr: 1e-2, warmup: 2, minLrRatio: 0.1, clipNorm: 1, layerDrop: 0.25, seed: 1 };
  const run = async () => {
    const vars = initialWeights(config, 1);
    const losses: number[] = [];
    await trainModel(config, vars, () => batch, s, (r) => { losses.push(r.loss); });
    for (const v of vars.values()) v.dispose();
    return losses;
  };
  const before = tf.memory().numTensors;
  const a = await run();
  assert.equal(tf.memory().numTensors, before);
  const b = await run();
  assert.deepEqual(a, b);
  assert.ok(a[a.length - 1] < a[0] - 0.5, `loss ${a[0]} -> ${a[a.length - 1]}`);
  assert.ok(Math.abs(learningRateAt(0, s) - 5e-3) < 1e-12 && Math.abs(learningRateAt(7, s) - 1e-3) < 1e-9);
});

test('LayerDrop off (the second demo model\'s regime): every step trains every layer; on: some steps skip layers', async () => {
  installWasmTrainingKernels();
  const config = demoConfig({ vocabSize: 32, layers: 4, hidden: 8, heads: 2, kvHeads: 1, intermediate: 12, maxPositions: 32 });
  const row = Array.from({ length: 9 }, (_, i) => (i * 3) % 32);
  const batch: Batch = { inputs: [row.slice(0, -1)], targets: [row.slice(1)], weights: [row.slice(1).map(() => 1)], answers: [row.slice(1).map(() => 0)] };
  const used = async (layerDrop: number) => {
    const vars = initialWeights(config, 2);
    const layers: number[] = [];
    await trainModel(config, vars, () => batch, { steps: 12, lr: 1e-3, warmup: 1, minLrRatio: 0.1, clipNorm: 1, layerDrop, layerDropStart: 2, seed: 5 },
      (r) => { layers.push(r.layersUsed); });
    for (const v of vars.values()) v.dispose();
    return layers;
  };
  assert.deepEqual(await used(0), new Array(12).fill(4));
  const on = await used(0.5);
  assert.deepEqual(on.slice(0, 2), [4, 4], 'no LayerDrop before layerDropStart');
  assert.ok(on.slice(2).some((n) => n < 4), `layers used ${on}`);
  assert.match(layerDropText(0), /without LayerDrop/);
  assert.match(layerDropText(0.1), /with LayerDrop 0\.1 /);
});

test('documentBatcher weighs exactly the letters after "Answer:"', () => {
  const bench = generateBenchmark(DEMO_BENCHMARK_SEED);
  const docs = trainingDocuments(bench.world, 1, heldOutKeys(bench), { factFraction: 0 });
  const bpe = trainBpe(Array.from({ length: 100 }, docs), 450);
  const enc = pieceEncoder(bpe);
  const letters = ['A', 'B', 'C', 'D'].map((l) => enc(l).at(-1)!);
  const next = documentBatcher(docs, enc, { batch: 2, seqLen: 120, bosId: 1, answerIds: letters, answerPrefixIds: [enc('x\nAnswer:').at(-1)!], answerWeight: 4 });
  const b = next();
  for (let r = 0; r < 2; r++) {
    const text = b.inputs[r].slice(1).map((id) => bpe.vocab[id]).join('');
    const answers = (text.match(/\nAnswer:/g) ?? []).length;
    const weighted = b.weights[r].filter((w) => w === 4).length;
    assert.ok(weighted === answers && answers >= 3, `row ${r}: ${weighted} weighted, ${answers} "Answer:"`);
    b.weights[r].forEach((w, i) => { if (w === 4) assert.ok(letters.includes(b.targets[r][i])); });
  }
});
