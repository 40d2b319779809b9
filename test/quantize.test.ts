/**
 * Quantized models (src/quant/, src/io/packed.ts): written packed, loaded packed (resident and
 * streamed) with the same outputs as the float model of their dequantized weights, tf.memory flat;
 * GPTQ below RTN on every linear; AWQ's and SmoothQuant's scale folding leaves the float model's
 * function unchanged; SmoothQuant's int8 activations as an independent per-token computation.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel, modelFromTensors, openModelDir, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { expectedTensors, layerTensorShapes, parseConfig, readConfig } from '../src/model/config.ts';
import { embed, hasKernel, linear, packedPath, takes16BitWeights } from '../src/model/ops.ts';
import { backendProfile, estimateMemory, storedBytes } from '../src/model/memory-estimate.ts';
import { mmluWorkload } from '../src/eval/mmlu/evaluate.ts';
import { sequenceWorkload } from '../src/model/inspect.ts';
import { modelInfo } from '../src/model/info.ts';
import { dequantize, quantizeRtn, type PackedMatrix } from '../src/io/packed.ts';
import { checkpointSource } from '../src/weights/source.ts';
import { writeHfModel } from '../src/weights/hf-writer.ts';
import { exportHf } from '../src/export/hf.ts';
import { materializeQuantized, quantizedSource } from '../src/quant/quantize.ts';
import { QUANT_METHODS, methodParams, getQuantMethod, parseQuantization, quantizationName } from '../src/quant/registry.ts';
import { QUANT_METHOD_NAMES } from '../src/quant/options.ts';
import { foldScales, scaleSites } from '../src/quant/fold.ts';
import { SMOOTH_SITES } from '../src/quant/methods/smoothquant.ts';
import { compressModel, replayPlan } from '../src/pipeline/compress.ts';
import { modelBytes } from '../src/quant/size.ts';
import { UserError } from '../src/runtime/errors.ts';
import { mulberry32 } from '../src/runtime/random.ts';
import { maxAbsDiff, roundHalf } from './helpers.ts';
import { assertUserError, runAllInProcess, runCliInProcess } from './cli-run.ts';
import { randomTensor, tinyConfigJson, writeRandomModel } from './random-model.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('quantize');
/** Widths that divide into blocks of 32 except the MLP's (80: a partial last block for down_proj). */
const SHAPE = { hidden_size: 64, intermediate_size: 80, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 96 };
const FLOAT = join(TMP, 'float');
const IDS = [[1, 17, 33, 5, 9, 41, 77, 12], [3, 4, 5, 6, 7, 8, 9, 10]];

/** Seeded calibration prompts of 6 to 30 tokens. */
function prompts(n: number, seed = 3): number[][] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => Array.from({ length: 6 + Math.floor(r() * 25) }, () => 1 + Math.floor(r() * 94)));
}

async function quantizeTo(dir: string, spec: string, src = FLOAT, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const q = parseQuantization(spec)!;
  q.params = methodParams(getQuantMethod(q.method), params);
  const source = checkpointSource(src);
  try {
    const qs = quantizedSource({ source, quantization: q, prompts: prompts(24), quiet: true });
    try {
      await writeHfModel(qs, dir, { dtype: 'float32', copyFrom: src });
      return qs.report() as unknown as Record<string, unknown>;
    } finally {
      qs.dispose();
    }
  } finally {
    source.close();
  }
}

function logits(model: LlamaModel, ids = IDS): number[][][] {
  const r = forward(model, ids);
  try {
    return r.logits!.arraySync() as number[][][];
  } finally {
    r.logits!.dispose();
  }
}

/** The float model whose weights are the packed model's dequantized values (the checkpoint reads them so). */
function dequantizedModel(dir: string): LlamaModel {
  const { config, ckpt } = openModelDir(dir);
  try {
    const tensors = new Map<string, tf.Tensor>();
    for (const [name, shape] of expectedTensors(config)) tensors.set(name, tf.tensor(ckpt.read(name), shape));
    return modelFromTensors({ ...config, quantization_config: null }, tensors);
  } finally {
    ckpt.close();
  }
}

before(async () => {
  await initBackend('auto');
  await writeRandomModel(FLOAT, SHAPE, 7);
});

