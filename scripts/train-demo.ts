/**
 * Trains mka's bundled demo model from scratch, offline (about 43 minutes on an idle 2-core machine
 * with mka's own native matrix products and no BLAS; models/demo/README.md has the time of the committed run):
 *
 *   node --import tsx scripts/train-demo.ts [--seed 1] [--steps N] [--out models/demo] [--data data/demo-mmlu]
 *
 * LayerDrop (probability 0.1 in the last stage) is on by default, as in models/demo; `--no-layer-drop`
 * (or `--layer-drop 0`) trains the same model without it, the regime where merging is expected to
 * compete with dropping (models/demo-nolayerdrop, when trained: `--no-layer-drop --out models/demo-nolayerdrop`).
 *
 * 1. writes the demo benchmark (src/eval/mmlu/demo-benchmark.ts) to --data (Hendrycks CSV layout);
 * 2. learns a small BPE tokenizer on generated training text (scripts/demo-training/bpe.ts);
 * 3. trains a small Llama with Adam on generated training text that never contains a dev or test question,
 *    in three stages: lone "bare" matching questions (a number, then four numbers to find it among:
 *    this is where the model learns to bind an answer letter to a choice, which a model this small
 *    otherwise takes very long to discover), lone questions of every subject, then few-shot blocks in the
 *    evaluation's prompt format with fact sheets;
 * 4. writes a Hugging Face model directory (config.json, model.safetensors, tokenizer.json,
 *    tokenizer_config.json), scores the written weights 5-shot on the test set, with all layers and with
 *    layers removed, and adds README.md (the model card) and training-log.json.
 *
 * Everything is seeded: the same seed and options on the same backend give the same weights.
 */
import { tf } from '../src/runtime/tf.ts';
import { parseArgs } from 'node:util';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { initBackend, type BackendChoice } from '../src/runtime/backend.ts';
import { atomicWriteDir } from '../src/io/atomic.ts';
import { writeSafetensors, type DType } from '../src/io/safetensors.ts';
import { configToJson, expectedTensors, type LlamaConfig } from '../src/model/config.ts';
import { disposeModel, loadModel, parameterCount } from '../src/model/model.ts';
import { progress } from '../src/runtime/progress.ts';
import {
  DEMO_BENCHMARK_SEED, DEMO_SUBJECTS, deriveSeed, heldOutKeys, trainingDocuments, writeBenchmark,
} from '../src/eval/mmlu/demo-benchmark.ts';
import { pieceEncoder, tokenizerConfigJson, tokenizerJson, trainBpe } from './demo-training/bpe.ts';
import { dropLayers, scoreModel, type DemoScores } from './demo-training/score.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { answerTokenIds } from '../src/eval/mmlu/question-plan.ts';
import { loadTokenizer, tokenizerFromJson } from '../src/tokenizer/tokenizer.ts';
import { demoConfig, documentBatcher, initialWeights, trainModel, type TrainSettings } from './demo-training/train.ts';
import { installWasmTrainingKernels } from './demo-training/wasm-kernels.ts';
import { modelCard, type TrainingLog } from './demo-training/model-card.ts';

const { values: a } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    steps: { type: 'string', default: '9000' },
    'bare-steps': { type: 'string', default: '700' },
    'single-steps': { type: 'string', default: '700' },
    'single-batch': { type: 'string', default: '32' },
    batch: { type: 'string', default: '8' },
    'seq-len': { type: 'string', default: '160' },
    lr: { type: 'string', default: '0.001' },
    warmup: { type: 'string', default: '50' },
    'init-std': { type: 'string', default: '0.06' },
    'answer-weight': { type: 'string', default: '10' },
    'layer-drop': { type: 'string', default: '0.1' },
    'no-layer-drop': { type: 'boolean', default: false },
    vocab: { type: 'string', default: '512' },
    layers: { type: 'string', default: '8' },
    hidden: { type: 'string', default: '64' },
    heads: { type: 'string', default: '4' },
    'kv-heads': { type: 'string', default: '2' },
    intermediate: { type: 'string', default: '176' },
    dtype: { type: 'string', default: 'F32' },
    'eval-limit': { type: 'string' },
    backend: { type: 'string', default: 'auto' },
    out: { type: 'string', default: 'models/demo' },
    data: { type: 'string', default: 'data/demo-mmlu' },
  },
});
const int = (k: keyof typeof a) => Number.parseInt(String(a[k]), 10);
const seed = int('seed');
const dtype = String(a.dtype) as DType;
if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new Error(`--dtype ${dtype}: use F32, F16 or BF16`);
const bareSteps = int('bare-steps'), singleSteps = int('single-steps');
const layerDrop = a['no-layer-drop'] ? 0 : Number(a['layer-drop']);
if (!(layerDrop >= 0 && layerDrop < 1)) throw new Error(`--layer-drop ${a['layer-drop']}: use a probability in [0, 1)`);
const settings: TrainSettings = {
  steps: int('steps'), lr: Number(a.lr), warmup: int('warmup'), decayStart: bareSteps + singleSteps, minLrRatio: 0.1,
  clipNorm: 1, layerDrop, layerDropStart: bareSteps + singleSteps, seed,
};
if (bareSteps + singleSteps >= settings.steps) throw new Error('--steps must exceed --bare-steps + --single-steps');
const batchSize = int('batch'), seqLen = int('seq-len'), answerWeight = Number(a['answer-weight']);
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const started = Date.now();

