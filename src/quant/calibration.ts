/**
 * Calibration inputs of one decoder layer and what quantizers measure on them. The prompts' hidden
 * states at the layer's input are held as right-padded micro-batches [b, T, H] with a mask of real
 * tokens; the layer runs op by op on them (model/forward.ts runBlock) with a tap on its projections,
 * from which come each projection's input Hessian 2·X·Xᵀ/N (GPTQ), per-channel input magnitudes
 * (AWQ, SmoothQuant) and projection outputs (AWQ's search). Padding never counts: the mask zeroes it.
 */
import { tf } from '../runtime/tf.ts';
import type { LlamaConfig } from '../model/config.ts';
import type { LayerWeights } from '../model/model.ts';
import { runBlock, runBlockPart } from '../model/forward.ts';
import { linear } from '../model/ops.ts';
import { tidyValues } from '../runtime/read-out.ts';
import { layerTokenBytes, SCORE_BLOCK_FLOATS } from '../model/memory-estimate.ts';

/** Right-padded hidden states of some prompts at one layer boundary. */
export interface CalibrationBatch {
  x: tf.Tensor3D;
  /** 1 at real tokens, 0 at padding: [b, T, 1]. */
  mask: tf.Tensor3D;
  tokens: number;
}

/** The calibration prompts' hidden states at a layer's input. */
export interface CalibrationSet {
  batches: CalibrationBatch[];
  /** Real tokens in all. */
  tokens: number;
}

/** Prompts per calibration micro-batch when the caller gives none. */
export const CALIBRATION_MICRO_BATCH = 8;

/**
 * Bytes one calibration micro-batch's pass through a decoder layer may hold (its float32 intermediates,
 * runBlock's). A pass costs the same per token at a few thousand tokens as at more, so the budget is
 * set by memory: at Llama-3-8B's shape GPTQ's and AWQ's peaks at the default calibration then stay below
 * what `compress` holds (docs/quantization.md), at 37 micro-batches of that calibration where 2 GiB made 25.
 */
export const CALIBRATION_FORWARD_BYTES = 2 ** 30;

/**
 * Padded tokens (rows × longest prompt) of a calibration micro-batch whose pass through a layer of
 * `config` fits in `forwardBytes` (CALIBRATION_FORWARD_BYTES): per token its input and output and the layer's
 * intermediates (memory-estimate.ts layerTokenBytes), beside at most two blocks of attention scores
 * (attention is blocked on every backend). 3,373 at Llama-3-8B's shape; far above any calibration on
 * small models, whose micro-batches are then those of `micro` prompts alone.
 */
export function calibrationTokenCap(config: LlamaConfig, forwardBytes = CALIBRATION_FORWARD_BYTES): number {
  const perToken = 4 * 2 * config.hidden_size + layerTokenBytes(config);
  return Math.max(1, Math.floor((forwardBytes - 4 * 2 * SCORE_BLOCK_FLOATS) / perToken));
}

/**
 * The calibration micro-batches, as indices into `lengths` (the prompts' token counts): the prompts
 * sorted by length (ties by index, so little padding) and grouped in that order, a micro-batch taking
 * the next prompt while it holds fewer than `micro` prompts and its padded tokens (rows × the longest)
 * stay within calibrationTokenCap(config, forwardBytes). A prompt longer than the cap is a micro-batch of its own.
 * The run (embedPrompts) and the memory estimate (memory.ts) both batch so.
 */
export function calibrationBatches(lengths: readonly number[], config: LlamaConfig, micro = CALIBRATION_MICRO_BATCH, forwardBytes = CALIBRATION_FORWARD_BYTES): number[][] {
  const cap = calibrationTokenCap(config, forwardBytes);
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[a] - lengths[b] || a - b);
  const batches: number[][] = [];
  let batch: number[] = [];
  for (const i of order) {
    if (batch.length > 0 && (batch.length >= micro || (batch.length + 1) * lengths[i] > cap)) {
      batches.push(batch);
      batch = [];
    }
    batch.push(i);
  }
  if (batch.length > 0) batches.push(batch);
  return batches;
}

