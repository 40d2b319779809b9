/**
 * Merging and pruning: the merge formula exactly, λ = 1 is exactly a drop, one forward pass per
 * calibration, calibration statistics against hidden states computed independently, and every method
 * end to end on stories260K.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { parseConfig } from '../src/model/config.ts';
import { loadModel, disposeModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { identityPlan, mergeStep, dropStep, planSource } from '../src/compress/merge-plan.ts';
import { materialize } from '../src/compress/plan-model.ts';
import { calibrate, calibrationTarget, defaultPerSubject } from '../src/compress/calibration.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { DEFAULT_SIMILARITY } from '../src/compress/similarity/index.ts';
import { runSweep } from '../src/sweep/sweep.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { UserError } from '../src/runtime/errors.ts';
import { angularDistance } from '../src/compress/methods/angular.ts';
import { modelSource } from '../src/weights/source.ts';
import { convertLlama2c } from '../src/convert/llama2c.ts';
import { randomModel } from './random-model.ts';
import { maxAbsDiff, NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const cfg = parseConfig({
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 48,
  num_hidden_layers: 5, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
});
const prompts = [[1, 5, 9, 13, 2], [1, 7, 7], [1, 40, 41, 42, 43, 44, 45], [1, 3], [1, 60, 2, 9]];

test('a merged tensor equals λ·W_i + (1−λ)·W_j exactly, and λ = 1 is exactly dropping layer j', async () => {
  await initBackend('wasm');
  const model = randomModel(cfg);
  const src = modelSource(model);
  const lambda = 0.6180339887;
  const merged = planSource(src, mergeStep(identityPlan('mka', 5), 1, 2, lambda));
  assert.equal(merged.config.num_hidden_layers, 4);
  for (const suffix of ['self_attn.q_proj.weight', 'self_attn.o_proj.weight', 'mlp.down_proj.weight']) {
    const a = src.read(`model.layers.1.${suffix}`), b = src.read(`model.layers.2.${suffix}`);
    const got = merged.read(`model.layers.1.${suffix}`);
    for (let k = 0; k < a.length; k++) assert.equal(got[k], Math.fround(lambda * a[k] + (1 - lambda) * b[k]));
    assert.deepEqual(merged.read(`model.layers.2.${suffix}`), src.read(`model.layers.3.${suffix}`), 'layers after j shift down');
  }
  assert.deepEqual(merged.read('model.layers.1.input_layernorm.weight'), src.read('model.layers.1.input_layernorm.weight'), 'layer i keeps its norms');
  const one = planSource(src, mergeStep(identityPlan('mka', 5), 1, 2, 1));
  const drop = planSource(src, dropStep(identityPlan('reverse', 5), 2));
  for (const name of drop.names) assert.deepEqual(one.read(name), drop.read(name), name);
  // composing two merges is the nested formula
  const twice = planSource(src, mergeStep(mergeStep(identityPlan('mka', 5), 3, 4, 0.7), 2, 3, 0.6));
  const w = (l: number) => src.read(`model.layers.${l}.mlp.up_proj.weight`);
  const got = twice.read('model.layers.2.mlp.up_proj.weight');
  for (let k = 0; k < got.length; k += 97) assert.ok(Math.abs(got[k] - (0.6 * w(2)[k] + 0.4 * (0.7 * w(3)[k] + 0.3 * w(4)[k]))) < 1e-7);
  const m2 = materialize(one);
  const r = forward(m2, [prompts[0]]);
  r.logits!.dispose();
  disposeModel(m2);
  disposeModel(model);
});

test('calibration: one forward pass for all layers; Grams, last states and block influence match hidden states', async () => {
  await initBackend('wasm');
  const model = randomModel(cfg);
  const before = tf.memory().numTensors;
  const n = prompts.length, H = cfg.hidden_size, L = cfg.num_hidden_layers;
  const cals = (['last', 'mean', 'padded'] as const).map((representation) => calibrate(model, prompts, { representation, microBatch: 2 }));
  assert.equal(model.stats.forwardCalls, 3, 'one forward pass per calibration, not one per layer');
  assert.equal(tf.memory().numTensors, before, 'calibration leaks tensors');
  // independent reference: each prompt alone, HF hidden states (pre-norm block outputs recomputed for the last layer)
  const states = prompts.map((p) => {
    const inputs: number[][][] = [], outputs: number[][][] = [];
    const r = forward(model, [p], {
      logits: 'none',
      onBlockInput: (_, x) => inputs.push((x.arraySync() as number[][][])[0]),
      onBlockOutput: (_, h) => outputs.push((h.arraySync() as number[][][])[0]),
    });
    void r;
    return { inputs, outputs };
  });
  const dot = (a: number[], b: number[]) => a.reduce((s, v, k) => s + v * b[k], 0);
  for (let l = 0; l < L; l++) {
    const last = states.map((s) => s.outputs[l][s.outputs[l].length - 1]);
    const mean = states.map((s) => s.outputs[l][0].map((_, k) => s.outputs[l].reduce((a, row) => a + row[k], 0) / s.outputs[l].length));
    for (let a = 0; a < n; a++) {
      for (let b = 0; b < n; b++) {
        const padded = states[a].outputs[l].slice(0, Math.min(prompts[a].length, prompts[b].length))
          .reduce((s, row, t) => s + dot(row, states[b].outputs[l][t]), 0);
        const tol = (x: number) => 1e-4 * Math.max(1, Math.abs(x));
        assert.ok(Math.abs(cals[0].grams[l][a * n + b] - dot(last[a], last[b])) < tol(dot(last[a], last[b])), `last gram ${l} ${a} ${b}`);
        assert.ok(Math.abs(cals[1].grams[l][a * n + b] - dot(mean[a], mean[b])) < tol(dot(mean[a], mean[b])), `mean gram ${l}`);
        assert.ok(Math.abs(cals[2].grams[l][a * n + b] - padded) < tol(padded), `padded gram ${l}`);
      }
    }
    // block influence: 1 - cos(in, out) over every real token
    let bi = 0, count = 0;
    for (const s of states) {
      s.inputs[l].forEach((x, t) => {
        const y = s.outputs[l][t];
        bi += 1 - dot(x, y) / Math.sqrt(dot(x, x) * dot(y, y));
        count++;
      });
    }
    assert.ok(Math.abs(cals[0].blockInfluence[l] - bi / count) < 1e-5, `block influence ${l}`);
    assert.ok(maxAbsDiff(Array.from(cals[0].lastStates[l + 1]), last.flat()) < 1e-5, `last states ${l}`);
  }
  // angular distance from states 0 and L equals the formula
  const d = angularDistance(cals[0].lastStates[0], cals[0].lastStates[L], n, H);
  const ref = states.reduce((s, st) => {
    const x = st.inputs[0][st.inputs[0].length - 1], y = st.outputs[L - 1][st.outputs[L - 1].length - 1];
    return s + Math.acos(dot(x, y) / Math.sqrt(dot(x, x) * dot(y, y))) / Math.PI;
  }, 0) / n;
  assert.ok(Math.abs(d - ref) < 1e-5);
  disposeModel(model);
});

test('stories260K compressed by 1 and 2 layers with every method runs end to end', { skip: NO_SHARED }, async () => {
  await initBackend('auto'); // the pipeline, not a backend, is under test here: the fastest one built (native: 3x wasm)
  const root = scratchDir('compress');
  const base = join(root, 'stories260K');
  await convertLlama2c({ checkpoint: join(SHARED!, 'models/stories260K/stories260K.bin'), tokenizer: join(SHARED!, 'models/stories260K/tok512.bin'), out: base });
  for (const method of ['mka', 'reverse', 'shortgpt', 'angular']) {
    for (const remove of [1, 2]) {
      const out = join(root, `${method}-${remove}`);
      const plan = await compressModel({ model: base, out, method, remove, data: join(SHARED!, 'data/mmlu'), subjects: 10, perSubject: 1, quiet: true });
      assert.equal(plan.layers.length, 5 - remove);
      const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
      assert.equal(merge.removed, remove);
      assert.equal(merge.steps.length, remove);
      if (method === 'mka') {
        for (const s of merge.steps) assert.ok(s.action === 'merge' && s.lambda > 0.5 && s.lambda < 0.75, `λ ${s.lambda}`);
        assert.equal(merge.calibration.forward_passes, 1);
      }
      assert.ok(existsSync(join(out, 'tokenizer.json')));
      const m = loadModel(out);
      assert.equal(m.config.num_hidden_layers, 5 - remove);
      const r = forward(m, [[1, 403, 407]]);
      assert.ok(Number.isFinite(r.logits!.dataSync()[0]));
      r.logits!.dispose();
      disposeModel(m);
    }
  }
});

test('default calibration size works on every shipped dataset; too few prompts fail before any work', async () => {
  await initBackend('wasm');
  assert.equal(calibrationTarget(DEFAULT_SIMILARITY), 51);
  assert.equal(defaultPerSubject(57, 51), 1, 'MMLU: one question per subject, as the paper');
  assert.equal(defaultPerSubject(5, 51), 11, 'the demo benchmark: 5 subjects');
  assert.equal(defaultPerSubject(5, calibrationTarget({ ...DEFAULT_SIMILARITY, kEntropy: 5 })), 2);
  const root = scratchDir('defaults');
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  // the README's command, with every default: 5 subjects x 11 questions
  const out = join(root, 'mka-1');
  await compressModel({ model: 'models/demo', out, method: 'mka', remove: 1, data, quiet: true });
  const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
  assert.equal(merge.calibration.prompts, 55);
  assert.equal(merge.calibration.per_subject, 11);
  // an explicit count that is too small: one line naming the option and the fix, nothing written
  const few = join(root, 'few');
  await assert.rejects(compressModel({ model: 'models/demo', out: few, method: 'mka', remove: 1, data, perSubject: 1, quiet: true }),
    (e: unknown) => e instanceof UserError && /--k-mi 5: .*5 calibration prompts are too few; use a larger --per-subject/.test(e.message));
  assert.ok(!existsSync(few));
  const sweepOut = join(root, 'sweep');
  const before = tf.memory().numTensors;
  await assert.rejects(runSweep({ model: 'models/demo', data, methods: ['mka'], remove: [0, 1], ntrain: 5, perSubject: 1, out: sweepOut, quiet: true }), UserError);
  assert.ok(!existsSync(sweepOut), 'the sweep failed before writing or evaluating anything');
  assert.equal(tf.memory().numTensors, before);
});
