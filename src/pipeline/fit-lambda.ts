/**
 * `--fit-lambda`: healing that fits a CPU. After a merging method has planned, each two-layer merge's λ
 * (θ = λ·θ_a + (1−λ)·θ_b, a and b the merged groups of original layers) is refitted so that the merged
 * block reproduces what the original blocks it replaces computed, on the calibration activations:
 *
 *   λ* = argmin_{λ ∈ [0, 1]} Σ_prompts Σ_real tokens ‖B_λ(X_first) − X_last+1‖²
 *
 * where X_first is the original model's input to the group's first layer and X_last+1 its output after
 * the group's last layer (so the target is the original blocks run in turn), and B_λ the one merged
 * block. The search is a grid λ = 0, 0.1, …, 1 and then a golden-section search in the best grid point's
 * neighbourhood down to 1e-4: deterministic, one block evaluation per point, layer-local (one pass over
 * the original model collects the activations at the group boundaries; each evaluation runs one block),
 * so it streams. Merges are refitted in the order they were planned, each on the plan as refitted so
 * far; merge.json records the fitted λ, the similarity-derived one and both errors.
 */
import { tf } from '../runtime/tf.ts';
import { forward } from '../model/forward.ts';
import type { LlamaModel } from '../model/model.ts';
import { planModel } from '../compress/plan-model.ts';
import { combineStep, dropStep, identityPlan, mergeStep, type CompressionPlan, type LayerMix } from '../compress/merge-plan.ts';
import { MICRO_BATCH } from '../compress/options.ts';

/** What --fit-lambda records in merge.json (`fit_lambda`). */
export const FIT_SEARCH = 'grid λ = 0, 0.1, …, 1, then golden section to 1e-4 around the best grid point';

const GRID = Array.from({ length: 11 }, (_, k) => k / 10);
const PHI = (Math.sqrt(5) - 1) / 2;

/** The original model's hidden states at block boundaries (input of block b; b = L: the last block's output), right-padded [n, T, H]. */
function boundaryStates(model: LlamaModel, rows: number[][], boundaries: Set<number>, microBatch: number): Map<number, tf.Tensor3D> {
  const L = model.config.num_hidden_layers;
  const out = new Map<number, tf.Tensor3D>();
  try {
    forward(model, rows, {
      logits: 'none', microBatch,
      onBlockInput: (b, x) => { if (boundaries.has(b)) out.set(b, tf.clone(x)); },
      onBlockOutput: (b, h) => { if (b === L - 1 && boundaries.has(L)) out.set(L, tf.clone(h)); },
    });
  } catch (e) {
    out.forEach((t) => t.dispose());
    throw e;
  }
  return out;
}

/** The layer mix of merging mixes a and b with λ (as mergeStep composes them). */
function mixOf(a: LayerMix, b: LayerMix, lambda: number): LayerMix {
  return mergeStep({ method: '', originalLayers: 0, layers: [a, b], steps: [], blendNorms: false, details: {} }, 0, 1, lambda).layers[0];
}

/**
 * Refits the λ of every two-layer merge of `plan` (a plan of `model` over all its original layers) on
 * the calibration prompts `ids`; returns the refitted plan (the same steps, other λ), or the plan itself
 * when it has no such merge.
 */
