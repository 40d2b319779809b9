/**
 * Baseline: ShortGPT (Men et al., 2024). Block Influence BI_i = 1 − cos(input, output) of block i,
 * averaged over tokens; drop the K blocks with the lowest BI (their output is most like their input).
 */
import { dropStep, identityPlan } from '../merge-plan.ts';
import type { CompressionMethod } from './method.ts';

export const shortgpt: CompressionMethod = {
  name: 'shortgpt',
  description: 'drop the K blocks with the lowest Block Influence (ShortGPT)',
  needsCalibration: true,
  needsSimilarity: false,
  defaults: {},
  plansFromSummary: () => true,
  async plan(ctx, remove) {
    const bi = ctx.blockInfluence!;
    const order = bi.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v || a.i - b.i).slice(0, remove);
    let plan = identityPlan('shortgpt', ctx.config.num_hidden_layers);
    // drop from the highest index down so the remaining indices stay valid
    for (const { v, i } of order.sort((a, b) => b.i - a.i)) plan = dropStep(plan, i, v, `block influence ${v.toExponential(4)}`);
    plan.details = { block_influence: bi };
    return plan;
  },
};
