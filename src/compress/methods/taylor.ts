/**
 * Taylor+ (Kim et al., 2024, "Shortened LLaMA: Depth Pruning for Large Language Models with
 * Comparison of Retraining Methods", as CoMe compares it): the first-order Taylor estimate of the loss
 * change when a weight is zeroed, |w · ∂L/∂w|, summed over every element of a block's weight tensors
 * (projections and RMSNorm weights), with L the calibration loss (mean next-token NLL of the calibration
 * prompts, each cut to its first 128 tokens as the reference code's max_seq_len); the least important
 * blocks are dropped, never the first and last few (block-importance.ts).
 * The gradients come from the pipeline (pipeline/gradients.ts), on a backend where every op has one
 * (wasm, else plain JS cpu; never the native backend's fused kernels).
 */
import { blockWeightSuffixes, dropLowest, reserved, reserveParameters } from './block-importance.ts';
import { defineMethod } from './method.ts';

type TaylorParameters = { keepFirst: number | 'auto'; keepLast: number | 'auto'; maxTokens: number };

export const taylor = defineMethod<TaylorParameters, 'gradients' | 'weights'>({
  name: 'taylor',
  description: 'drop the blocks of least first-order Taylor importance Σ|W·∂L/∂W| on the calibration loss (Taylor+, Shortened LLaMA)',
  citation: 'Kim et al., "Shortened LLaMA: Depth Pruning for Large Language Models with Comparison of Retraining Methods", 2024',
  inputs: ['gradients', 'weights'],
  parameters: {
    ...reserveParameters('taylor'),
    maxTokens: { option: 'taylor-max-tokens', type: 'integer', min: 2, default: 128, help: 'each calibration prompt cut to its first N tokens for the gradients (the reference code\'s max_seq_len)' },
  },
  async plan(ctx, remove, params) {
    const L = ctx.config.num_hidden_layers;
    const g = await ctx.inputs.gradients({ maxTokens: params.maxTokens });
    const suffixes = blockWeightSuffixes(ctx.config);
    const scores = Array.from({ length: L }, (_, l) => {
      let sum = 0;
      for (const s of suffixes) {
        const name = `model.layers.${l}.${s}`;
        const w = ctx.inputs.weights.read(name), grad = g.grads.get(name)!;
        for (let k = 0; k < w.length; k++) sum += Math.abs(w[k] * grad[k]);
      }
      return sum;
    });
    const plan = dropLowest('taylor', L, scores, remove, reserved(L, params.keepFirst, params.keepLast));
    plan.details = { ...plan.details, calibration_loss: g.loss, predicted_tokens: g.tokens, gradients_backend: g.backend };
    return plan;
  },
});