test('an RTN model is written packed, loads packed (resident and streamed) and computes what its dequantized weights compute', async () => {
  const dir = join(TMP, 'rtn-w4g32');
  await quantizeTo(dir, 'rtn:w4g32');
  const config = readConfig(dir);
  assert.equal(config.quantization_config?.method, 'rtn');
  assert.equal(config.quantization_config?.bits, 4);
  const { ckpt } = openModelDir(dir);
  try {
    assert.equal(ckpt.info('model.layers.0.mlp.down_proj.weight'), undefined, 'no float copy of a packed weight');
    assert.deepEqual(ckpt.info('model.layers.0.mlp.down_proj.qweight')?.shape, [64, 48], '80 inputs: 3 blocks of 16 bytes');
    assert.equal(ckpt.info('model.layers.0.self_attn.q_proj.qweight')?.dtype, 'U8');
    assert.deepEqual(ckpt.info('lm_head.qweight')?.shape, [96, 64], 'lm_head at 8 bits, as llama.cpp');
    assert.equal(ckpt.info('lm_head.qweight')?.dtype, 'I8');
    assert.deepEqual(ckpt.info('model.embed_tokens.qweight')?.shape, [96, 64], 'the embedding at 8 bits by default');
    assert.equal(ckpt.info('model.norm.weight')?.dtype, 'F32');
  } finally {
    ckpt.close();
  }
  // the JS fallback (plain tfjs: no integer kernel) computes what the dequantized weights compute; the
  // native integer kernels round activations to int8 per block of 32 (contract 2), so they come near
  let want: number[][][] = [], packedLogits: number[][][] = [];
  for (const backend of ['cpu', 'auto'] as const) {
    await initBackend(backend);
    const reference = dequantizedModel(dir);
    want = logits(reference);
    disposeModel(reference);
    const native = packedPath().startsWith('native');
    assert.equal(native, backend === 'auto' && hasKernel('MkaLinearQ'));
    for (const streaming of [false, true]) {
      const before = tf.memory().numTensors;
      const m = loadModel(dir, { streaming });
      assert.ok([...(m.packed?.values() ?? [])].some((w) => w.dtype === 'q4') || streaming, 'held packed');
      const got = logits(m);
      disposeModel(m);
      if (!streaming) packedLogits = got;
      assert.equal(tf.memory().numTensors, before, 'tf.memory is flat');
      const d = maxAbsDiff(got, want);
      assert.ok(native ? d < 0.25 : d < 1e-4, `${backend} streaming=${streaming}: ${d}`);
    }
  }
  // the size accounting counts what was written: tensor bytes of the file, and the float model at 16 bits
  const tensorBytes = (f: string) => { const b = readFileSync(f); return b.length - 8 - Number(b.readBigUInt64LE(0)); };
  assert.equal(modelBytes(config, parseQuantization('rtn:w4g32')), tensorBytes(join(dir, 'model.safetensors')));
  assert.equal(modelBytes(readConfig(FLOAT), null), tensorBytes(join(FLOAT, 'model.safetensors')) / 2, 'float32 on disk, counted at 16 bits');
  // built in memory (a sweep point) rather than read back: the same model, the same logits
  const source = checkpointSource(FLOAT);
  const inMemory = await materializeQuantized(quantizedSource({ source, quantization: parseQuantization('rtn:w4g32')!, quiet: true }));
  source.close();
  assert.ok(maxAbsDiff(logits(inMemory), packedLogits) < 1e-5);
  disposeModel(inMemory);
  // the float model's logits are near, not equal: it is a 4-bit model
  const original = loadModel(FLOAT);
  const d = maxAbsDiff(logits(original), want);
  disposeModel(original);
  assert.ok(d > 1e-4 && d < 2, `4-bit logits differ from the float ones by ${d}`);
});

