/**
 * The decoder's building blocks as functions of tfjs tensors. Each one runs the backend's custom
 * kernel (MkaLinear, MkaAttention, ...) when the current backend registers it (the `native` backend,
 * src/runtime/native-kernels.ts) and composes plain tfjs ops otherwise (wasm, tensorflow, cpu), so
 * the decoder reads the same on every backend.
 */
import { tf } from '../runtime/tf.ts';
import { KERNELS } from '../runtime/kernel-names.ts';
import { currentProfile } from '../runtime/profile.ts';
import { COMPUTE_OPTION } from '../runtime/backend-choice.ts';
import { flag } from '../runtime/options.ts';
import { dequantizeRows, type PackedSpec } from '../io/packed.ts';

/** How a weight's values are stored: float32, 16-bit, or contract 1's packed integers. */
export type WeightDtype = 'float32' | 'bfloat16' | 'float16' | 'q8' | 'q4';

/** Contract 1's quantization of a packed integer weight (q8/q4). */
export interface QuantInfo {
  /** Inputs per row (`in`). */
  cols: number;
  /** Inputs per scale: 32, 64, 128, or `cols` (per output channel). */
  group: number;
  symmetric: boolean;
  /** float32 [out, ceil(cols/group)]. */
  scales: tf.Tensor;
  /** float32 [out, ceil(cols/group)], asymmetric weights only. */
  mins?: tf.Tensor;
  /** 8: the input is quantized to int8 per token before the product (SmoothQuant W8A8). */
  actBits?: 8;
}

/**
 * A weight as the kernels take it.
 * - float32: `tensor` has the Hugging Face shape [out, in], or, when `transposed`, is Wᵀ [in, out]
 *   (laid out once at load where the backend's untransposed product is the fast one; see model.ts).
 * - bfloat16/float16: `tensor` is int32 [out, in/2] holding the raw 16-bit words two per element
 *   (little-endian), so tf.memory() counts its real bytes and dispose() frees it; only native kernels
 *   read it. With `panels` ([out, in]), a bfloat16 `tensor` instead holds the bf16 products' packed
 *   panels (int32 [bf16PackedWords(out, in)], packBf16), laid out once for --compute bfloat16.
 * - q8/q4 (docs/quantization.md, Format): `tensor` is int32 [out, rowBytes/4] holding the quants row by
 *   row in blocks of 32 inputs, `quant` says how to read them. linear() multiplies them on the native
 *   MkaLinearQ: as float32 rows the GEMM widens per tile, or (--compute int8, and W8A8 weights always) on
 *   the integer kernels, which never widen the weight.
 */
export interface Weight {
  tensor: tf.Tensor;
  dtype: WeightDtype;
  transposed?: boolean;
  panels?: [number, number];
  quant?: QuantInfo;
}

/** The addon's weight format code of a weight (native contract: F32 0, BF16 1, F16 2, BF16P 3, Q8 4, Q4 5). */
export function weightFormat(w: Weight): number {
  if (w.panels) return 3;
  return { float32: 0, bfloat16: 1, float16: 2, q8: 4, q4: 5 }[w.dtype];
}

/** A weight's matrix shape [out, in] in Hugging Face orientation, however it is held. */
export function weightShape(w: Weight): [number, number] {
  if (w.panels) return w.panels;
  const [r, c] = w.tensor.shape as [number, number];
  if (w.quant) return [r, w.quant.cols];
  if (w.transposed) return [c, r];
  return w.dtype === 'float32' ? [r, c] : [r, c * 2];
}

/** Frees a weight's tensors. */
export function disposeWeight(w: Weight): void {
  w.tensor.dispose();
  w.quant?.scales.dispose();
  w.quant?.mins?.dispose();
}

/** The packing of a packed integer weight (contract 1). */
export function packedSpec(w: Weight): PackedSpec {
  if (!w.quant) throw new Error(`packedSpec: a ${w.dtype} weight is not packed`);
  return { bits: w.dtype === 'q8' ? 8 : 4, group: w.quant.group, symmetric: w.quant.symmetric };
}

