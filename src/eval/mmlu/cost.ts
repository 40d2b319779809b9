/**
 * A rough estimate of an MMLU run's time from its plan (--dry-run): a few forward passes of the plan's
 * mean shapes are timed and scaled by the number of passes the run makes, with and without prefix caching.
 */
import { disposeCache, forward } from '../../model/forward.ts';
import type { LlamaModel } from '../../model/model.ts';
import type { PlanStats } from './question-plan.ts';

export interface CostEstimate {
  /** Seconds of one naive pass (a whole mean-length prompt). */
  naivePassSeconds: number;
  /** Seconds of one question batch on a mean-length cached prefix. */
  batchPassSeconds: number;
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
  const V = model.config.vocab_size, max = model.config.max_position_embeddings;
  const clamp = (n: number) => Math.max(1, Math.min(max, Math.round(n)));
  const naivePassSeconds = timed(() => { forward(model, ids(1, clamp(stats.meanPromptTokens), V), { logits: 'none' }); });
  const prefixLen = clamp(stats.meanPrefixTokens);
  const suffixLen = Math.max(1, Math.min(max - prefixLen, Math.round(stats.meanSuffixTokens)));
  const cachedQuestions = stats.questions - stats.uncachedQuestions;
  const rows = Math.max(1, Math.min(batchSize, stats.batches ? Math.round(cachedQuestions / stats.batches) : 1));
  const prefix = forward(model, ids(1, prefixLen, V), { logits: 'none', returnCache: true });
  let batchPassSeconds: number;
  try {
    batchPassSeconds = timed(() => { forward(model, ids(rows, suffixLen, V), { logits: 'none', cache: prefix.cache }); });
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
