/**
 * Baseline: Gromov et al. (2024), "The Unreasonable Ineffectiveness of the Deeper Layers". For n
 * consecutive blocks starting at l, the angular distance arccos(cos(h_l, h_{l+n}))/π between the
 * input of block l and the output of block l+n−1 at the last token, averaged over prompts; drop the
 * n blocks with the smallest distance.
 */
import { dropStep, identityPlan } from '../merge-plan.ts';
import { defineMethod } from './method.ts';

/** Mean over prompts of the angular distance between boundary states a and b ([n*H] each). */
export function angularDistance(a: Float32Array, b: Float32Array, n: number, H: number): number {
  let total = 0;
  for (let p = 0; p < n; p++) {
    let dot = 0, na = 0, nb = 0;
    for (let k = p * H; k < (p + 1) * H; k++) {
      dot += a[k] * b[k];
      na += a[k] * a[k];
      nb += b[k] * b[k];
    }
    const cos = Math.max(-1, Math.min(1, dot / (Math.sqrt(na * nb) || 1)));
    total += Math.acos(cos) / Math.PI;
  }
  return total / n;
}

export const angular = defineMethod<Record<string, never>, 'lastStates'>({
  name: 'angular',
  description: 'drop the n consecutive blocks with the smallest angular distance (Gromov et al.)',
  citation: 'Gromov et al., "The Unreasonable Ineffectiveness of the Deeper Layers", 2024',
  inputs: ['lastStates'], // every prompt's last-token states: not in a sweep's analysis.json
  parameters: {},
  async plan(ctx, remove) {
    const last = ctx.inputs.lastStates;
    const L = ctx.config.num_hidden_layers;
    let plan = identityPlan('angular', L);
    const distances: number[] = [];
    for (let l = 0; l + remove <= L; l++) distances.push(angularDistance(last.states[l], last.states[l + remove], last.n, last.hiddenSize));
    const start = distances.indexOf(Math.min(...distances));
    for (let s = 0; s < remove; s++) plan = dropStep(plan, start, distances[start], `blocks ${start}..${start + remove - 1}`);
    plan.details = { angular_distances: distances, start };
    return plan;
  },
});
