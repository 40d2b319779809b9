/**
 * The dense linear algebra GPTQ needs, on n×n row-major Float64Array matrices: Cholesky factorisation,
 * the inverse of a triangular factor, and the upper Cholesky factor of H⁻¹ (the "Hinv" of Frantar et
 * al.'s algorithm). Recursive blocked algorithms that read and write one triangle only, in place:
 * diagonal blocks of up to 64 are done in float64 loops; the products between blocks are float64 loops
 * when small and tfjs float32 matrix products (native kernels where present) when large, made a tile of
 * at most 4M values at a time. So a 14,336-wide Hessian (Llama-3-8B's down_proj) takes a minute, not
 * hours, and holds its own 1.6 GB and some 100 MB beside it, with H still in the other triangle. tfjs
 * has no Cholesky of its own.
 */
import { tf } from '../runtime/tf.ts';
import { UserError } from '../runtime/errors.ts';
import { tidyValues } from '../runtime/read-out.ts';

/** A rows × cols window of a row-major matrix `a` with leading dimension `ld`, from element `off`. */
export interface View {
  a: Float64Array;
  off: number;
  ld: number;
  rows: number;
  cols: number;
}

/** The whole n×n (rows×cols) matrix as a view. */
export function view(a: Float64Array, rows: number, cols = rows): View {
  return { a, off: 0, ld: cols, rows, cols };
}

/** The window of `v` at (r, c) of the given size. */
function sub(v: View, r: number, c: number, rows: number, cols: number): View {
  return { a: v.a, off: v.off + r * v.ld + c, ld: v.ld, rows, cols };
}

/** Products below this many multiply-adds run as float64 loops; larger ones in tfjs float32. */
const SMALL_PRODUCT = 1 << 21;
/** Diagonal blocks up to this size are factorised unblocked. */
const LEAF = 64;
/** Triangular products (syrkLower, trmm*) of up to this size are one product through a scratch matrix (a product's copies cost as much as its multiply-adds when thin). */
const PRODUCT_LEAF = 256;
/** A large product's float32 operands and result are made this many values at a time (16 MB), whatever its size. */
const TILE = 1 << 22;

/**
 * Bytes the factorisation of an n×n matrix (hessianInverseFactor) holds beside the matrix at most: a
 * product's float32 tiles (its two operands, their arrays where tensors are copies, and the result read
 * out) and a triangular product's float64 scratch (n × PRODUCT_LEAF).
 */
export function factorScratchBytes(n: number): number {
  return 4 * 4 * TILE + 8 * n * PRODUCT_LEAF;
}

/** A view's values as a float32 [rows, cols] tensor. */
function toTensor(v: View): tf.Tensor2D {
  const out = new Float32Array(v.rows * v.cols);
  for (let r = 0; r < v.rows; r++) {
    const o = v.off + r * v.ld;
    for (let c = 0; c < v.cols; c++) out[r * v.cols + c] = v.a[o + c];
  }
  return tf.tensor2d(out, [v.rows, v.cols]);
}

/** A zeroed rows × cols matrix of its own. */
function scratch(rows: number, cols: number): View {
  return view(new Float64Array(rows * cols), rows, cols);
}

/**
 * C += alpha · op(A) · op(B), op = transpose when asked. Views must not overlap C. Small products in
 * float64 loops, large ones through tfjs (float32), a tile of C at a time so that no float32 operand
 * or result exceeds `tile` values (but for a LEAF-wide strip).
 */
