/**
 * The methods mka compares MKA with, each on a case whose right answer is known: magnitude+ on a model
 * whose blocks differ only by a scale; Taylor+'s gradients against finite differences of the calibration
 * loss, and a block whose output projections are zero (importance exactly 0); SLEB's iterative choice
 * against a one-shot ranking on a loss table where they differ, and its scorer's loss against an
 * independent NLL (resident and streamed, one read per layer for many candidates); LaCo's scan and
 * automatic threshold on a similarity table, its scorer against hidden states computed independently,
 * and its RDSC merge in the written weights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { expectedTensors, keepLayers, parseConfig, splitLayerName } from '../src/model/config.ts';
import { disposeModel, loadModel, modelFromTensors, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { combineStep, dropStep, identityPlan, keptLayers, planSource, type CompressionPlan } from '../src/compress/merge-plan.ts';
import { materialize } from '../src/compress/plan-model.ts';
import { getMethod } from '../src/compress/methods/registry.ts';
import type { MethodContext, MethodInputs, PlanScorer } from '../src/compress/methods/method.ts';
import { weightGradients } from '../src/pipeline/gradients.ts';
import { planScorer } from '../src/pipeline/scorer.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { modelSource } from '../src/weights/source.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { randomTensor, tinyConfigJson, writeRandomModel } from './random-model.ts';
import { readSafetensors } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('papers');
const small = parseConfig(tinyConfigJson({ vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 4, num_attention_heads: 2, num_key_value_heads: 1 }));
const prompts = [[1, 5, 9, 13, 2, 7], [1, 7, 7, 3], [1, 20, 21, 22, 23, 24, 25, 26], [1, 3, 30], [1, 11, 2, 9, 4]];

/** A model of `config` from seeded values, `edit` changing them per tensor first (not laid out: plain tfjs ops throughout). */
function modelOf(config = small, edit: (name: string, v: Float32Array) => Float32Array = (_, v) => v): LlamaModel {
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of expectedTensors(config)) tensors.set(name, tf.tensor(edit(name, randomTensor(name, shape, 3)), shape));
  return modelFromTensors(config, tensors);
}

function contextWith(inputs: Partial<MethodInputs>, config = small): MethodContext {
  return { config, biases: 'blend', log: () => {}, inputs: inputs as MethodInputs };
}

/** Mean next-token NLL of the prompts, computed here: forward's logits, a float64 log-softmax per row. */
function nllOf(model: LlamaModel, ids: number[][]): number {
  let nll = 0, n = 0;
  for (const r of ids) {
    const { logits } = forward(model, [r]);
    const x = logits!.arraySync() as number[][][];
    logits!.dispose();
    for (let t = 0; t + 1 < r.length; t++) {
      const row = x[0][t];
      const m = Math.max(...row);
      nll += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[r[t + 1]];
      n++;
    }
  }
  return nll / n;
}

test('magnitude+: blocks that differ only by a scale are ranked by it; the first block is kept by the "+" heuristic', async () => {
  await initBackend('wasm');
  const cfg = parseConfig(tinyConfigJson({ num_hidden_layers: 6 }));
  const FACTOR = [0.2, 1, 0.5, 1.5, 0.8, 1.2];
  // every layer holds layer 0's values times its factor, so Σ|W| of layer l is FACTOR[l] × layer 0's
  const shapes = expectedTensors(cfg);
  const model = modelOf(cfg, (name, v) => {
    const l = splitLayerName(name);
    return l ? Float32Array.from(randomTensor(`model.layers.0.${l.suffix}`, shapes.get(name)!, 3), (x) => x * FACTOR[l.layer]) : v;
  });
  const magnitude = getMethod('magnitude');
  const ctx = contextWith({ weights: modelSource(model) }, cfg);
  const plan = await magnitude.plan(ctx, 2, { keepFirst: 'auto', keepLast: 'auto' });
  assert.deepEqual(keptLayers(plan), [0, 1, 3, 5], 'drops 2 (0.5) and 4 (0.8); 0 (0.2) is reserved');
  assert.deepEqual([plan.details.kept_first, plan.details.kept_last], [1, 0], 'auto: round(6/8) first, round(6/16) last');
  const scores = plan.details.block_scores as number[];
  let base = 0;
  for (const [name, shape] of expectedTensors(cfg)) {
    if (name.startsWith('model.layers.0.') && name.endsWith('weight')) for (const v of randomTensor(name, shape, 3)) base += Math.abs(v);
  }
  scores.forEach((s, l) => assert.ok(Math.abs(s - FACTOR[l] * base) < 1e-4 * base, `score of ${l}: ${s} vs ${FACTOR[l] * base}`));
  assert.deepEqual(keptLayers(await magnitude.plan(ctx, 2, { keepFirst: 0, keepLast: 0 })), [1, 3, 4, 5], 'without the heuristic 0 goes first');
  await assert.rejects(magnitude.plan(ctx, 5, { keepFirst: 'auto', keepLast: 1 }), /--magnitude-keep-first 1 and --magnitude-keep-last 1 leave 4 blocks/);
  disposeModel(model);
});