test('the embedding is stored at its declared bits (8 by default, 4 with e4) as ggml\'s Q8_0/Q4_0 blocks, gathered back as stored, and counted in the bytes', async () => {
  const float = checkpointSource(FLOAT);
  const table = Float32Array.from(float.read('model.embed_tokens.weight'));
  float.close();
  const [V, H] = [SHAPE.vocab_size, SHAPE.hidden_size];
  const tensorBytes = (f: string) => { const b = readFileSync(f); return b.length - 8 - Number(b.readBigUInt64LE(0)); };
  const sizes: Record<number, number> = {};
  for (const [spec, bits] of [['rtn:w4g32', 8], ['rtn:w4g32e4', 4]] as const) {
    const dir = join(TMP, `embedding-${spec.replace(':', '-')}`);
    const report = await quantizeTo(dir, spec);
    const config = readConfig(dir);
    const recorded = { bits, group_size: 32, sym: true };
    assert.deepEqual((config.quantization_config as Record<string, unknown>).tables, { 'model.embed_tokens.weight': recorded, 'lm_head.weight': { ...recorded, bits: 8 } }, `${spec}: config.json`);
    assert.deepEqual((report.embeddings as Record<string, unknown>)['model.embed_tokens.weight'], recorded, `${spec}: quantize.json`);
    assert.equal(modelInfo(dir).quantization, `rtn 4-bit group 32 symmetric, embedding ${bits}-bit, lm_head 8-bit (packed)`, `${spec}: mka info`);
    const { ckpt } = openModelDir(dir);
    let stored: PackedMatrix;
    try {
      assert.deepEqual(ckpt.info('model.embed_tokens.qweight')?.shape, [V, H * bits / 8], spec);
      assert.equal(ckpt.info('model.embed_tokens.qweight')?.dtype, bits === 8 ? 'I8' : 'U8', spec);
      stored = ckpt.readPacked!('model.embed_tokens.weight');
    } finally {
      ckpt.close();
    }
    // every block against the format's definition (ggml's quantize_row_q8_0/q4_0): Q8_0 d = max|w|/127, q = round(w/d);
    // Q4_0 d = m/−8 with m the value of largest magnitude, q = min(15, trunc(w/d + 8.5)); d rounded to f16 first
    const decoded = new Float32Array(V * H);
    for (let r = 0; r < V; r++) {
      for (let b = 0; b < H / 32; b++) {
        const block = table.subarray(r * H + 32 * b, r * H + 32 * b + 32);
        const m = block.reduce((x, w) => (Math.abs(w) > Math.abs(x) ? w : x), 0);
        const d = roundHalf(bits === 8 ? Math.abs(m) / 127 : m / -8);
        assert.equal(stored.scales[r * (H / 32) + b], d, `${spec}: row ${r} block ${b} scale`);
        for (let j = 0; j < 32; j++) {
          const i = 32 * b + j;
          const code = bits === 8 ? (stored.quants[r * H + i] << 24) >> 24
            : (stored.quants[r * (H / 2) + 16 * b + (j % 16)] >> (j < 16 ? 0 : 4)) & 15;
          const want = bits === 8 ? Math.sign(block[j] / d) * Math.round(Math.abs(block[j] / d)) : Math.min(15, Math.trunc(block[j] / d + 8.5));
          assert.equal(code, want + 0, `${spec}: row ${r} input ${i}`); // + 0: −0 is 0
          decoded[r * H + i] = d * (bits === 8 ? code : code - 8);
        }
      }
    }
    // the loaded model gathers exactly these rows, and its other tensors stay packed
    const m = loadModel(dir);
    const before = tf.memory().numTensors;
    const ids = [[0, 5, 95, 17]];
    const rows = tf.tidy(() => embed(m.packed!.get('model.embed_tokens.weight')!, ids).arraySync()) as number[][][];
    assert.equal(tf.memory().numTensors, before, 'tf.memory is flat');
    assert.equal(m.packed!.get('model.embed_tokens.weight')!.dtype, bits === 8 ? 'q8' : 'q4');
    disposeModel(m);
    ids[0].forEach((id, t) => assert.ok(maxAbsDiff([rows[0][t]], [Array.from(decoded.subarray(id * H, id * H + H))]) < 1e-6, `${spec}: row ${id}`));
    // the size accounting counts the embedding at its bits: the tensors as written
    assert.equal(modelBytes(config, parseQuantization(spec)), tensorBytes(join(dir, 'model.safetensors')), `${spec}: bytes`);
    sizes[bits] = modelBytes(config, parseQuantization(spec));
  }
  assert.equal(sizes[8] - sizes[4], V * (H / 32) * 16, '16 more bytes per block of 32');
});

