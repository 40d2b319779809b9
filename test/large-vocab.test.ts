/**
 * Paper-scale shapes at CI size: a Llama-3-like model (128,256-token vocabulary, rope_theta 5e5,
 * GQA) with hidden size 64 in BF16, run end to end on the native backend (16-bit weights kept 16-bit)
 * and on plain wasm (widened at load), each checked against an independent float64 forward written
 * here; long prompts on a tiny model (native and fallback agree; the fallback's attention never holds
 * the whole score matrix); tensors freed when a block throws.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadNativeAddon } from '../src/runtime/native-addon.ts';
import { parseConfig, expectedTensors, type LlamaConfig } from '../src/model/config.ts';
import { disposeModel, loadModel, type LlamaModel } from '../src/model/model.ts';
import { disposeCache, forward } from '../src/model/forward.ts';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors.ts';
import { lmHeadLogits } from '../src/model/ops.ts';
import { mulberry32 } from '../src/runtime/random.ts';
import { scratchDir } from './scratch.ts';

/** Bytes of the model's resident weights (float32 tensors and packed 16-bit ones). */
function residentBytes(model: LlamaModel): number {
  let n = 0;
  for (const t of model.tensors.values()) n += 4 * t.size;
  for (const w of model.packed?.values() ?? []) n += 4 * w.tensor.size;
  return n;
}

const NO_NATIVE = loadNativeAddon().addon ? false : 'native addon not built: native backend tests skipped';
const TMP = scratchDir('large-vocab');

/** Writes a random-weight model directory (weights ~ U(-a, a), norms near 1) in `dtype`. */
async function writeModel(dir: string, raw: Record<string, unknown>, dtype: 'BF16' | 'F32', seed: number): Promise<LlamaConfig> {
  const c = parseConfig(raw);
  rmSync(dir, { recursive: true, force: true });
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(raw));
  const shapes = expectedTensors(c);
  const rand = mulberry32(seed);
  await writeSafetensors(join(dir, 'model.safetensors'), [...shapes].map(([name, shape]) => ({ name, shape, dtype })), (name) => {
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const scale = name.includes('embed') ? 1 : 1 / Math.sqrt(shape[shape.length - 1]);
    return Float32Array.from({ length: n }, () => (name.endsWith('norm.weight') ? 1 + 0.2 * (rand() - 0.5) : scale * 2 * (rand() - 0.5)));
  });
  return c;
}

/** An independent float64 forward of a Llama model from its safetensors file: logits at the last position. */
function referenceLastLogits(dir: string, c: LlamaConfig, ids: number[]): Float64Array {
  const f = new SafetensorsFile(join(dir, 'model.safetensors'));
  const W = (name: string) => Float64Array.from(f.read(name));
  const H = c.hidden_size, nH = c.num_attention_heads, nKV = c.num_key_value_heads, hd = c.head_dim, T = ids.length;
  const norm = (x: Float64Array, w: Float64Array) => {
    const out = new Float64Array(x.length);
    for (let t = 0; t < x.length / H; t++) {
      let ss = 0;
      for (let i = 0; i < H; i++) ss += x[t * H + i] ** 2;
      const r = 1 / Math.sqrt(ss / H + c.rms_norm_eps);
      for (let i = 0; i < H; i++) out[t * H + i] = x[t * H + i] * r * w[i];
    }
    return out;
  };
  const mat = (x: Float64Array, w: Float64Array, rows: number, inn: number, out: number) => {
    const y = new Float64Array(rows * out);
    for (let t = 0; t < rows; t++) for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inn; i++) s += x[t * inn + i] * w[o * inn + i];
      y[t * out + o] = s;
    }
    return y;
  };
  const rope = (x: Float64Array, heads: number) => {
    const half = hd / 2;
    for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) for (let i = 0; i < half; i++) {
      const a = t / c.rope_theta ** ((2 * i) / hd);
      const p = (t * heads + h) * hd;
      const x1 = x[p + i], x2 = x[p + half + i];
      x[p + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
      x[p + half + i] = x2 * Math.cos(a) + x1 * Math.sin(a);
    }
  };
  const emb = W('model.embed_tokens.weight');
  let x = new Float64Array(T * H);
  ids.forEach((id, t) => x.set(emb.subarray(id * H, (id + 1) * H), t * H));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    const xn = norm(x, W(p + 'input_layernorm.weight'));
    const q = mat(xn, W(p + 'self_attn.q_proj.weight'), T, H, nH * hd);
    const k = mat(xn, W(p + 'self_attn.k_proj.weight'), T, H, nKV * hd);
    const v = mat(xn, W(p + 'self_attn.v_proj.weight'), T, H, nKV * hd);
    rope(q, nH);
    rope(k, nKV);
    const att = new Float64Array(T * nH * hd);
    for (let t = 0; t < T; t++) for (let h = 0; h < nH; h++) {
      const kh = Math.floor(h / (nH / nKV));
      const s = Array.from({ length: t + 1 }, (_, u) => {
        let d = 0;
        for (let i = 0; i < hd; i++) d += q[(t * nH + h) * hd + i] * k[(u * nKV + kh) * hd + i];
        return d / Math.sqrt(hd);
      });
      const m = Math.max(...s);
      const e = s.map((z) => Math.exp(z - m));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let u = 0; u <= t; u++) for (let i = 0; i < hd; i++) att[(t * nH + h) * hd + i] += (e[u] / sum) * v[(u * nKV + kh) * hd + i];
    }
    const o = mat(att, W(p + 'self_attn.o_proj.weight'), T, nH * hd, H);
    const h1 = x.map((z, i) => z + o[i]);
    const hn = norm(h1, W(p + 'post_attention_layernorm.weight'));
    const I = c.intermediate_size;
    const g = mat(hn, W(p + 'mlp.gate_proj.weight'), T, H, I), up = mat(hn, W(p + 'mlp.up_proj.weight'), T, H, I);
    const act = g.map((z, i) => (z / (1 + Math.exp(-z))) * up[i]);
    const d = mat(act, W(p + 'mlp.down_proj.weight'), T, I, H);
    x = h1.map((z, i) => z + d[i]);
  }
  const last = norm(x.subarray((T - 1) * H), W('model.norm.weight'));
  const logits = mat(last, W('lm_head.weight'), 1, H, c.vocab_size);
  f.close();
  return logits;
}

