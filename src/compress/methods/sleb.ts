/**
 * SLEB (Song et al., "SLEB: Streamlining LLMs through Redundancy Verification and Elimination of
 * Transformer Blocks", ICML 2024): remove blocks one at a time; at each step try removing every
 * remaining candidate block, score each candidate model by its calibration loss (the mean next-token
 * NLL of the calibration prompts, i.e. log perplexity), remove the one whose removal raises it least,
 * and score again from the model that is left. As in the reference code (sleb.py), the first and the
 * last remaining block are never candidates (its early and latter barriers, 1 each) and ties go to the
 * earlier block. The candidates of one step share a streamed pass over the layers (pipeline/scorer.ts).
 */
import { dropStep, identityPlan } from '../merge-plan.ts';
import { UserError } from '../../runtime/errors.ts';
import { defineMethod, flagOf, type CompressionMethod } from './method.ts';

type SlebParameters = { keepFirst: number; keepLast: number };

const PARAMETERS: CompressionMethod<SlebParameters, 'scorer'>['parameters'] = {
  keepFirst: { option: 'sleb-keep-first', type: 'integer', min: 0, default: 1, help: 'first remaining blocks never removed (the reference code\'s early barrier)' },
  keepLast: { option: 'sleb-keep-last', type: 'integer', min: 0, default: 1, help: 'last remaining blocks never removed (its latter barrier)' },
};

export const sleb = defineMethod<SlebParameters, 'scorer'>({
  name: 'sleb',
  description: 'remove, one at a time, the block whose removal least raises calibration perplexity, re-scoring after each (SLEB)',
  citation: 'Song et al., "SLEB: Streamlining LLMs through Redundancy Verification and Elimination of Transformer Blocks", ICML 2024',
  inputs: ['scorer'],
  parameters: PARAMETERS,
  async plan(ctx, remove, params) {
    const L = ctx.config.num_hidden_layers;
    if (L - remove < params.keepFirst + params.keepLast) {
      throw new UserError(`sleb: removing ${remove} of ${L} layers leaves ${L - remove}, fewer than ${flagOf(PARAMETERS.keepFirst)} ${params.keepFirst} plus ${flagOf(PARAMETERS.keepLast)} ${params.keepLast}; lower them`);
    }
    let plan = identityPlan('sleb', L);
    // per step: the original blocks tried and the calibration loss without each
    const trace: { blocks: number[]; losses: number[] }[] = [];
    for (let step = 0; step < remove; step++) {
      const n = plan.layers.length;
      const candidates = Array.from({ length: n - params.keepFirst - params.keepLast }, (_, k) => params.keepFirst + k);
      const losses = await ctx.inputs.scorer.loss(candidates.map((j) => dropStep(plan, j)));
      let best = 0;
      losses.forEach((v, k) => { if (v < losses[best]) best = k; });
      const j = candidates[best], original = plan.layers[j].sources[0].layer;
      trace.push({ blocks: candidates.map((k) => plan.layers[k].sources[0].layer), losses });
      plan = dropStep(plan, j, losses[best], `calibration perplexity ${Math.exp(losses[best]).toFixed(4)} without it`);
      ctx.log(`sleb: step ${step + 1} of ${remove}: removed original block ${original} (calibration ppl ${Math.exp(losses[best]).toFixed(4)}; ${candidates.length} candidates)`);
    }
    plan.details = { calibration_prompts: ctx.inputs.scorer.prompts, candidate_losses: trace };
    return plan;
  },
});