export function gemm(alpha: number, A: View, transA: boolean, B: View, transB: boolean, C: View, tile = TILE): void {
  const m = C.rows, n = C.cols, k = transA ? A.rows : A.cols;
  if ((transA ? A.cols : A.rows) !== m || (transB ? B.rows : B.cols) !== n || (transB ? B.cols : B.rows) !== k) {
    throw new Error(`gemm: shapes ${A.rows}x${A.cols}${transA ? 'ᵀ' : ''} · ${B.rows}x${B.cols}${transB ? 'ᵀ' : ''} into ${m}x${n}`);
  }
  if (m === 0 || n === 0 || k === 0) return;
  if (m * n * k < SMALL_PRODUCT) {
    const aAt = (i: number, p: number) => (transA ? A.a[A.off + p * A.ld + i] : A.a[A.off + i * A.ld + p]);
    const row = new Float64Array(n);
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let p = 0; p < k; p++) {
        const x = aAt(i, p);
        if (x === 0) continue;
        if (transB) for (let j = 0; j < n; j++) row[j] += x * B.a[B.off + j * B.ld + p];
        else {
          const o = B.off + p * B.ld;
          for (let j = 0; j < n; j++) row[j] += x * B.a[o + j];
        }
      }
      const o = C.off + i * C.ld;
      for (let j = 0; j < n; j++) C.a[o + j] += alpha * row[j];
    }
    return;
  }
  const side = Math.max(LEAF, Math.floor(tile / k)); // op(A) rows and op(B) columns per tile
  const mc = Math.min(m, side), nc = Math.min(n, side, Math.max(LEAF, Math.floor(tile / mc)));
  for (let j0 = 0; j0 < n; j0 += nc) {
    const w = Math.min(nc, n - j0);
    const bt = toTensor(transB ? sub(B, j0, 0, w, k) : sub(B, 0, j0, k, w));
    try {
      for (let i0 = 0; i0 < m; i0 += mc) {
        const h = Math.min(mc, m - i0);
        const a = transA ? sub(A, 0, i0, k, h) : sub(A, i0, 0, h, k);
        const prod = tidyValues(() => tf.matMul(toTensor(a), bt, transA, transB)); // [h, w]
        for (let i = 0; i < h; i++) {
          const o = C.off + (i0 + i) * C.ld + j0;
          for (let j = 0; j < w; j++) C.a[o + j] += alpha * prod[i * w + j];
        }
      }
    } finally {
      bt.dispose();
    }
  }
}

/** Unblocked in-place lower Cholesky of a small view (only its lower triangle is read or written); throws when not positive definite. */
function cholLeaf(v: View): void {
  const { a, off, ld, rows: n } = v;
  for (let j = 0; j < n; j++) {
    let d = a[off + j * ld + j];
    for (let p = 0; p < j; p++) d -= a[off + j * ld + p] ** 2;
    if (!(d > 0)) throw new NotPositiveDefinite();
    const l = Math.sqrt(d);
    a[off + j * ld + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = a[off + i * ld + j];
      for (let p = 0; p < j; p++) s -= a[off + i * ld + p] * a[off + j * ld + p];
      a[off + i * ld + j] = s / l;
    }
  }
}

/** Thrown when a matrix is not (numerically) positive definite. */
export class NotPositiveDefinite extends Error {
  constructor() {
    super('matrix is not positive definite');
  }
}

/** Solves X · Lᵀ = B for X in place of B (L lower triangular, a view of its own; only its lower triangle is read). */
function solveRightLowerT(B: View, L: View): void {
  const n = L.rows;
  if (n <= LEAF) {
    for (let i = 0; i < B.rows; i++) {
      const o = B.off + i * B.ld;
      for (let j = 0; j < n; j++) {
        let s = B.a[o + j];
        for (let p = 0; p < j; p++) s -= B.a[o + p] * L.a[L.off + j * L.ld + p];
        B.a[o + j] = s / L.a[L.off + j * L.ld + j];
      }
    }
    return;
  }
  const h = half(n);
  const B1 = sub(B, 0, 0, B.rows, h), B2 = sub(B, 0, h, B.rows, n - h);
  solveRightLowerT(B1, sub(L, 0, 0, h, h));
  gemm(-1, B1, false, sub(L, h, 0, n - h, h), true, B2); // B2 -= X1 · L21ᵀ
  solveRightLowerT(B2, sub(L, h, h, n - h, n - h));
}

/** A split point: half of n, rounded to a multiple of the leaf size. */
function half(n: number): number {
  return Math.max(LEAF, Math.floor(n / 2 / LEAF) * LEAF);
}

/** A small view's lower triangle (diagonal included) as a matrix of its own, zeros above. */
function lowerOf(v: View): View {
  const out = scratch(v.rows, v.rows);
  for (let i = 0; i < v.rows; i++) for (let j = 0; j <= i; j++) out.a[i * v.rows + j] = v.a[v.off + i * v.ld + j];
  return out;
}

/** The lower triangle (diagonal included) of C += alpha · A · Aᵀ; C's strict upper triangle is neither read nor written. */
function syrkLower(alpha: number, A: View, C: View): void {
  const n = C.rows;
  if (n <= PRODUCT_LEAF) {
    const t = scratch(n, n);
    gemm(alpha, A, false, A, true, t);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) C.a[C.off + i * C.ld + j] += t.a[i * n + j];
    return;
  }
  const h = half(n);
  const A1 = sub(A, 0, 0, h, A.cols), A2 = sub(A, h, 0, n - h, A.cols);
  syrkLower(alpha, A1, sub(C, 0, 0, h, h));
  gemm(alpha, A2, false, A1, true, sub(C, h, 0, n - h, h)); // C21 += α·A2·A1ᵀ
  syrkLower(alpha, A2, sub(C, h, h, n - h, n - h));
}