/** Bytes a weight holds in memory. */
export function weightBytes(w: Weight): number {
  const bytes = (t: tf.Tensor) => t.size * (t.dtype === 'float32' || t.dtype === 'int32' ? 4 : 1);
  return bytes(w.tensor) + (w.quant ? bytes(w.quant.scales) + (w.quant.mins ? bytes(w.quant.mins) : 0) : 0);
}

/** How packed weights (other than W8A8) multiply on the current backend: on the integer kernels (--compute int8), or as float32 rows of their dequantized values. */
export function packedProducts(): 'int8' | 'float32' {
  return currentProfile().compute === 'int8' && hasKernel(KERNELS.linearQ) ? 'int8' : 'float32';
}

/**
 * Whether packed weight `w` multiplies unrounded activations as float32 rows (widened per tile by the
 * GEMM): unless --compute int8 puts it on the integer kernels, which round the activations to 8 bits
 * per block of 32 as llama.cpp does. W8A8 weights take their method's int8 activations either way.
 */
export function floatPackedProducts(w: Weight): boolean {
  return !!w.quant && !w.quant.actBits && packedProducts() === 'float32';
}

/** Which kernels run packed weights on the current backend, for logs. */
export function packedPath(): string {
  const isa = currentProfile().integerProducts;
  if (!hasKernel(KERNELS.linearQ)) return 'JS fallback (dequantized a block of rows at a time, float32 products)';
  if (packedProducts() === 'int8') return `native integer kernels (MkaLinearQ${isa ? `, ${isa}` : ''}; activations rounded to 8 bits per block of 32 as llama.cpp does)`;
  return `native float32 products of the dequantized rows (widened per tile; W8A8 weights on the integer kernels${isa ? `, ${isa}` : ''}; ${flag(COMPUTE_OPTION)} int8 runs all on them, rounding activations as llama.cpp does: faster, other numbers)`;
}

/** The attributes by which the native kernels read a weight (its format, shape and quantization). */
function weightAttrs(w: Weight, prefix = ''): Record<string, number> {
  const [rows, cols] = weightShape(w);
  return {
    [`${prefix}format`]: weightFormat(w), [`${prefix}rows`]: rows, [`${prefix}cols`]: cols,
    [`${prefix}group`]: w.quant?.group ?? 0, [`${prefix}perToken`]: w.quant?.actBits === 8 ? 1 : 0,
    [`${prefix}floatProducts`]: floatPackedProducts(w) ? 1 : 0,
  };
}

/** Whether the current backend has kernel `name`. */
export function hasKernel(name: string): boolean {
  return tf.getKernel(name, currentProfile().backend) !== undefined;
}

/** Whether the current backend takes 16-bit weights as they are stored (the native kernels). */
export function takes16BitWeights(): boolean {
  return currentProfile().takes16Bit && hasKernel(KERNELS.linear) && hasKernel(KERNELS.gather);
}

/**
 * W [out, in] (float32, or 16-bit int32 words) packed into the bf16 products' panels: a bfloat16
 * weight with `panels`, for --compute bfloat16. The input weight is left as it is.
 */
export function packBf16(w: Weight): Weight {
  if (w.dtype !== 'float32' && w.dtype !== 'bfloat16' && w.dtype !== 'float16') throw new Error(`packBf16: a ${w.dtype} weight`);
  if (w.transposed || w.panels) throw new Error('packBf16: the weight must be in Hugging Face layout');
  const shape = weightShape(w);
  const tensor = run(KERNELS.packBf16, { w: w.tensor }, { type: { float32: 0, bfloat16: 1, float16: 2 }[w.dtype], rows: shape[0], cols: shape[1] });
  return { tensor, dtype: 'bfloat16', panels: shape };
}

