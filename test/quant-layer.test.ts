/**
 * AWQ, SmoothQuant and GPTQ on one decoder layer against an independent reference
 * (test/goldens/quant/make_layer.py: transformers' own LlamaDecoderLayer in float64, the three methods
 * re-implemented from their papers and the authors' code): the scales each method computes, what it
 * folds into the norms, AWQ's exponent search, GPTQ's Hessians from the
 * partly quantized layer, and the packed linears that come out. mka computes the layer in float32, so
 * values agree to float32 precision and a rounding code may flip where a weight lies on a boundary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { layerTensorShapes, parseConfig, type LlamaConfig } from '../src/model/config.ts';
import { dequantize, getCode, quantizeRtn, type PackedMatrix } from '../src/io/packed.ts';
import { calibrationBatches, disposeCalibration, embedPrompts, inputHessians, layerWeights, projectionInput, type CalibrationSet } from '../src/quant/calibration.ts';
import { awq, roundScaled } from '../src/quant/methods/awq.ts';
import { gptq } from '../src/quant/methods/gptq.ts';
import { smoothquant } from '../src/quant/methods/smoothquant.ts';
import { LINEARS, specFor, type LayerResult, type QuantGrid, type QuantMethod } from '../src/quant/method.ts';
import { methodParams } from '../src/quant/registry.ts';
import { tinyConfigJson } from './random-model.ts';

interface Packed { codes: number[]; scales: number[]; mins: number[] | null }
interface GptqOut extends Packed { loss: number; H_diag: number[]; H_sum: number }
interface Case {
  name: string; config: Record<string, number | boolean>; bits: 4 | 8; group: number; sym: boolean;
  weights: Record<string, number[]>; sequences: number[][]; lengths: number[];
  awq: { sites: { linears: string[]; alpha: number; losses: number[]; margin: number; scales: number[] }[]; norms: Record<string, number[]>; packed: Record<string, Packed> };
  smoothquant: { sites: { linears: string[]; act_max: number[]; scales: number[] }[]; norms: Record<string, number[]>; packed: Record<string, Packed> };
  gptq: Record<string, GptqOut>;
}
const golden = JSON.parse(readFileSync(new URL('./goldens/quant/layer.json', import.meta.url), 'utf8')) as { cases: Case[] };

function setup(c: Case): { config: LlamaConfig; shapes: Map<string, number[]>; weights: Map<string, Float32Array>; calibration: CalibrationSet } {
  const config = parseConfig(tinyConfigJson({ ...c.config, num_hidden_layers: 1 }));
  const shapes = layerTensorShapes(config);
  const weights = new Map(Object.entries(c.weights).map(([k, v]) => [k, Float32Array.from(v)]));
  assert.deepEqual([...weights.keys()].sort(), [...shapes.keys()].sort(), `${c.name}: the golden holds the layer's tensors`);
  // the sequences as right-padded micro-batches of 2 (a prompt's "ids" name its rows), so padding is masked as in a real run
  const H = config.hidden_size;
  const prompts = c.lengths.map((T, s) => Array.from({ length: T }, (_, t) => s * 1000 + t));
  const calibration = embedPrompts(prompts, H, (ids) => {
    const out = new Float32Array(ids.length * H);
    ids.forEach((id, i) => out.set(c.sequences[Math.floor(id / 1000)].slice((id % 1000) * H, (id % 1000 + 1) * H), i * H));
    return out;
  }, calibrationBatches(c.lengths, config, 2));
  return { config, shapes, weights, calibration };
}

async function run(c: Case, method: QuantMethod, grid: QuantGrid, params: Record<string, unknown> = {}): Promise<{ result: LayerResult; calibration: CalibrationSet; config: LlamaConfig; shapes: Map<string, number[]>; weights: Map<string, Float32Array> }> {
  const s = setup(c);
  const result = await method.quantizeLayer({
    config: s.config, layer: 0, weights: s.weights, shapes: s.shapes, spec: (suffix) => specFor(grid, s.shapes.get(suffix)![1]),
    calibration: s.calibration, params: methodParams(method, params), log: () => {},
  });
  return { result, ...s };
}

function close(got: ArrayLike<number>, want: readonly number[], tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i]));
    if (d > worst) [worst, at] = [d, i];
  }
  assert.ok(worst <= tol, `${what}: ${got[at]} vs ${want[at]} at ${at} (relative ${worst.toExponential(2)} > ${tol})`);
}

/**
 * A packed linear against the reference's codes, scales and mins. A scale (or min) is a float16
 * value, so float32 noise in the weights may round it to the neighbouring float16 number (1e-3 away):
 * such groups are counted, not compared. Elsewhere every code is the reference's, but for at most
 * `flips` of them, one step away, whose weight lies on a rounding boundary.
 */
