/**
 * Tests that catch a wrong method: baselines on a constructed model whose block influences and angular
 * distances are known by construction; MKA's merged weights read back from the written safetensors
 * (with λ computed here from the NPIB matrix, so a flipped λ fails); `--strategy adjacent` and
 * `--blend-norms`. No shared data needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';
import { expectedTensors, parseConfig, splitLayerName } from '../src/model/config.ts';
import { disposeModel, modelFromTensors } from '../src/model/model.ts';
import { calibrate } from '../src/compress/calibration.ts';
import { compressModel, modelSimilarity } from '../src/pipeline/compress.ts';
import { calibrationPrompts } from '../src/pipeline/analyse.ts';
import { getMethod } from '../src/compress/methods/registry.ts';
import { mka } from '../src/compress/methods/mka.ts';
import type { MethodContext, MethodInputs } from '../src/compress/methods/method.ts';
import { DEFAULT_SIMILARITY } from '../src/compress/similarity/index.ts';
import { identityPlan, mergeStep, planSource, type CompressionPlan } from '../src/compress/merge-plan.ts';
import { modelSource } from '../src/weights/source.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { randomModel } from './random-model.ts';
import { PythonRandom } from '../src/runtime/python-random.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { readSafetensors } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const L = 6;
const cfg = parseConfig({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: L, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
});
/**
 * Each block's output projections (o_proj, down_proj) are scaled by SCALE[l]: block 1 is the identity
 * (its update is exactly 0: block influence 0, angular distance 0), blocks 4 and 5 change their input
 * a little, blocks 0, 2 and 3 a lot. So, whatever the random weights:
 *  - ShortGPT (lowest block influence first) drops 1, then 4, then 5;
 *  - angular distance (smallest first) picks block 1 for n = 1, blocks 4–5 for n = 2, blocks 3–5 for n = 3.
 */
const SCALE = [1, 0, 1, 1, 0.01, 0.03];

function constructedModel() {
  const rand = mulberry32(12);
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of expectedTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const layer = splitLayerName(name);
    const scale = layer && /o_proj|down_proj/.test(name) ? SCALE[layer.layer] : 1;
    const data = name.endsWith('norm.weight') ? new Float32Array(n).fill(1) : Float32Array.from({ length: n }, () => 0.3 * scale * normal(rand));
    tensors.set(name, tf.tensor(data, shape));
  }
  return modelFromTensors(cfg, tensors);
}

const prompts = Array.from({ length: 8 }, (_, p) => Array.from({ length: 5 + p }, (_, t) => (1 + 7 * t + 11 * p) % 64));

/** A method context with the given inputs (a method reading another one fails on undefined). */
function contextWith(inputs: Partial<MethodInputs>, config = cfg): MethodContext {
  return { config, biases: 'blend', log: () => {}, inputs: inputs as MethodInputs };
}

/** The inputs a calibration gives the baselines. */
function context(cal: ReturnType<typeof calibrate>): MethodContext {
  return contextWith(cal ? { blockInfluence: cal.blockInfluence, lastStates: { n: cal.n, hiddenSize: cal.hiddenSize, states: cal.lastStates } } : {});
}

/** Original layers a pruning plan keeps. */
const kept = (plan: CompressionPlan) => plan.layers.map((l) => {
  assert.equal(l.sources.length, 1);
  return l.sources[0].layer;
});
const without = (...drop: number[]) => Array.from({ length: L }, (_, i) => i).filter((i) => !drop.includes(i));