const run = <T extends tf.Tensor>(name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, number> = {}) =>
  tf.engine().runKernel(name, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as T;

function float32Only(w: Weight, what: string): tf.Tensor {
  if (w.dtype !== 'float32') throw new Error(`${what}: a ${w.dtype} weight needs the native backend's kernels (backend is ${currentProfile().backend})`);
  return w.tensor;
}

/**
 * x·Wᵀ (+ b) (+ residual) for a weight in any form (see Weight): x [..., in] → [..., out]. The
 * residual, when given, is added to the result (the decoder's skip connection). This is the one entry
 * for every product with a model weight: 16-bit, bf16-panel and packed integer weights run on the
 * backend's MkaLinear kernel (the native backend's), float32 ones there too or as tfjs products. Where
 * the backend profile transposes Hugging Face layout weights (plain WebAssembly) the product is always
 * the untransposed one, so the result does not depend on how the weight is held nor on the rows.
 */
export function linear(x: tf.Tensor, w: Weight, b?: tf.Tensor, residual?: tf.Tensor): tf.Tensor {
  const inner = x.shape[x.shape.length - 1];
  const outer = x.shape.slice(0, -1);
  if (w.quant) {
    if (!hasKernel(KERNELS.linearQ)) return packedLinear(x, w, b, residual);
    const q = w.quant;
    const inputs: Record<string, tf.Tensor> = { x, q: w.tensor, scales: q.scales };
    if (q.mins) inputs.mins = q.mins;
    if (b) inputs.bias = b;
    if (residual) inputs.residual = residual;
    return run(KERNELS.linearQ, inputs, {
      bits: w.dtype === 'q8' ? 8 : 4, group: q.group, cols: q.cols, symmetric: q.symmetric ? 1 : 0, actBits: q.actBits ?? 0, floatProducts: floatPackedProducts(w) ? 1 : 0,
    });
  }
  if (hasKernel(KERNELS.linear) && !w.transposed) {
    const inputs: Record<string, tf.Tensor> = { x, w: w.tensor };
    if (b) inputs.bias = b;
    if (residual) inputs.residual = residual;
    return run(KERNELS.linear, inputs, weightAttrs(w));
  }
  const wt = float32Only(w, 'linear') as tf.Tensor2D;
  const from = currentProfile().transposeFromRows;
  return tf.tidy(() => {
    const rows = x.size / inner;
    const x2 = x.reshape([rows, inner]); // [rows, in]
    const transposeNow = from !== null && rows >= from;
    const y: tf.Tensor2D = w.transposed ? tf.matMul(x2, wt)
      : transposeNow ? tf.matMul(x2, tf.transpose(wt)) : tf.matMul(x2, wt, false, true); // [rows, out]
    const yb = b ? tf.add(y, b) : y;
    const out = yb.reshape([...outer, y.shape[1]]); // [..., out]
    return residual ? tf.add(residual, out) : out;
  });
}

/** Floats of one dequantized block of rows in the packed fallback (4 MB). */
const PACKED_BLOCK_FLOATS = 1 << 20;

/** The bytes of a packed weight's int32 tensor (a view on the cpu/native backend, a copy elsewhere). */
function packedBytes(w: Weight): Uint8Array {
  const words = w.tensor.dataSync() as Int32Array;
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
}

/**
 * x rounded to int8 per token (row of the last axis), SmoothQuant's dynamic activation quantization:
 * s = max|x| / 127, x ≈ s · round(x / s) (half away from zero), as the integer kernels compute it.
 */
export function quantizeActivations(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const s = tf.div(tf.max(tf.abs(x), -1, true), 127);
    const safe = tf.where(tf.equal(s, 0), tf.onesLike(s), s);
    const v = tf.div(x, safe);
    const r = tf.mul(tf.sign(v), tf.floor(tf.add(tf.abs(v), 0.5)));
    return tf.mul(r, safe);
  });
}

/**
 * x·Wᵀ (+ b) (+ residual) for a packed weight where the backend has no integer kernel (MkaLinearQ):
 * one block of rows dequantized at a time (never the whole weight) and multiplied in float32.
 */
