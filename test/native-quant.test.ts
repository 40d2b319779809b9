/**
 * Contract 1's packed integer weights through the native backend's tfjs kernels: ops.linear's
 * MkaLinearQ on q8/q4 Weights equals the addon's linear on the same bytes; a model whose projections
 * and embedding are packed runs through the fused decoder layer with the op-by-op path's bits, and
 * close to the same model with the dequantized weights in float32; tf.memory() stays flat. (The
 * kernels' numerics against float64: native-kernels.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadNativeAddon, Q4, Q8 } from '../src/runtime/native-addon.ts';
import { NATIVE_BACKEND } from '../src/runtime/native-kernels.ts';
import { KERNELS } from '../src/runtime/kernel-names.ts';
import { linear, type Weight } from '../src/model/ops.ts';
import { forward } from '../src/model/forward.ts';
import { disposeModel, modelFromTensors, type LlamaModel } from '../src/model/model.ts';
import { parseConfig, expectedTensors } from '../src/model/config.ts';
import { randomTensor, tinyConfigJson } from './random-model.ts';
import { maxAbsDiff } from './helpers.ts';

const addon = loadNativeAddon().addon;
const NO_NATIVE = addon ? false : 'native addon not built: integer kernels need it';

/**
 * W [rows, cols] quantized to nearest (symmetric: Q8_0 / Q4_0 scales; asymmetric: min and range),
 * packed as contract 1 says; also the dequantized values.
 */
function quantize(v: Float32Array, rows: number, cols: number, bits: 8 | 4, group: number, symmetric: boolean) {
  const kb = Math.ceil(cols / 32), groups = Math.ceil(cols / group), rowBytes = kb * (bits === 8 ? 32 : 16);
  const bytes = new Uint8Array(rows * rowBytes), scales = new Float32Array(rows * groups), mins = symmetric ? null : new Float32Array(rows * groups);
  const deq = new Float32Array(rows * cols);
  for (let j = 0; j < rows; j++) {
    for (let g = 0; g < groups; g++) {
      const lo = g * group, hi = Math.min(cols, lo + group);
      let amax = 0, vmin = Infinity, vmax = -Infinity, signed = 0;
      for (let i = lo; i < hi; i++) {
        const x = v[j * cols + i];
        if (Math.abs(x) > amax) { amax = Math.abs(x); signed = x; }
        vmin = Math.min(vmin, x);
        vmax = Math.max(vmax, x);
      }
      const s = Math.fround(symmetric ? (bits === 8 ? amax / 127 : signed / -8) : (vmax - vmin) / (bits === 8 ? 255 : 15));
      const m = symmetric ? 0 : Math.fround(vmin);
      scales[j * groups + g] = s;
      if (mins) mins[j * groups + g] = m;
      for (let i = lo; i < hi; i++) {
        const x = v[j * cols + i];
        let q = s === 0 ? 0 : Math.round((x - m) / s);
        if (symmetric && bits === 4) q = Math.max(0, Math.min(15, Math.round(x / s) + 8));
        else if (symmetric) q = Math.max(-127, Math.min(127, q));
        else q = Math.max(0, Math.min(bits === 8 ? 255 : 15, q));
        deq[j * cols + i] = symmetric ? s * (bits === 4 ? q - 8 : q) : s * q + m;
        const b = Math.floor(i / 32), p = i % 32, base = j * rowBytes;
        if (bits === 8) bytes[base + b * 32 + p] = q & 0xff;
        else bytes[base + b * 16 + (p & 15)] |= p < 16 ? q : q << 4;
      }
    }
  }
  return { bytes, scales, mins, deq, rowBytes, groups };
}

/** A contract 1 Weight of W [rows, cols]; the caller disposes it. */
function quantWeight(v: Float32Array, rows: number, cols: number, bits: 8 | 4, group: number, symmetric: boolean, actBits?: 8) {
  const q = quantize(v, rows, cols, bits, group, symmetric);
  const weight: Weight = {
    dtype: bits === 8 ? 'q8' : 'q4', tensor: tf.tensor2d(new Int32Array(q.bytes.buffer), [rows, q.rowBytes / 4], 'int32'),
    quant: {
      cols, group, symmetric, scales: tf.tensor2d(q.scales, [rows, q.groups]),
      ...(q.mins ? { mins: tf.tensor2d(q.mins, [rows, q.groups]) } : {}), ...(actBits ? { actBits } : {}),
    },
  };
  return { weight, ...q };
}

const disposeWeight = (w: Weight) => tf.dispose([w.tensor, w.quant!.scales, ...(w.quant!.mins ? [w.quant!.mins] : [])]);

