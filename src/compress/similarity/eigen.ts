/**
 * Symmetric eigensolvers in float64 (tfjs has none): the few eigenpairs of largest |eigenvalue| of an
 * n×n symmetric matrix stored row-major in a Float64Array.
 *
 * - Small n: Householder tridiagonalisation followed by implicit QL with Wilkinson shifts (all pairs).
 * - Large n: Lanczos with full reorthogonalisation (classical Gram–Schmidt, twice) on a deterministic
 *   start vector; convergence is judged from the Ritz residual bounds |β_m s_m| of the wanted pairs and
 *   confirmed with explicit residuals ‖A y − θ y‖. At m = n the Krylov space is the whole space, so the
 *   iteration always ends with exact pairs at worst.
 * Limitation: with a single start vector, Lanczos finds one copy of an exactly repeated eigenvalue.
 */
import { mulberry32, normal } from '../../runtime/random.ts';

export interface EigenPairs {
  /** Eigenvalues ordered by |value| descending. */
  values: number[];
  /** Unit eigenvectors, vectors[c][i] = component i of the c-th pair. */
  vectors: Float64Array[];
  /** Largest explicit residual ‖A y − θ y‖ / max|θ| over the returned pairs. */
  residual: number;
  /** 'dense' or 'lanczos', with the Krylov dimension used. */
  method: string;
}

export interface EigenOptions {
  /** 'auto' (dense up to n = 128), or force a method. */
  method?: 'auto' | 'dense' | 'lanczos';
  /** Relative residual asked of Lanczos pairs (default 1e-11). */
  tol?: number;
  /** Seed of the Lanczos start vector. */
  seed?: number;
}

const EPS = 2 ** -52;

/**
 * Implicit QL with Wilkinson shifts on a symmetric tridiagonal matrix: diag d (length m), off-diagonal
 * e (e[i] couples i and i+1, length m, e[m-1] unused). On return d holds the eigenvalues (unsorted).
 * z (m rows of `comp` numbers, row j = tracked components of eigenvector j) receives the rotations:
 * start from the identity for full eigenvectors, from the basis transpose for back-transformed ones,
 * or track a single component (comp = 1) for residual estimates at O(m²) cost.
 */
function tridiagonalQL(d: Float64Array, e: Float64Array, z: Float64Array | null, comp: number): void {
  const m = d.length;
  e[m - 1] = 0;
  for (let l = 0; l < m; l++) {
    let iter = 0;
    for (;;) {
      let k = l;
      for (; k < m - 1; k++) {
        const dd = Math.abs(d[k]) + Math.abs(d[k + 1]);
        if (Math.abs(e[k]) <= EPS * dd) break;
      }
      if (k === l) break;
      if (++iter > 60) throw new Error('tridiagonalQL: no convergence after 60 sweeps');
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[k] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1, c = 1, p = 0;
      let i = k - 1;
      let underflow = false;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= p;
          e[k] = 0;
          underflow = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        if (z) {
          const a0 = i * comp, a1 = (i + 1) * comp;
          for (let t = 0; t < comp; t++) {
            const zi = z[a0 + t], zi1 = z[a1 + t];
            z[a1 + t] = s * zi + c * zi1;
            z[a0 + t] = c * zi - s * zi1;
          }
        }
      }
      if (underflow) continue;
      d[l] -= p;
      e[l] = g;
      e[k] = 0;
    }
  }
}

/** Indices of the `count` largest |values|, |value| descending (ties: lower index first). */
function topByMagnitude(values: ArrayLike<number>, count: number): number[] {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]) || a - b);
  return idx.slice(0, count);
}

/** y = A x for row-major symmetric A. */
function matVec(A: Float64Array, n: number, x: Float64Array, y: Float64Array): void {
  for (let i = 0; i < n; i++) {
    const o = i * n;
    let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    let k = 0;
    for (; k + 3 < n; k += 4) {
      s0 += A[o + k] * x[k];
      s1 += A[o + k + 1] * x[k + 1];
      s2 += A[o + k + 2] * x[k + 2];
      s3 += A[o + k + 3] * x[k + 3];
    }
    for (; k < n; k++) s0 += A[o + k] * x[k];
    y[i] = (s0 + s1) + (s2 + s3);
  }
}

function dot(a: Float64Array, b: Float64Array): number {
  let s0 = 0, s1 = 0;
  const n = a.length;
  let k = 0;
  for (; k + 1 < n; k += 2) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
  }
  if (k < n) s0 += a[k] * b[k];
  return s0 + s1;
}

