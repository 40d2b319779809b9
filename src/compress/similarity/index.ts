/** MKA's layer-similarity stage: Gram matrices in, embeddings, NPIB matrix and fusion ratios out. */
export { DEFAULT_SIMILARITY, degenerateKernelWarning, resolveOptions, similarityFromGram, type SimilarityOptions, type SimilarityResult } from './stage.ts';
export type { KernelDiagnostics } from './diffusion.ts';
export { fusionRatio } from './fusion.ts';
export { accumulateGram, gramFromActivations } from './gram.ts';
export { DEFAULT_METRIC, getSimilarityMetric, METRIC_NAMES, SIMILARITY_METRICS, type MetricResult, type SimilarityMetric } from './registry.ts';
export type { UndefinedPair } from './npib.ts';
