/**
 * What `similarity`, `compress` and `sweep` share: their calibration and similarity options (declared
 * in compress/options.ts and compress/similarity/options.ts), MKA's parameters, and the library's
 * analysis options from their values.
 */
import { CALIBRATION_DATA, CALIBRATION_SETTINGS } from '../../compress/options.ts';
import { SIMILARITY_OPTIONS } from '../../compress/similarity/options.ts';
import { METRIC } from '../../compress/similarity/registry.ts';
import { BLEND_NORMS, MKA_STRATEGY } from '../../compress/methods/mka-options.ts';
import type { OptionValues } from '../../runtime/options.ts';
import type { MethodParameters } from '../../compress/methods/registry.ts';
import type { AnalysisOptions } from '../../pipeline/analyse.ts';

/** Calibration (without --data), then the similarity metric and its options. */
export const ANALYSIS_SETTINGS = [...CALIBRATION_SETTINGS, METRIC, ...SIMILARITY_OPTIONS] as const;

/** Calibration, then the similarity metric and its options. */
export const ANALYSIS_OPTIONS = [CALIBRATION_DATA, ...ANALYSIS_SETTINGS] as const;

/** The parameters methods declare (MKA's), as options of compress and sweep. */
export const METHOD_OPTIONS = [MKA_STRATEGY, BLEND_NORMS] as const;

/** The library's analysis options from the values of ANALYSIS_OPTIONS; `log` gets the deprecation note of --subjects. */
export function analysisOptions(v: OptionValues<typeof ANALYSIS_SETTINGS> & { data?: string }, log: (msg: string) => void): AnalysisOptions & { streaming: boolean } {
  if (v.subjectsDeprecated !== undefined) log('mka: --subjects is deprecated here (it counts calibration subjects); use --calib-subjects');
  return {
    data: v.data, calibrationFile: v.calibrationFile, subjects: v.subjects ?? v.subjectsDeprecated, perSubject: v.perSubject, seed: v.seed,
    representation: v.representation, maxPositions: v.maxPositions, microBatch: v.microBatch, streaming: v.streaming, protocol: v.protocol,
    metric: v.metric, similarity: { sigma: v.sigma, alpha: v.alpha, dims: v.dims, kMi: v.kMi, kEntropy: v.kEntropy, beta: v.beta },
  };
}

/** The method parameters given (a method's defaults fill in the rest). */
export function methodParameters(v: OptionValues<typeof METHOD_OPTIONS>): MethodParameters {
  return { mka: { ...(v.strategy !== undefined ? { strategy: v.strategy } : {}), ...(v.blendNorms !== undefined ? { blendNorms: v.blendNorms } : {}) } };
}
