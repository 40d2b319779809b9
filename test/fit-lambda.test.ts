/**
 * --fit-lambda: the error it minimises checked against one computed here from full forward passes
 * (the merged model's hidden state after the merged block against the original's after the blocks it
 * replaces); the fitted λ beats its neighbours; where the right λ is known (one of the two blocks is the
 * identity and the norms are equal, so λ = 0 or λ = 1 reproduces the pair exactly) it is found; and
 * `compress --fit-lambda` records it in merge.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { expectedTensors, parseConfig, splitLayerName } from '../src/model/config.ts';
import { disposeModel, modelFromTensors, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { identityPlan, mergeStep, planSource, type CompressionPlan } from '../src/compress/merge-plan.ts';
import { materialize } from '../src/compress/plan-model.ts';
import { fitLambdas } from '../src/pipeline/fit-lambda.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { modelSource } from '../src/weights/source.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';
import { readSafetensors } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const cfg = parseConfig({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: 5, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
});
const prompts = Array.from({ length: 6 }, (_, p) => Array.from({ length: 4 + p }, (_, t) => (1 + 7 * t + 11 * p) % 64));

/** Random weights (norms 1); the output projections of each block scaled by `scale[l]` (0: the block is the identity). */
function model(scale = [1, 1, 1, 1, 1]): LlamaModel {
  const rand = mulberry32(5);
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of expectedTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const l = splitLayerName(name);
    const s = l && /o_proj|down_proj/.test(name) ? scale[l.layer] : 1;
    tensors.set(name, tf.tensor(name.endsWith('norm.weight') ? new Float32Array(n).fill(1) : Float32Array.from({ length: n }, () => 0.3 * s * normal(rand)), shape));
  }
  return modelFromTensors(cfg, tensors);
}

/** Each prompt's hidden states after block b (b = −1: the embeddings), at its real positions, computed by a whole forward pass. */
function after(m: LlamaModel, b: number): Float32Array[] {
  return prompts.map((r) => {
    const { hiddenStates, logits } = forward(m, [r], { hiddenStates: true, logits: 'last' });
    logits!.dispose();
    const x = b + 1 < m.config.num_hidden_layers ? hiddenStates![b + 1].dataSync() as Float32Array : null;
    hiddenStates!.forEach((t) => t.dispose());
    if (x) return x;
    let last: Float32Array | null = null;
    forward(m, [r], { logits: 'none', onBlockOutput: (i, h) => { if (i === b) last = h.dataSync() as Float32Array; } });
    return last!;
  });
}

/** ‖merged model after its merged block − original after block j‖² / ‖original after j‖², merging i and j = i + 1 with λ. */
function errorHere(m: LlamaModel, i: number, lambda: number): number {
  const merged = materialize(planSource(modelSource(m), mergeStep(identityPlan('mka', 5), i, i + 1, lambda)));
  const got = after(merged, i), want = after(m, i + 1);
  disposeModel(merged);
  let num = 0, den = 0;
  got.forEach((g, p) => g.forEach((v, k) => { num += (v - want[p][k]) ** 2; den += want[p][k] ** 2; }));
  return num / den;
}

