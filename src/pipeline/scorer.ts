/**
 * The `scorer` input of a method: candidate plans of the original model run on the calibration prompts.
 *
 * `loss` (SLEB): the mean next-token NLL of the prompts under each plan. Plans that only drop layers
 * run on the original model itself with the dropped layers skipped (forward's `layers`): on a streamed
 * model many candidates share one pass over the disk (forwardMany, as many as fit PASS_HIDDEN_BYTES of
 * hidden states), so each layer is read once per pass, not once per candidate; resident models run the
 * candidates one after another (forwardInTurn). Plans that merge run as plan views (plan-model.ts).
 *
 * `similarity` (LaCo): the mean over prompts of the cosine between the plan's final hidden states
 * (after the final norm, each prompt's real positions × hidden size flattened into one vector) and the
 * original model's, as LaCo's reference code compares `hidden_states[-1]`.
 */
import { tf } from '../runtime/tf.ts';
import { forward, forwardInTurn, forwardMany, passTokens, type ForwardJob } from '../model/forward.ts';
import { streamsLayers, type LlamaModel } from '../model/model.ts';
import { rmsNorm } from '../model/ops.ts';
import { planModel } from '../compress/plan-model.ts';
import { keptLayers } from '../compress/merge-plan.ts';
import type { PlanScorer } from '../compress/methods/method.ts';
import { MICRO_BATCH } from '../compress/options.ts';
import { tidyValues } from '../runtime/read-out.ts';

/** Right-padded rows of the prompts and their lengths. */
function padded(ids: number[][]): { rows: number[][]; T: number } {
  const T = Math.max(...ids.map((r) => r.length));
  return { rows: ids.map((r) => [...r, ...new Array(T - r.length).fill(0)]), T };
}

/** log Σ exp(x), in float64. */
function logSumExp(x: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.exp(x[i] - m);
  return m + Math.log(s);
}

/** A forward job of every prompt that sums −log p(next token) over each real position but the last (float64, read on the host). */
function nllJob(ids: number[][], V: number, microBatch: number): { job: ForwardJob; result(): number } {
  const { rows, T } = padded(ids);
  const positions: number[] = [], targets: number[] = [];
  ids.forEach((r, b) => {
    for (let t = 0; t + 1 < r.length; t++) {
      positions.push(b * T + t);
      targets.push(r[t + 1]);
    }
  });
  let nll = 0;
  const job: ForwardJob = {
    inputIds: rows, logits: 'positions', positions, microBatch,
    onLogits: (i0, logits) => {
      const x = logits.dataSync();
      for (let j = 0; j < logits.shape[0]; j++) {
        const row = x.subarray(j * V, (j + 1) * V);
        nll += logSumExp(row) - row[targets[i0 + j]];
      }
    },
  };
  return { job, result: () => nll / positions.length };
}

/** Each prompt's final hidden states (after the final norm) at its real positions, [len·H] each. */
function finalStates(model: LlamaModel, ids: number[][], microBatch: number): Float32Array[] {
  const { rows, T } = padded(ids);
  const c = model.config;
  const out: Float32Array[] = [];
  forward(model, rows, {
    logits: 'none', microBatch,
    onBlockOutput: (i, h) => {
      if (i !== c.num_hidden_layers - 1) return;
      const normed = tidyValues(() => rmsNorm(h, model.tensors.get('model.norm.weight')!, c.rms_norm_eps));
      ids.forEach((r, b) => out.push(normed.slice(b * T * c.hidden_size, (b * T + r.length) * c.hidden_size)));
    },
  });
  return out;
}

/** cos(a, b) of two vectors, in float64. */
function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0, na = 0, nb = 0;
  for (let k = 0; k < a.length; k++) {
    dot += a[k] * b[k];
    na += a[k] * a[k];
    nb += b[k] * b[k];
  }
  return dot / (Math.sqrt(na * nb) || 1);
}

/** The scorer of candidate plans of `model` on the calibration prompts `ids` (token ids, BOS included). */
export function planScorer(model: LlamaModel, ids: number[][], opts: { microBatch?: number } = {}): PlanScorer {
  const micro = opts.microBatch ?? MICRO_BATCH.default;
  const V = model.config.vocab_size;
  let reference: Float32Array[] | null = null;
  const tokens = ids.length * Math.max(...ids.map((r) => r.length));
  return {
    prompts: ids.length,
    async loss(plans) {
      const out: number[] = new Array(plans.length);
      const drops = plans.map(keptLayers);
      const dropOnly = plans.map((_, k) => k).filter((k) => drops[k] !== null);
      // removal-only plans: the original with layers skipped, several per pass when the layers stream
      const perPass = streamsLayers(model) ? Math.max(1, Math.floor(passTokens(model.config) / tokens)) : 1;
      for (let g = 0; g < dropOnly.length; g += perPass) {
        const group = dropOnly.slice(g, g + perPass);
        const jobs = group.map(() => nllJob(ids, V, micro));
        group.forEach((k, j) => { jobs[j].job.layers = drops[k]!; });
        const results = await (streamsLayers(model) ? forwardMany(model, jobs.map((j) => j.job)) : forwardInTurn(model, jobs.map((j) => j.job)));
        results.forEach((r) => r.logits?.dispose());
        group.forEach((k, j) => { out[k] = jobs[j].result(); });
      }
      for (const [k, plan] of plans.entries()) {
        if (drops[k] !== null) continue;
        const view = planModel(model, plan);
        try {
          const { job, result } = nllJob(ids, V, micro);
          forward(view.model, job.inputIds, job);
          out[k] = result();
        } finally {
          view.dispose();
        }
      }
      return out;
    },
    async similarity(plans) {
      reference ??= finalStates(model, ids, micro);
      const ref = reference;
      return plans.map((plan) => {
        const view = planModel(model, plan);
        try {
          const got = finalStates(view.model, ids, micro);
          return got.reduce((a, v, p) => a + cosine(v, ref[p]), 0) / got.length;
        } finally {
          view.dispose();
        }
      });
    },
  };
}