function packedLinear(x: tf.Tensor, w: Weight, b?: tf.Tensor, residual?: tf.Tensor): tf.Tensor {
  const q = w.quant!;
  const cols = q.cols, rows = w.tensor.shape[0];
  const inner = x.shape[x.shape.length - 1];
  if (inner !== cols) throw new Error(`linear: packed weight of ${cols} inputs takes no input of width ${inner}`);
  const spec = packedSpec(w);
  const bytes = packedBytes(w);
  const scales = q.scales.dataSync() as Float32Array;
  const mins = q.mins ? (q.mins.dataSync() as Float32Array) : null;
  const outer = x.shape.slice(0, -1);
  const transposed = currentProfile().transposedProjections;
  return tf.tidy(() => {
    const m = x.size / cols;
    const raw = x.reshape([m, cols]); // [m, in]
    const x2 = q.actBits ? quantizeActivations(raw) : raw;
    const step = Math.max(1, Math.floor(PACKED_BLOCK_FLOATS / cols));
    const parts: tf.Tensor2D[] = [];
    for (let r0 = 0; r0 < rows; r0 += step) {
      const n = Math.min(step, rows - r0);
      const block = dequantizeRows(bytes, scales, mins, cols, spec, r0, r0 + n, new Float32Array(n * cols)); // [n, in]
      // each block's float32 copy is freed before the next is made
      parts.push(tf.tidy(() => {
        if (!transposed) return tf.matMul(x2, tf.tensor2d(block, [n, cols]), false, true); // [m, n]
        const t = new Float32Array(n * cols);
        for (let r = 0; r < n; r++) for (let c = 0; c < cols; c++) t[c * n + r] = block[r * cols + c];
        return tf.matMul(x2, tf.tensor2d(t, [cols, n])); // [m, n]
      }));
    }
    const y = parts.length === 1 ? parts[0] : tf.concat(parts, 1); // [m, out]
    const yb = b ? tf.add(y, b) : y;
    const out = yb.reshape([...outer, rows]); // [..., out]
    return residual ? tf.add(residual, out) : out;
  });
}

/**
 * Logits x·Wᵀ for a [V, H] output projection. On wasm the product is untransposed: by Wᵀ itself when
 * it was laid out at load, else over vocabulary chunks of Wᵀ (no transposed copy of all of W),
 * whatever the number of rows, so a position's logits do not depend on which other positions were
 * asked for.
 */
export function lmHeadLogits(x: tf.Tensor2D, w: Weight, wholeFloats = LM_HEAD_CHUNK_FLOATS): tf.Tensor2D {
  if (w.quant || w.transposed || hasKernel(KERNELS.linear) || currentProfile().transposeFromRows === null) return linear(x, w) as tf.Tensor2D;
  const wt = float32Only(w, 'lmHeadLogits');
  const [V, H] = wt.shape;
  if (V * H <= wholeFloats) return tf.tidy(() => tf.matMul(x, tf.transpose(wt))); // [n, V]
  const chunk = Math.max(1, Math.floor(wholeFloats / 8 / H));
  return tf.tidy(() => {
    const parts: tf.Tensor2D[] = [];
    for (let v0 = 0; v0 < V; v0 += chunk) {
      const slice = tf.slice(wt, [v0, 0], [Math.min(chunk, V - v0), H]); // [Vc, H]
      parts.push(tf.matMul(x, tf.transpose(slice)));
    }
    return tf.concat(parts, 1); // [n, V]
  });
}

/**
 * On the wasm fallback, lm_head is transposed whole up to this many floats (256 MB); larger ones go
 * through vocabulary chunks of an eighth of that (slicing costs more than transposing on wasm).
 */
const LM_HEAD_CHUNK_FLOATS = 1 << 26;

/** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) · w, in float32 as transformers computes it. */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  if (hasKernel(KERNELS.rmsNorm)) return run(KERNELS.rmsNorm, { x, w }, { eps });
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w));
}

/** HF rotate-half RoPE on x [B, T, heads, hd] with tables cos, sin [T, hd]: x·cos + rotate_half(x)·sin. */
export function rope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  if (hasKernel(KERNELS.rope)) return run<tf.Tensor4D>(KERNELS.rope, { x, cos, sin });
  return tf.tidy(() => {
    const [T, hd] = cos.shape;
    const half = hd / 2;
    const [x1, x2] = tf.split(x, [half, half], 3);
    const rotated = tf.concat([tf.neg(x2), x1], 3);
    return tf.add(tf.mul(x, cos.reshape([T, 1, hd])), tf.mul(rotated, sin.reshape([T, 1, hd]))) as tf.Tensor4D; // tables [T, 1, hd]
  });
}

