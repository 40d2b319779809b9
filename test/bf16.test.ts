/**
 * --compute bfloat16 (bf16 products: weights packed once into bf16 panels, activations rounded at
 * each product's input, float32 accumulation) end to end: logits of every golden model within a
 * stated tolerance of transformers' float32 ones, the same MMLU answers as float32 on the demo model,
 * how `auto` resolves, what an in-memory (merged) model holds, that merges read float32 weights
 * whatever the compute dtype, and tf.memory() staying flat.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { currentProfile } from '../src/runtime/profile.ts';
import { loadNativeAddon } from '../src/runtime/native-addon.ts';
import { disposeModel, loadModel, readHfWeight } from '../src/model/model.ts';
import { disposeCache, forward } from '../src/model/forward.ts';
import { planSource, identityPlan, mergeStep } from '../src/compress/merge-plan.ts';
import { materialize } from '../src/compress/plan-model.ts';
import { modelSource } from '../src/weights/source.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { evaluateMmlu } from '../src/eval/mmlu/evaluate.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { maxAbsDiff, NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const NO_NATIVE = loadNativeAddon().addon ? false : 'native addon not built: bf16 products need the native backend';
const TINY = SHARED ? join(SHARED, 'fixtures/hf-tiny') : '';
const cases = SHARED ? readdirSync(TINY).sort() : [];

/**
 * Tolerance of bf16 logits against float32 ones: 2⁻⁴ (6.25%) of the largest float32 logit. bf16 keeps
 * 8 significant bits, so every product input is off by up to 2⁻⁹ relative; each decoder layer rounds
 * the inputs of its 7 projections and of attention's two products (q, k, the softmax's p, v), lm_head
 * rounds once more, and these errors add up along the residual stream. On the golden models (2-3
 * layers, random weights) the worst case measured is 4.1% (c_llama_tied_f16, whose tied float16
 * embedding is also used rounded to bf16), the others 0.5-1.0%.
 */
const BF16_LOGIT_TOLERANCE = 2 ** -4;

const argmax = (x: number[]) => x.indexOf(Math.max(...x));
const margin = (x: number[]) => {
  const s = [...x].sort((a, b) => b - a);
  return s[0] - s[1];
};

test('bf16 products: every golden model\'s logits within 2^-4 of transformers\' float32 logits, the same argmax wherever float32 is clear', { skip: NO_NATIVE || NO_SHARED }, async () => {
  await initBackend('native', { compute: 'bfloat16' });
  for (const name of cases) {
    const g = JSON.parse(readFileSync(join(TINY, name, 'golden.json'), 'utf8')) as { sequences: { input_ids: number[]; logits: number[][] }[] };
    const before = tf.memory().numTensors;
    const model = loadModel(join(TINY, name));
    try {
      assert.equal(model.compute, 'bfloat16', name);
      const q = model.packed?.get('model.layers.0.self_attn.q_proj.weight');
      assert.deepEqual(q?.panels, [model.config.num_attention_heads * model.config.head_dim, model.config.hidden_size], `${name}: q_proj packed into bf16 panels`);
      for (const s of g.sequences) {
        const r = forward(model, [s.input_ids], {});
        const logits = (r.logits!.arraySync() as number[][][])[0];
        r.logits!.dispose();
        const top = Math.max(...s.logits.flat().map(Math.abs)), tol = BF16_LOGIT_TOLERANCE * top;
        const err = maxAbsDiff(logits, s.logits);
        assert.ok(err <= tol, `${name}: logits differ by ${err} > ${tol}`);
        assert.ok(err > 1e-5, `${name}: logits equal float32's (${err}): the bf16 products did not run`);
        s.logits.forEach((row, t) => {
          if (margin(row) > 2 * tol) assert.equal(argmax(logits[t]), argmax(row), `${name}: position ${t}`);
        });
      }
    } finally {
      disposeModel(model);
    }
    assert.equal(tf.memory().numTensors, before, `${name}: tensors`);
  }
});

test('bf16 products: a KV-cached, batched, micro-batched pass gives the plain pass\'s logits (bf16 rounding apart)', { skip: NO_NATIVE || NO_SHARED }, async () => {
  await initBackend('native', { compute: 'bfloat16' });
  const model = loadModel(join(TINY, 'd_mistral'), { streaming: true });
  try {
    const before = tf.memory().numTensors;
    const ids = [[5, 9, 13, 2, 7, 11, 3, 8], [4, 4, 6, 1, 9, 12, 30, 2]];
    const whole = forward(model, ids, { logits: 'all' });
    const pre = forward(model, [ids[0].slice(0, 5)], { logits: 'none', returnCache: true });
    const rest = forward(model, [ids[0].slice(5)], { cache: pre.cache, logits: 'all' });
    const micro = forward(model, ids, { logits: 'all', microBatch: 1 });
    const w = whole.logits!.arraySync() as number[][][];
    const scale = Math.max(...w.flat(2).map(Math.abs));
    assert.ok(maxAbsDiff((rest.logits!.arraySync() as number[][][])[0], w[0].slice(5)) <= 2 ** -6 * scale, 'cached');
    assert.deepEqual(micro.logits!.arraySync(), w, 'micro-batches: rows are computed independently');
    disposeCache(pre.cache!);
    for (const t of [whole.logits!, rest.logits!, micro.logits!]) t.dispose();
    assert.equal(tf.memory().numTensors, before);
  } finally {
    disposeModel(model);
  }
});

