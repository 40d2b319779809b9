/**
 * What Taylor+ and magnitude+ share (Kim et al., 2024, "Shortened LLaMA: Depth Pruning for Large
 * Language Models with Comparison of Retraining Methods"): a score per block, the sum over the block's
 * weight tensors (the seven projections and the two RMSNorm weights; not biases) of a per-element
 * importance; the blocks of lowest score are dropped one-shot. The "+" is their heuristic of never
 * pruning the first four and the last two blocks (of 32-layer models); `auto` scales it to the depth:
 * min(4, round(L/8)) first and min(2, round(L/16)) last blocks, which is 4 and 2 from 32 layers up.
 */
import { layerTensorShapes, type LlamaConfig } from '../../model/config.ts';
import { UserError } from '../../runtime/errors.ts';
import { dropStep, identityPlan, type CompressionPlan } from '../merge-plan.ts';
import { flagOf, type ParameterSpec } from './method.ts';

/** The suffixes of a block's weight tensors (`…weight`: projections and norms, no biases). */
export function blockWeightSuffixes(config: LlamaConfig): string[] {
  return [...layerTensorShapes(config).keys()].filter((s) => s.endsWith('weight'));
}

/** The "+" heuristic's two parameters, declared for method `method`. */
export function reserveParameters(method: string): { keepFirst: ParameterSpec<number | 'auto'>; keepLast: ParameterSpec<number | 'auto'> } {
  return {
    keepFirst: {
      option: `${method}-keep-first`, type: 'integer', min: 0, auto: true, default: 'auto',
      help: 'first blocks never dropped (the "+" heuristic: 4; auto: min(4, round(L/8)))',
    },
    keepLast: {
      option: `${method}-keep-last`, type: 'integer', min: 0, auto: true, default: 'auto',
      help: 'last blocks never dropped (the "+" heuristic: 2; auto: min(2, round(L/16)))',
    },
  };
}

/** The blocks the heuristic keeps: first and last counts for an L-layer model. */
export function reserved(L: number, keepFirst: number | 'auto', keepLast: number | 'auto'): { first: number; last: number } {
  return {
    first: keepFirst === 'auto' ? Math.min(4, Math.round(L / 8)) : keepFirst,
    last: keepLast === 'auto' ? Math.min(2, Math.round(L / 16)) : keepLast,
  };
}

/**
 * Drops the `remove` blocks of lowest score among those the heuristic allows (ties: the lower index
 * first); a UserError naming the options when too few blocks are allowed.
 */
export function dropLowest(method: string, L: number, scores: number[], remove: number, keep: { first: number; last: number }): CompressionPlan {
  const options = reserveParameters(method);
  const allowed = scores.map((v, i) => ({ v, i })).filter(({ i }) => i >= keep.first && i < L - keep.last);
  if (allowed.length < remove) {
    throw new UserError(`${method}: removing ${remove} of ${L} layers, but ${flagOf(options.keepFirst)} ${keep.first} and ${flagOf(options.keepLast)} ${keep.last} leave ${allowed.length} blocks to choose from; lower them`);
  }
  const chosen = allowed.sort((a, b) => a.v - b.v || a.i - b.i).slice(0, remove);
  let plan = identityPlan(method, L);
  // drop from the highest index down so the remaining indices stay valid
  for (const { v, i } of chosen.sort((a, b) => b.i - a.i)) plan = dropStep(plan, i, v, `block score ${v.toExponential(4)}`);
  plan.details = { block_scores: scores, kept_first: keep.first, kept_last: keep.last };
  return plan;
}