/** B ← B · L in place, L lower triangular (only its lower triangle is read). */
function trmmRightLower(B: View, L: View): void {
  const n = L.rows;
  if (n <= PRODUCT_LEAF) {
    const t = scratch(B.rows, n);
    gemm(1, B, false, lowerOf(L), false, t);
    for (let i = 0; i < B.rows; i++) B.a.set(t.a.subarray(i * n, (i + 1) * n), B.off + i * B.ld);
    return;
  }
  // B·[[L11, 0], [L21, L22]] = [B1·L11 + B2·L21, B2·L22]
  const h = half(n);
  const B1 = sub(B, 0, 0, B.rows, h), B2 = sub(B, 0, h, B.rows, n - h);
  trmmRightLower(B1, sub(L, 0, 0, h, h));
  gemm(1, B2, false, sub(L, h, 0, n - h, h), false, B1);
  trmmRightLower(B2, sub(L, h, h, n - h, n - h));
}

/** B ← alpha · L · B in place, L lower triangular (only its lower triangle is read). */
function trmmLeftLower(alpha: number, L: View, B: View): void {
  const n = L.rows;
  if (n <= PRODUCT_LEAF) {
    const t = scratch(n, B.cols);
    gemm(alpha, lowerOf(L), false, B, false, t);
    for (let i = 0; i < n; i++) B.a.set(t.a.subarray(i * B.cols, (i + 1) * B.cols), B.off + i * B.ld);
    return;
  }
  // [[L11, 0], [L21, L22]]·[B1; B2] = [L11·B1; L21·B1 + L22·B2]
  const h = half(n);
  const B1 = sub(B, 0, 0, h, B.cols), B2 = sub(B, h, 0, n - h, B.cols);
  trmmLeftLower(alpha, sub(L, h, h, n - h, n - h), B2);
  gemm(alpha, sub(L, h, 0, n - h, h), false, B1, false, B2);
  trmmLeftLower(alpha, sub(L, 0, 0, h, h), B1);
}

/** In-place lower Cholesky factor of the symmetric positive definite view; only its lower triangle is read or written. */
export function cholesky(v: View): void {
  const n = v.rows;
  if (n <= LEAF) return cholLeaf(v);
  const h = half(n);
  const A11 = sub(v, 0, 0, h, h), A21 = sub(v, h, 0, n - h, h), A22 = sub(v, h, h, n - h, n - h);
  cholesky(A11);
  solveRightLowerT(A21, A11);
  syrkLower(-1, A21, A22); // A22 -= L21 · L21ᵀ
  cholesky(A22);
}

/** In-place inverse of a lower triangular view; only its lower triangle is read or written. */
export function invertLower(v: View): void {
  const n = v.rows;
  if (n <= LEAF) {
    const { a, off, ld } = v;
    for (let j = 0; j < n; j++) {
      a[off + j * ld + j] = 1 / a[off + j * ld + j];
      for (let i = j + 1; i < n; i++) {
        let s = 0;
        for (let p = j; p < i; p++) s += a[off + i * ld + p] * a[off + p * ld + j];
        a[off + i * ld + j] = -s / a[off + i * ld + i];
      }
    }
    return;
  }
  // [[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [−C⁻¹·B·A⁻¹, C⁻¹]], B overwritten in place
  const h = half(n);
  const A = sub(v, 0, 0, h, h), B = sub(v, h, 0, n - h, h), C = sub(v, h, h, n - h, n - h);
  invertLower(A);
  invertLower(C);
  trmmRightLower(B, A);
  trmmLeftLower(-1, C, B);
}

/**
 * The upper Cholesky factor of (P·A·P)⁻¹ for P the index reversal, over the upper triangle and diagonal
 * of `a` (n×n, symmetric): with P·A·P = L̃·L̃ᵀ (lower), A⁻¹ = (P·L̃⁻¹·P)ᵀ(P·L̃⁻¹·P) and P·L̃⁻¹·P is upper
 * triangular. The factorisation and inversion touch only one triangle, so `a`'s strict lower triangle
 * still holds A's when this returns, or throws NotPositiveDefinite (its upper part then undefined).
 */