test('taylor: gradients of the calibration loss equal finite differences (accumulated over micro-batches); a block with zero output projections has importance 0', async () => {
  await initBackend('wasm');
  const model = modelOf();
  const before = tf.memory().numTensors;
  const g = await weightGradients(model, prompts, { microBatch: 2 });
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  assert.equal(g.backend, 'wasm');
  assert.equal(g.tokens, prompts.reduce((a, r) => a + r.length - 1, 0));
  const loss0 = nllOf(model, prompts);
  assert.ok(Math.abs(g.loss - loss0) < 1e-5, `loss ${g.loss} vs ${loss0}`);
  const h = 1e-2;
  for (const name of ['model.layers.1.self_attn.q_proj.weight', 'model.layers.3.mlp.down_proj.weight', 'model.layers.0.post_attention_layernorm.weight', 'model.layers.2.self_attn.v_proj.weight']) {
    const grad = g.grads.get(name)!;
    let k = 0;
    grad.forEach((v, i) => { if (Math.abs(v) > Math.abs(grad[k])) k = i; });
    const at = (delta: number) => {
      const m = modelOf(small, (n, v) => (n === name ? Float32Array.from(v, (x, i) => (i === k ? x + delta : x)) : v));
      try {
        return nllOf(m, prompts);
      } finally {
        disposeModel(m);
      }
    };
    const fd = (at(h) - at(-h)) / (2 * h);
    assert.ok(Math.abs(grad[k]) > 1e-3, `${name}: a gradient worth checking (${grad[k]})`);
    assert.ok(Math.abs(fd - grad[k]) < 1e-4 + 0.02 * Math.abs(grad[k]), `${name}[${k}]: gradient ${grad[k]}, finite difference ${fd}`);
  }
  disposeModel(model);

  // block 1's o_proj and down_proj are zero: its output is its input whatever its other weights, so Σ|W·∂L/∂W| = 0
  const cfg = parseConfig(tinyConfigJson({ vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 5, num_attention_heads: 2, num_key_value_heads: 1 }));
  const zeroed = modelOf(cfg, (name, v) => (/layers\.1\.(self_attn\.o_proj|mlp\.down_proj)/.test(name) ? new Float32Array(v.length) : v));
  const taylor = getMethod('taylor');
  const plan = await taylor.plan(contextWith({ gradients: () => weightGradients(zeroed, prompts), weights: modelSource(zeroed) }, cfg), 1, { keepFirst: 0, keepLast: 0 });
  const scores = plan.details.block_scores as number[];
  assert.equal(scores[1], 0);
  assert.ok(scores.every((s, l) => l === 1 || s > 1e-6), `scores ${scores}`);
  assert.deepEqual(keptLayers(plan), [0, 2, 3, 4]);
  assert.equal(plan.details.gradients_backend, 'wasm');
  disposeModel(zeroed);
});

test('taylor on the native backend computes its gradients on wasm and comes back', async (t) => {
  const info = await initBackend('native').catch(() => null);
  if (!info || info.name !== 'native') return t.skip('the native backend is not built here');
  const model = modelOf();
  const g = await weightGradients(model, prompts, { microBatch: 2 });
  assert.equal(g.backend, 'wasm');
  assert.equal(tf.getBackend(), 'native', 'back on the native backend');
  disposeModel(model);
  await initBackend('wasm');
  const ref = modelOf();
  const w = await weightGradients(ref, prompts, { microBatch: 2 });
  for (const [name, grad] of w.grads) {
    const other = g.grads.get(name)!;
    grad.forEach((v, i) => assert.ok(Math.abs(v - other[i]) < 1e-6 + 1e-4 * Math.abs(v), `${name}[${i}]`));
  }
  disposeModel(ref);
});

/** A scorer whose losses and similarities come from tables, recording what it was asked. */
function tableScorer(loss: (plan: CompressionPlan) => number, similarity: (plan: CompressionPlan) => number = () => 0): PlanScorer & { asked: CompressionPlan[][] } {
  const asked: CompressionPlan[][] = [];
  return {
    prompts: 5, asked,
    loss: async (plans) => {
      asked.push([...plans]);
      return plans.map(loss);
    },
    similarity: async (plans) => plans.map(similarity),
  };
}