test('baselines drop exactly the layers a constructed model makes them drop', async () => {
  await initBackend('wasm');
  const model = constructedModel();
  const before = tf.memory().numTensors;
  const cal = calibrate(model, prompts);
  assert.equal(tf.memory().numTensors, before);
  const bi = cal.blockInfluence;
  assert.ok(bi[1] < 1e-6 && bi[1] < bi[4] && bi[4] < bi[5] && bi[5] < Math.min(bi[0], bi[2], bi[3]), `block influence ${bi}`);
  const ctx = context(cal);
  const shortgpt = getMethod('shortgpt'), angular = getMethod('angular'), reverse = getMethod('reverse');
  assert.deepEqual(kept(await shortgpt.plan(ctx, 1, {})), without(1));
  assert.deepEqual(kept(await shortgpt.plan(ctx, 2, {})), without(1, 4));
  assert.deepEqual(kept(await shortgpt.plan(ctx, 3, {})), without(1, 4, 5));
  assert.deepEqual(kept(await angular.plan(ctx, 1, {})), without(1));
  assert.deepEqual(kept(await angular.plan(ctx, 2, {})), without(4, 5));
  assert.deepEqual(kept(await angular.plan(ctx, 3, {})), without(3, 4, 5));
  const d = (await angular.plan(ctx, 2, {})).details.angular_distances as number[];
  assert.equal(d.length, L - 1);
  assert.ok(d[4] < Math.min(...d.slice(0, 4)), `angular distances ${d}`);
  assert.deepEqual(kept(await reverse.plan(ctx, 2, {})), without(4, 5));
  disposeModel(model);
});

/** λ of merging i with j from an NPIB matrix, written out here: sigmoid(s_i / (s_i + s_j)), s = row means. */
function lambdaOf(S: number[][], i: number, j: number): number {
  const mean = (r: number[]) => r.reduce((a, b) => a + b, 0) / r.length;
  const r = mean(S[i]) / (mean(S[i]) + mean(S[j]));
  return 1 / (1 + Math.exp(-r));
}

const root = scratchDir('methods');
const DATA = join(root, 'demo-mmlu');
const DEMO = 'models/demo';

test('mka: the written safetensors hold λ·W_i + (1−λ)·W_j with λ from the NPIB matrix (a flipped λ fails)', async () => {
  await initBackend('wasm');
  await ensureBenchmark(DATA);
  const sim = await modelSimilarity({ model: DEMO, data: DATA, quiet: true });
  const S = sim.npib as number[][];
  const lam1 = lambdaOf(S, 6, 7), lam2 = lambdaOf(S, 5, 6);
  assert.ok(Math.abs(lam1 - 0.5) > 0.05 && Math.abs(lam2 - 0.5) > 0.05, `λ ${lam1} ${lam2} too close to 0.5 for the test to tell λ from 1 − λ`);
  const out = join(root, 'mka-2');
  await compressModel({ model: DEMO, out, method: 'mka', remove: 2, data: DATA, quiet: true });
  const orig = readSafetensors(join(DEMO, 'model.safetensors'));
  const got = readSafetensors(join(out, 'model.safetensors'));
  assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers, 6);
  const w = (l: number, s: string) => orig.get(`model.layers.${l}.${s}`)!;
  let checked = 0;
  for (const s of ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight', 'self_attn.o_proj.weight',
    'mlp.gate_proj.weight', 'mlp.up_proj.weight', 'mlp.down_proj.weight']) {
    // last-pair: 7 merges into 6 (λ1), then the result into 5 (λ2)
    const merged = got.get(`model.layers.5.${s}`)!;
    const [a, b, c] = [w(5, s), w(6, s), w(7, s)];
    let err = 0, flipErr = 0;
    for (let k = 0; k < merged.length; k++) {
      const want = lam2 * a[k] + (1 - lam2) * (lam1 * b[k] + (1 - lam1) * c[k]);
      const flipped = (1 - lam2) * a[k] + lam2 * ((1 - lam1) * b[k] + lam1 * c[k]);
      err = Math.max(err, Math.abs(merged[k] - want));
      flipErr = Math.max(flipErr, Math.abs(merged[k] - flipped));
    }
    assert.ok(err < 1e-6, `${s}: max error ${err}`);
    assert.ok(flipErr > 1e-3, `${s}: the flipped λ would pass too (${flipErr})`);
    for (let l = 0; l < 5; l++) assert.deepEqual(got.get(`model.layers.${l}.${s}`), w(l, s), `layer ${l} kept as is`);
    checked++;
  }
  assert.equal(checked, 7);
  // norms come from layer i (5) by default
  assert.deepEqual(got.get('model.layers.5.input_layernorm.weight'), w(5, 'input_layernorm.weight'));
  const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
  assert.ok(Math.abs(merge.steps[0].lambda - lam1) < 1e-12 && Math.abs(merge.steps[1].lambda - lam2) < 1e-12, `merge.json λ ${merge.steps[0].lambda} ${merge.steps[1].lambda}, want ${lam1} ${lam2}`);
});