/**
 * The prompts' embeddings as a calibration set in the given micro-batches (calibrationBatches: indices
 * into `prompts`), each right-padded to its longest prompt; `rows(ids)` gives the embedding rows
 * [ids.length, H] of a prompt.
 */
export function embedPrompts(prompts: number[][], hidden: number, rows: (ids: number[]) => Float32Array, batching: readonly (readonly number[])[]): CalibrationSet {
  const batches: CalibrationBatch[] = [];
  let tokens = 0;
  try {
    for (const indices of batching) {
      const group = indices.map((i) => prompts[i]);
      const T = Math.max(...group.map((p) => p.length));
      const x = new Float32Array(group.length * T * hidden);
      const mask = new Float32Array(group.length * T);
      group.forEach((p, r) => {
        x.set(rows(p), r * T * hidden);
        mask.fill(1, r * T, r * T + p.length);
        tokens += p.length;
      });
      batches.push({
        x: tf.tensor3d(x, [group.length, T, hidden]), mask: tf.tensor3d(mask, [group.length, T, 1]),
        tokens: group.reduce((a, p) => a + p.length, 0),
      });
    }
  } catch (e) {
    disposeCalibration({ batches, tokens });
    throw e;
  }
  return { batches, tokens };
}

/** Frees a calibration set. */
export function disposeCalibration(set: CalibrationSet): void {
  for (const b of set.batches) {
    b.x.dispose();
    b.mask.dispose();
  }
  set.batches = [];
}

/** A decoder layer's weights for runBlock from float32 values by suffix (HF layout); release() frees them. */
export function layerWeights(values: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, number[]>): LayerWeights {
  const tensors = new Map<string, tf.Tensor>();
  for (const [suffix, v] of values) tensors.set(suffix, tf.tensor(v, shapes.get(suffix)!, 'float32'));
  const get = (suffix: string) => {
    const t = tensors.get(suffix);
    if (!t) throw new Error(`calibration layer has no tensor ${suffix}`);
    return t;
  };
  return {
    weight: (suffix) => ({ tensor: get(suffix), dtype: 'float32' }),
    get,
    has: (suffix) => tensors.has(suffix),
    release: () => {
      for (const t of tensors.values()) t.dispose();
      tensors.clear();
    },
  };
}

/** Runs the layer (weights w) on every batch of `set` for `tap`, which sees each projection with the batch's mask; outputs are freed. */
export function runLayer(config: LlamaConfig, set: CalibrationSet, w: LayerWeights, tap: (name: string, input: tf.Tensor, output: tf.Tensor, batch: CalibrationBatch) => void): void {
  for (const b of set.batches) runBlock(config, w, b.x, (name, input, output) => tap(name, input, output, b)).dispose();
}

/**
 * Moves the set to the next layer's input: each batch's states are replaced by the layer's output
 * (weights w) as soon as it is computed, so the states are never held twice. After an error the
 * set is partly moved: only disposeCalibration is left to do with it.
 */
export function advanceLayer(config: LlamaConfig, set: CalibrationSet, w: LayerWeights): void {
  for (const b of set.batches) {
    const h = runBlock(config, w, b.x);
    b.x.dispose();
    b.x = h;
  }
}

/** Rows of a projection input [b, T, in] at real tokens only (padding zeroed), as [b·T, in]. */
function masked(input: tf.Tensor, batch: CalibrationBatch): tf.Tensor2D {
  const width = input.shape[input.shape.length - 1]!;
  return tf.mul(input, batch.mask).reshape([-1, width]) as tf.Tensor2D;
}

/** Values of a float32 operand or result per product in inputHessians (16 MB). */
const HESSIAN_TILE = 1 << 22;

