/**
 * The native backend's fused decoder layer (MkaDecoderLayer, native/layer.c) against the op-by-op
 * path it replaces (the same kernels one tfjs op at a time: the same bits), against plain tfjs ops
 * (cpu backend) on the demo model's MMLU predictions, and its operand checks. Its agreement with
 * transformers is decoder.test.ts's golden check on the native backend, which runs through it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { F32, loadNativeAddon } from '../src/runtime/native-addon.ts';
import { NATIVE_BACKEND } from '../src/runtime/native-kernels.ts';
import { hasKernel } from '../src/model/ops.ts';
import { KERNELS } from '../src/runtime/kernel-names.ts';
import { disposeCache, forward } from '../src/model/forward.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { evaluateMmlu } from '../src/eval/mmlu/evaluate.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { maxAbsDiff, NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const addon = loadNativeAddon().addon;
const NO_NATIVE = addon ? false : 'native addon not built: native layer tests skipped';

/** Runs fn with MkaDecoderLayer unregistered from the native backend, so forward() composes the ops. */
function withoutFusedLayer<T>(fn: () => T): T {
  const kernel = tf.getKernel(KERNELS.decoderLayer, NATIVE_BACKEND)!;
  tf.unregisterKernel(KERNELS.decoderLayer, NATIVE_BACKEND);
  try {
    return fn();
  } finally {
    tf.registerKernel(kernel);
  }
}

/** Logits, hidden states and the returned cache of a cached, batched pass, as plain arrays. */
function pass(dir: string): Float32Array[] {
  const model = loadModel(dir);
  try {
    const pre = forward(model, [[1, 17, 33, 100, 5]], { returnCache: true, logits: 'none' });
    const r = forward(model, [[9, 41, 77], [12, 3, 0]], { cache: pre.cache, hiddenStates: true, returnCache: true });
    disposeCache(pre.cache!);
    const out = [r.logits!, ...r.hiddenStates!, ...r.cache!.keys, ...r.cache!.values].map((t) => t.dataSync() as Float32Array);
    r.logits!.dispose();
    r.hiddenStates!.forEach((t) => t.dispose());
    disposeCache(r.cache!);
    return out;
  } finally {
    disposeModel(model);
  }
}

test('native: the fused layer gives the op-by-op kernels\' bits (bias, GQA, sliding window, bf16/f16, cache of batch 1)', { skip: NO_NATIVE || NO_SHARED }, async () => {
  await initBackend('native');
  const tiny = join(SHARED!, 'fixtures/hf-tiny');
  for (const name of readdirSync(tiny).sort()) {
    const before = tf.memory().numTensors;
    assert.ok(hasKernel(KERNELS.decoderLayer));
    const fused = pass(join(tiny, name));
    assert.equal(tf.memory().numTensors, before, `${name}: the fused path leaks no tensors`);
    const composed = withoutFusedLayer(() => {
      assert.ok(!hasKernel(KERNELS.decoderLayer));
      return pass(join(tiny, name));
    });
    assert.equal(fused.length, composed.length);
    fused.forEach((f, i) => assert.deepEqual(f, composed[i], `${name}: output ${i} differs`));
  }
});

test('native: the demo model\'s MMLU predictions equal plain tfjs ops\' (cpu backend), logits within 1e-4', { skip: NO_NATIVE }, async () => {
  const tmp = scratchDir('native-layer');
  try {
    await ensureBenchmark(tmp);
    const data = loadMmlu(tmp, {});
    const tokenizer = await loadTokenizer('models/demo');
    const run = async (backend: 'native' | 'cpu') => {
      await initBackend(backend);
      const model = loadModel('models/demo');
      try {
        const before = tf.memory().numTensors;
        const r = await evaluateMmlu({ model, tokenizer, data, ntrain: 5, limit: 16, subjects: [data.subjects[0]] });
        assert.equal(tf.memory().numTensors, before);
        return r.records;
      } finally {
        disposeModel(model);
      }
    };
    const native = await run('native'), cpu = await run('cpu');
    assert.equal(native.length, 16);
    assert.ok(native.every((r) => r.cached), 'questions ran on the cached prefix');
    assert.deepEqual(native.map((r) => r.prediction), cpu.map((r) => r.prediction));
    assert.ok(maxAbsDiff(native.map((r) => r.answerLogits), cpu.map((r) => r.answerLogits)) < 1e-4);
    native.forEach((r, i) => assert.ok(Math.abs(r.nll - cpu[i].nll) < 1e-4 * r.nllTokens, `question ${i}: loss`));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('decoderLayer: missing or short operands and bad sizes throw instead of crashing', { skip: NO_NATIVE }, () => {
  const [B, T, H, nH, nKV, hd, F] = [1, 2, 8, 2, 1, 4, 12];
  const f = (n: number) => new Float32Array(n);
  const w = (rows: number, cols: number) => ({ format: F32, rows, cols, data: f(rows * cols) });
  const desc = () => ({
    x: f(B * T * H), h: f(B * T * H), norm1: f(H), norm2: f(H) as Float32Array | null,
    weights: [w(nH * hd, H), w(nKV * hd, H), w(nKV * hd, H), w(H, nH * hd), w(F, H), w(F, H), w(H, F)],
    cos: f(T * hd), sin: f(T * hd), B, T, H, nH, nKV, hd, F, eps: 1e-5, scale: 0.5,
  });
  addon!.decoderLayer(desc() as never);
  const short = desc();
  short.weights[4] = { ...w(F, H), data: f(F * H - 1) };
  assert.throws(() => addon!.decoderLayer(short as never), /weights\[4\] \(gate\): data .* outside/);
  const wrong = desc();
  wrong.weights[6] = w(H, F + 1);
  assert.throws(() => addon!.decoderLayer(wrong as never), /weights\[6\] \(down\) is \[8, 13\], the layer needs \[8, 12\]/);
  const missing = desc();
  missing.norm2 = null;
  assert.throws(() => addon!.decoderLayer(missing as never), /norm2 is required/);
  assert.throws(() => addon!.decoderLayer({ ...desc(), nH: 3, nKV: 2 } as never), /multiple of nKV/);
  assert.throws(() => addon!.decoderLayer({ ...desc(), S0: 4 } as never), /pastK is required/);
  assert.throws(() => addon!.decoderLayer({ ...desc(), weights: desc().weights.slice(1) } as never), /array of 7 weight descriptors/);
});
