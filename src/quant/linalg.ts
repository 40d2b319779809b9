/**
 * The dense linear algebra GPTQ needs, on n×n row-major Float64Array matrices: Cholesky factorisation,
 * the inverse of a triangular factor, and the upper Cholesky factor of H⁻¹ (the "Hinv" of Frantar et
 * al.'s algorithm). Recursive blocked algorithms: diagonal blocks of up to 64 are done in float64
 * loops; the products between blocks are float64 loops when small and tfjs float32 matrix products
 * (native kernels where present) when large, so a 14,336-wide Hessian (Llama-3-8B's down_proj) takes
 * seconds, not hours. tfjs has no Cholesky of its own.
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

/** A view's values as a float32 [rows, cols] tensor. */
function toTensor(v: View): tf.Tensor2D {
  const out = new Float32Array(v.rows * v.cols);
  for (let r = 0; r < v.rows; r++) {
    const o = v.off + r * v.ld;
    for (let c = 0; c < v.cols; c++) out[r * v.cols + c] = v.a[o + c];
  }
  return tf.tensor2d(out, [v.rows, v.cols]);
}

/**
 * C += alpha · op(A) · op(B), op = transpose when asked. Views must not overlap C. Small products in
 * float64 loops, large ones through tfjs (float32).
 */
export function gemm(alpha: number, A: View, transA: boolean, B: View, transB: boolean, C: View): void {
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
  const prod = tidyValues(() => tf.matMul(toTensor(A), toTensor(B), transA, transB)); // [m, n]
  for (let i = 0; i < m; i++) {
    const o = C.off + i * C.ld;
    for (let j = 0; j < n; j++) C.a[o + j] += alpha * prod[i * n + j];
  }
}

/** Unblocked in-place lower Cholesky of a small view; throws when not positive definite. */
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

/** Solves X · Lᵀ = B for X in place of B (L lower triangular, a view of its own). */
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

/** In-place lower Cholesky factor of the symmetric positive definite view (its upper part is left as it was). */
export function cholesky(v: View): void {
  const n = v.rows;
  if (n <= LEAF) return cholLeaf(v);
  const h = half(n);
  const A11 = sub(v, 0, 0, h, h), A21 = sub(v, h, 0, n - h, h), A22 = sub(v, h, h, n - h, n - h);
  cholesky(A11);
  solveRightLowerT(A21, A11);
  gemm(-1, A21, false, A21, true, A22); // A22 -= L21 · L21ᵀ (the whole block; only its lower part is used)
  cholesky(A22);
}

/** In-place inverse of a lower triangular view (its upper part is ignored and left as it was). */
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
  // [[A, 0], [B, C]]⁻¹ = [[A⁻¹, 0], [−C⁻¹·B·A⁻¹, C⁻¹]]
  const h = half(n);
  const A = sub(v, 0, 0, h, h), B = sub(v, h, 0, n - h, h), C = sub(v, h, h, n - h, n - h);
  invertLower(A);
  invertLower(C);
  const lowerA = lowerCopy(A), lowerC = lowerCopy(C);
  const BA = view(new Float64Array(B.rows * h), B.rows, h);
  gemm(1, B, false, lowerA, false, BA); // B·A⁻¹
  zero(B);
  gemm(-1, lowerC, false, BA, false, B); // −C⁻¹·(B·A⁻¹)
}

/** A copy of a view's lower triangle (zeros above the diagonal). */
function lowerCopy(v: View): View {
  const n = v.rows;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) out[i * n + j] = v.a[v.off + i * v.ld + j];
  return view(out, n);
}

function zero(v: View): void {
  for (let i = 0; i < v.rows; i++) v.a.fill(0, v.off + i * v.ld, v.off + i * v.ld + v.cols);
}

/**
 * The upper triangular U with Uᵀ·U = H⁻¹ (torch's cholesky(cholesky_inverse(cholesky(H)), upper=True)),
 * computed without forming H⁻¹: with P the index reversal, P·H·P = L̃·L̃ᵀ gives H⁻¹ = (P·L̃⁻¹·P)ᵀ(P·L̃⁻¹·P),
 * and P·L̃⁻¹·P is upper triangular. `h` (n×n) is overwritten with U (zeros below the diagonal).
 */
export function inverseUpperCholesky(h: Float64Array, n: number): void {
  reverseInPlace(h, n);
  const v = view(h, n);
  cholesky(v);
  invertLower(v);
  for (let i = 0; i < n; i++) h.fill(0, i * n + i + 1, (i + 1) * n); // clear the upper part: L̃⁻¹ is lower
  reverseInPlace(h, n);
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

/** The upper Cholesky factor of H⁻¹ for a dampened H, dampening more (×10, up to 4 times) when H is not numerically positive definite. */
export function hessianInverseFactor(h: Float32Array | Float64Array, n: number, fraction: number, what: string): { factor: Float64Array; damp: number; fraction: number } {
  let f = fraction;
  for (let attempt = 0; attempt < 5; attempt++, f *= 10) {
    const copy = Float64Array.from(h); // h may be float32 (accumulated by tfjs); the factorisation runs in float64
    const damp = dampen(copy, n, f);
    try {
      inverseUpperCholesky(copy, n);
      return { factor: copy, damp, fraction: f };
    } catch (e) {
      if (!(e instanceof NotPositiveDefinite)) throw e;
    }
  }
  throw new UserError(`${what}: its calibration Hessian is not positive definite even with ${f / 10} of the mean diagonal added; use more calibration prompts`);
}