test('fit-lambda: the error it reports is the merged block\'s against the original pair, and its λ beats its neighbours', async () => {
  await initBackend('wasm');
  const m = model();
  const plan: CompressionPlan = { ...mergeStep(identityPlan('mka', 5), 2, 3, 0.62, 1.5), details: { strategy: 'last-pair' } };
  const before = tf.memory().numTensors;
  const fitted = fitLambdas(m, plan, prompts, { microBatch: 4 });
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  const step = fitted.steps[0];
  assert.equal(step.fit!.lambdaPlanned, 0.62);
  assert.ok(Math.abs(step.fit!.errorPlanned - errorHere(m, 2, 0.62)) < 1e-4 * step.fit!.errorPlanned, `error at the planned λ: ${step.fit!.errorPlanned} vs ${errorHere(m, 2, 0.62)}`);
  const lambda = step.lambda!;
  assert.ok(Math.abs(step.fit!.error - errorHere(m, 2, lambda)) < 1e-4 * step.fit!.error);
  for (const other of [lambda - 0.02, lambda + 0.02, 0, 0.5, 1].filter((x) => x >= 0 && x <= 1)) {
    assert.ok(step.fit!.error <= errorHere(m, 2, other) + 1e-9, `λ ${lambda} (error ${step.fit!.error}) loses to ${other} (${errorHere(m, 2, other)})`);
  }
  assert.deepEqual(fitted.layers[2].sources.map((s) => s.weight), [lambda, 1 - lambda]);
  assert.equal(fitted.steps[0].score, 1.5);
  assert.equal((fitted.details.fit_lambda as { merges: unknown[] }).merges.length, 1);
  assert.equal(fitted.details.strategy, 'last-pair', 'the method\'s details stay');
  disposeModel(m);
});

test('fit-lambda finds the λ that reproduces the pair exactly: 0 when the first block is the identity, 1 when the second is', async () => {
  await initBackend('wasm');
  const m = model([1, 0, 1, 1, 1]); // block 1 adds nothing to its input
  // merging 1 and 2: the pair computes B2(x); λ = 0 is θ2 with block 1's norms (equal): exact
  const a = fitLambdas(m, mergeStep(identityPlan('mka', 5), 1, 2, 0.6), prompts);
  assert.equal(a.steps[0].lambda, 0);
  assert.ok(a.steps[0].fit!.error < 1e-10, `error ${a.steps[0].fit!.error}`);
  // merging 0 and 1: the pair computes B0(x); λ = 1 is θ0
  const b = fitLambdas(m, mergeStep(identityPlan('mka', 5), 0, 1, 0.6), prompts);
  assert.equal(b.steps[0].lambda, 1);
  assert.ok(b.steps[0].fit!.error < 1e-10);
  // a drop before the merge and a second merge on the refitted one: indices and groups follow the plan
  const c = fitLambdas(m, mergeStep(mergeStep(identityPlan('mka', 5), 3, 4, 0.6), 1, 2, 0.6), prompts);
  assert.deepEqual(c.steps.map((s) => s.originalLayers), [[3, 4], [1, 2]]);
  assert.equal(c.steps[1].lambda, 0);
  disposeModel(m);
});

test('compress --fit-lambda: merge.json and the weights hold the fitted λ; a plan without λ is left as it is', async () => {
  await initBackend('wasm');
  const root = scratchDir('fit');
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'mka-fit');
  const plan = await compressModel({ model: 'models/demo', out, method: 'mka', remove: 2, data, fitLambda: true, quiet: true });
  const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
  assert.equal(merge.layers, 6);
  assert.equal(merge.fit_lambda.merges.length, 2);
  for (const s of merge.steps) assert.ok(s.fit && s.lambda >= 0 && s.lambda <= 1 && s.fit.error <= s.fit.errorPlanned, JSON.stringify(s));
  const orig = readSafetensors('models/demo/model.safetensors'), got = readSafetensors(join(out, 'model.safetensors'));
  const w = plan.layers[5].sources;
  const m = got.get('model.layers.5.mlp.up_proj.weight')!;
  for (let e = 0; e < m.length; e += 5) {
    const want = w.reduce((acc, s) => acc + s.weight * orig.get(`model.layers.${s.layer}.mlp.up_proj.weight`)![e], 0);
    assert.ok(Math.abs(m[e] - want) < 1e-6, `[${e}]`);
  }
  assert.match(readFileSync(join(out, 'README.md'), 'utf8'), /fitted; planned 0\.62/);
  const logs: string[] = [];
  await compressModel({ model: 'models/demo', out: join(root, 'sg'), method: 'shortgpt', remove: 1, data, fitLambda: true, quiet: true, log: (l) => logs.push(l) });
  assert.ok(logs.some((l) => /shortgpt's plan has no merge with a λ to fit/.test(l)), logs.join('\n'));
});