/** max over pairs of ‖A y − θ y‖ / scale. */
function explicitResidual(A: Float64Array, n: number, values: number[], vectors: Float64Array[], scale: number): number {
  const ay = new Float64Array(n);
  let worst = 0;
  for (let c = 0; c < values.length; c++) {
    matVec(A, n, vectors[c], ay);
    let s = 0;
    for (let i = 0; i < n; i++) {
      const r = ay[i] - values[c] * vectors[c][i];
      s += r * r;
    }
    worst = Math.max(worst, Math.sqrt(s) / scale);
  }
  return worst;
}

/**
 * All eigenpairs of a dense symmetric matrix (Householder + implicit QL). Returns values (unsorted)
 * and vectors as rows: vectors[j*n + i] = component i of eigenvector j.
 */
export function symmetricEigenDense(A: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(A);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const qt = new Float64Array(n * n); // rows of Qᵀ built as H_{n-3}···H_0
  for (let i = 0; i < n; i++) qt[i * n + i] = 1;
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  const w = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Householder vector for row k right of the diagonal (entries k+1..n-1).
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[k * n + i] * a[k * n + i];
    const x0 = a[k * n + k + 1];
    const alpha = -(x0 >= 0 ? 1 : -1) * Math.sqrt(norm2);
    d[k] = a[k * n + k];
    if (norm2 === 0 || norm2 - x0 * x0 === 0) {
      e[k] = x0;
      continue;
    }
    e[k] = alpha;
    for (let i = k + 1; i < n; i++) v[i] = a[k * n + i];
    v[k + 1] -= alpha;
    let vv = 0;
    for (let i = k + 1; i < n; i++) vv += v[i] * v[i];
    const tau = 2 / vv;
    // p = τ B v on the trailing block B = a[k+1.., k+1..]; w = p − (τ/2)(vᵀp) v
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      const o = i * n;
      let s = 0;
      for (let j = k + 1; j < n; j++) s += a[o + j] * v[j];
      p[i] = tau * s;
      vp += v[i] * p[i];
    }
    const half = (tau / 2) * vp;
    for (let i = k + 1; i < n; i++) p[i] -= half * v[i];
    for (let i = k + 1; i < n; i++) {
      const o = i * n, vi = v[i], pi = p[i];
      for (let j = k + 1; j < n; j++) a[o + j] -= vi * p[j] + pi * v[j];
    }
    // Qᵀ ← H_k Qᵀ: rows k+1..n-1 of Qᵀ change; row r ← r − τ v_r (vᵀ Qᵀ)
    w.fill(0);
    for (let i = k + 1; i < n; i++) {
      const vi = v[i], o = i * n;
      for (let j = 0; j < n; j++) w[j] += vi * qt[o + j];
    }
    for (let i = k + 1; i < n; i++) {
      const f = tau * v[i], o = i * n;
      for (let j = 0; j < n; j++) qt[o + j] -= f * w[j];
    }
  }
  if (n >= 2) {
    d[n - 2] = a[(n - 2) * n + n - 2];
    e[n - 2] = a[(n - 2) * n + n - 1];
  }
  if (n >= 1) d[n - 1] = a[(n - 1) * n + n - 1];
  // Rows of qt are the columns of Q; QL rotates them into the eigenvectors.
  tridiagonalQL(d, e, qt, n);
  return { values: d, vectors: qt };
}

function denseTop(A: Float64Array, n: number, count: number): EigenPairs {
  const { values, vectors } = symmetricEigenDense(A, n);
  const order = topByMagnitude(values, count);
  const vals = order.map((j) => values[j]);
  const vecs = order.map((j) => vectors.slice(j * n, (j + 1) * n));
  const scale = Math.max(Math.abs(vals[0] ?? 0), Number.MIN_VALUE);
  return { values: vals, vectors: vecs, residual: explicitResidual(A, n, vals, vecs, scale), method: 'dense' };
}

/** A unit vector orthogonal to basis[0..m-1], or null when the basis already spans the space. */
function freshDirection(basis: Float64Array[], m: number, n: number, rand: () => number): Float64Array | null {
  for (let attempt = 0; attempt < 5; attempt++) {
    const w = new Float64Array(n);
    for (let i = 0; i < n; i++) w[i] = normal(rand);
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < m; j++) {
        const h = dot(basis[j], w);
        const q = basis[j];
        for (let i = 0; i < n; i++) w[i] -= h * q[i];
      }
    }
    const norm = Math.sqrt(dot(w, w));
    if (norm > 1e-8) {
      for (let i = 0; i < n; i++) w[i] /= norm;
      return w;
    }
  }
  return null;
}

