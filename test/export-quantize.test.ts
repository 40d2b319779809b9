/**
 * Weight quantization: hand-computed affine ranges (tfjs-converter's zero nudging, numpy's
 * half-to-even rounding), agreement with tfjs-core's own weight decoder, and quantizeModelWeights.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { affineRange, dequantize, quantize, quantizeModelWeights, roundWeights, type QuantScheme } from '../src/weights/quantize.ts';
import { disposeModel, loadModel, readHfWeight } from '../src/model/model.ts';
import { expectedTensors } from '../src/model/config.ts';
import { forward } from '../src/model/forward.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';
import { writeRandomModel } from './random-model.ts';
import { scratchDir } from './scratch.ts';

test('uint8 range covering zero is nudged so that zero is exact', () => {
  const r = affineRange(-1, 3, 8);
  assert.equal(r.scale, 4 / 255);
  assert.equal(r.min, -64 * (4 / 255)); // zero point round(1 / (4/255)) = round(63.75) = 64
  const q = quantize(Float32Array.of(-1, 0, 3, 1.5), 'uint8');
  assert.deepEqual([...q.bytes], [0, 64, 255, 160]); // (1.5 + 64 s) / s = 159.625 → 160; 3 clips to the nudged max
  assert.equal(dequantize(q.bytes, q.quantization, 4)[1], 0);
});

test('a range not covering zero is not nudged; rounding is half to even; constant tensors are exact', () => {
  assert.deepEqual(affineRange(2, 4, 16), { scale: 2 / 65535, min: 2, max: 4 });
  const q = quantize(Float32Array.of(0, 2.5, 3.5, 0.5, 255), 'uint8'); // scale 1, min 0
  assert.deepEqual([...q.bytes], [0, 2, 4, 0, 255]);
  const c = quantize(Float32Array.of(0.3, 0.3, 0.3), 'uint16');
  assert.deepEqual(c.quantization, { dtype: 'uint16', min: Math.fround(0.3), scale: 1 });
  assert.deepEqual([...roundWeights(Float32Array.of(0.3, 0.3), 'uint8')], [Math.fround(0.3), Math.fround(0.3)]);
  assert.throws(() => quantize(Float32Array.of(1, NaN), 'uint8', 'w'), /w: holds NaN/);
  // a range float32 cannot hold (a corrupt weight of 3e38 beside -3e38) would give an infinite scale; float16 cannot hold past 65504
  assert.throws(() => quantize(Float32Array.of(-3e38, 3e38), 'uint8', 'w'), /^UserError: w: spans -3\.?\d*e\+38 to 3\.?\d*e\+38, wider than float32 holds: uint8 quantization's scale would be Infinity/);
  assert.throws(() => quantize(Float32Array.of(1, 65520), 'float16', 'w', 10), /^UserError: w: holds 65520 at index 11, beyond float16's range/);
  assert.equal(quantize(Float32Array.of(65504), 'float16').bytes.length, 2);
});

test('tfjs-core decodes mka\'s quantized bytes to exactly roundWeights() (float16, uint8, uint16)', () => {
  const rand = mulberry32(3);
  const data = Float32Array.from({ length: 1000 }, () => 0.2 * normal(rand));
  data[7] = 65504; // float16's largest value, held exactly (beyond it quantize refuses: above)
  for (const scheme of ['float16', 'uint8', 'uint16'] as QuantScheme[]) {
    const src = scheme === 'float16' ? data : data.map((v) => (v > 100 ? 1 : v));
    const q = quantize(src, scheme);
    const spec = { name: 'w', shape: [1000], dtype: 'float32' as const, quantization: q.quantization };
    const decoded = tf.io.decodeWeights(q.bytes.slice().buffer, [spec]).w;
    const want = roundWeights(src, scheme);
    assert.deepEqual(decoded.dataSync(), want, scheme);
    decoded.dispose();
    const maxAbs = src.reduce((m, v) => (Math.abs(v) < 65504 ? Math.max(m, Math.abs(v)) : m), 0);
    const bound = scheme === 'float16' ? 2 ** -11 * maxAbs : q.quantization!.scale! / 2 + 2 ** -23 * maxAbs; // + float32 rounding
    const maxErr = src.reduce((m, v, i) => (Number.isFinite(want[i]) ? Math.max(m, Math.abs(v - want[i])) : m), 0);
    assert.ok(maxErr <= bound, `${scheme}: error ${maxErr} > ${bound}`);
  }
  assert.equal(roundWeights(data, 'float16')[7], 65504);
});

test('quantizeModelWeights rounds every weight, resident or streamed, and leaves no tensors behind', async () => {
  await initBackend('wasm');
  const tmp = scratchDir('quant');
  try {
    const dir = join(tmp, 'm');
    await writeRandomModel(dir, {}, 2);
    const model = loadModel(dir);
    const streamed = loadModel(dir, { streaming: true });
    const before = tf.memory().numTensors;
    const q = quantizeModelWeights(model, 'uint8');
    const qs = quantizeModelWeights(streamed, 'uint8');
    for (const name of expectedTensors(model.config).keys()) {
      assert.deepEqual(readHfWeight(q, name), roundWeights(readHfWeight(model, name), 'uint8'), name);
    }
    assert.deepEqual(qs.checkpoint!.read('model.layers.1.mlp.up_proj.weight'), readHfWeight(q, 'model.layers.1.mlp.up_proj.weight'));
    const ids = [[1, 2, 3, 4, 5]];
    const a = forward(q, ids).logits!, b = forward(qs, ids).logits!, f = forward(model, ids).logits!;
    assert.deepEqual(a.dataSync(), b.dataSync());
    assert.notDeepEqual(a.dataSync(), f.dataSync());
    [a, b, f].forEach((t) => t.dispose());
    disposeModel(q);
    disposeModel(qs);
    assert.equal(tf.memory().numTensors, before);
    const none = quantizeModelWeights(model, 'none');
    assert.deepEqual(none.tensors.get('model.norm.weight')!.dataSync(), model.tensors.get('model.norm.weight')!.dataSync());
    disposeModel(none);
    disposeModel(streamed);
    disposeModel(model);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