const LLAMA3_SMALL = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 64, intermediate_size: 128,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, rope_theta: 500000,
  rms_norm_eps: 1e-5, max_position_embeddings: 8192, tie_word_embeddings: false, torch_dtype: 'bfloat16',
};
const BIG = join(TMP, 'llama3-vocab');
let bigConfig: LlamaConfig;
const IDS = [128000, 9906, 1917, 11, 420, 374, 264, 1296, 315, 279, 128255, 7];

before(async () => {
  bigConfig = await writeModel(BIG, LLAMA3_SMALL, 'BF16', 3);
});

function lastLogits(model: LlamaModel, ids: number[]): Float32Array {
  const r = forward(model, [ids], { logits: 'last' });
  const v = r.logits!.dataSync() as Float32Array;
  r.logits!.dispose();
  return v;
}

function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0, err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return err / scale;
}

for (const backend of ['native', 'wasm'] as const) {
  test(`${backend}: a BF16 model with a 128,256-token vocabulary matches a float64 forward`, { skip: backend === 'native' && NO_NATIVE }, async () => {
    await initBackend(backend, { compute: 'float32' }); // float32 products on widened bf16 weights; bf16 products: bf16.test.ts
    const want = referenceLastLogits(BIG, bigConfig, IDS);
    const n0 = tf.memory().numTensors;
    for (const streaming of [false, true]) {
      const model = loadModel(BIG, { streaming });
      try {
        const got = lastLogits(model, IDS);
        assert.equal(got.length, 128256);
        const e = maxRelErr(got, want);
        assert.ok(e < 1e-5, `${streaming ? 'streamed' : 'resident'}: logits differ from float64 by ${e} of their scale`);
        if (backend === 'native' && !streaming) {
          // every matrix stays bf16: resident bytes are half of float32's, up to the float32 norms
          const f32 = 4 * [...expectedTensors(bigConfig).values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
          const ratio = residentBytes(model) / f32;
          assert.ok(ratio > 0.5 && ratio < 0.501, `resident bytes are ${ratio} of float32's`);
          assert.equal(model.packed!.get('lm_head.weight')!.dtype, 'bfloat16');
        }
        if (streaming) assert.equal(model.stats.layerLoads, bigConfig.num_hidden_layers);
      } finally {
        disposeModel(model);
      }
    }
    assert.equal(tf.memory().numTensors, n0);
  });
}

const LONG = join(TMP, 'long');
const LONG_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 256, hidden_size: 32, intermediate_size: 64,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32768, rope_theta: 10000,
};