function lanczosTop(A: Float64Array, n: number, count: number, tol: number, seed: number): EigenPairs {
  const rand = mulberry32(seed);
  const basis: Float64Array[] = [];
  const alpha: number[] = [];
  const beta: number[] = []; // beta[j] couples basis j and j+1
  const first = freshDirection(basis, 0, n, rand);
  if (!first) throw new Error('lanczos: empty matrix');
  basis.push(first);
  const w = new Float64Array(n);
  const h = new Float64Array(n);
  let nextCheck = count + 1;
  let anorm = 0;
  for (let m = 1; ; m++) {
    // Extend the Krylov basis by one vector (basis has m vectors; compute column m-1 of T).
    const q = basis[m - 1];
    matVec(A, n, q, w);
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < m; j++) h[j] = dot(basis[j], w);
      for (let j = 0; j < m; j++) {
        const hj = h[j], bj = basis[j];
        for (let i = 0; i < n; i++) w[i] -= hj * bj[i];
      }
      if (pass === 0) alpha.push(h[m - 1]);
      else alpha[m - 1] += h[m - 1];
    }
    let b = Math.sqrt(dot(w, w));
    anorm = Math.max(anorm, Math.abs(alpha[m - 1]) + b + (m > 1 ? beta[m - 2] : 0));
    const full = m === n;
    let next: Float64Array | null = null;
    if (!full) {
      if (b > 1e-12 * anorm) {
        next = new Float64Array(n);
        for (let i = 0; i < n; i++) next[i] = w[i] / b;
      } else {
        // Invariant subspace found: continue from a new direction, T decouples (β = 0).
        b = 0;
        next = freshDirection(basis, m, n, rand);
      }
    }
    beta.push(next ? b : 0);
    if (m < nextCheck && next) {
      basis.push(next);
      continue;
    }
    // Ritz values with the last component of each Ritz vector: residual bound |β_m s_m|.
    const d = Float64Array.from(alpha);
    const e = new Float64Array(m);
    for (let j = 0; j < m - 1; j++) e[j] = beta[j];
    const last = new Float64Array(m);
    last[m - 1] = 1;
    tridiagonalQL(d, e, last, 1);
    const order = topByMagnitude(d, Math.min(count, m));
    const scale = Math.max(Math.abs(d[order[0]]), Number.MIN_VALUE);
    const bound = Math.max(...order.map((j) => Math.abs(beta[m - 1] * last[j]))) / scale;
    if ((order.length === count && bound <= tol) || !next) {
      const result = ritzPairs(A, n, basis, alpha, beta, count, scale);
      if (result.residual <= tol * 10 || !next) return { ...result, method: `lanczos (m=${m})` };
    }
    basis.push(next!);
    nextCheck = m + Math.max(1, Math.min(10, Math.floor(m / 10)));
  }
}

function ritzPairs(A: Float64Array, n: number, basis: Float64Array[], alpha: number[], beta: number[], count: number,
  scale: number): Omit<EigenPairs, 'method'> {
  const m = alpha.length;
  const d = Float64Array.from(alpha);
  const e = new Float64Array(m);
  for (let j = 0; j < m - 1; j++) e[j] = beta[j];
  const z = new Float64Array(m * m);
  for (let j = 0; j < m; j++) z[j * m + j] = 1;
  tridiagonalQL(d, e, z, m);
  const order = topByMagnitude(d, count);
  const values = order.map((j) => d[j]);
  const vectors = order.map((j) => {
    const y = new Float64Array(n);
    for (let t = 0; t < m; t++) {
      const s = z[j * m + t], q = basis[t];
      for (let i = 0; i < n; i++) y[i] += s * q[i];
    }
    const norm = Math.sqrt(dot(y, y));
    for (let i = 0; i < n; i++) y[i] /= norm;
    return y;
  });
  return { values, vectors, residual: explicitResidual(A, n, values, vectors, scale) };
}

/**
 * The `count` eigenpairs of largest |eigenvalue| of the symmetric n×n matrix A (row-major), ordered by
 * |eigenvalue| descending, unit-norm vectors (sign arbitrary). Only the upper triangle's symmetry is
 * assumed, not checked.
 */
export function topEigenpairs(A: Float64Array, n: number, count: number, opts: EigenOptions = {}): EigenPairs {
  if (A.length !== n * n) throw new Error(`topEigenpairs: matrix has ${A.length} entries, expected ${n}×${n}`);
  const k = Math.min(count, n);
  const method = opts.method ?? 'auto';
  if (method === 'dense' || (method === 'auto' && n <= 128)) return denseTop(A, n, k);
  return lanczosTop(A, n, k, opts.tol ?? 1e-11, opts.seed ?? 12345);
}