/** SiLU(gate) · up, element-wise. */
export function siluMul(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (hasKernel(KERNELS.siluMul)) return run(KERNELS.siluMul, { gate, up });
  return tf.tidy(() => {
    const sig = tf.sigmoid(gate);
    const silu = tf.mul(gate, sig);
    sig.dispose(); // freed before the product is made: two gate-sized temporaries at a time, not three
    return tf.mul(silu, up);
  });
}

/** Rows of an embedding table [V, H] for ids [B, T] → [B, T, H]; only those rows are read (and widened). */
export function embed(table: Weight, ids: number[][]): tf.Tensor3D {
  const B = ids.length, T = ids[0].length;
  const flat = tf.tensor1d(ids.flat(), 'int32');
  try {
    if (hasKernel(KERNELS.gather) && !table.transposed) {
      const width = weightShape(table)[1];
      const inputs: Record<string, tf.Tensor> = { table: table.tensor, ids: flat };
      if (table.quant) inputs.scales = table.quant.scales;
      if (table.quant?.mins) inputs.mins = table.quant.mins;
      return tf.tidy(() => run<tf.Tensor2D>(KERNELS.gather, inputs, weightAttrs(table)).reshape([B, T, width])); // [B, T, H]
    }
    if (table.quant) return tf.tidy(() => embedPacked(table, ids.flat()).reshape([B, T, table.quant!.cols])); // [B, T, H]
    const t = float32Only(table, 'embed');
    return tf.tidy(() => tf.gather(t, flat).reshape([B, T, t.shape[1]!])); // [B, T, H]
  } finally {
    flat.dispose();
  }
}

/** The rows `ids` of a packed table, dequantized: [ids.length, cols]. Only those rows are read. */
function embedPacked(table: Weight, ids: number[]): tf.Tensor2D {
  const { cols } = table.quant!;
  const vocab = table.tensor.shape[0];
  const bytes = packedBytes(table);
  const scales = table.quant!.scales.dataSync() as Float32Array;
  const mins = table.quant!.mins ? (table.quant!.mins.dataSync() as Float32Array) : null;
  const spec = packedSpec(table);
  const out = new Float32Array(ids.length * cols);
  const row = new Float32Array(cols);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`embed: id ${id} outside 0..${vocab - 1}`);
    out.set(dequantizeRows(bytes, scales, mins, cols, spec, id, id + 1, row), i * cols);
  });
  return tf.tensor2d(out, [ids.length, cols]);
}

export interface AttentionOptions {
  /** Mistral's sliding window (keys s with s > position - window), or null. */
  window: number | null;
  /** Scores and P·V as bf16 products (--compute bfloat16; the native kernel, for more than 2 query rows). */
  bf16?: boolean;
  /** Fallback only: largest score block in floats (default 2^22, 16 MB). */
  blockFloats?: number;
}

/**
 * Causal grouped-query attention. q [B, T, nH, hd] (after RoPE); k, v [kvB, nKV, S, hd] with kvB = B
 * or 1; query t sits at absolute position S - T + t. Returns [B, T, nH, hd]. Head h uses kv head
 * floor(h / (nH / nKV)), as HF's repeat_kv. The native kernel uses an online softmax over key blocks;
 * the fallback processes query blocks, so no score tensor larger than blockFloats exists.
 */
