/**
 * The MKA similarity stage from per-layer Gram matrices: diffusion embedding of each layer's samples,
 * rank normalisation, then the NPIB matrix between layers (see diffusion.ts, rank.ts, npib.ts).
 */
import { UserError } from '../../runtime/errors.ts';
import { checkOption, flag } from '../../runtime/options.ts';
import { ALPHA, BETA, DIMS, K_ENTROPY, K_MI, SIGMA, SIMILARITY_OPTIONS } from './options.ts';
import { diffusionEmbedding, type KernelDiagnostics } from './diffusion.ts';
import { npibMatrix, type UndefinedPair } from './npib.ts';
import { midRanks } from './rank.ts';

export interface SimilarityOptions {
  /** Kernel bandwidth σ in K = exp(−(D/σ)^½), or 'auto': per layer, the median pairwise distance. */
  sigma: number | 'auto';
  /** Density normalisation exponent α in K1 = K / (p pᵀ)^α. */
  alpha: number;
  /** Embedding dimensions d (d+1 eigenvectors). */
  dims: number;
  /** Neighbours of the KSG mutual-information estimator. */
  kMi: number;
  /** Neighbours of the entropy estimate (clamped to n − 1). */
  kEntropy: number;
  /** Sharpness β of the fusion ratio. */
  beta: number;
}

/** The defaults of the similarity options: their specs' (options.ts). */
export const DEFAULT_SIMILARITY: SimilarityOptions = {
  sigma: SIGMA.default, alpha: ALPHA.default, dims: DIMS.default, kMi: K_MI.default, kEntropy: K_ENTROPY.default, beta: BETA.default,
};

export interface SimilarityResult {
  /** [layer][sample][coord]: diffusion coordinates, each column defined up to sign. */
  embeddings: number[][][];
  /** [layer][sample][coord]: rank / n of each coordinate (mid-ranks on ties), what NPIB is computed from. */
  rankEmbeddings: number[][][];
  /** [layer][dims+1]: eigenvalues of the diffusion operator, |value| descending. */
  eigenvalues: number[][];
  /** [layer]: k-NN entropy of the rank embedding. */
  entropy: number[];
  /** L×L NPIB scores (not bounded by 1, see npib.ts); null where undefined (H_i·H_j ≤ 0), explained in undefinedPairs. */
  npib: (number | null)[][];
  undefinedPairs: UndefinedPair[];
  /** [layer]: eigensolver used and its relative residual, e.g. "lanczos (m=41), residual 3e-13". */
  solver: string[];
  /** [layer]: what the kernel looked like (σ used, off-diagonal entries, spectral gap) and whether it is degenerate. */
  kernel: KernelDiagnostics[];
}

/** One line summing up the layers whose kernel is degenerate, or null when none is. */
export function degenerateKernelWarning(kernel: KernelDiagnostics[]): string | null {
  const bad = kernel.flatMap((k, l) => (k.degenerate ? [l] : []));
  if (!bad.length) return null;
  return `similarity: the diffusion kernel is degenerate in ${bad.length} of ${kernel.length} layers (${bad.join(', ')}); `
    + `their embeddings and NPIB scores are noise. Layer ${bad[0]}: ${kernel[bad[0]].degenerate}. Try ${flag(SIGMA)} auto`;
}

/** Fills defaults and rejects impossible options for n samples (Infinity: only each option's own range). */
export function resolveOptions(n: number, opts: Partial<SimilarityOptions> = {}): SimilarityOptions {
  const o = { ...DEFAULT_SIMILARITY, ...opts };
  // each option's own range first (its spec, as the command line checks it), then what n samples allow
  for (const spec of SIMILARITY_OPTIONS) checkOption(spec, o[spec.name]);
  const problems: string[] = [];
  if (o.dims + 1 > n) problems.push(`${flag(DIMS)} ${o.dims}: must be an integer in 1..${n - 1} for ${n} samples`);
  if (o.kMi >= n) problems.push(`${flag(K_MI)} ${o.kMi}: must be an integer in 1..${n - 1} for ${n} samples`);
  if (problems.length) throw new UserError(`similarity options: ${problems.join('; ')}; fix the option or use more samples`);
  return o;
}

/**
 * Runs the similarity stage on L Gram matrices (each n×n float64 row-major, G = X Xᵀ of one layer's
 * sample representations). onProgress(done, total) counts L embeddings then L(L+1)/2 layer pairs.
 */
export function similarityFromGram(grams: Float64Array[], n: number, opts: Partial<SimilarityOptions> = {},
  onProgress?: (done: number, total: number) => void): SimilarityResult {
  const o = resolveOptions(n, opts);
  const L = grams.length;
  grams.forEach((g, l) => {
    if (g.length !== n * n) throw new Error(`similarityFromGram: Gram of layer ${l} has ${g.length} entries, expected ${n}×${n}`);
  });
  const total = L + (L * (L + 1)) / 2;
  let done = 0;
  const embeddings: number[][][] = [];
  const eigenvalues: number[][] = [];
  const solver: string[] = [];
  const kernel: KernelDiagnostics[] = [];
  for (const G of grams) {
    const e = diffusionEmbedding(G, n, o);
    embeddings.push(e.coords);
    eigenvalues.push(e.eigenvalues);
    solver.push(`${e.solver}, residual ${e.residual.toExponential(1)}`);
    kernel.push(e.kernel);
    onProgress?.(++done, total);
  }
  const ranks = embeddings.map(midRanks);
  const rankEmbeddings = ranks.map((r) => r.map((row) => row.map((v) => v / n)));
  const r = npibMatrix(ranks, o, () => onProgress?.(++done, total));
  return { embeddings, rankEmbeddings, eigenvalues, entropy: r.entropy, npib: r.npib, undefinedPairs: r.undefinedPairs, solver, kernel };
}