test('packed tensors round-trip through a model directory byte for byte, and export hf writes the dequantized floats', async () => {
  const dir = join(TMP, 'rtn-w8g64-asym');
  await quantizeTo(dir, 'rtn:w8g64-asym');
  const { config, ckpt } = openModelDir(dir);
  const float = checkpointSource(FLOAT);
  try {
    for (const [name, shape] of expectedTensors(config)) {
      const info = ckpt.packedInfo(name);
      if (!/layers\.\d+\.(self_attn|mlp)\..*weight$/.test(name)) continue;
      assert.ok(info, `${name} is packed`);
      const stored = ckpt.readPacked(name);
      const fresh = quantizeRtn(float.read(name), shape[0], shape[1], { bits: 8, group: 64, symmetric: false });
      assert.deepEqual(Buffer.from(stored.quants), Buffer.from(fresh.quants), name);
      assert.deepEqual(stored.scales, fresh.scales, `${name} scales (f16 on disk, exact)`);
      assert.deepEqual(stored.mins, fresh.mins, `${name} mins`);
    }
  } finally {
    ckpt.close();
    float.close();
  }
  const out = join(TMP, 'rtn-exported');
  await exportHf({ model: dir, out, dtype: 'float32' });
  const exported = readConfig(out);
  assert.equal(exported.quantization_config, null, 'an export of floats carries no quantization_config');
  assert.match(readFileSync(join(out, 'README.md'), 'utf8'), /## Quantization\n\n- rtn: 8-bit, groups of 64, asymmetric/, 'its card says how the weights were rounded');
  const a = loadModel(out), b = dequantizedModel(dir);
  assert.ok(maxAbsDiff(logits(a), logits(b)) < 1e-5);
  disposeModel(a);
  disposeModel(b);
});

test('GPTQ lowers ‖WX − QX‖² below round to nearest on every linear of a test model, and its model loads', async () => {
  const dir = join(TMP, 'gptq-w4g32');
  const before = tf.memory().numTensors;
  const report = await quantizeTo(dir, 'gptq:w4g32', FLOAT, { 'block-size': 32 });
  assert.equal(tf.memory().numTensors, before, 'quantizing leaves tf.memory where it was');
  const layers = report.layers as Record<string, { objective: number; objective_rtn: number }>[];
  assert.equal(layers.length, 2);
  let linears = 0;
  for (const [i, layer] of layers.entries()) {
    for (const [p, s] of Object.entries(layer)) {
      assert.ok(s.objective < s.objective_rtn, `layer ${i} ${p}: gptq ${s.objective} vs rtn ${s.objective_rtn}`);
      linears++;
    }
  }
  assert.equal(linears, 14);
  const m = loadModel(dir);
  const got = logits(m);
  disposeModel(m);
  assert.ok(got.flat(2).every(Number.isFinite));
});

/** Logits of the float model of `config` whose layer weights are `values` (suffix → values per layer). */
function modelWith(config: ReturnType<typeof parseConfig>, layers: Map<string, Float32Array>[], seed: number): LlamaModel {
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of expectedTensors(config)) {
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
    tensors.set(name, tf.tensor(m ? layers[Number(m[1])].get(m[2])! : randomTensor(name, shape, seed), shape));
  }
  return modelFromTensors(config, tensors);
}

test('AWQ and SmoothQuant fold their scales without changing the float model (all of AWQ\'s sites, v→o included, and with biases)', () => {
  for (const overrides of [{ num_key_value_heads: 4 }, { num_key_value_heads: 2, attention_bias: true, mlp_bias: true }]) {
    const config = parseConfig(tinyConfigJson({ ...SHAPE, ...overrides }));
    const shapes = layerTensorShapes(config);
    const layers = Array.from({ length: config.num_hidden_layers }, (_, i) => new Map([...shapes].map(([s, shape]) => [s, randomTensor(`model.layers.${i}.${s}`, shape, 11)])));
    const before = modelWith(config, layers, 11);
    const want = logits(before);
    disposeModel(before);
    const r = mulberry32(5);
    const sites = scaleSites(shapes);
    assert.equal(sites.length, overrides.num_key_value_heads === 4 ? 4 : 3, 'v→o only without grouped-query attention');
    for (const [i, layer] of layers.entries()) {
      for (const { site } of [...sites, ...SMOOTH_SITES]) {
        const n = shapes.get(site.linears[0])![1];
        foldScales(layer, shapes, site, Float64Array.from({ length: n }, () => Math.exp(3 * (r() - 0.5)) * (i + 1)));
      }
    }
    const after = modelWith(config, layers, 11);
    const got = logits(after);
    disposeModel(after);
    assert.ok(maxAbsDiff(got, want) < 2e-4, `${JSON.stringify(overrides)}: ${maxAbsDiff(got, want)}`);
  }
});