// Training needs every op's gradient: `auto` skips the native backend (fused kernels, no gradients).
const backend = await initBackend(String(a.backend) as BackendChoice, { log, gradients: true });
installWasmTrainingKernels({ matMul: !backend.nativeMatMul });

// 1. The benchmark (the world is fixed by the benchmark seed; questions never change with --seed).
const bench = await writeBenchmark(String(a.data), DEMO_BENCHMARK_SEED);
const heldOut = heldOutKeys(bench);
log(`benchmark: ${bench.subjects.length} subjects, ${[...bench.test.values()].reduce((n, q) => n + q.length, 0)} test questions -> ${a.data}`);

// 2. The tokenizer, learned on training text (a stream of its own).
const tokCorpus = trainingDocuments(bench.world, deriveSeed(seed, 'tokenizer'), heldOut);
const bpe = trainBpe(Array.from({ length: 2000 }, tokCorpus), int('vocab'));
const tokJson = tokenizerJson(bpe);
const maxPositions = 1024;
const tokConfig = tokenizerConfigJson(maxPositions);
const tokenizer = new Tokenizer(tokJson, tokConfig);
const encode = (text: string) => tokenizer.encode(text).ids;
const fastEncode = pieceEncoder(bpe);
const sample = trainingDocuments(bench.world, deriveSeed(seed, 'tokenizer-check'), heldOut);
for (let i = 0; i < 50; i++) {
  const doc = sample();
  const want = tokenizer.encode(doc, { add_special_tokens: false }).ids;
  if (fastEncode(doc).join() !== want.join()) throw new Error('tokenizer: the piece encoder disagrees with tokenizer.json');
  if (tokenizer.decode(want) !== doc) throw new Error('tokenizer: decode(encode(text)) != text');
}
const letterIds = answerTokenIds(tokenizerFromJson(tokJson, tokConfig), 'letter', bpe.vocab.length); // what evaluateMmlu scores
const prefixIds = [encode('x\nAnswer:').at(-1)!];
log(`tokenizer: ${bpe.vocab.length} tokens; answer tokens ${letterIds.map((id) => JSON.stringify(tokenizer.id_to_token(id))).join(' ')}`);

// 3. Training.
const config: LlamaConfig = demoConfig({
  vocabSize: bpe.vocab.length, layers: int('layers'), hidden: int('hidden'), heads: int('heads'),
  kvHeads: int('kv-heads'), intermediate: int('intermediate'), maxPositions,
});
config.torch_dtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[dtype];
log(`model: ${config.num_hidden_layers} layers, hidden ${config.hidden_size}, ${config.num_attention_heads} heads / ${config.num_key_value_heads} kv, `
  + `intermediate ${config.intermediate_size}, vocab ${config.vocab_size}: ${(parameterCount(config) / 1e6).toFixed(2)}M parameters`);
const vars = initialWeights(config, seed, Number(a['init-std']));
const batcher = (docs: () => string, batch: number, len: number) => documentBatcher(docs, fastEncode, {
  batch, seqLen: len, bosId: 1, answerIds: letterIds, answerPrefixIds: prefixIds, answerWeight,
});
const lone = { factFraction: 0, examples: 1, header: false };
const stages = [
  batcher(trainingDocuments(bench.world, deriveSeed(seed, 'bare'), heldOut, { ...lone, matchingFraction: 1, bareMatching: 1 }), int('single-batch'), 64),
  batcher(trainingDocuments(bench.world, deriveSeed(seed, 'single'), heldOut, { ...lone, matchingFraction: 0.5, bareMatching: 0.5 }), int('single-batch'), 64),
  batcher(trainingDocuments(bench.world, seed, heldOut, { factFraction: 0.1, matchingFraction: 0.1, bareMatching: 0.3 }), batchSize, seqLen),
];
const nextBatch = (step: number) => stages[step < bareSteps ? 0 : step < bareSteps + singleSteps ? 1 : 2]();
const curve: TrainingLog['lossCurve'] = [];
const bar = progress('training', settings.steps, { unit: 'steps', logEvery: 30 });
let window: { loss: number; answer: number }[] = [];
let tokensSeen = 0;
const trainStart = Date.now();
const cpuStart = process.cpuUsage();
const countingBatch = (step: number) => {
  const b = nextBatch(step);
  tokensSeen += b.weights.flat().filter((w) => w > 0).length;
  return b;
};
await trainModel(config, vars, countingBatch, settings, (r) => {
  window.push({ loss: r.loss, answer: r.answerLoss });
  if ((r.step + 1) % 10 === 0 || r.step + 1 === settings.steps) {
    const mean = (f: (x: { loss: number; answer: number }) => number) => window.reduce((s, x) => s + f(x), 0) / window.length;
    curve.push({ step: r.step + 1, loss: +mean((x) => x.loss).toFixed(4), answerLoss: +mean((x) => x.answer).toFixed(4), lr: +r.lr.toExponential(3) });
    window = [];
  }
  const last = curve.at(-1);
  bar.tick(1, last ? `loss ${last.loss.toFixed(3)} answer ${last.answerLoss.toFixed(3)} (${(tokensSeen / ((Date.now() - trainStart) / 1000)).toFixed(0)} tokens/s)` : '');
});
bar.done();
const trainSeconds = (Date.now() - trainStart) / 1000;
const trainCpuSeconds = process.cpuUsage(cpuStart).user / 1e6;