test('mka --blend-norms: RMSNorm weights are blended with the same λ; without it they are layer i\'s', async () => {
  await initBackend('wasm');
  await ensureBenchmark(DATA);
  const out = join(root, 'mka-blend');
  await compressModel({ model: DEMO, out, method: 'mka', remove: 1, data: DATA, params: { mka: { blendNorms: true } }, quiet: true });
  const lam = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8')).steps[0].lambda as number;
  const orig = readSafetensors(join(DEMO, 'model.safetensors'));
  const got = readSafetensors(join(out, 'model.safetensors'));
  for (const s of ['input_layernorm.weight', 'post_attention_layernorm.weight']) {
    const a = orig.get(`model.layers.6.${s}`)!, b = orig.get(`model.layers.7.${s}`)!, m = got.get(`model.layers.6.${s}`)!;
    let err = 0, differs = 0;
    for (let k = 0; k < m.length; k++) {
      err = Math.max(err, Math.abs(m[k] - (lam * a[k] + (1 - lam) * b[k])));
      differs = Math.max(differs, Math.abs(m[k] - a[k]));
    }
    assert.ok(err < 1e-6 && differs > 1e-3, `${s}: error ${err}, distance from layer i's norm ${differs}`);
  }
  // the final norm is never blended
  assert.deepEqual(got.get('model.norm.weight'), orig.get('model.norm.weight'));
});