test('SmoothQuant W8A8: int8 per-channel weights and int8 per-token activations, as an independent per-token computation', async () => {
  const dir = join(TMP, 'sq');
  const before0 = tf.memory().numTensors;
  await quantizeTo(dir, 'smoothquant:w8a8');
  assert.equal(tf.memory().numTensors, before0, 'quantizing leaves tf.memory where it was');
  assert.equal(readConfig(dir).quantization_config?.act_bits, 8);
  const m = loadModel(dir);
  const w = m.packed!.get('model.layers.1.mlp.down_proj.weight')!;
  assert.equal(w.dtype, 'q8');
  assert.equal(w.quant?.actBits, 8);
  assert.equal(w.quant?.group, 80, 'one scale per output channel');
  // y = s_t · (round(x_t / s_t) · Wᵀ), s_t = max|x_t| / 127, in float64 from the dequantized weights
  const { ckpt } = openModelDir(dir);
  const W = ckpt.read('model.layers.1.mlp.down_proj.weight');
  ckpt.close();
  const r = mulberry32(9);
  const x = Float32Array.from({ length: 3 * 80 }, () => (r() - 0.5) * 4 * (r() < 0.05 ? 20 : 1));
  const before = tf.memory().numTensors;
  const y = tf.tidy(() => linear(tf.tensor2d(x, [3, 80]), w).dataSync() as Float32Array);
  assert.equal(tf.memory().numTensors, before);
  for (let t = 0; t < 3; t++) {
    let amax = 0;
    for (let c = 0; c < 80; c++) amax = Math.max(amax, Math.abs(x[t * 80 + c]));
    const s = amax / 127;
    for (let o = 0; o < 64; o++) {
      let acc = 0;
      for (let c = 0; c < 80; c++) {
        const v = x[t * 80 + c] / s;
        acc += Math.sign(v) * Math.floor(Math.abs(v) + 0.5) * s * W[o * 80 + c];
      }
      assert.ok(Math.abs(acc - y[t * 64 + o]) < 1e-4 * Math.max(1, Math.abs(acc)), `token ${t} output ${o}: ${y[t * 64 + o]} vs ${acc}`);
    }
  }
  const got = logits(m);
  disposeModel(m);
  const original = loadModel(FLOAT);
  const d = maxAbsDiff(logits(original), got);
  disposeModel(original);
  assert.ok(d < 0.5, `W8A8 stays near the float model: ${d}`);
});

test('AWQ quantizes with its searched exponents and never does worse than its exponent 0 (plain RTN) on the module error', async () => {
  const dir = join(TMP, 'awq');
  const before = tf.memory().numTensors;
  const report = await quantizeTo(dir, 'awq:w4g32', FLOAT, { grid: 4 });
  assert.equal(tf.memory().numTensors, before, 'quantizing leaves tf.memory where it was');
  for (const layer of report.layers as Record<string, { alpha: number; error: number; error_rtn: number }>[]) {
    for (const [site, s] of Object.entries(layer)) {
      assert.ok(s.error <= s.error_rtn, `${site}: ${s.error} vs ${s.error_rtn}`);
      assert.ok([0, 0.25, 0.5, 0.75].includes(s.alpha));
    }
  }
  const m = loadModel(dir);
  assert.ok(logits(m).flat(2).every(Number.isFinite));
  disposeModel(m);
});

