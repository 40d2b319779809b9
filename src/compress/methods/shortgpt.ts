/**
 * Baseline: ShortGPT (Men et al., 2024, "ShortGPT: Layers in Large Language Models are More Redundant
 * Than You Expect"). Block Influence BI_i = 1 − cos(input, output) of block i, averaged over tokens;
 * drop the K blocks with the lowest BI (their output is most like their input).
 */
import { dropStep, identityPlan } from '../merge-plan.ts';
import { defineMethod } from './method.ts';

export const shortgpt = defineMethod<Record<string, never>, 'blockInfluence'>({
  name: 'shortgpt',
  description: 'drop the K blocks with the lowest Block Influence (ShortGPT)',
  citation: 'Men et al., "ShortGPT: Layers in Large Language Models are More Redundant Than You Expect", 2024',
  inputs: ['blockInfluence'],
  parameters: {},
  async plan(ctx, remove) {
    const bi = ctx.inputs.blockInfluence;
    const order = bi.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v || a.i - b.i).slice(0, remove);
    let plan = identityPlan('shortgpt', ctx.config.num_hidden_layers);
    // drop from the highest index down so the remaining indices stay valid
    for (const { v, i } of order.sort((a, b) => b.i - a.i)) plan = dropStep(plan, i, v, `block influence ${v.toExponential(4)}`);
    plan.details = { block_influence: bi };
    return plan;
  },
});