function samePacked(pm: PackedMatrix, want: Packed, what: string, flips = 0.002): void {
  assert.equal(pm.rows * pm.cols, want.codes.length, `${what}: size`);
  const groups = pm.scales.length / pm.rows;
  const near = (a: number, b: number) => Math.abs(a - b) <= 1e-6 * Math.abs(b) + 1e-12;
  const off = new Set<number>();
  for (let i = 0; i < want.scales.length; i++) {
    if (near(pm.scales[i], want.scales[i]) && (!want.mins || near(pm.mins![i], want.mins[i]))) continue;
    assert.ok(Math.abs(pm.scales[i] - want.scales[i]) <= 1e-3 * Math.abs(want.scales[i]), `${what}: scale ${i} is ${pm.scales[i]}, the reference's ${want.scales[i]}`);
    off.add(i);
  }
  assert.ok(off.size <= Math.max(1, flips * want.scales.length), `${what}: ${off.size} of ${want.scales.length} groups have another float16 scale or min`);
  let differ = 0;
  for (let i = 0; i < want.codes.length; i++) {
    const r = Math.floor(i / pm.cols), c = i % pm.cols;
    const q = getCode(pm, r, c);
    if (q === want.codes[i] || off.has(r * groups + Math.floor(c / pm.spec.group))) continue;
    assert.equal(Math.abs(q - want.codes[i]), 1, `${what}: code ${i} is ${q}, the reference's ${want.codes[i]}`);
    differ++;
  }
  assert.ok(differ <= flips * want.codes.length, `${what}: ${differ} of ${want.codes.length} codes on the other side of a rounding boundary`);
}

test('AWQ on a decoder layer equals the reference: the exponent each site picks and its module errors, the folded norms and the rounded linears', async () => {
  await initBackend('auto', { log: () => {} });
  for (const c of golden.cases) {
    const before = tf.memory().numTensors;
    const grid: QuantGrid = { bits: c.bits, group: c.group, symmetric: c.sym };
    const { result, calibration } = await run(c, awq, grid);
    disposeCalibration(calibration);
    assert.equal(tf.memory().numTensors, before, `${c.name}: tf.memory flat`);
    const sites = Object.entries(result.stats);
    assert.equal(sites.length, c.awq.sites.length, `${c.name}: scale sites (v→o only without grouped-query attention)`);
    c.awq.sites.forEach((want, i) => {
      const [name, s] = sites[i];
      assert.equal(name, want.linears.join('+'), `${c.name}: site ${i}`);
      assert.ok(want.margin > 1e-3, `${c.name} ${name}: the golden's best exponent wins by ${want.margin} (regenerate with another seed if not)`);
      assert.equal(s.alpha, want.alpha, `${c.name} ${name}: exponent`);
      close([s.error], [want.losses[Math.round(want.alpha * want.losses.length)]], 2e-3, `${c.name} ${name}: module error at the chosen exponent`);
      close([s.error_rtn], [want.losses[0]], 2e-3, `${c.name} ${name}: module error at exponent 0`);
    });
    for (const [norm, want] of Object.entries(c.awq.norms)) close(result.floats.get(norm)!, want, 1e-4, `${c.name}: AWQ's ${norm}`);
    for (const p of LINEARS) samePacked(result.packed.get(`${p}.weight`)!, c.awq.packed[p], `${c.name}: AWQ's ${p}`);
  }
});

test('AWQ\'s candidate values equal the packed path\'s to the bit: dequantize(quantizeRtn(w·s)) / s, on every grid (zero groups, -0 codes, rounding ties)', () => {
  const rows = 6, cols = 256;
  let seed = 3;
  const next = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
  const w = Float32Array.from({ length: rows * cols }, (_, i) => (i < 128 ? 0 : i % 97 === 0 ? 0.5 : next() * (i % 5 === 0 ? 4 : 0.1)));
  const s = Float64Array.from({ length: cols }, (_, c) => (c % 17 === 0 ? 1 : 0.25 + Math.abs(next()) * 3));
  for (const spec of [{ bits: 8, group: 32, symmetric: true }, { bits: 8, group: cols, symmetric: true }, { bits: 4, group: 32, symmetric: true },
    { bits: 4, group: 64, symmetric: false }, { bits: 8, group: 128, symmetric: false }] as const) {
    const scaled = Float32Array.from(w, (v, i) => v * s[i % cols]);
    const want = Float32Array.from(dequantize(quantizeRtn(scaled, rows, cols, spec)), (v, i) => v * (1 / s[i % cols]));
    const got = roundScaled(w, rows, cols, spec, s, new Float32Array(rows * cols));
    const differ = [...want.keys()].filter((i) => !Object.is(got[i], want[i]));
    assert.equal(differ.length, 0, `${JSON.stringify(spec)}: ${differ.length} values differ, first at ${differ[0]}: ${got[differ[0]]} vs ${want[differ[0]]}`);
    assert.ok(want.some((v) => Object.is(v, 0)) && want.some((v) => v !== 0), 'zero and non-zero values are compared');
  }
});

