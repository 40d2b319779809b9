/** Baseline: drop the last K layers (no calibration). */
import { dropStep, identityPlan } from '../merge-plan.ts';
import type { CompressionMethod } from './method.ts';

export const reverse: CompressionMethod = {
  name: 'reverse',
  description: 'drop the last K layers',
  needsCalibration: false,
  needsSimilarity: false,
  defaults: {},
  plansFromSummary: () => true,
  async plan(ctx, remove) {
    let plan = identityPlan('reverse', ctx.config.num_hidden_layers);
    for (let s = 0; s < remove; s++) plan = dropStep(plan, plan.layers.length - 1);
    return plan;
  },
};
