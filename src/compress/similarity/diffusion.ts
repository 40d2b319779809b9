/**
 * MKA's diffusion-kernel embedding of one layer's samples, from pairwise distances (float64):
 * K = exp(−(D/σ)^½), p = column sums of K, K1 = K / (p pᵀ)^α, v = √(column sums of K1),
 * A = K1 / (v vᵀ); the d+1 eigenvectors of A with largest |eigenvalue|, each divided by the first,
 * give the coordinates (columns 1..d).
 *
 * The kernel only means something when σ is on the scale of the distances. The paper's σ = 8 against
 * distances in the thousands (Llama-size hidden states, 512 positions per sample) makes every
 * off-diagonal entry vanish: K is the identity, A's eigenvalues are all 1, its eigenvectors arbitrary,
 * and the embedding (and NPIB after it) is noise. Each embedding therefore reports what its kernel
 * looked like (KernelDiagnostics) and why it is degenerate, if it is. σ = 'auto' takes, per layer, the
 * median off-diagonal distance, so that the median pair gets K = e^−1 whatever the scale of the
 * activations (the kernel, and everything after it, is then invariant to scaling them).
 */
import { topEigenpairs, type EigenOptions } from './eigen.ts';

export interface DiffusionOptions {
  /** Kernel bandwidth, or 'auto': the median off-diagonal distance of the layer. */
  sigma: number | 'auto';
  alpha: number;
  dims: number;
}

/** What the kernel K = exp(−(D/σ)^½) of one layer looked like. */
export interface KernelDiagnostics {
  /** σ used (the median distance when σ is 'auto'). */
  sigma: number;
  /** Median off-diagonal distance between samples. */
  medianDistance: number;
  /** Off-diagonal entries of K: mean, smallest, largest (the diagonal is 1). */
  offDiagonal: { mean: number; min: number; max: number };
  /** 1 − |λ₂|/|λ₁| of the diffusion operator (0: the leading eigenvalues coincide, eigenvectors arbitrary). */
  spectralGap: number;
  /** Why the embedding is noise, or null when the kernel is usable. */
  degenerate: string | null;
}

/** Off-diagonal entries of K below this are "nothing": K is numerically the identity. */
const IDENTITY_LEVEL = 1e-6;

export interface DiffusionEmbedding {
  /**
   * coords[i][c]: sample i, coordinate c (c < dims). Eigenvectors have no sign of their own; each column
   * is oriented so that its entry of largest magnitude is positive (see orientColumns).
   */
  coords: number[][];
  /** The dims+1 eigenvalues used, |value| descending (the first is 1 for a connected kernel). */
  eigenvalues: number[];
  /** How the eigenpairs were found and their relative residual. */
  solver: string;
  residual: number;
  kernel: KernelDiagnostics;
}

/** Pairwise Euclidean distances from a Gram matrix: D_ij = √|G_ii + G_jj − 2 G_ij|, D_ii = 0. */
export function distancesFromGram(G: Float64Array, n: number): Float64Array {
  if (G.length !== n * n) throw new Error(`distancesFromGram: Gram has ${G.length} entries, expected ${n}×${n}`);
  const D = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const gii = G[i * n + i];
    for (let j = i + 1; j < n; j++) {
      const dij = Math.sqrt(Math.abs(gii + G[j * n + j] - 2 * G[i * n + j]));
      D[i * n + j] = dij;
      D[j * n + i] = dij;
    }
  }
  return D;
}

function power(x: number, a: number): number {
  return a === 0.5 ? Math.sqrt(x) : Math.pow(x, a);
}

/** The normalised diffusion operator A (n×n, row-major, symmetric) built in place from D. */
export function diffusionOperator(D: Float64Array, n: number, sigma: number, alpha: number): Float64Array {
  const K = D; // overwritten step by step: K, then K1, then A
  for (let t = 0; t < n * n; t++) K[t] = Math.exp(-Math.sqrt(K[t] / sigma));
  const p = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) p[j] += K[o + j];
  }
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) K[o + j] /= power(p[i] * p[j], alpha);
  }
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) v[j] += K[o + j];
  }
  for (let j = 0; j < n; j++) v[j] = Math.sqrt(v[j]);
  for (let i = 0; i < n; i++) {
    const o = i * n;
    for (let j = 0; j < n; j++) K[o + j] /= v[i] * v[j];
  }
  return K;
}