test('native: a 4,096-token prompt gives the fallback\'s logits (attention blocks, logits at asked positions)', { skip: NO_NATIVE }, async () => {
  const c = await writeModel(LONG, LONG_CONFIG, 'F32', 5);
  const rand = mulberry32(9);
  const ids = Array.from({ length: 4096 }, () => Math.floor(rand() * c.vocab_size));
  const positions = [0, 1, 2047, 4095];
  const run = async (backend: 'native' | 'wasm') => {
    await initBackend(backend);
    const model = loadModel(LONG);
    const n0 = tf.memory().numTensors;
    try {
      const prof = await tf.profile(() => {
        const r = forward(model, [ids], { logits: 'positions', positions });
        const v = r.logits!.arraySync() as number[][];
        r.logits!.dispose();
        return v as unknown as tf.Tensor;
      });
      assert.equal(tf.memory().numTensors, n0);
      return { logits: prof.result as unknown as number[][], peak: prof.peakBytes - prof.newBytes };
    } finally {
      disposeModel(model);
    }
  };
  const native = await run('native');
  const wasm = await run('wasm');
  for (let i = 0; i < positions.length; i++) {
    const e = maxRelErr(native.logits[i], wasm.logits[i]);
    assert.ok(e < 1e-4, `position ${positions[i]}: native and wasm differ by ${e}`);
  }
  // The whole score tensor [nH, T, T] would be 4 * 4096² floats (256 MB); neither path comes near it.
  const full = 4 * 4 * 4096 * 4096;
  assert.ok(wasm.peak < full / 2, `wasm peak ${wasm.peak} bytes`);
  assert.ok(native.peak < full / 16, `native peak ${native.peak} bytes`);
});

for (const backend of ['native', 'wasm'] as const) {
  test(`${backend}: a block that throws leaves tf.memory() where it was`, { skip: backend === 'native' && NO_NATIVE }, async () => {
    await initBackend(backend);
    await writeModel(LONG, LONG_CONFIG, 'F32', 5);
    const model = loadModel(LONG);
    try {
      const pre = forward(model, [[1, 2, 3], [4, 5, 6]], { logits: 'none', returnCache: true });
      const cache = pre.cache!;
      // Layer 1's cached values lose a position: its first block throws, after layer 0 made keys and hidden states.
      const short = tf.slice(cache.values[1], [0, 0, 0, 0], [-1, -1, 2, -1]);
      // Layer 1's cached values lose a row: its second micro-batch throws after the first one finished
      // (the cpu kernels check slice bounds; wasm's do not, so this case runs on native only).
      const narrow = tf.slice(cache.values[1], [0, 0, 0, 0], [1, -1, -1, -1]);
      const bad = [short, ...(backend === 'native' ? [narrow] : [])];
      const n0 = tf.memory().numTensors, bytes0 = tf.memory().numBytes;
      for (const v1 of bad) {
        const c = { ...cache, values: [cache.values[0], v1] };
        assert.throws(() => forward(model, [[7, 8], [9, 10]], { cache: c, microBatch: 1, returnCache: true, hiddenStates: true }));
        assert.equal(tf.memory().numTensors, n0);
        assert.equal(tf.memory().numBytes, bytes0);
      }
      tf.dispose([short, narrow]);
      disposeCache(cache);
    } finally {
      disposeModel(model);
    }
  });
}

test('wasm: lm_head through vocabulary chunks equals the plain product', async () => {
  await initBackend('wasm');
  const n0 = tf.memory().numTensors;
  const x = tf.randomNormal([3, 16], 0, 1, 'float32', 1) as tf.Tensor2D;
  const w = tf.randomNormal([1000, 16], 0, 1, 'float32', 2);
  const whole = lmHeadLogits(x, { tensor: w, dtype: 'float32' });
  const chunked = lmHeadLogits(x, { tensor: w, dtype: 'float32' }, 8 * 16 * 96); // chunks of 96 rows
  const plain = tf.matMul(x, w, false, true);
  assert.deepEqual(chunked.shape, [3, 1000]);
  assert.ok(maxRelErr(chunked.dataSync(), plain.dataSync()) < 1e-6);
  assert.ok(maxRelErr(whole.dataSync(), plain.dataSync()) < 1e-6);
  tf.dispose([x, w, whole, chunked, plain]);
  assert.equal(tf.memory().numTensors, n0);
});
