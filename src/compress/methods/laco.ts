/**
 * LaCo (Yang et al., "LaCo: Large Language Model Pruning via Layer Collapse", Findings of EMNLP 2024):
 * rear layers collapse into a prior layer. The merge is RDSC ("Reserving-Differences-while-Seeking-
 * Common"): layer l absorbs the m layers after it as θ_l + Σ_{k=1..m} (θ_{l+k} − θ_l), i.e. weights
 * [1 − m, 1, …, 1] (norms stay layer l's). A candidate merge is accepted when the merged model's final
 * hidden states on the few-shot calibration prompts stay close to the original's: mean cosine > T.
 *
 * The scan (the paper's Algorithm 1 and its reference notebook): start at l = L_h − C (C layers per
 * merge: l and the C − 1 after it); if accepted, l −= I (and back inside the shrunk model), else
 * l −= 1; stop below L_l. The paper prunes as far as the threshold lets it; mka removes exactly K
 * layers: each merge takes at most the layers still to remove, the scan stops at K, and with
 * `--laco-threshold auto` (default) T is the largest threshold at which the scan reaches K (bisection;
 * candidates are scored once each, cached across the search). A given T that falls short is an error.
 *
 * The reference notebook's `add_(θ_{l+k} − θ_l)` subtracts the layer it is updating, so each step of its
 * loop sets θ_l to θ_{l+k} and its merge keeps only the last layer of the group; mka computes the
 * paper's formula. Calibration: the paper uses 10 sentences (5 English, 5 Chinese Wikipedia); mka uses
 * the pipeline's calibration prompts (--data or --calibration).
 */
import { UserError } from '../../runtime/errors.ts';
import { combineStep, identityPlan, type CompressionPlan } from '../merge-plan.ts';
import { defineMethod, flagOf, type CompressionMethod, type PlanScorer } from './method.ts';

type LacoParameters = { threshold: number | 'auto'; mergeLayers: number; interval: number; lowest: number; highest: number | 'auto' };

interface Candidate {
  /** Current index of the layer merged into. */
  layer: number;
  /** Original layers of the merged group. */
  merged: number[];
  similarity: number;
  accepted: boolean;
}

/** The scan at threshold T: the plan, the layers it removed, the candidates it scored. */
async function scan(L: number, remove: number, T: number, p: { C: number; I: number; lo: number; hi: number }, score: (plan: CompressionPlan) => Promise<number>) {
  let plan = identityPlan('laco', L);
  let removed = 0;
  const candidates: Candidate[] = [];
  let l = p.hi - p.C;
  while (l >= p.lo && removed < remove) {
    const n = plan.layers.length;
    const m = Math.min(p.C - 1, n - l - 1, remove - removed);
    if (m < 1) {
      l -= 1;
      continue;
    }
    const layers = Array.from({ length: m + 1 }, (_, k) => l + k);
    const candidate = combineStep(plan, layers, [1 - m, ...new Array(m).fill(1)]);
    const similarity = await score(candidate);
    const accepted = similarity > T;
    candidates.push({ layer: l, merged: candidate.layers[l].sources.map((s) => s.layer), similarity, accepted });
    if (accepted) {
      plan = candidate;
      plan.steps[plan.steps.length - 1] = { ...plan.steps[plan.steps.length - 1], score: similarity, note: `similarity ${similarity.toFixed(6)} > ${T === -Infinity ? '-inf' : T.toFixed(6)}` };
      removed += m;
      l -= p.I;
      if (l >= plan.layers.length) l = plan.layers.length - 1 - p.C;
    } else {
      l -= 1;
    }
  }
  return { plan, removed, candidates };
}