// 4. Write the model, then score what was written.
const out = String(a.out);
await atomicWriteDir(out, async (dir) => {
  const names = [...expectedTensors(config)];
  await writeSafetensors(join(dir, 'model.safetensors'), names.map(([name, shape]) => ({ name, shape, dtype })),
    async (name) => (await vars.get(name)!.data()) as Float32Array);
  writeFileSync(join(dir, 'config.json'), `${JSON.stringify(configToJson(config), null, 2)}\n`);
  writeFileSync(join(dir, 'tokenizer.json'), `${JSON.stringify(tokJson)}\n`);
  writeFileSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(tokConfig, null, 2)}\n`);
  for (const v of vars.values()) v.dispose();

  const model = loadModel(dir);
  const scorer = await loadTokenizer(dir), data = loadMmlu(String(a.data));
  const evalOpts = { ntrain: 5, limit: a['eval-limit'] ? int('eval-limit') : undefined };
  const score = (drop: number[]): Promise<DemoScores> => scoreModel(drop.length ? dropLayers(model, drop) : model, scorer, data, evalOpts);
  const evalStart = Date.now();
  const full = await score([]);
  log(`5-shot accuracy ${(100 * full.accuracy).toFixed(1)}%: ${DEMO_SUBJECTS.map((s) => `${s} ${(100 * full.subjects[s].accuracy).toFixed(1)}%`).join(', ')}`);
  const L = config.num_hidden_layers;
  const dropLast: Record<string, number> = {};
  for (const k of [1, 2, 4].filter((k) => k < L)) {
    dropLast[String(k)] = (await score(Array.from({ length: k }, (_, i) => L - k + i))).accuracy;
    log(`without the last ${k} layer(s): ${(100 * dropLast[String(k)]).toFixed(1)}%`);
  }
  const dropOne: number[] = [];
  for (let i = 0; i < L; i++) dropOne.push((await score([i])).accuracy);
  log(`without one layer: ${dropOne.map((x, i) => `${i}: ${(100 * x).toFixed(1)}%`).join(', ')}`);
  const evalSeconds = (Date.now() - evalStart) / 1000;
  disposeModel(model);

  const trainingLog: TrainingLog = {
    command: `node --import tsx scripts/train-demo.ts ${process.argv.slice(2).join(' ')}`.trim(),
    seed, benchmarkSeed: DEMO_BENCHMARK_SEED, backend: backend.description,
    settings: {
      ...settings, bareSteps, singleSteps, singleBatch: int('single-batch'), batch: batchSize, seqLen, answerWeight,
      initStd: Number(a['init-std']), tokenizerVocab: bpe.vocab.length, dtype,
    },
    parameters: parameterCount(config),
    trainSeconds: Math.round(trainSeconds), trainCpuSeconds: Math.round(trainCpuSeconds), evalSeconds: Math.round(evalSeconds),
    totalSeconds: Math.round((Date.now() - started) / 1000),
    tokensSeen,
    lossCurve: curve,
    accuracy: full,
    dropLastLayers: dropLast,
    dropOneLayer: dropOne,
    weightsBytes: statSync(join(dir, 'model.safetensors')).size,
  };
  writeFileSync(join(dir, 'training-log.json'), `${JSON.stringify(trainingLog, null, 1)}\n`);
  writeFileSync(join(dir, 'README.md'), modelCard(config, trainingLog));
});
log(`wrote ${out} in ${((Date.now() - started) / 1000).toFixed(0)}s; tensors left: ${tf.memory().numTensors}`);
