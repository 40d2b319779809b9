/** Baseline: drop the last K layers (no calibration). */
import { dropStep, identityPlan } from '../merge-plan.ts';
import { defineMethod } from './method.ts';

export const reverse = defineMethod<Record<string, never>, never>({
  name: 'reverse',
  description: 'drop the last K layers',
  citation: 'the baseline of Gromov et al. (2024) and the MKA paper: the deepest layers dropped',
  inputs: [],
  parameters: {},
  async plan(ctx, remove) {
    let plan = identityPlan('reverse', ctx.config.num_hidden_layers);
    for (let s = 0; s < remove; s++) plan = dropStep(plan, plan.layers.length - 1);
    return plan;
  },
});