test('sleb: removes one block at a time, re-scoring after each, never the first or last block (a loss table where one-shot ranking differs)', async () => {
  // the cost of the removed set: each block's own, plus 1 when both 1 and 2 are gone; block 5 is cheapest but last
  const COST = [9, 0.1, 0.2, 0.3, 0.5, 0];
  const removedOf = (plan: CompressionPlan) => {
    const kept = keptLayers(plan)!;
    return COST.map((_, b) => b).filter((b) => !kept.includes(b));
  };
  const scorer = tableScorer((plan) => {
    const gone = removedOf(plan);
    return gone.reduce((a, b) => a + COST[b], 0) + (gone.includes(1) && gone.includes(2) ? 1 : 0);
  });
  const cfg = { ...small, num_hidden_layers: 6 };
  const plan = await getMethod('sleb').plan(contextWith({ scorer }, cfg), 2, { keepFirst: 1, keepLast: 1 });
  assert.deepEqual(removedOf(plan), [1, 3], 'a one-shot ranking would take 1 and 2');
  assert.equal(scorer.asked.length, 2, 'scored again after the first removal');
  assert.deepEqual(scorer.asked.map((plans) => plans.map((p) => removedOf(p).join('+'))), [['1', '2', '3', '4'], ['1+2', '1+3', '1+4']]);
  const trace = plan.details.candidate_losses as { blocks: number[]; losses: number[] }[];
  assert.deepEqual(trace.map((s) => s.blocks), [[1, 2, 3, 4], [2, 3, 4]]);
  assert.deepEqual(trace[1].losses.map((v) => Math.round(v * 10) / 10), [1.3, 0.4, 0.6]);
  await assert.rejects(getMethod('sleb').plan(contextWith({ scorer }, cfg), 5, { keepFirst: 1, keepLast: 1 }), /--sleb-keep-first 1 plus --sleb-keep-last 1/);
});

test('the scorer: losses of removal plans equal an independent NLL, resident and streamed, the streamed candidates sharing one read of each layer', async () => {
  await initBackend('wasm');
  const model = modelOf();
  const plans = [identityPlan('x', 4), dropStep(identityPlan('x', 4), 1), dropStep(dropStep(identityPlan('x', 4), 2), 0)];
  const before = tf.memory().numTensors;
  const losses = await planScorer(model, prompts, { microBatch: 2 }).loss(plans);
  assert.equal(tf.memory().numTensors, before);
  plans.forEach((plan, k) => {
    const kept = keptLayers(plan)!;
    const dropped = modelFromTensors({ ...small, num_hidden_layers: kept.length }, keepLayers(model.tensors, kept));
    const want = nllOf(dropped, prompts);
    assert.ok(Math.abs(losses[k] - want) < 1e-5 * want, `plan ${k}: ${losses[k]} vs ${want}`);
  });
  assert.ok(Math.abs(losses[1] - losses[0]) > 1e-3, 'dropping a layer changes the loss');
  // a merge plan runs as a plan view: the same loss as the materialized model
  const merged = combineStep(identityPlan('x', 4), [1, 2, 3], [-1, 1, 1]);
  const [ml] = await planScorer(model, prompts).loss([merged]);
  const mm = materialize(planSource(modelSource(model), merged));
  assert.ok(Math.abs(ml - nllOf(mm, prompts)) < 1e-5 * ml);
  disposeModel(mm);

  const dir = join(root, 'streamed');
  await writeRandomModel(dir, { vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 4, num_attention_heads: 2, num_key_value_heads: 1 }, 3);
  const streamed = loadModel(dir, { streaming: true });
  const sl = await planScorer(streamed, prompts, { microBatch: 2 }).loss(plans);
  sl.forEach((v, k) => assert.ok(Math.abs(v - losses[k]) < 1e-5 * v, `streamed plan ${k}: ${v} vs ${losses[k]}`));
  assert.equal(streamed.stats.layerLoads, 4, 'the three candidates share one pass: each layer read once');
  disposeModel(streamed);
  disposeModel(model);
});

