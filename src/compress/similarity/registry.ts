/**
 * Pluggable layer-similarity metrics: each maps per-layer Gram matrices to an L×L matrix (null marks an
 * undefined score), one file per metric (npib: stage.ts, cka: cka.ts), looked up by name. The pipeline
 * (pipeline/analyse.ts: `mka similarity`, `compress`, `sweep`) computes the metric `--metric` names
 * through this registry, and its choices are this list: a new metric is a file and an entry here.
 */
import { UserError } from '../../runtime/errors.ts';
import { option } from '../../runtime/options.ts';
import { linearCka } from './cka.ts';
import type { UndefinedPair } from './npib.ts';
import { similarityFromGram, type SimilarityOptions, type SimilarityResult } from './stage.ts';

/** What a metric computes: its matrix, and for NPIB the whole stage (embeddings, kernel diagnostics). */
export interface MetricResult {
  /** L×L scores; null where undefined (explained in undefinedPairs). */
  matrix: (number | null)[][];
  undefinedPairs: UndefinedPair[];
  /** NPIB's diffusion embeddings, entropies and kernel diagnostics (npib only). */
  npib?: SimilarityResult;
}

export interface SimilarityMetric {
  name: string;
  description: string;
  /**
   * Whether the metric uses the diffusion kernel and the k-NN estimators (--sigma, --alpha, --dims,
   * --k-mi, --k-entropy): they are then checked against the prompt count and recorded. (--beta, MKA's
   * fusion-ratio sharpness, applies to every metric.)
   */
  usesKernel: boolean;
  /** What its heatmap's colours mean (a sweep's similarity.png): the legend's title and caption lines. */
  scale: { legend: string; caption: string[] };
  /** Progress steps of compute for L layers. */
  steps(L: number): number;
  /** L×L similarity of the layers whose n×n Gram matrices are given; onProgress counts steps. */
  compute(grams: Float64Array[], n: number, opts?: Partial<SimilarityOptions>, onProgress?: () => void): MetricResult;
}

export const DEFAULT_METRIC = 'npib';

export const SIMILARITY_METRICS: readonly SimilarityMetric[] = [
  {
    name: 'npib',
    description: 'MKA: diffusion-kernel embedding, rank normalisation, KSG mutual information / √(H_i·H_j)',
    usesKernel: true,
    scale: {
      legend: 'NPIB (unbounded)',
      // NPIB is not bounded by 1 (the k-NN entropies it divides by are close to 0 on rank data): cells compare with each other, not with 1
      caption: ['colour: NPIB = MI / √(Hᵢ·Hⱼ), a relative score, not a 0–1 similarity:', 'it exceeds 1 because k-NN entropies of ranks are close to 0'],
    },
    steps: (L) => L + (L * (L + 1)) / 2,
    compute: (grams, n, opts, onProgress) => {
      const r = similarityFromGram(grams, n, opts, onProgress);
      return { matrix: r.npib, undefinedPairs: r.undefinedPairs, npib: r };
    },
  },
  {
    name: 'cka',
    description: 'linear CKA of the centred Gram matrices (Kornblith et al. 2019)',
    usesKernel: false,
    scale: { legend: 'linear CKA (0–1)', caption: ['colour: linear CKA of the centred Gram matrices, from 0 to 1:', '1 = the same representation up to rotation and scale'] },
    steps: () => 1,
    compute: (grams, n, _opts, onProgress) => {
      const matrix = linearCka(grams, n);
      onProgress?.();
      const undefinedPairs = matrix.flatMap((row, i) => row.flatMap((v, j) => (v === null && j >= i
        ? [{ i, j, reason: 'a layer\'s centred Gram matrix is zero (all its samples are identical)' }] : [])));
      return { matrix, undefinedPairs };
    },
  },
];

/** Names of the registered metrics (the choices of --metric). */
export const METRIC_NAMES: readonly string[] = SIMILARITY_METRICS.map((m) => m.name);

/** --metric: the layer-similarity metric MKA merges by; its choices are this registry. */
export const METRIC = option({
  name: 'metric', option: 'metric', type: 'choice', choices: METRIC_NAMES, default: DEFAULT_METRIC, group: 'Similarity:',
  help: 'layer similarity metric that MKA merges by (npib: the paper\'s); --sigma, --alpha, --dims, --k-mi and --k-entropy are npib\'s',
});

/** The metric called `name`; a UserError listing the known ones otherwise. */
export function getSimilarityMetric(name: string): SimilarityMetric {
  const m = SIMILARITY_METRICS.find((x) => x.name === name);
  if (!m) throw new UserError(`similarity metric "${name}" is unknown; use one of ${METRIC_NAMES.join(', ')}`);
  return m;
}