export function attention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: AttentionOptions): tf.Tensor4D {
  const [B, T, nH, hd] = q.shape;
  const [kvB, nKV, S] = k.shape;
  if (kvB !== B && kvB !== 1) throw new Error(`attention: keys have batch ${kvB}, queries ${B}`);
  if (v.shape.join() !== k.shape.join()) throw new Error(`attention: values [${v.shape}] differ from keys [${k.shape}]`);
  const scale = 1 / Math.sqrt(hd);
  if (hasKernel(KERNELS.attention)) return run<tf.Tensor4D>(KERNELS.attention, { q, k, v }, { window: opts.window ?? 0, scale, bf16: opts.bf16 ? 1 : 0 });
  const g = nH / nKV;
  const budget = opts.blockFloats ?? 1 << 22;
  const block = Math.max(1, Math.min(T, Math.floor(budget / (B * nH * S))));
  const perHead = currentProfile().transposedProjections;
  return tf.tidy(() => {
    const kb = kvB === B ? k : tf.concat(new Array<tf.Tensor4D>(B).fill(k), 0); // [B, nKV, S, hd]
    const vb = kvB === B ? v : tf.concat(new Array<tf.Tensor4D>(B).fill(v), 0);
    // Query heads kv-major: head kv*g + j uses kv head kv, as HF's repeat_kv does.
    const qg = q.transpose([0, 2, 1, 3]).reshape([B, nKV, g, T, hd]); // [B, nKV, g, T, hd]
    const parts: tf.Tensor[] = [];
    for (let t0 = 0; t0 < T; t0 += block) {
      const n = Math.min(block, T - t0);
      parts.push(tf.tidy(() => {
        const p0 = S - T + t0; // absolute position of the block's first query
        const sHi = p0 + n; // keys [sLo, sHi) can be visible to the block
        const sLo = opts.window === null ? 0 : Math.max(0, p0 - opts.window + 1);
        // one block over every key takes the tensors whole: a slice would copy them
        const whole = n === T && sLo === 0 && sHi === S;
        const qs = (whole ? qg : tf.slice(qg, [0, 0, 0, t0, 0], [B, nKV, g, n, hd])).reshape([B, nKV, g * n, hd]); // [B, nKV, g*n, hd]
        const ks = whole ? kb : tf.slice(kb, [0, 0, sLo, 0], [B, nKV, sHi - sLo, hd]); // [B, nKV, s, hd]
        const vs = whole ? vb : tf.slice(vb, [0, 0, sLo, 0], [B, nKV, sHi - sLo, hd]);
        const mask = blockMask(g, n, p0, sLo, sHi, opts.window);
        if (perHead) return perHeadAttention(qs as tf.Tensor4D, ks, vs, mask, scale).reshape([B, nKV, g, n, hd]); // [B, nKV, g, n, hd]
        // each score-sized tensor is freed once the next is made: two at a time, as the memory estimate counts
        const raw = tf.matMul(qs, ks, false, true);
        const scaled = tf.mul(raw, scale);
        raw.dispose();
        const scores = tf.add(scaled, mask); // [B, nKV, g*n, s]
        scaled.dispose();
        const probs = tf.softmax(scores);
        scores.dispose();
        return tf.matMul(probs, vs).reshape([B, nKV, g, n, hd]); // [B, nKV, g, n, hd]
      }));
    }
    const out = parts.length === 1 ? parts[0] : tf.concat(parts, 3); // [B, nKV, g, T, hd]
    return out.reshape([B, nH, T, hd]).transpose([0, 2, 1, 3]) as tf.Tensor4D; // [B, T, nH, hd]
  });
}

/**
 * softmax(q·kᵀ·scale + mask)·v for q [B, H, m, hd], k, v [B, H, s, hd], one kv head at a time with
 * two-dimensional untransposed products: plain wasm multiplies a batch of matrices, or by a transposed
 * one, several times slower. Only q, kᵀ and v are split per head, never the scores.
 */
function perHeadAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D, scale: number): tf.Tensor4D {
  const [B, H, m, hd] = q.shape;
  const s = k.shape[2];
  const q2 = q.reshape([B * H * m, hd]); // [B*H*m, hd]
  const kt2 = tf.transpose(k, [0, 1, 3, 2]).reshape([B * H * hd, s]); // [B*H*hd, s]
  const v2 = v.reshape([B * H * s, hd]); // [B*H*s, hd]
  const out: tf.Tensor2D[] = [];
  for (let i = 0; i < B * H; i++) {
    const scores = tf.matMul(tf.slice(q2, [i * m, 0], [m, hd]), tf.slice(kt2, [i * hd, 0], [hd, s])); // [m, s]
    out.push(tf.matMul(tf.softmax(tf.add(tf.mul(scores, scale), mask)), tf.slice(v2, [i * s, 0], [s, hd]))); // [m, hd]
  }
  return tf.concat(out, 0).reshape([B, H, m, hd]) as tf.Tensor4D; // [B, H, m, hd]
}