test('SmoothQuant on a decoder layer equals the reference: smoothing scales folded into both RMSNorms, int8 per-channel linears', async () => {
  await initBackend('auto', { log: () => {} });
  for (const c of golden.cases) {
    const before = tf.memory().numTensors;
    const { result, calibration } = await run(c, smoothquant, { bits: 8, group: 'channel', symmetric: true });
    disposeCalibration(calibration);
    assert.equal(tf.memory().numTensors, before, `${c.name}: tf.memory flat`);
    c.smoothquant.sites.forEach((want) => {
      const s = result.stats[want.linears[0]];
      close([s.act_max], [Math.max(...want.act_max)], 1e-5, `${c.name}: ${want.linears[0]}'s largest input`);
      close([s.scale_min, s.scale_max], [Math.min(...want.scales), Math.max(...want.scales)], 1e-5, `${c.name}: ${want.linears[0]}'s scale range`);
    });
    for (const [norm, want] of Object.entries(c.smoothquant.norms)) close(result.floats.get(norm)!, want, 1e-5, `${c.name}: SmoothQuant's ${norm}`);
    for (const p of LINEARS) samePacked(result.packed.get(`${p}.weight`)!, c.smoothquant.packed[p], `${c.name}: SmoothQuant's ${p}`);
  }
});

test('GPTQ on a decoder layer equals the reference: each group\'s Hessian from the layer with the groups before it quantized, and the quantized linears', async () => {
  await initBackend('auto', { log: () => {} });
  for (const c of golden.cases) {
    const before = tf.memory().numTensors;
    const grid: QuantGrid = { bits: c.bits, group: c.group, symmetric: c.sym };
    const { result, calibration, config, shapes, weights } = await run(c, gptq, grid);
    try {
      // the first group's Hessian comes from the float layer: compare it whole
      const w = layerWeights(weights, shapes);
      const h = inputHessians(config, calibration, w, ['self_attn.q_proj']).get('self_attn.q_proj')!;
      w.release();
      const want = c.gptq['self_attn.q_proj'];
      close(Array.from({ length: config.hidden_size }, (_, i) => h[i * config.hidden_size + i]), want.H_diag, 1e-5, `${c.name}: diag H of q_proj`);
      close([h.reduce((a, v) => a + Math.abs(v), 0)], [want.H_sum], 1e-5, `${c.name}: Σ|H| of q_proj`);
    } finally {
      disposeCalibration(calibration);
    }
    assert.equal(tf.memory().numTensors, before, `${c.name}: tf.memory flat`);
    for (const p of LINEARS) {
      const want = c.gptq[p];
      samePacked(result.packed.get(`${p}.weight`)!, want, `${c.name}: GPTQ's ${p}`);
      close([result.stats[p].loss], [want.loss], 1e-4, `${c.name}: GPTQ's loss on ${p}`);
    }
  }
});

test('GPTQ\'s Hessians are summed a block of rows at a time into float64: symmetric, and 2·XᵀX/N of the masked inputs whatever the block', () => {
  const c = golden.cases[0];
  const before = tf.memory().numTensors;
  const { config, shapes, weights, calibration } = setup(c);
  const w = layerWeights(weights, shapes);
  try {
    const names = ['self_attn.q_proj', 'mlp.down_proj'];
    const whole = inputHessians(config, calibration, w, names);
    const rowAtATime = inputHessians(config, calibration, w, names, 1); // a product per row of H
    for (const name of names) {
      // float64 reference from the projection's inputs, padding rows dropped
      const n = whole.get(name)!.length ** 0.5;
      const want = new Float64Array(n * n);
      for (const batch of calibration.batches) {
        const t = projectionInput(config, batch, w, name);
        const x = t.dataSync(), mask = batch.mask.dataSync();
        t.dispose();
        for (let r = 0; r < mask.length; r++) {
          if (mask[r] === 0) continue;
          for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) want[i * n + j] += x[r * n + i] * x[r * n + j];
        }
      }
      for (const [how, h] of [['whole', whole.get(name)!], ['row at a time', rowAtATime.get(name)!]] as const) {
        for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(h[i * n + j], h[j * n + i], `${name} (${how}): symmetric`);
        close(h, Array.from(want, (v) => (2 * v) / calibration.tokens), 1e-5, `${name} (${how}): 2·XᵀX/N`);
      }
    }
  } finally {
    w.release();
    disposeCalibration(calibration);
  }
  assert.equal(tf.memory().numTensors, before);
});