test('quantizers say once, with counts, what they did other than asked: prompts cut, inputs that never vary, AWQ sites skipped, the tables\' grid', async () => {
  const source = checkpointSource(FLOAT);
  // three channels of every input_layernorm zeroed: q/k/v's first three inputs never vary
  const zeroed = Object.assign(Object.create(source) as typeof source, {
    read: (name: string) => (name.endsWith('input_layernorm.weight') ? Float32Array.from(source.read(name)).fill(0, 0, 3) : source.read(name)),
  });
  const long = Array.from({ length: 80 }, (_, i) => 1 + (i % 90)); // the model has 64 positions
  try {
    const cases: [string, RegExp[], Record<string, number>][] = [
      ['gptq:w4g32e4', [/^calibration: 2 of 26 prompts cut at 64 tokens$/, /^embedding 4-bit, lm_head 8-bit, symmetric groups of 32 \(Q4_0\/Q8_0 blocks\), by round to nearest, not by gptq/,
        /^gptq: 18 inputs of linears that never vary on the calibration prompts/], { 'calibration prompts cut at 64 tokens': 2 }],
      ['awq:w8g32', [/^calibration: 2 of 26 prompts cut at 64 tokens$/, /^embedding 8-bit, lm_head 8-bit, symmetric groups of 32 \(Q8_0 blocks\), by round to nearest, not by awq/, /^awq: 2 layers whose o_proj is not scaled \(grouped-query attention/], {}],
    ];
    for (const [spec, want, notes] of cases) {
      const q = parseQuantization(spec)!;
      q.params = methodParams(getQuantMethod(q.method), q.method === 'awq' ? { grid: 2 } : {});
      const lines: string[] = [];
      const qs = quantizedSource({ source: zeroed, quantization: q, prompts: [...prompts(24), long, long], quiet: true, log: (m) => lines.push(m) });
      try {
        await writeHfModel(qs, join(TMP, `notes-${q.method}`), { dtype: 'float32', copyFrom: FLOAT });
        for (const re of want) assert.equal(lines.filter((l) => re.test(l)).length, 1, `${spec}: once ${re} in\n${lines.join('\n')}`);
        assert.equal(lines.length, want.length, `${spec}: nothing else said:\n${lines.join('\n')}`);
        const reported = qs.report().notes;
        for (const [k, v] of Object.entries(notes)) assert.equal(reported[k], v, `${spec}: quantize.json's notes: ${k}`);
        assert.equal(Object.keys(reported).length, want.length - 1, `${spec}: every line but the tables' is a note: ${JSON.stringify(reported)}`);
      } finally {
        qs.dispose();
      }
    }
  } finally {
    source.close();
  }
});

test('calibration micro-batches capped by padded tokens: said once with counts, and GPTQ finds what micro-batches of 8 prompts find', async () => {
  // per token a pass through a layer of SHAPE holds its input and output (2·64) and q, attention output, k, v, residual, norm (64, 64, 32, 32,
  // 64, 64) and the MLP's three (80 each), float32; a budget of two blocks of attention scores and 60 such tokens caps micro-batches at 60
  const perToken = 4 * (2 * 64 + 64 + 64 + 32 + 32 + 64 + 64 + 3 * 80);
  const forwardBytes = 4 * 2 * 2 ** 24 + 60 * perToken;
  const calib = prompts(24);
  // the micro-batches by hand: lengths in order, a new one when 8 prompts or (prompts + 1) × the next length would pass 60
  const sorted = calib.map((p) => p.length).sort((a, b) => a - b);
  const sizes: number[] = [];
  for (const n of sorted) {
    if (sizes.length && sizes[sizes.length - 1] < 8 && (sizes[sizes.length - 1] + 1) * n <= 60) sizes[sizes.length - 1]++;
    else sizes.push(1);
  }
  const capped = sizes.slice(0, -1).filter((n) => n < 8).length;
  assert.ok(capped >= 3, `the cap binds: ${sizes}`);
  const source = checkpointSource(FLOAT);
  try {
    const run = async (bytes?: number) => {
      const lines: string[] = [];
      const q = parseQuantization('gptq:w4g32')!;
      const qs = quantizedSource({ source, quantization: q, prompts: calib, forwardBytes: bytes, quiet: true, log: (m) => lines.push(m) });
      try {
        await writeHfModel(qs, join(TMP, `capped-${bytes ?? 'default'}`), { dtype: 'float32', copyFrom: FLOAT });
        return { lines, report: qs.report() };
      } finally {
        qs.dispose();
      }
    };
    const before = tf.memory().numTensors;
    const capped8 = await run(forwardBytes);
    assert.equal(tf.memory().numTensors, before);
    const said = capped8.lines.filter((l) => l.startsWith('calibration:'));
    assert.deepEqual(said, [`calibration: ${capped} of ${sizes.length} micro-batches hold fewer than 8 prompts, to keep within 60 padded tokens (a pass through a layer in 0.1 GB at this shape)`]);
    assert.equal(capped8.report.notes['calibration micro-batches of fewer than 8 prompts, to keep within 60 padded tokens'], capped);
    const plain = await run();
    assert.equal(plain.lines.filter((l) => l.startsWith('calibration:')).length, 0, 'no cap at the default budget');
    // the same Hessians summed over other micro-batches (float32 products, float64 sums): the same layer objectives to rounding.
    // A weight at a rounding boundary may round the other way, which moves one linear's objective by about 1e-4 of it
    // (1.2e-4 on layer 1's v_proj with the WebAssembly products); one micro-batch's Hessian missing would move it by percents.
    for (const [i, layer] of plain.report.layers.entries()) {
      for (const [p, st] of Object.entries(layer)) {
        const got = capped8.report.layers[i][p].objective;
        assert.ok(Math.abs(got - st.objective) <= 1e-3 * st.objective, `layer ${i} ${p}: ${got} vs ${st.objective}`);
      }
    }
  } finally {
    source.close();
  }
});

test('quantization specs parse, print back, and refuse what a method cannot do', () => {
  assert.deepEqual(QUANT_METHODS.map((m) => m.name), [...QUANT_METHOD_NAMES], '--method\'s choices (quant/options.ts, no tfjs) are the registry\'s methods');
  for (const s of ['gptq:w4g128', 'rtn:w8', 'rtn:w4g32-asym', 'awq:w4g64', 'smoothquant:w8a8', 'gptq:w4g32e4', 'rtn:w4e4-asym']) assert.equal(quantizationName(parseQuantization(s)), s);
  assert.equal(parseQuantization('gptq:w4g32')!.embeddingBits, 8, 'the embedding at 8 bits by default');
  assert.equal(parseQuantization('gptq:w4g32e4')!.embeddingBits, 4);
  assert.equal(quantizationName(parseQuantization('gptq:w4g32e8')), 'gptq:w4g32', 'the default is implied');
  assert.throws(() => parseQuantization('gptq:w4g32e2'), UserError);
  assert.equal(parseQuantization('none'), null);
  assert.throws(() => parseQuantization('gptq:w3g128'), UserError);
  assert.throws(() => parseQuantization('gptq:w4g100'), UserError);
  assert.throws(() => parseQuantization('smoothquant:w4g32'), /W8A8|a8/);
  assert.throws(() => parseQuantization('smoothquant:w8'), /a8/);
  assert.throws(() => parseQuantization('rtn:w8a8'), /weights only/);
  assert.throws(() => parseQuantization('lsq:w4'), /not a quantization method/);
});

test('a model directory with packed weights of another layout or without their parts is refused with one line', async () => {
  const dir = join(TMP, 'bad-gptq-config');
  await quantizeTo(dir, 'rtn:w4g32');
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, quantization_config: { quant_method: 'gptq', bits: 4 } }));
  assert.throws(() => loadModel(dir), (e: Error) => e instanceof UserError && /quant_method "gptq" is not supported/.test(e.message));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, quantization_config: undefined }));
  assert.throws(() => loadModel(dir), (e: Error) => e instanceof UserError && /no quantization_config/.test(e.message));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, intermediate_size: 96 }));
  assert.throws(() => loadModel(dir), (e: Error) => e instanceof UserError && /packed tensors do not match config.json|shape/.test(e.message));
});