function upperInverseFactor(a: Float64Array, n: number): void {
  reverseInPlace(a, n); // A's strict upper triangle, reversed, is now the strict lower one: L̃ is made there
  try {
    const v = view(a, n);
    cholesky(v);
    invertLower(v);
  } finally {
    reverseInPlace(a, n);
  }
}

/**
 * The upper triangular U with Uᵀ·U = H⁻¹ (torch's cholesky(cholesky_inverse(cholesky(H)), upper=True)),
 * computed without forming H⁻¹ (see upperInverseFactor). `h` (n×n) is overwritten with U (zeros below the diagonal).
 */
export function inverseUpperCholesky(h: Float64Array, n: number): void {
  upperInverseFactor(h, n);
  for (let i = 1; i < n; i++) h.fill(0, i * n, i * n + i);
}

/** H ← P·H·P (rows and columns in reverse order): element (i, j) ↔ (n−1−i, n−1−j). */
function reverseInPlace(h: Float64Array, n: number): void {
  const total = n * n;
  for (let i = 0; i < total >> 1; i++) {
    const t = h[i];
    h[i] = h[total - 1 - i];
    h[total - 1 - i] = t;
  }
}

/** Makes `a` (n×n) symmetric again from its strict lower triangle, with `diagonal` on the diagonal. */
export function restoreSymmetric(a: Float64Array, n: number, diagonal: Float64Array): void {
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) a[j * n + i] = a[i * n + j];
    a[i * n + i] = diagonal[i];
  }
}

/** P·A·Pᵀ in place for the order `perm` (element (i, j) becomes A[perm[i]][perm[j]]), through one row of scratch. */
export function permuteSymmetric(a: Float64Array, n: number, perm: readonly number[]): void {
  const row = new Float64Array(n);
  // columns, row by row
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) row[j] = a[o + perm[j]];
    a.set(row, o);
  }
  // rows, following the permutation's cycles
  const seen = new Uint8Array(n);
  for (let s = 0; s < n; s++) {
    if (seen[s] || perm[s] === s) continue;
    row.set(a.subarray(s * n, s * n + n)); // row s, overwritten first
    let i = s;
    for (;;) {
      seen[i] = 1;
      const from = perm[i];
      if (from === s) {
        a.set(row, i * n);
        break;
      }
      a.copyWithin(i * n, from * n, from * n + n);
      i = from;
    }
  }
}

/**
 * Adds `fraction` of the mean diagonal to the diagonal (GPTQ's dampening) and returns the amount added;
 * a zero diagonal entry (an input that never varies) becomes 1 first, as GPTQ's reference does.
 */
export function dampen(h: Float64Array, n: number, fraction: number): number {
  for (let i = 0; i < n; i++) if (h[i * n + i] === 0) h[i * n + i] = 1;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += h[i * n + i];
  mean /= n;
  const damp = fraction * mean;
  for (let i = 0; i < n; i++) h[i * n + i] += damp;
  return damp;
}

/**
 * The upper Cholesky factor U of (H + damp·I)⁻¹ for symmetric H in `a` (n×n, float64), written over
 * a's upper triangle and diagonal in place: dampening more (×10, up to 4 times) when H is not
 * numerically positive definite. a's strict lower triangle keeps H's, and `diagonal` (returned) H's
 * diagonal, so restoreSymmetric(a, n, diagonal) gives H back bit for bit; when it throws, H is back already.
 */
export function hessianInverseFactor(a: Float64Array, n: number, fraction: number, what: string): { diagonal: Float64Array; damp: number; fraction: number } {
  const diagonal = new Float64Array(n);
  for (let i = 0; i < n; i++) diagonal[i] = a[i * n + i];
  let f = fraction;
  for (let attempt = 0; attempt < 5; attempt++, f *= 10) {
    if (attempt > 0) restoreSymmetric(a, n, diagonal);
    const damp = dampen(a, n, f);
    try {
      upperInverseFactor(a, n);
      return { diagonal, damp, fraction: f };
    } catch (e) {
      if (!(e instanceof NotPositiveDefinite)) {
        restoreSymmetric(a, n, diagonal);
        throw e;
      }
    }
  }
  restoreSymmetric(a, n, diagonal);
  throw new UserError(`${what}: its calibration Hessian is not positive definite even with ${f / 10} of the mean diagonal added; use more calibration prompts`);
}
