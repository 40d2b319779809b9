/**
 * Pluggable layer-similarity metrics: each maps per-layer Gram matrices to an L×L matrix (null marks an
 * undefined score), one file per metric (npib: stage.ts, cka: cka.ts), looked up by name. The pipeline
 * (compress, sweep) computes NPIB through stage.ts directly and does not consult this registry yet.
 */
import { UserError } from '../../runtime/errors.ts';
import { linearCka } from './cka.ts';
import { similarityFromGram, type SimilarityOptions } from './stage.ts';

export interface SimilarityMetric {
  name: string;
  description: string;
  /** L×L similarity of the layers whose n×n Gram matrices are given; null where undefined. */
  compute(grams: Float64Array[], n: number, opts?: Partial<SimilarityOptions>): (number | null)[][];
}

export const SIMILARITY_METRICS: readonly SimilarityMetric[] = [
  {
    name: 'npib',
    description: 'MKA: diffusion-kernel embedding, rank normalisation, KSG mutual information / √(H_i·H_j)',
    compute: (grams, n, opts) => similarityFromGram(grams, n, opts).npib,
  },
  {
    name: 'cka',
    description: 'linear CKA of the centred Gram matrices (Kornblith et al. 2019)',
    compute: (grams, n) => linearCka(grams, n),
  },
];

/** The metric called `name`; a UserError listing the known ones otherwise. */
export function getSimilarityMetric(name: string): SimilarityMetric {
  const m = SIMILARITY_METRICS.find((x) => x.name === name);
  if (!m) throw new UserError(`similarity metric "${name}" is unknown; use one of ${SIMILARITY_METRICS.map((x) => x.name).join(', ')}`);
  return m;
}