test('the memory estimate knows packed weights: what a packed model holds resident, and a 4-bit Llama-3-8B shape under 6 GB', async () => {
  const dir = join(TMP, 'rtn-mem');
  await quantizeTo(dir, 'rtn:w4g128');
  const config = readConfig(dir);
  const stored = storedBytes(dir, config);
  const before = tf.memory().numBytes;
  const m = loadModel(dir);
  const held = tf.memory().numBytes - before;
  disposeModel(m);
  const est = estimateMemory(config, stored, backendProfile(tf.getBackend(), takes16BitWeights()), sequenceWorkload(8, 'last'));
  assert.ok(Math.abs(est.parts.weights - held) <= 0.01 * held, `estimate ${est.parts.weights} vs held ${held}`);
  assert.ok(held < 0.5 * 4 * [...expectedTensors(config).values()].reduce((a, s) => a + s[0] * (s[1] ?? 1), 0), 'well under float32');
  // the 32-layer 8B shape at w4g128, embedding and lm_head 8-bit in groups of 32, as mka quantize writes it
  const l3 = parseConfig({ ...tinyConfigJson(), hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256, max_position_embeddings: 8192, torch_dtype: 'bfloat16' });
  const memory = (name: string): number | null => {
    if (name === 'lm_head.weight') return (32 + 4) / 32;
    if (name === 'model.embed_tokens.weight') return (32 + 4) / 32;
    return /layers\.\d+\.(self_attn|mlp)\..*weight$/.test(name) ? (64 + 4) / 128 : null;
  };
  const eight = Object.assign((name: string) => (memory(name) ?? 4), { packed: memory });
  const e = estimateMemory(l3, eight, backendProfile('native'), mmluWorkload({}));
  const bf16 = estimateMemory(l3, () => 2, backendProfile('native'), mmluWorkload({}));
  assert.ok(e.parts.weights > 4.5e9 && e.parts.weights < 5.0e9, `8B w4g128 weights ${e.parts.weights}`);
  assert.ok(bf16.parts.weights > 16e9);
  assert.ok(e.parts.reading < 0.6 * bf16.parts.reading, 'the largest read is a packed lm_head, not a 16-bit one widened');
});

