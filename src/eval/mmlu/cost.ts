/**
 * A rough estimate of an MMLU run's time from its plan (--dry-run): a few forward passes of the plan's
 * mean shapes are timed and scaled by the number of passes the run makes, with and without prefix caching.
 * A streamed model is timed on its first layer alone, held in memory (so the dry run reads one layer,
 * not the model a few times over), scaled by the layer count, plus the reads of the run's passes.
 */
import { disposeCache, forward, passTokens } from '../../model/forward.ts';
import { acquireLayer, streamsLayers, type LlamaModel } from '../../model/model.ts';
import { layerTensorShapes } from '../../model/config.ts';
import type { Weight } from '../../model/ops.ts';
import type { PlanStats } from './question-plan.ts';

export interface CostEstimate {
  /** Seconds of one naive pass (a whole mean-length prompt). */
  naivePassSeconds: number;
  /** Seconds of one question batch on a mean-length cached prefix. */
  batchPassSeconds: number;
  /** Streamed model: seconds to read one decoder layer, and passes over the layers of each run (0 and 0 when resident). */
  layerReadSeconds: number;
  streamedPasses: { naive: number; cached: number };
  /** Estimated seconds of the whole run, naive and with prefix caching and batching. */
  naiveSeconds: number;
  cachedSeconds: number;
}

function ids(rows: number, length: number, vocab: number): number[][] {
  return Array.from({ length: rows }, (_, b) => Array.from({ length }, (_, t) => (7 * t + 13 * b + 3) % vocab));
}

/** Seconds per call of `f`, after one untimed call. */
function timed(f: () => void): number {
  f();
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
}

/** Times the plan's typical passes on `model` and scales them to the whole run. */
export function estimateMmluCost(model: LlamaModel, stats: PlanStats, batchSize: number): CostEstimate {
  if (!streamsLayers(model)) return { ...timePasses(model, stats, batchSize, 1), layerReadSeconds: 0, streamedPasses: { naive: 0, cached: 0 } };
  const L = model.config.num_hidden_layers;
  const t0 = performance.now();
  const layer = acquireLayer(model, 0);
  const layerReadSeconds = (performance.now() - t0) / 1000;
  try {
    // A one-layer model whose layer is the one just read, resident.
    const packed = new Map<string, Weight>(model.packed);
    for (const suffix of layerTensorShapes(model.config).keys()) packed.set(`model.layers.0.${suffix}`, layer.weight(suffix));
    const one: LlamaModel = { ...model, config: { ...model.config, num_hidden_layers: 1 }, packed, stats: { forwardCalls: 0, layerLoads: 0 } };
    const t = timePasses(one, stats, batchSize, L);
    const perPass = passTokens(model.config);
    const streamedPasses = { naive: Math.ceil(stats.naiveTokens / perPass), cached: Math.ceil(stats.cachedTokens / perPass) };
    return {
      ...t, layerReadSeconds, streamedPasses,
      naiveSeconds: t.naiveSeconds + streamedPasses.naive * L * layerReadSeconds,
      cachedSeconds: t.cachedSeconds + streamedPasses.cached * L * layerReadSeconds,
    };
  } finally {
    layer.release();
  }
}

/** The compute part of the estimate, timed on `model` and multiplied by `scale`. */
function timePasses(model: LlamaModel, stats: PlanStats, batchSize: number, scale: number): Omit<CostEstimate, 'layerReadSeconds' | 'streamedPasses'> {
  const V = model.config.vocab_size, max = model.config.max_position_embeddings;
  const clamp = (n: number) => Math.max(1, Math.min(max, Math.round(n)));
  const naivePassSeconds = scale * timed(() => { forward(model, ids(1, clamp(stats.meanPromptTokens), V), { logits: 'none' }); });
  const prefixLen = clamp(stats.meanPrefixTokens);
  const suffixLen = Math.max(1, Math.min(max - prefixLen, Math.round(stats.meanSuffixTokens)));
  const cachedQuestions = stats.questions - stats.uncachedQuestions;
  const rows = Math.max(1, Math.min(batchSize, stats.batches ? Math.round(cachedQuestions / stats.batches) : 1));
  const prefix = forward(model, ids(1, prefixLen, V), { logits: 'none', returnCache: true });
  let batchPassSeconds: number;
  try {
    batchPassSeconds = scale * timed(() => { forward(model, ids(rows, suffixLen, V), { logits: 'none', cache: prefix.cache }); });
  } finally {
    disposeCache(prefix.cache!);
  }
  return {
    naivePassSeconds,
    batchPassSeconds,
    naiveSeconds: naivePassSeconds * stats.questions,
    cachedSeconds: naivePassSeconds * (stats.prefixes + stats.uncachedQuestions) + batchPassSeconds * stats.batches,
  };
}