/** Bytes inputHessians holds beside the Hessians and the forward pass: one product's tiles (the masked inputs, their tensor where tensors are copies, and the result). */
export const HESSIAN_SCRATCH_BYTES = 3 * 4 * HESSIAN_TILE;

/** Each named projection's Σ x·xᵀ over the calibration tokens, as sumInputHessians leaves it: the lower triangle packed at the start of an n×n array. */
export interface HessianSums {
  sums: Map<string, Float64Array>;
  /** Real tokens summed over. */
  tokens: number;
}

/**
 * The sums of X·Xᵀ over the calibration tokens of each named projection's input (X [in, N]), from one
 * pass of the layer (w) over every batch: each batch's X·Xᵀ is computed in float32 (tfjs) a block of
 * rows at a time (`tile` values per operand at most) and added into a float64 n×n array in place: no
 * n×n tensor and no copy of the batch's inputs is made. Only the lower triangle is summed, packed at the
 * start of the array (row i at i·(i+1)/2); the rest of the array is not written until spreadHessians,
 * and a zeroed array's pages take memory only once written (calloc'd, mapped lazily), so the passes run
 * beside 4·n·(n+1) bytes of Hessian, not 8·n² (hessianBytes).
 */
export function sumInputHessians(config: LlamaConfig, set: CalibrationSet, w: LayerWeights, projections: readonly string[], tile = HESSIAN_TILE): HessianSums {
  const sums = new Map<string, Float64Array>();
  runLayer(config, set, w, (name, input, _out, batch) => {
    if (!projections.includes(name)) return;
    const n = input.shape[input.shape.length - 1]!;
    let h = sums.get(name);
    if (!h) sums.set(name, (h = new Float64Array(n * n)));
    const x = input.reshape([-1, n]) as tf.Tensor2D; // [b·T, in]
    const rows = x.shape[0];
    const values = x.dataSync(), mask = batch.mask.dataSync();
    const step = Math.max(1, Math.floor(tile / Math.max(n, rows)));
    const left = new Float32Array(step * rows);
    for (let i0 = 0; i0 < n; i0 += step) {
      const i1 = Math.min(n, i0 + step);
      // rows i0..i1 of Xᵀ·X: the masked inputs i0..i1, transposed here (tfjs' strided slices go element by element), against the
      // whole input (padding rows are zero on one side, so on both)
      for (let r = 0; r < rows; r++) {
        const m = mask[r], o = r * n + i0;
        for (let i = 0; i < i1 - i0; i++) left[i * rows + r] = m === 0 ? 0 : values[o + i];
      }
      const part = tidyValues(() => tf.matMul(tf.tensor2d(left.subarray(0, (i1 - i0) * rows), [i1 - i0, rows]), x)); // [i1 - i0, n]
      for (let i = i0; i < i1; i++) {
        const o = (i * (i + 1)) / 2, p = (i - i0) * n;
        for (let j = 0; j <= i; j++) h[o + j] += part[p + j];
      }
    }
  });
  return { sums, tokens: set.tokens };
}

/**
 * H = 2·X·Xᵀ / N from sumInputHessians' sums, in their arrays: GPTQ's Hessian of ‖W·X − Q·X‖², float64
 * [in, in] row-major by projection name (every page of each array written now).
 */
export function spreadHessians({ sums, tokens }: HessianSums): Map<string, Float64Array> {
  for (const h of sums.values()) {
    const n = Math.round(Math.sqrt(h.length));
    // row i of the packed triangle to row i of the matrix, the last first (row i moves to i·n ≥ i·(i+1)/2, past every row not moved yet)
    for (let i = n - 1; i > 0; i--) h.copyWithin(i * n, (i * (i + 1)) / 2, (i * (i + 1)) / 2 + i + 1);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) h[i * n + j] = (2 * h[i * n + j]) / tokens;
      for (let j = 0; j < i; j++) h[j * n + i] = h[i * n + j];
    }
  }
  return sums;
}

