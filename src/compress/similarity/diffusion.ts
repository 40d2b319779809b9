/**
 * MKA's diffusion-kernel embedding of one layer's samples, from pairwise distances (float64):
 * K = exp(−(D/σ)^½), p = column sums of K, K1 = K / (p pᵀ)^α, v = √(column sums of K1),
 * A = K1 / (v vᵀ); the d+1 eigenvectors of A with largest |eigenvalue|, each divided by the first,
 * give the coordinates (columns 1..d).
 */
import { topEigenpairs, type EigenOptions } from './eigen.ts';

export interface DiffusionOptions {
  sigma: number;
  alpha: number;
  dims: number;
}

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
export function orientColumns(coords: number[][]): number[][] {
  const dims = coords.length ? coords[0].length : 0;
  for (let c = 0; c < dims; c++) {
    let best = 0;
    for (const row of coords) if (Math.abs(row[c]) > Math.abs(best)) best = row[c];
    if (best < 0) for (const row of coords) row[c] = -row[c];
  }
  return coords;
}

/** Diffusion embedding of n samples given their Gram matrix (float64, row-major). */
export function diffusionEmbedding(G: Float64Array, n: number, opts: DiffusionOptions, eigen: EigenOptions = {}): DiffusionEmbedding {
  const A = diffusionOperator(distancesFromGram(G, n), n, opts.sigma, opts.alpha);
  const pairs = topEigenpairs(A, n, opts.dims + 1, eigen);
  const [first, ...rest] = pairs.vectors;
  const coords = orientColumns(Array.from({ length: n }, (_, i) => rest.map((u) => u[i] / first[i])));
  return { coords, eigenvalues: pairs.values, solver: pairs.method, residual: pairs.residual };
}