test('mka --strategy adjacent: merges the most similar adjacent pair, recalibrates, λ from the current matrix', async () => {
  const S0 = [
    [3, 1, 0.5, 0.2],
    [1, 3, 2.5, 0.4],
    [0.5, 2.5, 3, 1.2],
    [0.2, 0.4, 1.2, 3],
  ];
  const S1 = [
    [3, 1.5, 0.3],
    [1.5, 3, 0.9],
    [0.3, 0.9, 3],
  ];
  const seen: CompressionPlan[] = [];
  const similarity = (matrix: number[][]) => ({ matrix, metric: 'npib', options: DEFAULT_SIMILARITY });
  const ctx = contextWith({
    similarity: similarity(S0),
    recalibrate: async (plan) => {
      seen.push(plan);
      return similarity(S1);
    },
  }, { ...cfg, num_hidden_layers: 4 });
  const plan = await mka.plan(ctx, 2, { strategy: 'adjacent', blendNorms: false, iterative: false });
  assert.equal(seen.length, 1, 'one recalibration between the two merges');
  assert.deepEqual(seen[0].layers.map((l) => l.sources.map((s) => s.layer)), [[0], [1, 2], [3]]);
  const l1 = lambdaOf(S0, 1, 2), l2 = lambdaOf(S1, 0, 1);
  assert.deepEqual(plan.steps.map((s) => s.layers), [[1, 2], [0, 1]]);
  assert.ok(Math.abs(plan.steps[0].lambda! - l1) < 1e-15 && Math.abs(plan.steps[1].lambda! - l2) < 1e-15, `λ ${plan.steps.map((x) => x.lambda)}, want ${l1} ${l2}`);
  // layer 0 of the result = l2·θ0 + (1 − l2)·(l1·θ1 + (1 − l1)·θ2), layer 1 = θ3
  const mix = plan.layers[0].sources;
  assert.deepEqual(mix.map((s) => s.layer), [0, 1, 2]);
  const want = [l2, (1 - l2) * l1, (1 - l2) * (1 - l1)];
  mix.forEach((s, k) => assert.ok(Math.abs(s.weight - want[k]) < 1e-15, `weight of layer ${s.layer}`));
  assert.deepEqual(plan.layers[1].sources, [{ layer: 3, weight: 1 }]);
  // last-pair on the same matrix merges 3 into 2, then the result into 1, whatever the matrix says
  seen.length = 0;
  const lp = await mka.plan(ctx, 2, { strategy: 'last-pair', blendNorms: false, iterative: false });
  assert.equal(seen.length, 0, 'last-pair plans from the one matrix');
  assert.deepEqual(lp.steps.map((s) => s.layers), [[2, 3], [1, 2]]);
  assert.ok(Math.abs(lp.steps[0].lambda! - lambdaOf(S0, 2, 3)) < 1e-15 && Math.abs(lp.steps[1].lambda! - lambdaOf(S0, 1, 2)) < 1e-15, `last-pair λ ${lp.steps.map((x) => x.lambda)}`);
  // --iterative: the same pairs, but the second λ comes from the merged model's matrix (rows 1 and 2 of S1)
  const it = await mka.plan(ctx, 2, { strategy: 'last-pair', blendNorms: false, iterative: true });
  assert.equal(seen.length, 1, 'one recalibration between the two merges');
  assert.deepEqual(seen[0].layers.map((l) => l.sources.map((s) => s.layer)), [[0], [1], [2, 3]]);
  assert.deepEqual(it.steps.map((s) => s.layers), [[2, 3], [1, 2]]);
  assert.ok(Math.abs(lambdaOf(S1, 1, 2) - lambdaOf(S0, 1, 2)) > 1e-3, 'the matrices give different λ');
  assert.ok(Math.abs(it.steps[0].lambda! - lambdaOf(S0, 2, 3)) < 1e-15 && Math.abs(it.steps[1].lambda! - lambdaOf(S1, 1, 2)) < 1e-15, `iterative λ ${it.steps.map((x) => x.lambda)}`);
  assert.deepEqual(it.details.iterative, true);
});

test('mka --strategy adjacent end to end: every step recalibrates the merged model for real', async () => {
  await initBackend('wasm');
  await ensureBenchmark(DATA);
  const out = join(root, 'mka-adjacent');
  const logs: string[] = [];
  const plan = await compressModel({ model: DEMO, out, method: 'mka', remove: 2, data: DATA, params: { mka: { strategy: 'adjacent' } }, quiet: true, log: (m) => logs.push(m) });
  assert.equal(plan.layers.length, 6);
  assert.equal(logs.filter((m) => /^mka adjacent: merged layers/.test(m)).length, 2);
  // the first merge is the argmax of the original matrix's adjacent entries
  const sim = await modelSimilarity({ model: DEMO, data: DATA, quiet: true });
  const S = sim.npib as number[][];
  const adj = S.slice(0, -1).map((row, i) => row[i + 1]);
  const best = adj.indexOf(Math.max(...adj));
  assert.deepEqual(plan.steps[0].layers, [best, best + 1]);
  assert.ok(Math.abs(plan.steps[0].lambda! - lambdaOf(S, best, best + 1)) < 1e-12, `λ ${plan.steps[0].lambda}`);
  // what was written is what the plan says, mixed here in float64
  const orig = readSafetensors(join(DEMO, 'model.safetensors'));
  const got = readSafetensors(join(out, 'model.safetensors'));
  plan.layers.forEach((mix, k) => {
    const m = got.get(`model.layers.${k}.mlp.up_proj.weight`)!;
    let err = 0;
    for (let e = 0; e < m.length; e++) {
      const want = mix.sources.reduce((acc, s) => acc + s.weight * orig.get(`model.layers.${s.layer}.mlp.up_proj.weight`)![e], 0);
      err = Math.max(err, Math.abs(m[e] - want));
    }
    assert.ok(err < 1e-6, `layer ${k}: ${err}`);
  });
});