test('--compute auto: bfloat16 for BF16 checkpoints where the CPU has bf16 products, float32 otherwise; wasm refuses bfloat16', { skip: NO_NATIVE || NO_SHARED }, async () => {
  const info = await initBackend('native');
  assert.equal(info.profile.compute, 'auto');
  const hardware = !!currentProfile().bf16Products?.hardware;
  for (const [name, bf16] of [['b_llama3_gqa_bf16_sharded', true], ['a_llama2', false], ['c_llama_tied_f16', false]] as const) {
    const model = loadModel(join(TINY, name), { streaming: true });
    assert.equal(model.compute, bf16 && hardware ? 'bfloat16' : 'float32', name);
    disposeModel(model);
  }
  await initBackend('native', { compute: 'float32' });
  const f32 = loadModel(join(TINY, 'b_llama3_gqa_bf16_sharded'));
  assert.equal(f32.compute, 'float32');
  assert.equal(f32.packed?.get('model.layers.0.self_attn.q_proj.weight')?.panels, undefined, 'kept as stored bf16, widened per tile');
  disposeModel(f32);
  await assert.rejects(initBackend('wasm', { compute: 'bfloat16' }), /--compute bfloat16: the wasm backend has no bf16 products/);
  await initBackend('wasm');
  assert.throws(() => loadModel(join(TINY, 'a_llama2'), { compute: 'bfloat16' }), /the wasm backend has no bf16 products/);
});

test('bf16 products: an in-memory merge of a BF16 model computes in bf16 from float32 merged weights; readHfWeight gives its bf16 values', { skip: NO_NATIVE || NO_SHARED }, async () => {
  await initBackend('native', { compute: 'bfloat16' });
  const before = tf.memory().numTensors;
  const source = loadModel(join(TINY, 'b_llama3_gqa_bf16_sharded'));
  const plan = mergeStep(identityPlan('test', source.config.num_hidden_layers), 0, 1, 0.3);
  const merged = materialize(planSource(modelSource(source), plan));
  try {
    assert.equal(merged.compute, 'bfloat16');
    const name = 'model.layers.0.mlp.down_proj.weight';
    assert.ok(merged.packed?.get(name)?.panels, 'packed into panels');
    // the merge itself is as in float32 compute: 0.3·W0 + 0.7·W1 of the stored values in float64, rounded to float32, then to bf16 for the products
    const w0 = source.checkpoint!.read('model.layers.0.mlp.down_proj.weight'), w1 = source.checkpoint!.read('model.layers.1.mlp.down_proj.weight');
    const f = new Float32Array(1), u = new Uint32Array(f.buffer);
    const bf16 = (x: number) => ((f[0] = x), (u[0] = ((u[0] + 0x7fff + ((u[0] >>> 16) & 1)) >>> 16) << 16), f[0]);
    const got = readHfWeight(merged, name);
    got.forEach((v, i) => assert.equal(v, bf16(Math.fround(0.3 * w0[i] + (1 - 0.3) * w1[i])), `element ${i}`));
    const r = forward(merged, [[1, 2, 3]], { logits: 'last' });
    assert.ok(Number.isFinite(r.logits!.dataSync()[0]));
    r.logits!.dispose();
  } finally {
    disposeModel(merged);
    disposeModel(source);
  }
  assert.equal(tf.memory().numTensors, before);
});

test('bf16 products: the demo model answers its MMLU questions as float32 does (>= 99%)', { skip: NO_NATIVE }, async () => {
  const tmp = scratchDir('bf16');
  try {
    await ensureBenchmark(tmp);
    const data = loadMmlu(tmp, {});
    const tokenizer = await loadTokenizer('models/demo');
    const run = async (compute: 'float32' | 'bfloat16') => {
      await initBackend('native', { compute });
      const model = loadModel('models/demo');
      try {
        assert.equal(model.compute, compute);
        const before = tf.memory().numTensors;
        const r = await evaluateMmlu({ model, tokenizer, data, ntrain: 5, limit: 24 });
        assert.equal(tf.memory().numTensors, before);
        return r.records;
      } finally {
        disposeModel(model);
      }
    };
    const f32 = await run('float32'), bf16 = await run('bfloat16');
    assert.equal(bf16.length, 24 * data.subjects.length);
    const agree = bf16.filter((r, i) => r.prediction === f32[i].prediction).length;
    assert.ok(agree >= 0.99 * bf16.length, `${agree} of ${bf16.length} predictions agree`);
    assert.ok(maxAbsDiff(bf16.map((r) => r.answerLogits), f32.map((r) => r.answerLogits)) > 0, 'bf16 logits differ from float32 ones');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
