/**
 * A compression plan says, for every layer of the compressed model, which layers of the original it is
 * made of: one layer with weight 1 (kept as is), or a weighted sum Σ w_m θ_m (a merge; any real weights
 * summing to 1). Merging j into i with λ gives {i: λ, j: 1-λ} (mergeStep); combineStep blends any number
 * of layers with any such weights; merging again composes the weights, so the plan of any sequence of
 * merges and drops is exact and needs the original weights only.
 *
 * Plans are applied lazily (`planSource`): a tensor of the compressed model is computed when a writer
 * or loader asks for it, so compressing a model larger than memory streams too. Plans are plain data:
 * no tfjs here (plan-model.ts builds a plan's model; plan-file.ts writes and reads the plan files).
 */
import { type LlamaConfig, expectedTensors, splitLayerName } from '../model/config.ts';
import type { RawTensor, SyncTensorSource } from '../weights/source.ts';

export interface LayerMix {
  /** Original layers and their weights for the projection weights and biases. */
  sources: { layer: number; weight: number }[];
  /** Original layer whose RMSNorm weights are kept (unless norms are blended), and biases with keepBiases. */
  normsFrom: number;
}

/** One step of the method, recorded in merge.json. */
export interface PlanStep {
  action: 'merge' | 'drop';
  /** Layer indices of the model before this step. */
  layers: number[];
  /** Original layer indices involved. */
  originalLayers: number[];
  lambda?: number;
  /** Weights of `layers` in a merge of any number of layers (combineStep); a two-layer merge has λ instead. */
  weights?: number[];
  score?: number;
  note?: string;
  /** With --fit-lambda: the λ the method planned and the relative errors of both (pipeline/fit-lambda.ts). */
  fit?: { lambdaPlanned: number; errorPlanned: number; error: number };
}

export interface CompressionPlan {
  method: string;
  /** Original number of layers. */
  originalLayers: number;
  /** One entry per layer of the compressed model. */
  layers: LayerMix[];
  steps: PlanStep[];
  /** Blend the RMSNorm weights with the same weights as the projections. */
  blendNorms: boolean;
  /** Keep layer i's biases in a merge (the released code) instead of blending them like the weights. */
  keepBiases?: boolean;
  /** Method options and calibration details, for merge.json. */
  details: Record<string, unknown>;
}

/** The identity plan of an L-layer model. */
export function identityPlan(method: string, L: number): CompressionPlan {
  return {
    method, originalLayers: L, blendNorms: false, details: {}, steps: [],
    layers: Array.from({ length: L }, (_, i) => ({ sources: [{ layer: i, weight: 1 }], normsFrom: i })),
  };
}

/** Merges current layer j into current layer i with λ: θ_i ← λ θ_i + (1-λ) θ_j; layers after j shift down. */
export function mergeStep(plan: CompressionPlan, i: number, j: number, lambda: number, score?: number): CompressionPlan {
  if (i === j || i < 0 || j < 0 || i >= plan.layers.length || j >= plan.layers.length) {
    throw new Error(`mergeStep: invalid layers ${i}, ${j} of ${plan.layers.length}`);
  }
  const a = plan.layers[i], b = plan.layers[j];
  const weights = new Map<number, number>();
  for (const s of a.sources) weights.set(s.layer, (weights.get(s.layer) ?? 0) + lambda * s.weight);
  for (const s of b.sources) weights.set(s.layer, (weights.get(s.layer) ?? 0) + (1 - lambda) * s.weight);
  const merged: LayerMix = {
    sources: [...weights].sort((x, y) => x[0] - y[0]).map(([layer, weight]) => ({ layer, weight })),
    normsFrom: a.normsFrom,
  };
  const layers = plan.layers.map((l, k) => (k === i ? merged : l)).filter((_, k) => k !== j);
  const step: PlanStep = {
    action: 'merge', layers: [i, j], originalLayers: [...a.sources, ...b.sources].map((s) => s.layer).sort((x, y) => x - y),
    lambda, ...(score !== undefined ? { score } : {}),
  };
  return { ...plan, layers, steps: [...plan.steps, step] };
}

/**
 * Combines current layers `layers` (ascending, at least two) into one at the first of them:
 * θ ← Σ_k w_k θ_{layers[k]} with any real weights summing to 1 (LaCo's θ_l + Σ_k (θ_{l+k} − θ_l) is
 * weights [1 − m, 1, …, 1]). Norms (and kept biases) come from the first layer; the other layers are
 * removed and the layers after them shift down. Sources whose weight comes to exactly 0 are left out.
 */