/** GPTQ's Hessians H = 2·X·Xᵀ / N of the named projections' inputs (sumInputHessians, then spreadHessians). */
export function inputHessians(config: LlamaConfig, set: CalibrationSet, w: LayerWeights, projections: readonly string[], tile = HESSIAN_TILE): Map<string, Float64Array> {
  return spreadHessians(sumInputHessians(config, set, w, projections, tile));
}

/** Bytes a Hessian of n inputs holds while the layer's passes sum it (its packed lower triangle, float64), and once spread (8·n²). */
export function hessianBytes(n: number, phase: 'summing' | 'done'): number {
  return phase === 'summing' ? 4 * n * (n + 1) : 8 * n * n;
}

/**
 * Per input channel of each named projection: the mean and the maximum of |x| over the calibration
 * tokens, from one pass of the layer (w) over every batch (the mean as the sum of each batch's sums).
 */
export function inputMagnitudes(config: LlamaConfig, set: CalibrationSet, w: LayerWeights, projections: readonly string[]): Map<string, { mean: Float32Array; max: Float32Array }> {
  const sums = new Map<string, tf.Tensor[]>(projections.map((p) => [p, []])), maxes = new Map<string, tf.Tensor>();
  try {
    runLayer(config, set, w, (name, input, _out, batch) => {
      if (!sums.has(name)) return;
      tf.tidy(() => { // |x| is freed at once, not with the rest of the batch's pass
        const a = tf.abs(tf.mul(input, batch.mask)); // [b, T, in], padding 0
        sums.get(name)!.push(tf.keep(tf.sum(a, [0, 1])));
        const m = tf.max(a.reshape([-1, a.shape[a.shape.length - 1]!]), 0);
        const prev = maxes.get(name);
        maxes.set(name, tf.keep(prev ? tf.maximum(prev, m) : m.clone()));
        prev?.dispose();
      });
    });
    const out = new Map<string, { mean: Float32Array; max: Float32Array }>();
    for (const [name, parts] of sums) {
      if (!parts.length) continue;
      out.set(name, { mean: tidyValues(() => tf.addN(parts)).map((v) => v / set.tokens), max: Float32Array.from(maxes.get(name)!.dataSync() as Float32Array) });
    }
    return out;
  } finally {
    for (const t of [...[...sums.values()].flat(), ...maxes.values()]) t.dispose();
  }
}

/** The input of projection `name` on one batch (unmasked, as the module after it reads it); the caller frees it. */
export function projectionInput(config: LlamaConfig, batch: CalibrationBatch, w: LayerWeights, name: string): tf.Tensor3D {
  let input: tf.Tensor3D | null = null;
  try {
    runLayer(config, { batches: [batch], tokens: batch.tokens }, w, (n, x) => {
      if (n === name) input = tf.keep(x.clone()) as tf.Tensor3D;
    });
  } catch (e) {
    (input as tf.Tensor3D | null)?.dispose();
    throw e;
  }
  if (!input) throw new Error(`the layer has no projection ${name}`);
  return input;
}

/** A module of a decoder layer whose output a quantizer measures: the attention or the MLP (from its normed input), or one projection. */
export type LayerModule = { part: 'attention' | 'mlp' } | { projection: string };

/** The module's output on one batch's `input` (its input as projectionInput gives it), padding rows zeroed, as [b·T, out]; the caller frees it. */
export function moduleOutput(config: LlamaConfig, batch: CalibrationBatch, w: LayerWeights, module: LayerModule, input: tf.Tensor3D): tf.Tensor2D {
  return tf.tidy(() => {
    const y = 'part' in module ? runBlockPart(config, w, module.part, input)
      : linear(input, w.weight(`${module.projection}.weight`), w.has(`${module.projection}.bias`) ? w.get(`${module.projection}.bias`) : undefined);
    return masked(y, batch);
  });
}

/** Σ (a − b)² over all elements (float32 sum, read out). */
export function squaredError(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.sum(tf.squaredDifference(a, b)).dataSync()[0]);
}
