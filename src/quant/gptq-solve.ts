/**
 * GPTQ's solver for one linear layer (Frantar, Ashkboos, Hoefler, Alistarh, "GPTQ: Accurate
 * Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023, arXiv:2210.17323,
 * Algorithm 1): given W [rows, cols] and H = 2·X·Xᵀ of the layer's calibration inputs X [cols, tokens],
 * quantize W column by column, each column's rounding error spread over the columns not yet quantized
 * through the upper Cholesky factor of H⁻¹, so that ‖W·X − Q·X‖² stays small; errors are applied to the
 * columns of the current block of 128 at once and to the rest lazily, one product per block.
 *
 * Details as in the authors' gptq.py: inputs that never vary (H_ii = 0) get H_ii = 1 and zero weights;
 * dampening adds 1% of the mean diagonal; act-order quantizes columns by decreasing H_ii. Group
 * parameters are taken when a group's first column is reached, from the weights as updated so far (the
 * reference takes them from W before the current block's updates; the two agree at group 128); with
 * act-order and groups they are computed from the original W before any update (AutoGPTQ's
 * static_groups), so a group stays a run of 32/64/128 consecutive inputs and the packed layout holds.
 */
import { allocPacked, packedBytes, codeValue, dequantize, groupCount, groupParams, quantCode, setCode, setGroup, type GroupParams, type PackedMatrix, type PackedSpec } from '../io/packed.ts';
import { tf } from '../runtime/tf.ts';
import { tidyValues } from '../runtime/read-out.ts';
import { gemm, hessianInverseFactor, permuteSymmetric, restoreSymmetric, type View } from './linalg.ts';

export interface GptqOptions {
  /** Fraction of the mean diagonal added to H (default 0.01). */
  dampening?: number;
  /** Columns whose updates are applied together (default 128). */
  blockSize?: number;
  /** Quantize columns in order of decreasing H_ii (default false). */
  actOrder?: boolean;
  /** Names the layer in errors. */
  what?: string;
}

export interface GptqResult {
  packed: PackedMatrix;
  /** The quantized weights' values [rows, cols]. */
  dequantized: Float32Array;
  /** GPTQ's own loss: Σ (w − q)² / (2·U_jj²) over every weight. */
  loss: number;
  /** The dampening added to H's diagonal. */
  damp: number;
  /** The fraction of the mean diagonal that made H positive definite (above the one asked for when it did not). */
  dampening: number;
  /** Inputs that never vary (H_ii = 0), whose weights were set to zero. */
  dead: number;
}

/**
 * Quantizes w [rows, cols] (row-major) with GPTQ for inputs whose H = 2·X·Xᵀ is `h` [cols, cols]
 * (row-major). Runs in float64 apart from large products (float32, see linalg.ts). A float64 `h` is
 * the factorisation's workspace (no n×n copy is made) and holds H again, bit for bit, when this
 * returns or throws; a float32 one is copied into one.
 */
export function gptqQuantize(w: ArrayLike<number>, rows: number, cols: number, h: Float32Array | Float64Array, spec: PackedSpec, opts: GptqOptions = {}): GptqResult {
  const blockSize = opts.blockSize ?? 128;
  // inputs that never vary: GPTQ sets their weights to zero (they multiply zeros) and H_ii to 1 (in dampen)
  const dead = new Uint8Array(cols);
  for (let c = 0; c < cols; c++) dead[c] = h[c * cols + c] === 0 ? 1 : 0;

  const perm = Array.from({ length: cols }, (_, c) => c);
  if (opts.actOrder) perm.sort((a, b) => h[b * cols + b] - h[a * cols + a] || a - b);
  const a = h instanceof Float64Array ? h : Float64Array.from(h);
  if (opts.actOrder) permuteSymmetric(a, cols, perm);
  let diagonal: Float64Array | null = null;
  try {
    const f = hessianInverseFactor(a, cols, opts.dampening ?? 0.01, opts.what ?? 'layer');
    diagonal = f.diagonal;
    return { ...solve(w, rows, cols, a, spec, blockSize, !!opts.actOrder, dead, perm), damp: f.damp, dampening: f.fraction, dead: dead.reduce((x, v) => x + v, 0) };
  } finally {
    if (diagonal) restoreSymmetric(a, cols, diagonal);
    if (opts.actOrder) {
      const inverse = new Array<number>(cols);
      perm.forEach((c, j) => (inverse[c] = j));
      permuteSymmetric(a, cols, inverse);
    }
  }
}

/**
 * GPTQ's column loop with `u`'s upper triangle and diagonal (the upper Cholesky factor of the dampened
 * H⁻¹, its columns in `perm`'s order).
 */