export function combineStep(plan: CompressionPlan, layers: readonly number[], weights: readonly number[], opts: { score?: number; note?: string } = {}): CompressionPlan {
  const n = plan.layers.length;
  if (layers.length < 2 || layers.length !== weights.length || layers.some((l, k) => !Number.isInteger(l) || l < 0 || l >= n || (k > 0 && l <= layers[k - 1]))) {
    throw new Error(`combineStep: layers [${layers}] must be 2 or more ascending layers of ${n}, with one weight each ([${weights}])`);
  }
  const sum = weights.reduce((a, w) => a + w, 0);
  if (weights.some((w) => !Number.isFinite(w)) || Math.abs(sum - 1) > 1e-9) throw new Error(`combineStep: weights [${weights}] must be finite and sum to 1`);
  const byLayer = new Map<number, number>();
  layers.forEach((l, k) => {
    for (const s of plan.layers[l].sources) byLayer.set(s.layer, (byLayer.get(s.layer) ?? 0) + weights[k] * s.weight);
  });
  const merged: LayerMix = {
    sources: [...byLayer].filter(([, w]) => w !== 0).sort((x, y) => x[0] - y[0]).map(([layer, weight]) => ({ layer, weight })),
    normsFrom: plan.layers[layers[0]].normsFrom,
  };
  const step: PlanStep = {
    action: 'merge', layers: [...layers], originalLayers: [...byLayer.keys()].sort((x, y) => x - y), weights: [...weights],
    ...(opts.score !== undefined ? { score: opts.score } : {}), ...(opts.note ? { note: opts.note } : {}),
  };
  const out = plan.layers.map((l, k) => (k === layers[0] ? merged : l)).filter((_, k) => !layers.includes(k) || k === layers[0]);
  return { ...plan, layers: out, steps: [...plan.steps, step] };
}

/** Drops current layer i; layers after it shift down. */
export function dropStep(plan: CompressionPlan, i: number, score?: number, note?: string): CompressionPlan {
  if (i < 0 || i >= plan.layers.length) throw new Error(`dropStep: invalid layer ${i}`);
  const step: PlanStep = {
    action: 'drop', layers: [i], originalLayers: plan.layers[i].sources.map((s) => s.layer),
    ...(score !== undefined ? { score } : {}), ...(note ? { note } : {}),
  };
  return { ...plan, layers: plan.layers.filter((_, k) => k !== i), steps: [...plan.steps, step] };
}

/** The original layers a plan keeps, in order, when it only drops layers (each layer a plain copy, norms its own); else null. */
export function keptLayers(plan: CompressionPlan): number[] | null {
  const kept: number[] = [];
  for (const l of plan.layers) {
    if (l.sources.length !== 1 || l.sources[0].weight !== 1 || l.normsFrom !== l.sources[0].layer) return null;
    if (kept.length && l.sources[0].layer <= kept[kept.length - 1]) return null;
    kept.push(l.sources[0].layer);
  }
  return kept;
}

/** The compressed model's config: num_hidden_layers drops to the plan's layer count. */
export function planConfig(config: LlamaConfig, plan: CompressionPlan): LlamaConfig {
  return { ...config, num_hidden_layers: plan.layers.length };
}

/** Weighted sum Σ w_m x_m computed in float64 and rounded once to float32. */
export function mixArrays(parts: { data: Float32Array; weight: number }[]): Float32Array {
  if (parts.length === 1 && parts[0].weight === 1) return parts[0].data;
  const n = parts[0].data.length;
  const acc = new Float64Array(n);
  for (const { data, weight } of parts) for (let k = 0; k < n; k++) acc[k] += weight * data[k];
  return Float32Array.from(acc);
}

/**
 * The original tensor that tensor `name` of the plan's model copies (norms from the layer they are kept
 * from, a layer made of one source with weight 1), or null when it is a weighted sum.
 */
export function copiedFrom(plan: CompressionPlan, name: string): string | null {
  const l = splitLayerName(name);
  if (!l) return name;
  const mix = plan.layers[l.layer];
  if (!mix) throw new Error(`plan has no layer ${l.layer}`);
  if (l.suffix.endsWith('layernorm.weight') && !plan.blendNorms) return `model.layers.${mix.normsFrom}.${l.suffix}`;
  if (plan.keepBiases && l.suffix.endsWith('.bias')) return `model.layers.${mix.normsFrom}.${l.suffix}`;
  if (mix.sources.length === 1 && mix.sources[0].weight === 1) return `model.layers.${mix.sources[0].layer}.${l.suffix}`;
  return null;
}

/**
 * The compressed model as a lazy tensor source over the original model's reader. Tensors taken
 * unchanged from the original (embeddings, kept layers, norms) are also offered as raw stored bytes
 * when the original offers them, so writing a compressed 16-bit model copies them without widening.
 */
export function planSource(
  original: { config: LlamaConfig; read(name: string): Float32Array; readRaw?(name: string): RawTensor | null },
  plan: CompressionPlan,
): SyncTensorSource {
  const config = planConfig(original.config, plan);
  const shapes = expectedTensors(config);
  const copyOf = (name: string): string | null => {
    if (!shapes.has(name)) throw new Error(`planSource: no tensor ${name}`);
    return copiedFrom(plan, name);
  };
  return {
    config,
    names: [...shapes.keys()],
    shape: (name) => shapes.get(name)!,
    read: (name) => {
      const from = copyOf(name);
      if (from !== null) return original.read(from);
      const { layer, suffix } = splitLayerName(name)!;
      const mix = plan.layers[layer];
      return mixArrays(mix.sources.map((s) => ({ data: original.read(`model.layers.${s.layer}.${suffix}`), weight: s.weight })));
    },
    readRaw: (name) => {
      const from = copyOf(name);
      return from !== null && original.readRaw ? original.readRaw(from) : null;
    },
  };
}
