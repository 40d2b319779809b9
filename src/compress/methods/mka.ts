/**
 * MKA (Liu et al., "Pruning via Merging: Compressing LLMs via Manifold Alignment Based Layer Merging",
 * EMNLP 2024): merge similar layers instead of dropping them. λ for merging layer j into layer i comes
 * from the similarity matrix (NPIB, or the metric --metric names; similarity/fusion.ts), and the merged
 * layer's weights are λ·θ_i + (1−λ)·θ_j: they really reach the model (the released code only drops).
 *
 * `last-pair` (the paper): repeatedly merge the last two layers. Step s merges original layer L−1−s
 *   (already holding the layers after it) into L−2−s, with λ from the original matrix's rows; with
 *   `iterative`, the merged model is recalibrated after each merge and λ comes from its own matrix.
 * `adjacent`: merge the most similar adjacent pair, then recalibrate the merged model and recompute
 *   the similarity before the next merge (iterative by construction).
 */
import { DEFAULT_METRIC, fusionRatio, getSimilarityMetric } from '../similarity/index.ts';
import { identityPlan, mergeStep } from '../merge-plan.ts';
import { defineMethod, type SimilarityInput } from './method.ts';
import { UserError } from '../../runtime/errors.ts';

export const MKA_STRATEGIES = ['last-pair', 'adjacent'] as const;

/** MKA's own parameters (`--strategy`, `--blend-norms`, `--iterative`). */
export type MkaParameters = {
  /** `last-pair` (the paper) or `adjacent`. */
  strategy: (typeof MKA_STRATEGIES)[number];
  /** Blend the RMSNorm weights with λ too (default: keep layer i's). */
  blendNorms: boolean;
  /** Recompute the similarity of the merged model after each merge (last-pair; adjacent always does). */
  iterative: boolean;
};

export const mka = defineMethod<MkaParameters, 'similarity' | 'recalibrate'>({
  name: 'mka',
  description: 'merge layers with fusion ratios from the similarity matrix (NPIB: the paper)',
  citation: 'Liu et al., "Pruning via Merging: Compressing LLMs via Manifold Alignment Based Layer Merging", EMNLP 2024',
  inputs: ['similarity', 'recalibrate'],
  needs: (p) => (p.strategy === 'adjacent' || p.iterative ? ['similarity', 'recalibrate'] : ['similarity']),
  parameters: {
    strategy: {
      option: 'strategy', type: 'choice', choices: MKA_STRATEGIES, default: 'last-pair',
      help: 'merge the last two layers repeatedly (last-pair, the paper) or the most similar adjacent pair (adjacent, recalibrating after each merge)',
    },
    blendNorms: { option: 'blend-norms', type: 'boolean', default: false, help: 'blend RMSNorm weights with λ too (default: keep layer i\'s)' },
    iterative: {
      option: 'iterative', type: 'boolean', default: false,
      help: 'recalibrate the merged model after each merge and take the next λ from its similarity matrix (last-pair; adjacent always does)',
    },
  },
  async plan(ctx, remove, params) {
    const L = ctx.config.num_hidden_layers;
    let plan = identityPlan('mka', L);
    plan.blendNorms = params.blendNorms;
    plan.keepBiases = ctx.biases === 'keep';
    const first = ctx.inputs.similarity;
    const beta = first.options.beta;
    const metric = first.metric ?? DEFAULT_METRIC;
    const iterative = params.strategy === 'adjacent' || params.iterative;
    let sim: SimilarityInput = first;
    for (let s = 0; s < remove; s++) {
      if (iterative && s > 0) sim = await ctx.inputs.recalibrate(plan);
      const S = sim.matrix;
      if (params.strategy === 'last-pair') {
        // the current last two layers; without recalibration their rows in the original matrix are the original layers L-2-s, L-1-s
        const i = plan.layers.length - 2;
        const lambda = fusionRatio(S, i, i + 1, beta);
        plan = mergeStep(plan, i, i + 1, lambda, S[i][i + 1] ?? undefined);
        plan.steps[plan.steps.length - 1].note = iterative ? `current layers ${i} <- ${i + 1} (recalibrated)` : `original layers ${i} <- ${i + 1}..${L - 1}`;
        if (iterative) ctx.log(`mka iterative: merged layers ${i} <- ${i + 1} (λ ${lambda.toFixed(4)} from the merged model's ${metric.toUpperCase()})`);
        continue;
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
    // the kernel and estimator options belong to NPIB; other metrics take only β (the fusion ratio's)
    const options = getSimilarityMetric(metric).usesKernel ? first.options : { beta };
    plan.details = { strategy: params.strategy, ...(params.iterative ? { iterative: true } : {}), metric, similarity_options: options };
    return plan;
  },
});