/**
 * Flips columns so that each column's entry of largest magnitude (first one on ties) is positive, so the
 * reported embeddings are the same across eigensolvers and platforms (numpy's eigh follows no such rule).
 * NPIB does not depend on it: it is computed on exact ranks, which a reflection only mirrors.
 */
function orientColumns(coords: number[][]): number[][] {
  const dims = coords.length ? coords[0].length : 0;
  for (let c = 0; c < dims; c++) {
    let best = 0;
    for (const row of coords) if (Math.abs(row[c]) > Math.abs(best)) best = row[c];
    if (best < 0) for (const row of coords) row[c] = -row[c];
  }
  return coords;
}

/** Median of the off-diagonal entries of a symmetric n×n distance matrix. */
export function medianDistance(D: Float64Array, n: number): number {
  const upper = new Float64Array((n * (n - 1)) / 2);
  let t = 0;
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) upper[t++] = D[i * n + j];
  upper.sort();
  const m = upper.length;
  if (m === 0) return 0;
  return m % 2 ? upper[(m - 1) / 2] : (upper[m / 2 - 1] + upper[m / 2]) / 2;
}

/** Statistics of K's off-diagonal entries, from the distances (before the operator overwrites them). */
function kernelEntries(D: Float64Array, n: number, sigma: number): KernelDiagnostics['offDiagonal'] {
  let dMin = Infinity, dMax = -Infinity, sum = 0;
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const d = D[i * n + j];
      if (d < dMin) dMin = d;
      if (d > dMax) dMax = d;
      sum += Math.exp(-Math.sqrt(d / sigma));
    }
  }
  const pairs = (n * (n - 1)) / 2;
  return { mean: pairs ? sum / pairs : 0, min: Math.exp(-Math.sqrt(dMax / sigma)), max: Math.exp(-Math.sqrt(dMin / sigma)) };
}

/** Why a kernel with these statistics gives a meaningless embedding, or null. */
function degeneracy(k: Omit<KernelDiagnostics, 'degenerate'>): string | null {
  const at = `σ = ${k.sigma.toPrecision(3)}, median distance ${k.medianDistance.toPrecision(3)}`;
  if (k.offDiagonal.max < IDENTITY_LEVEL) {
    return `the kernel is nearly the identity (largest off-diagonal entry ${k.offDiagonal.max.toExponential(1)}; ${at}): σ is far too small for these distances`;
  }
  if (k.offDiagonal.min > 1 - IDENTITY_LEVEL) return `the kernel is numerically all ones (${at}): σ is far too large for these distances`;
  if (!(k.spectralGap > 1e-9)) return `the leading eigenvalues coincide (spectral gap ${k.spectralGap.toExponential(1)}; ${at}): the eigenvectors are arbitrary`;
  return null;
}

/** Diffusion embedding of n samples given their Gram matrix (float64, row-major). */
export function diffusionEmbedding(G: Float64Array, n: number, opts: DiffusionOptions, eigen: EigenOptions = {}): DiffusionEmbedding {
  const D = distancesFromGram(G, n);
  const median = medianDistance(D, n);
  const sigma = opts.sigma === 'auto' ? (median > 0 ? median : 1) : opts.sigma;
  const offDiagonal = kernelEntries(D, n, sigma);
  const A = diffusionOperator(D, n, sigma, opts.alpha);
  const pairs = topEigenpairs(A, n, opts.dims + 1, eigen);
  const [first, ...rest] = pairs.vectors;
  const coords = orientColumns(Array.from({ length: n }, (_, i) => rest.map((u) => u[i] / first[i])));
  const [l1, l2] = pairs.values;
  const stats = { sigma, medianDistance: median, offDiagonal, spectralGap: l1 ? 1 - Math.abs(l2 ?? 0) / Math.abs(l1) : 0 };
  return { coords, eigenvalues: pairs.values, solver: pairs.method, residual: pairs.residual, kernel: { ...stats, degenerate: degeneracy(stats) } };
}