test('laco: the scan from the top, RDSC weights, and the automatic threshold (the largest that removes K) on a similarity table', async () => {
  // similarity of a candidate by the original layers its new merge holds
  const SIM: Record<string, number> = { '4,5,6': 0.9, '2,3': 0.4, '1,2': 0.6, '0,1': 0.3, '3,4,5': 0.95, '2,3,4': 0.2 };
  const scorer = tableScorer(() => 0, (plan) => {
    const key = plan.steps[plan.steps.length - 1].originalLayers.join();
    assert.ok(key in SIM, `candidate ${key} scored`);
    return SIM[key];
  });
  const cfg = { ...small, num_hidden_layers: 8 };
  const laco = getMethod('laco');
  const params = { threshold: 0.5, mergeLayers: 3, interval: 2, lowest: 0, highest: 'auto' };
  const plan = await laco.plan(contextWith({ scorer }, cfg), 3, params);
  // l = 7 − 3 = 4: 4 ← 5, 6 accepted (0.9); l = 2: 2 ← 3 rejected (0.4); l = 1: 1 ← 2 accepted (0.6): 3 removed
  assert.deepEqual(plan.steps.map((s) => [s.originalLayers, s.weights]), [[[4, 5, 6], [-1, 1, 1]], [[1, 2], [0, 1]]]);
  assert.deepEqual(plan.layers.map((l) => l.sources), [
    [{ layer: 0, weight: 1 }], [{ layer: 2, weight: 1 }], [{ layer: 3, weight: 1 }],
    [{ layer: 4, weight: -1 }, { layer: 5, weight: 1 }, { layer: 6, weight: 1 }], [{ layer: 7, weight: 1 }],
  ]);
  assert.deepEqual(plan.layers.map((l) => l.normsFrom), [0, 1, 3, 4, 7]);
  assert.deepEqual((plan.details.candidates as { accepted: boolean }[]).map((c) => c.accepted), [true, false, true]);
  // auto: above 0.6 the scan ends with 2 removed (also on the path through 3 ← 4, 5 above 0.9), so T is just below 0.6
  const auto = await laco.plan(contextWith({ scorer }, cfg), 3, { ...params, threshold: 'auto' });
  const T = auto.details.threshold as number;
  assert.ok(T < 0.6 && T > 0.6 - 1e-6, `threshold ${T}`);
  assert.deepEqual(auto.layers, plan.layers);
  await assert.rejects(laco.plan(contextWith({ scorer }, cfg), 3, { ...params, threshold: 0.7 }), /--laco-threshold 0.7 the scan removed 2 of the 3 layers/);
});

test('laco end to end: the scorer\'s similarity against hidden states computed here, and the written merged layer θ_l + Σ(θ_{l+k} − θ_l)', async () => {
  await initBackend('wasm');
  const model = modelOf();
  const plan = combineStep(identityPlan('x', 4), [1, 2], [0, 1]);
  const before = tf.memory().numTensors;
  const [same, sim] = await planScorer(model, prompts).similarity([identityPlan('x', 4), plan]);
  assert.equal(tf.memory().numTensors, before, 'no tensor left behind');
  assert.ok(Math.abs(same - 1) < 1e-6, `the original against itself: ${same}`);
  const candidate = materialize(planSource(modelSource(model), plan));
  const final = (m: LlamaModel, r: number[]) => {
    const { hiddenStates, logits } = forward(m, [r], { hiddenStates: true });
    logits!.dispose();
    const last = hiddenStates!.at(-1)!.dataSync() as Float32Array;
    hiddenStates!.forEach((x) => x.dispose());
    return last;
  };
  const want = prompts.reduce((acc, r) => {
    const a = final(model, r), b = final(candidate, r);
    let dot = 0, na = 0, nb = 0;
    a.forEach((v, k) => { dot += v * b[k]; na += v * v; nb += b[k] * b[k]; });
    return acc + dot / Math.sqrt(na * nb);
  }, 0) / prompts.length;
  assert.ok(Math.abs(sim - want) < 1e-5 && sim < 0.999, `similarity ${sim} vs ${want}`);
  disposeModel(candidate);
  disposeModel(model);

  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'laco-2');
  const written = await compressModel({ model: 'models/demo', out, method: 'laco', remove: 2, data, quiet: true });
  assert.equal(written.layers.length, 6);
  const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
  const orig = readSafetensors('models/demo/model.safetensors');
  const got = readSafetensors(join(out, 'model.safetensors'));
  let at = 0;
  for (const step of merge.steps as { layers: number[]; originalLayers: number[]; weights: number[] }[]) {
    assert.deepEqual(step.weights, [1 - (step.layers.length - 1), ...new Array(step.layers.length - 1).fill(1)]);
    at = step.layers[0];
    const group = step.originalLayers;
    for (const s of ['self_attn.q_proj.weight', 'mlp.gate_proj.weight', 'mlp.down_proj.weight']) {
      const base = orig.get(`model.layers.${group[0]}.${s}`)!;
      const m = got.get(`model.layers.${at}.${s}`)!;
      for (let e = 0; e < m.length; e += 7) {
        const want = group.slice(1).reduce((acc, l) => acc + (orig.get(`model.layers.${l}.${s}`)![e] - base[e]), base[e]);
        assert.ok(Math.abs(m[e] - want) < 1e-6 * Math.max(1, Math.abs(want)), `${s}[${e}]`);
      }
    }
    assert.deepEqual(got.get(`model.layers.${at}.input_layernorm.weight`), orig.get(`model.layers.${group[0]}.input_layernorm.weight`), 'norms of the first layer');
  }
  assert.ok(merge.threshold > -1 && merge.threshold < 1 && merge.candidates.length >= 1);
  assert.match(readFileSync(join(out, 'mergekit.yaml'), 'utf8'), /cannot express this plan/);
});