export function fitLambdas(model: LlamaModel, plan: CompressionPlan, ids: number[][], opts: { microBatch?: number; log?: (msg: string) => void } = {}): CompressionPlan {
  const merges = plan.steps.filter((s) => s.action === 'merge' && s.lambda !== undefined);
  if (!merges.length) {
    opts.log?.(`fit-lambda: ${plan.method}'s plan has no merge with a λ to fit`);
    return plan;
  }
  const micro = opts.microBatch ?? MICRO_BATCH.default;
  const L = plan.originalLayers;
  const T = Math.max(...ids.map((r) => r.length));
  const rows = ids.map((r) => [...r, ...new Array(T - r.length).fill(0)]);
  const H = model.config.hidden_size;
  const mask = new Float32Array(ids.length * T);
  ids.forEach((r, b) => mask.fill(1, b * T, b * T + r.length));
  // the boundaries of every merged group: its first layer's input and its last layer's output
  const range = (m: LayerMix[]) => {
    const layers = m.flatMap((x) => x.sources.map((s) => s.layer));
    return [Math.min(...layers), Math.max(...layers) + 1];
  };
  const boundaries = new Set<number>();
  let replay = identityPlan(plan.method, L);
  for (const s of plan.steps) {
    if (s.action === 'merge' && s.lambda !== undefined) range([replay.layers[s.layers[0]], replay.layers[s.layers[1]]]).forEach((b) => boundaries.add(b));
    replay = s.action === 'drop' ? dropStep(replay, s.layers[0]) : s.lambda !== undefined ? mergeStep(replay, s.layers[0], s.layers[1], s.lambda) : combineStep(replay, s.layers, s.weights!);
  }
  const states = boundaryStates(model, rows, boundaries, micro);
  // the real tokens' mask as large as the hidden states: a [n, T, 1] mask is broadcast at every error evaluation, which
  // tfjs's cpu kernels (the native backend's elementwise ops) do with an index computation per element
  const maskT = tf.tidy(() => tf.tile(tf.tensor3d(mask, [ids.length, T, 1]), [1, 1, H]));
  try {
    let fitted = identityPlan(plan.method, L);
    fitted.blendNorms = plan.blendNorms;
    if (plan.keepBiases) fitted.keepBiases = true;
    const report: { layers: number[]; original_layers: number[]; lambda_similarity: number; lambda: number; error_similarity: number; error_fitted: number }[] = [];
    for (const step of plan.steps) {
      if (step.action === 'drop') {
        fitted = dropStep(fitted, step.layers[0], step.score, step.note);
        continue;
      }
      if (step.lambda === undefined) {
        fitted = combineStep(fitted, step.layers, step.weights!, { score: step.score, note: step.note });
        continue;
      }
      const [i, j] = step.layers;
      const a = fitted.layers[i], b = fitted.layers[j];
      const [first, end] = range([a, b]);
      const x = states.get(first)!, target = states.get(end)!;
      const scale = tf.tidy(() => tf.sum(tf.mul(tf.square(target), maskT)).dataSync()[0]);
      /** ‖B_λ(X) − target‖² / ‖target‖² over real tokens. */
      const error = (lambda: number): number => {
        const one: CompressionPlan = { ...fitted, layers: [{ ...mixOf(a, b, lambda) }], steps: [] };
        const view = planModel(model, one);
        let err = 0;
        try {
          forward(view.model, rows.map((r) => r.map(() => 0)), {
            logits: 'none', microBatch: micro, inputEmbeds: x,
            onBlockOutput: (_, h) => { err = tf.tidy(() => tf.sum(tf.mul(tf.square(tf.sub(h, target)), maskT)).dataSync()[0]); },
          });
        } finally {
          view.dispose();
        }
        return err / scale;
      };
      const cache = new Map<number, number>();
      const f = (lambda: number) => {
        if (!cache.has(lambda)) cache.set(lambda, error(lambda));
        return cache.get(lambda)!;
      };
      let best = GRID[0];
      for (const g of GRID) if (f(g) < f(best)) best = g;
      let lo = Math.max(0, best - 0.1), hi = Math.min(1, best + 0.1);
      let c = hi - PHI * (hi - lo), d = lo + PHI * (hi - lo);
      while (hi - lo > 1e-4) {
        if (f(c) < f(d)) {
          hi = d;
          d = c;
          c = hi - PHI * (hi - lo);
        } else {
          lo = c;
          c = d;
          d = lo + PHI * (hi - lo);
        }
      }
      const mid = (lo + hi) / 2;
      const lambda = [best, mid].reduce((u, v) => (f(v) < f(u) ? v : u));
      const before = f(step.lambda);
      fitted = mergeStep(fitted, i, j, lambda, step.score);
      const last = fitted.steps.length - 1;
      fitted.steps[last] = { ...fitted.steps[last], ...(step.note ? { note: step.note } : {}), fit: { lambdaPlanned: step.lambda, errorPlanned: before, error: f(lambda) } };
      report.push({ layers: [i, j], original_layers: fitted.steps[last].originalLayers, lambda_similarity: step.lambda, lambda, error_similarity: before, error_fitted: f(lambda) });
      opts.log?.(`fit-lambda: merge ${i} <- ${j} (original ${first}..${end - 1}): λ ${step.lambda.toFixed(4)} → ${lambda.toFixed(4)}, relative error ${before.toExponential(3)} → ${f(lambda).toExponential(3)}`);
    }
    fitted.details = { ...plan.details, fit_lambda: { search: FIT_SEARCH, objective: 'relative squared error of the merged block against the original blocks it replaces, on the calibration activations', merges: report } };
    return fitted;
  } finally {
    maskT.dispose();
    states.forEach((t) => t.dispose());
  }
}