test('ops.linear on q8/q4 Weights runs MkaLinearQ: the addon\'s products on the same bytes (float32 rows, or with --compute int8 integer ones), bias and residual added, no tensor left', { skip: NO_NATIVE }, async () => {
  const rows = 40, cols = 96, m = 6;
  const v = randomTensor('w', [rows, cols], 3), xv = randomTensor('x', [m, cols], 4);
  for (const compute of ['auto', 'int8'] as const) {
    await initBackend('native', { compute });
    for (const [bits, group, symmetric, actBits] of [[4, 32, true, undefined], [8, 96, true, 8], [4, 64, false, undefined], [8, 32, false, undefined]] as const) {
      const before = tf.memory().numTensors;
      const { weight, bytes, scales, mins } = quantWeight(v, rows, cols, bits, group, symmetric, actBits);
      const x = tf.tensor2d(xv, [m, cols]), bias = tf.tensor1d(randomTensor('b', [rows], 5)), res = tf.tensor2d(randomTensor('r', [m, rows], 6), [m, rows]);
      const y = linear(x, weight, bias, res);
      const want = Float32Array.from(res.dataSync());
      addon!.linear({
        x: xv, m, y: want, accumulate: true, bias: bias.dataSync() as Float32Array,
        weight: { format: bits === 8 ? Q8 : Q4, rows, cols, data: bytes, scales, mins, group, perToken: actBits === 8, floatProducts: compute === 'auto' && actBits !== 8 },
      });
      assert.deepEqual(y.dataSync(), want, `${compute}: q${bits} group ${group} ${symmetric ? 'symmetric' : 'with mins'}`);
      tf.dispose([x, bias, res, y]);
      disposeWeight(weight);
      assert.equal(tf.memory().numTensors, before);
    }
  }
  await initBackend('native');
});

/** The tiny random model with its projections (and embedding) packed: q4 group 32 layers, a q8 per-channel down_proj, q8 embedding. */
function quantizedModel(): { model: LlamaModel; dequantized: LlamaModel } {
  const c = parseConfig(tinyConfigJson({ hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2 }), 'test');
  const tensors = new Map<string, tf.Tensor>(), deqTensors = new Map<string, tf.Tensor>(), packed = new Map<string, Weight>();
  for (const [name, shape] of expectedTensors(c)) {
    const v = randomTensor(name, shape, 11);
    const matrix = /_proj\.weight$|embed_tokens/.test(name);
    if (!matrix) {
      tensors.set(name, tf.tensor(v, shape));
      deqTensors.set(name, tf.tensor(v, shape));
      continue;
    }
    const [bits, group] = name.includes('down_proj') ? [8, shape[1]] as const : name.includes('embed') ? [8, 32] as const : [4, 32] as const;
    const { weight, deq } = quantWeight(v, shape[0], shape[1], bits, group, !name.includes('up_proj'));
    packed.set(name, weight);
    deqTensors.set(name, tf.tensor(deq, shape));
  }
  const model = modelFromTensors(c, tensors, null, packed);
  return { model, dequantized: modelFromTensors(c, deqTensors) };
}

test('a model with packed integer projections and embedding: the fused layer gives the op-by-op bits, close to its dequantized float32 twin', { skip: NO_NATIVE }, async () => {
  await initBackend('native');
  const before = tf.memory().numTensors;
  const { model, dequantized } = quantizedModel();
  try {
    const ids = [[1, 5, 9, 33, 2, 70, 11, 4], [3, 3, 8, 1, 90, 6, 2, 7]];
    const logits = (m: LlamaModel) => {
      const r = forward(m, ids, { logits: 'all' });
      const v = r.logits!.arraySync() as number[][][];
      r.logits!.dispose();
      return v;
    };
    const fused = logits(model);
    const kernel = tf.getKernel(KERNELS.decoderLayer, NATIVE_BACKEND)!;
    tf.unregisterKernel(KERNELS.decoderLayer, NATIVE_BACKEND);
    let composed: number[][][];
    try {
      composed = logits(model);
    } finally {
      tf.registerKernel(kernel);
    }
    assert.deepEqual(fused, composed, 'the same kernels in the same order');
    const float = logits(dequantized);
    const scale = Math.max(...float.flat(2).map(Math.abs));
    // the only difference left is int8 activations (a relative rounding of at most 1/254 per block)
    assert.ok(maxAbsDiff(fused, float) <= 0.02 * scale, `logits differ from the dequantized model's by ${maxAbsDiff(fused, float)} (scale ${scale})`);
  } finally {
    disposeModel(model);
    disposeModel(dequantized);
  }
  assert.equal(tf.memory().numTensors, before);
});
