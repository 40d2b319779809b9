/**
 * MKA (Liu et al., "Pruning via Merging", EMNLP 2024): merge similar layers instead of dropping them.
 * λ for merging layer j into layer i comes from the similarity matrix (NPIB, or the metric --metric
 * names; similarity/fusion.ts), and the merged layer's weights are λ·θ_i + (1−λ)·θ_j: they really
 * reach the model (the released code only drops).
 *
 * `last-pair` (the paper): repeatedly merge the last two layers. Step s merges original layer L−1−s
 *   (already holding the layers after it) into L−2−s, with λ from the original matrix's rows.
 * `adjacent`: merge the most similar adjacent pair, then recalibrate the merged model and recompute
 *   the similarity before the next merge.
 */
import { DEFAULT_METRIC, fusionRatio, getSimilarityMetric } from '../similarity/index.ts';
import { identityPlan, mergeStep } from '../merge-plan.ts';
import type { CompressionMethod } from './method.ts';
import { UserError } from '../../runtime/errors.ts';

export { MKA_STRATEGIES } from './mka-options.ts';
import { MKA_STRATEGIES } from './mka-options.ts';

/** MKA's own parameters (`--strategy`, `--blend-norms`). */
export interface MkaParameters {
  /** `last-pair` (the paper) or `adjacent`. */
  strategy: (typeof MKA_STRATEGIES)[number];
  /** Blend the RMSNorm weights with λ too (default: keep layer i's). */
  blendNorms: boolean;
}

export const mka: CompressionMethod<MkaParameters> = {
  name: 'mka',
  description: 'merge layers with fusion ratios from the similarity matrix (NPIB: the paper)',
  needsCalibration: true,
  needsSimilarity: true,
  defaults: { strategy: 'last-pair', blendNorms: false },
  plansFromSummary: (params) => params.strategy === 'last-pair', // adjacent recalibrates merged models
  async plan(ctx, remove, params) {
    const L = ctx.config.num_hidden_layers;
    let plan = identityPlan('mka', L);
    plan.blendNorms = params.blendNorms;
    plan.keepBiases = ctx.biases === 'keep';
    const beta = ctx.similarityOptions.beta;
    const metric = ctx.metric ?? DEFAULT_METRIC;
    if (params.strategy === 'last-pair') {
      const S = ctx.similarity!;
      for (let s = 0; s < remove; s++) {
        const i = L - 2 - s, j = L - 1 - s;
        const lambda = fusionRatio(S, i, j, beta);
        plan = mergeStep(plan, i, i + 1, lambda, S[i][j] ?? undefined);
        plan.steps[plan.steps.length - 1].note = `original layers ${i} <- ${j}..${L - 1}`;
      }
    } else {
      let S = ctx.similarity!;
      for (let s = 0; s < remove; s++) {
        if (s > 0) {
          if (!ctx.recalibrate) throw new Error('mka adjacent: no recalibration available');
          S = (await ctx.recalibrate(plan)).similarity;
        }
        let best = -1, bestScore = -Infinity;
        for (let i = 0; i + 1 < S.length; i++) {
          const v = S[i][i + 1];
          if (v !== null && v > bestScore) {
            best = i;
            bestScore = v;
          }
        }
        if (best < 0) throw new UserError('mka adjacent: no adjacent pair has a defined similarity score (see the similarity report)');
        const lambda = fusionRatio(S, best, best + 1, beta);
        plan = mergeStep(plan, best, best + 1, lambda, bestScore);
        ctx.log(`mka adjacent: merged layers ${best} <- ${best + 1} (${metric.toUpperCase()} ${bestScore.toFixed(4)}, λ ${lambda.toFixed(4)})`);
      }
    }
    // the kernel and estimator options belong to NPIB; other metrics take only β (the fusion ratio's)
    const options = getSimilarityMetric(metric).usesKernel ? ctx.similarityOptions : { beta };
    plan.details = { strategy: params.strategy, metric, similarity_options: options };
    return plan;
  },
};
