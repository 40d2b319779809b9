/**
 * A compression plan says, for every layer of the compressed model, which layers of the original it is
 * made of: one layer with weight 1 (kept as is), or a weighted sum Σ w_m θ_m (a merge; weights sum
 * to 1). Merging j into i with λ gives {i: λ, j: 1-λ}; merging again composes the weights, so the plan
 * of any sequence of merges and drops is exact and needs the original weights only.
 *
 * Plans are applied lazily (`planSource`): a tensor of the compressed model is computed when a writer
 * or loader asks for it, so compressing a model larger than memory streams too.
 */
import * as tf from '@tensorflow/tfjs';
import { type LlamaConfig, expectedTensors, layerTensorShapes, splitLayerName } from '../model/config.ts';
import { layOutForBackend, modelFromTensors, type LlamaModel } from '../model/model.ts';
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
  score?: number;
  note?: string;
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

/** Drops current layer i; layers after it shift down. */
export function dropStep(plan: CompressionPlan, i: number, score?: number, note?: string): CompressionPlan {
  if (i < 0 || i >= plan.layers.length) throw new Error(`dropStep: invalid layer ${i}`);
  const step: PlanStep = {
    action: 'drop', layers: [i], originalLayers: plan.layers[i].sources.map((s) => s.layer),
    ...(score !== undefined ? { score } : {}), ...(note ? { note } : {}),
  };
  return { ...plan, layers: plan.layers.filter((_, k) => k !== i), steps: [...plan.steps, step] };
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
  const layerShapes = layerTensorShapes(config);
  /** The original tensor a compressed tensor is a copy of, or null when it is a weighted sum. */
  const copyOf = (name: string): string | null => {
    const l = splitLayerName(name);
    if (!l) return name;
    const { layer: k, suffix } = l;
    const mix = plan.layers[k];
    if (!mix || !layerShapes.has(suffix)) throw new Error(`planSource: no tensor ${name}`);
    const isNorm = suffix.endsWith('layernorm.weight');
    if (isNorm && !plan.blendNorms) return `model.layers.${mix.normsFrom}.${suffix}`;
    if (plan.keepBiases && suffix.endsWith('.bias')) return `model.layers.${mix.normsFrom}.${suffix}`;
    if (mix.sources.length === 1 && mix.sources[0].weight === 1) return `model.layers.${mix.sources[0].layer}.${suffix}`;
    return null;
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

/** Builds the compressed model in memory (for recalibration, evaluation or tests). */
export function materialize(source: SyncTensorSource): LlamaModel {
  const tensors = new Map<string, tf.Tensor>();
  for (const name of source.names) tensors.set(name, tf.tensor(source.read(name), source.shape(name)));
  return layOutForBackend(modelFromTensors(source.config, tensors));
}

/** merge.json: what was merged or dropped, with which λ. */
export function planSummary(plan: CompressionPlan): Record<string, unknown> {
  return {
    method: plan.method,
    original_layers: plan.originalLayers,
    layers: plan.layers.length,
    removed: plan.originalLayers - plan.layers.length,
    blend_norms: plan.blendNorms,
    ...(plan.keepBiases ? { keep_biases: true } : {}),
    steps: plan.steps,
    layer_sources: plan.layers.map((l) => ({ sources: l.sources, norms_from: l.normsFrom })),
    ...plan.details,
  };
}
