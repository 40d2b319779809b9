/**
 * magnitude+ (Kim et al., 2024, "Shortened LLaMA: Depth Pruning for Large Language Models with
 * Comparison of Retraining Methods", their weight-magnitude criterion, as CoMe compares it): a block's
 * importance is the sum of |W| over every element of its weight tensors (projections and RMSNorm
 * weights); the least important blocks are dropped, never the first and last few (block-importance.ts).
 * Reads the weights only, one tensor at a time: no calibration, and an 8B checkpoint streams.
 */
import { blockWeightSuffixes, dropLowest, reserved, reserveParameters } from './block-importance.ts';
import { defineMethod } from './method.ts';

type MagnitudeParameters = { keepFirst: number | 'auto'; keepLast: number | 'auto' };

export const magnitude = defineMethod<MagnitudeParameters, 'weights'>({
  name: 'magnitude',
  description: 'drop the blocks of smallest weight magnitude Σ|W| (magnitude+, Shortened LLaMA)',
  citation: 'Kim et al., "Shortened LLaMA: Depth Pruning for Large Language Models with Comparison of Retraining Methods", 2024',
  inputs: ['weights'],
  parameters: reserveParameters('magnitude'),
  async plan(ctx, remove, params) {
    const L = ctx.config.num_hidden_layers;
    const suffixes = blockWeightSuffixes(ctx.config);
    const scores = Array.from({ length: L }, (_, l) => {
      let sum = 0;
      for (const s of suffixes) for (const v of ctx.inputs.weights.read(`model.layers.${l}.${s}`)) sum += Math.abs(v);
      return sum;
    });
    return dropLowest('magnitude', L, scores, remove, reserved(L, params.keepFirst, params.keepLast));
  },
});