const PARAMETERS: CompressionMethod<LacoParameters, 'scorer'>['parameters'] = {
  threshold: {
    option: 'laco-threshold', type: 'number', min: -1, max: 1, auto: true, default: 'auto',
    help: 'accept a merge when the mean cosine of final hidden states exceeds it (auto: the largest threshold that removes K layers)',
  },
  mergeLayers: { option: 'laco-merge-layers', type: 'integer', min: 2, default: 4, help: 'layers per merge: one layer and the C − 1 after it (C)' },
  interval: { option: 'laco-interval', type: 'integer', min: 1, default: 2, help: 'layers the scan moves down after an accepted merge (I)' },
  lowest: { option: 'laco-lowest', type: 'integer', min: 0, default: 0, help: 'lowest layer merged into (L_l)' },
  highest: { option: 'laco-highest', type: 'integer', min: 1, auto: true, default: 'auto', help: 'the scan starts at this layer minus C (L_h; auto: the last layer)' },
};

export const laco = defineMethod<LacoParameters, 'scorer'>({
  name: 'laco',
  description: 'collapse rear layers into a prior one (RDSC merge θ_l + Σ(θ_{l+k} − θ_l)) while the final hidden states stay similar (LaCo)',
  citation: 'Yang et al., "LaCo: Large Language Model Pruning via Layer Collapse", Findings of EMNLP 2024',
  inputs: ['scorer'],
  parameters: PARAMETERS,
  async plan(ctx, remove, params) {
    const L = ctx.config.num_hidden_layers;
    const hi = params.highest === 'auto' ? L - 1 : params.highest;
    if (hi > L - 1) throw new UserError(`${flagOf(PARAMETERS.highest)} ${hi}: the model's layers are 0..${L - 1}`);
    const p = { C: params.mergeLayers, I: params.interval, lo: params.lowest, hi };
    const scorer: PlanScorer = ctx.inputs.scorer;
    const cache = new Map<string, number>();
    const score = async (plan: CompressionPlan) => {
      const key = JSON.stringify(plan.layers);
      if (!cache.has(key)) cache.set(key, (await scorer.similarity([plan]))[0]);
      return cache.get(key)!;
    };
    let threshold: number;
    if (params.threshold !== 'auto') {
      threshold = params.threshold;
    } else {
      const loose = await scan(L, remove, -Infinity, p, score);
      if (loose.removed < remove) {
        throw new UserError(`laco: merging ${p.C - 1} layers at a time into layers ${p.lo}..${p.hi - p.C} removes at most ${loose.removed} of this model's ${L} layers, not ${remove}; raise ${flagOf(PARAMETERS.mergeLayers)} or lower ${flagOf(PARAMETERS.lowest)}`);
      }
      // the largest T at which the scan still removes `remove` layers: f(lo) reaches it, f(hi) does not
      // (below every similarity the loose scan saw it takes the same path; no cosine exceeds 1)
      let lo = Math.min(...loose.candidates.map((c) => c.similarity)) - 1e-9, up = 1;
      for (let it = 0; it < 40 && up - lo > 1e-9; it++) {
        const mid = (lo + up) / 2;
        if ((await scan(L, remove, mid, p, score)).removed >= remove) lo = mid;
        else up = mid;
      }
      threshold = lo;
    }
    const result = await scan(L, remove, threshold, p, score);
    if (result.removed < remove) {
      const best = result.candidates.filter((c) => !c.accepted).sort((a, b) => b.similarity - a.similarity)[0];
      throw new UserError(`laco: with ${flagOf(PARAMETERS.threshold)} ${threshold} the scan removed ${result.removed} of the ${remove} layers asked for (the most similar rejected merge scored ${best ? best.similarity.toFixed(4) : 'none'}); lower the threshold or use auto`);
    }
    ctx.log(`laco: threshold ${threshold.toFixed(6)}${params.threshold === 'auto' ? ' (auto)' : ''}: ${result.plan.steps.length} merge${result.plan.steps.length > 1 ? 's' : ''}, ${cache.size} candidates scored on ${scorer.prompts} prompts`);
    result.plan.details = { threshold, candidates: result.candidates, candidates_scored: cache.size };
    return result.plan;
  },
});