/** Additive mask [g*n, sHi-sLo] for queries at positions p0..p0+n-1 (repeated for g heads) over keys sLo..sHi-1. */
function blockMask(g: number, n: number, p0: number, sLo: number, sHi: number, window: number | null): tf.Tensor2D {
  const width = sHi - sLo;
  const m = new Float32Array(g * n * width);
  for (let r = 0; r < g * n; r++) {
    const pos = p0 + (r % n);
    for (let s = sLo; s < sHi; s++) {
      if (s > pos || (window !== null && s <= pos - window)) m[r * width + s - sLo] = -1e9;
    }
  }
  return tf.tensor2d(m, [g * n, width]);
}

/** A decoder layer's tensors as decoderLayer takes them. */
export interface LayerOperands {
  inputNorm: tf.Tensor;
  postNorm: tf.Tensor;
  /** q, k, v, o, gate, up, down projections (HF [out, in]) and their biases, if any. */
  weights: Weight[];
  biases: (tf.Tensor | undefined)[];
}

export interface LayerShape {
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  window: number | null;
  /** Attention's products in bf16 (as attention's option). */
  bf16?: boolean;
}

/**
 * The whole decoder layer on x [B, T, H] in one native call (the backend's MkaDecoderLayer): the
 * same kernels in the same order as the op-by-op path, so the same bits. past: cached keys/values
 * [1 or B, nKV, S0, hd]; with keep, also returns this layer's keys/values [B, nKV, S0+T, hd]. Null
 * when the backend has no such kernel or a projection is laid out transposed (then compose the ops).
 * The projections may be of any form (Weight), each its own.
 */
export function decoderLayer(
  x: tf.Tensor3D, ops: LayerOperands, past: { k: tf.Tensor4D; v: tf.Tensor4D } | null, cos: tf.Tensor2D, sin: tf.Tensor2D,
  shape: LayerShape, keep: boolean,
): { h: tf.Tensor3D; k?: tf.Tensor4D; v?: tf.Tensor4D } | null {
  if (!hasKernel(KERNELS.decoderLayer) || ops.weights.some((w) => w.transposed)) return null;
  const names = ['q', 'k', 'v', 'o', 'g', 'u', 'd'];
  const inputs: Record<string, tf.Tensor> = { x, norm1: ops.inputNorm, norm2: ops.postNorm, cos, sin };
  let weightAttributes: Record<string, number> = {};
  names.forEach((p, i) => {
    const w = ops.weights[i];
    inputs[`w${p}`] = w.tensor;
    if (w.quant) inputs[`s${p}`] = w.quant.scales;
    if (w.quant?.mins) inputs[`m${p}`] = w.quant.mins;
    weightAttributes = { ...weightAttributes, ...weightAttrs(w, p) };
    const b = ops.biases[i];
    if (b) inputs[`b${p}`] = b;
  });
  if (past) {
    inputs.pastK = past.k;
    inputs.pastV = past.v;
  }
  const attrs = {
    nH: shape.heads, nKV: shape.kvHeads, hd: shape.headDim, eps: shape.eps, window: shape.window ?? 0,
    scale: 1 / Math.sqrt(shape.headDim), keep: keep ? 1 : 0, bf16Attention: shape.bf16 ? 1 : 0, ...weightAttributes,
  };
  const out = tf.engine().runKernel(KERNELS.decoderLayer, inputs as unknown as tf.NamedTensorMap, attrs as unknown as tf.NamedAttrMap) as unknown as tf.Tensor[];
  return keep ? { h: out[0] as tf.Tensor3D, k: out[1] as tf.Tensor4D, v: out[2] as tf.Tensor4D } : { h: out[0] as tf.Tensor3D };
}