function solve(w: ArrayLike<number>, rows: number, cols: number, u: Float64Array, spec: PackedSpec, blockSize: number, actOrder: boolean, dead: Uint8Array, perm: number[]): { packed: PackedMatrix; dequantized: Float32Array; loss: number } {
  const g = spec.group;
  // wt[j] = column perm[j] of W, as a contiguous row of `rows` values
  const wt = new Float64Array(cols * rows);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) wt[j * rows + r] = dead[perm[j]] ? 0 : w[r * cols + perm[j]];

  const pm = allocPacked(rows, cols, spec);
  const params: GroupParams[] = new Array(rows * groupCount(cols, g));
  const staticGroups = actOrder && g !== cols;
  if (staticGroups || g === cols) {
    // from the weights before any update (per-channel groups see the whole row at its first column anyway)
    const orig = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) orig[c] = dead[c] ? 0 : w[r * cols + c];
      for (let gi = 0; gi < groupCount(cols, g); gi++) setParams(r, gi, groupParams(orig, gi * g, Math.min(cols, gi * g + g), spec));
    }
  }
  function setParams(r: number, gi: number, p: GroupParams): void {
    params[r * groupCount(cols, g) + gi] = p;
    setGroup(pm, r, gi, p);
  }

  let loss = 0;
  const err = new Float64Array(Math.min(blockSize, cols) * rows); // a block is never wider than the matrix (--block-size may be)
  const colVals = new Float64Array(g);
  for (let i1 = 0; i1 < cols; i1 += blockSize) {
    const i2 = Math.min(cols, i1 + blockSize);
    for (let j = i1; j < i2; j++) {
      const c = perm[j];
      if (!staticGroups && g !== cols && c % g === 0) {
        // a group begins: its parameters from the current (updated) weights of its columns
        const c1 = Math.min(cols, c + g);
        for (let r = 0; r < rows; r++) {
          for (let k = c; k < c1; k++) colVals[k - c] = wt[k * rows + r];
          setParams(r, c / g, groupParams(colVals, 0, c1 - c, spec));
        }
      }
      const d = u[j * cols + j];
      const col = j * rows;
      const e = (j - i1) * rows;
      const gi = Math.floor(c / g);
      for (let r = 0; r < rows; r++) {
        const x = wt[col + r];
        const p = params[r * groupCount(cols, g) + gi];
        const q = quantCode(x, p, spec);
        setCode(pm, r, c, q);
        const diff = x - codeValue(q, p, spec);
        loss += (diff * diff) / (d * d) / 2;
        err[e + r] = diff / d;
      }
      // spread this column's error over the block's later columns
      for (let k = j + 1; k < i2; k++) {
        const f = u[j * cols + k];
        if (f === 0) continue;
        const o = k * rows;
        for (let r = 0; r < rows; r++) wt[o + r] -= f * err[e + r];
      }
    }
    // and, lazily, over every column after the block: Wt[i2:] -= U[i1:i2, i2:]ᵀ · Err
    if (i2 < cols) {
      const uBlock: View = { a: u, off: i1 * cols + i2, ld: cols, rows: i2 - i1, cols: cols - i2 };
      const errBlock: View = { a: err, off: 0, ld: rows, rows: i2 - i1, cols: rows };
      gemm(-1, uBlock, true, errBlock, false, { a: wt, off: i2 * rows, ld: rows, rows: cols - i2, cols: rows });
    }
  }
  return { packed: pm, dequantized: dequantize(pm), loss };
}

/** Values of a float32 operand or result per product in layerObjective (16 MB). */
const OBJECTIVE_TILE = 1 << 22;

/** Bytes layerObjective holds beside its [rows, cols] error (and the error's tensor where tensors are copies): a tile of H's columns, its tensor where tensors are copies, and the product. */
export const OBJECTIVE_SCRATCH_BYTES = 3 * 4 * OBJECTIVE_TILE;

/** Bytes GPTQ's column loop holds for a [rows, cols] linear beside the factor: W's columns in float64, the packed result, its group parameters (an object each, about 40 bytes) and the lazy block's errors. */
export function solveBytes(rows: number, cols: number, spec: PackedSpec, blockSize: number): number {
  return 8 * rows * cols + packedBytes(rows, cols, spec) + 40 * rows * groupCount(cols, spec.group) + 8 * Math.min(blockSize, cols) * rows;
}

/**
 * The layer objective ‖(W − Q)·X‖² written with H = 2·X·Xᵀ: ½·Σ_rows (w − q)ᵀ·H·(w − q), for reports
 * and tests: the products E·H in float32 (tfjs), H's columns a tile at a time (`tile` values per
 * operand at most; never the whole n×n in float32), summed against E in float64.
 */
export function layerObjective(w: ArrayLike<number>, q: ArrayLike<number>, rows: number, cols: number, h: Float32Array | Float64Array, tile = OBJECTIVE_TILE): number {
  const e = new Float32Array(rows * cols);
  for (let i = 0; i < e.length; i++) e[i] = w[i] - q[i];
  const et = tf.tensor2d(e, [rows, cols]);
  const step = Math.max(1, Math.floor(tile / Math.max(rows, cols)));
  const block = new Float32Array(cols * step);
  let sum = 0;
  try {
    for (let c0 = 0; c0 < cols; c0 += step) {
      const w = Math.min(cols, c0 + step) - c0;
      // E·H[:, c0:c1] (H's columns gathered here: tfjs' strided slices go element by element), against E[:, c0:c1]
      for (let i = 0; i < cols; i++) for (let j = 0; j < w; j++) block[i * w + j] = h[i * cols + c0 + j];
      const eh = tidyValues(() => tf.matMul(et, tf.tensor2d(block.subarray(0, cols * w), [cols, w]))); // [rows, w]
      for (let r = 0; r < rows; r++) {
        const o = r * cols + c0;
        for (let j = 0; j < w; j++) sum += eh[r * w + j] * e[o + j];
      }
    }
  } finally {
    et.dispose();
  }
  return sum / 2;
}