/**
 * The released code's layer_fusion, written out: it computes the fused tensors, assigns them into
 * `model.state_dict()[name]` (a fresh dict each call, so the parameters never change), then deletes
 * layer j from the layer list. `weights` maps "layer.suffix" to tensors; returns the layers left.
 */
function releasedLayerFusion(layers: Map<string, Float32Array>[], i: number, j: number, ratio: number): Map<string, Float32Array>[] {
  const stateDict = new Map<string, Float32Array>(layers.flatMap((l, k) => [...l].map(([s, w]) => [`${k}.${s}`, w] as const)));
  for (const [s, w1] of layers[i]) {
    const w2 = layers[j].get(s)!;
    stateDict.set(`${i}.${s}`, w1.map((v, e) => ratio * v + (1 - ratio) * w2[e])); // written into the copy only
  }
  return layers.filter((_, k) => k !== j);
}

test('the released code\'s MKA drops the last K layers: its merges never reach the model, so it equals `reverse`', async () => {
  await initBackend('wasm');
  const model = constructedModel();
  const src = modelSource(model);
  const suffixes = [...expectedTensors(cfg).keys()].flatMap((n) => (n.startsWith('model.layers.0.') ? [n.slice('model.layers.0.'.length)] : []));
  const original = Array.from({ length: L }, (_, l) => new Map(suffixes.map((s) => [s, src.read(`model.layers.${l}.${s}`)] as const)));
  for (const K of [1, 2, 3]) {
    let layers = original;
    for (let step = 0; step < K; step++) layers = releasedLayerFusion(layers, layers.length - 2, layers.length - 1, 0.62);
    const reverse = planSource(src, await getMethod('reverse').plan(context(null as never), K, {}));
    assert.equal(reverse.config.num_hidden_layers, layers.length);
    layers.forEach((l, k) => { for (const s of suffixes) assert.deepEqual(reverse.read(`model.layers.${k}.${s}`), l.get(s), `K=${K} layer ${k} ${s}`); });
    // and mka's own merge does change the last kept layer
    const mka = planSource(src, mergeStep(identityPlan('mka', L), L - 2, L - 1, 0.62));
    assert.notDeepEqual(mka.read(`model.layers.${L - 2}.mlp.up_proj.weight`), src.read(`model.layers.${L - 2}.mlp.up_proj.weight`));
  }
  disposeModel(model);
});

const PYTHON_ROWS = ['demo_alphabet#34', 'demo_alphabet#145', 'demo_alphabet#216', 'demo_arithmetic#205', 'demo_arithmetic#195', 'demo_arithmetic#16'];

test('PythonRandom is CPython\'s random: seed, getrandbits, sample (values from CPython 3.11.7)', () => {
  let r = new PythonRandom(1);
  assert.deepEqual([0, 1, 2, 3, 4].map(() => r.nextUint32()), [577090037, 2444712010, 3639700191, 3445702192, 3280387012]);
  r = new PythonRandom(1);
  assert.deepEqual([100, 250, 7, 1534, 30].map((n) => r.sample(n, 1)[0]), [17, 145, 6, 129, 8]);
  r = new PythonRandom(1);
  assert.deepEqual([r.sample(250, 11), r.sample(20, 5), r.sample(250, 30)], [
    [34, 145, 216, 205, 195, 16, 65, 30, 126, 194, 115], [15, 12, 6, 3, 19],
    [7, 228, 213, 99, 110, 155, 195, 196, 0, 178, 114, 68, 184, 205, 58, 151, 26, 230, 81, 249, 5, 6, 166, 138, 2, 97, 175, 55, 108, 185]]);
});

