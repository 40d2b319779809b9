/**
 * The similarity stage's options (NPIB's diffusion kernel and estimators, and MKA's fusion-ratio
 * sharpness), declared once (contract 5, src/runtime/options.ts): their defaults, ranges and help.
 * stage.ts checks values against these; --metric is declared beside the metrics, in registry.ts.
 */
import { option } from '../../runtime/options.ts';

const G = 'Similarity:';

export const SIGMA = option({
  name: 'sigma', option: 'sigma', type: 'number', above: 0, auto: true, default: 8, group: G,
  help: 'diffusion kernel bandwidth σ, or auto (per layer: the median pairwise distance)',
});
export const ALPHA = option({ name: 'alpha', option: 'alpha', type: 'number', min: 0, max: 1, default: 0.5, group: G, help: 'density normalisation α' });
export const DIMS = option({ name: 'dims', option: 'dims', type: 'integer', min: 1, default: 2, group: G, help: 'embedding dimensions d' });
export const K_MI = option({ name: 'kMi', option: 'k-mi', type: 'integer', min: 1, default: 5, group: G, help: 'neighbours of the KSG mutual information' });
export const K_ENTROPY = option({ name: 'kEntropy', option: 'k-entropy', type: 'integer', min: 1, default: 50, group: G, help: 'neighbours of the k-NN entropy' });
export const BETA = option({ name: 'beta', option: 'beta', type: 'number', above: 0, default: 1, group: G, help: 'fusion ratio sharpness β' });

/** The similarity stage's options (SimilarityOptions, by name), in --help order. */
export const SIMILARITY_OPTIONS = [SIGMA, ALPHA, DIMS, K_MI, K_ENTROPY, BETA] as const;