test('compress --quantize: the plan applied and quantized in one streamed write, merge.json replays to the same bytes, the card says both', async () => {
  const out = join(TMP, 'reverse-1-w8');
  const plan = await compressModel({ model: FLOAT, out, method: 'reverse', remove: 1, quantize: parseQuantization('rtn:w8g32'), quiet: true });
  assert.equal(plan.layers.length, 1);
  const config = readConfig(out);
  assert.equal(config.num_hidden_layers, 1);
  assert.equal(config.quantization_config?.method, 'rtn');
  const card = readFileSync(join(out, 'README.md'), 'utf8');
  assert.match(card, /1 of its 2 decoder layers removed by `reverse`, then quantized by `rtn:w8g32`/);
  assert.match(card, /## Quantization/);
  assert.ok(JSON.parse(readFileSync(join(out, 'quantize.json'), 'utf8')).layers.length === 1);
  // the same weights as quantizing the float compressed model
  const floatOut = join(TMP, 'reverse-1');
  await compressModel({ model: FLOAT, out: floatOut, method: 'reverse', remove: 1, quiet: true });
  const twice = join(TMP, 'reverse-1-then-w8');
  await quantizeTo(twice, 'rtn:w8g32', floatOut);
  assert.deepEqual(readFileSync(join(out, 'model.safetensors')), readFileSync(join(twice, 'model.safetensors')));
  const replayed = join(TMP, 'reverse-1-w8-replayed');
  await replayPlan({ model: FLOAT, plan: join(out, 'merge.json'), out: replayed, quantize: parseQuantization('rtn:w8g32'), quiet: true });
  assert.deepEqual(readFileSync(join(replayed, 'model.safetensors')), readFileSync(join(out, 'model.safetensors')));
});

test('mka quantize refuses impossible grids and missing calibration with one line, writing nothing', async () => {
  const out = join(TMP, 'cli-refused');
  const base = ['quantize', '--out', out, '--quiet'];
  const cases: [string[], string[]][] = [
    [['--method', 'rtn', '--bits', '4', '--group-size', '48'], ['--group-size 48', '32, 64, 128 or 0']],
    [['--method', 'smoothquant', '--bits', '4', '--data', FLOAT], ['smoothquant', 'W8A8']],
    [['--method', 'gptq', '--bits', '4'], ['--method gptq', '--data']],
    [['--method', 'rtn', '--bits', '4', '--dampening', '0.1'], ['--dampening', 'not a parameter of rtn']],
    [['--method', 'gptq', '--bits', '4', '--dampening', '2', '--calibration', join(FLOAT, 'config.json')], ['--dampening 2', 'from 0 to 1']],
    [['--method', 'rtn', '--bits', '4', '--embedding-bits', '4', '--keep-embeddings'], ['--embedding-bits 4', '--keep-embeddings', 'give one']],
  ];
  const packed = join(TMP, 'cli-packed');
  await quantizeTo(packed, 'rtn:w4g32');
  cases.push([['--method', 'rtn', '--bits', '4'], ['is already quantized', 'rtn 4-bit']]);
  const results = await runAllInProcess(cases.map(([args], i) => [...base, '--model', i === cases.length - 1 ? packed : FLOAT, ...args]));
  results.forEach((r, i) => assertUserError(r, ...cases[i][1]));
  assert.ok(!existsSync(out), 'nothing written');
  const ok = await runCliInProcess([...base, '--model', FLOAT, '--method', 'rtn', '--bits', '8', '--group-size', '0', '--embedding-bits', '4']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stderr, /^$/, 'quiet');
  assert.equal(readConfig(out).quantization_config?.group_size, -1);
  assert.equal((readConfig(out).quantization_config?.tables as Record<string, { bits: number }>)['model.embed_tokens.weight'].bits, 4);
});