test('--protocol released: block inputs as layers, BOS as add_bos_token=False gives it, the released code\'s rows, layer i\'s biases', async () => {
  await initBackend('wasm');
  const model = constructedModel();
  const outputs = calibrate(model, prompts, { representation: 'last' });
  const inputs = calibrate(model, prompts, { representation: 'last', layerStates: 'input' });
  for (let l = 1; l < L; l++) assert.deepEqual(inputs.grams[l], outputs.grams[l - 1], `input of block ${l} is the output of block ${l - 1}`);
  const E = model.tensors.get('model.embed_tokens.weight')!.arraySync() as number[][];
  const n = prompts.length;
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      const ea = E[prompts[a].at(-1)!], eb = E[prompts[b].at(-1)!];
      const want = ea.reduce((s, v, k) => s + v * eb[k], 0);
      assert.ok(Math.abs(inputs.grams[0][a * n + b] - want) < 1e-5 * Math.max(1, Math.abs(want)), `layer 0 is the embeddings (${a}, ${b})`);
    }
  }
  disposeModel(model);

  await ensureBenchmark(DATA);
  const tok = await loadTokenizer(DEMO);
  const mine = calibrationPrompts(tok, { data: DATA, subjects: 2, perSubject: 3 });
  const released = calibrationPrompts(tok, { data: DATA, subjects: 2, perSubject: 3, protocol: 'released' });
  assert.ok(mine.ids.every((p) => p[0] === tok.bos), 'mka: BOS first');
  // released: add_bos_token=False, which the demo's PreTrainedTokenizerFast ignores as transformers does (test/released-protocol.test.ts)
  assert.ok(released.ids.every((p) => p[0] === tok.bos), 'released: BOS kept by a tokenizer class that ignores add_bos_token');
  // the rows CPython 3.11 draws: random.seed(1); random.sample(range(250), 3) for each of the first two sorted subjects
  assert.deepEqual(released.labels, PYTHON_ROWS);

  // biases: Qwen2 has q/k/v biases
  const qcfg = parseConfig({ ...cfg, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] });
  const q = randomModel(qcfg);
  const qsrc = modelSource(q);
  const lam = 0.7;
  const blend = planSource(qsrc, mergeStep(identityPlan('mka', L), 2, 3, lam));
  const keep = planSource(qsrc, { ...mergeStep(identityPlan('mka', L), 2, 3, lam), keepBiases: true });
  const bi = qsrc.read('model.layers.2.self_attn.q_proj.bias'), bj = qsrc.read('model.layers.3.self_attn.q_proj.bias');
  assert.deepEqual(keep.read('model.layers.2.self_attn.q_proj.bias'), bi);
  assert.deepEqual(blend.read('model.layers.2.self_attn.q_proj.bias'), Float32Array.from(bi, (v, e) => lam * v + (1 - lam) * bj[e]));
  assert.deepEqual(keep.read('model.layers.2.self_attn.q_proj.weight'), blend.read('model.layers.2.self_attn.q_proj.weight'), 'weights are blended either way');
  disposeModel(q);
});

test('--protocol released end to end: merge.json records it, layer i\'s biases, the released rows', async () => {
  await initBackend('wasm');
  await ensureBenchmark(DATA);
  const out = join(root, 'mka-released');
  const logs: string[] = [];
  await compressModel({ model: DEMO, out, method: 'mka', remove: 1, data: DATA, protocol: 'released', quiet: true, log: (m) => logs.push(m) });
  const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
  assert.equal(merge.calibration.protocol, 'released');
  assert.equal(merge.keep_biases, true);
  assert.equal(merge.calibration.prompts, 55);
  const mine = JSON.parse(readFileSync(join(root, 'mka-2', 'merge.json'), 'utf8'));
  assert.notEqual(merge.steps[0].lambda, mine.steps[0].lambda, 'block inputs and other rows give another λ');
});
