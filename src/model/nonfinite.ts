/**
 * The refusal of a forward pass whose logits are not finite. Weights that are finite but absurd (a
 * flipped exponent bit gives 3e38) pass the readers' checks and overflow float32 in the pass; a score or
 * a JSON file made from such logits would be silently wrong (NaN compares false, and JSON writes it as null).
 */
import { nonFiniteAllowed } from '../io/checkpoint.ts';
import { ALLOW_NONFINITE } from '../io/options.ts';
import { UserError } from '../runtime/errors.ts';
import { flag } from '../runtime/options.ts';

/** The one-line error for a model (`model`: its path or name) whose pass gives `value` at `where`; null when non-finite values are allowed. */
export function nonFiniteLogitsError(model: string, value: number, where: string, use: string): UserError | null {
  if (nonFiniteAllowed()) return null;
  return new UserError(`${model}: the forward pass gives ${value} logits (${where}): its weights overflow float32, the checkpoint is corrupt (re-download or re-convert it), or pass ${flag(ALLOW_NONFINITE)} to ${use} anyway`);
}

/**
 * The one-line error for a calibration pass (similarity, compress, sweep) whose hidden states are not finite
 * (`value` at `where`): always refused, since no layer similarity or ranking can be computed from them.
 */
export function nonFiniteStatesError(model: string, value: number, where: string): UserError {
  return new UserError(`${model}: the calibration pass gives ${value} hidden states (${where}): its weights overflow float32, or the checkpoint is corrupt (re-download or re-convert it); no layer similarity can be computed from them`);
}
