/**
 * Text generation with a KV cache: greedy when temperature is 0, otherwise seeded sampling.
 */
import { disposeCache, forward, type KVCache } from './forward.ts';
import type { LlamaModel } from './model.ts';
import { mulberry32 } from '../runtime/random.ts';
import { MAX_NEW_TOKENS, SAMPLING_SEED, TEMPERATURE } from './options.ts';

export interface GenerateOptions {
  maxNewTokens?: number;
  temperature?: number;
  seed?: number;
  /** Stop at these ids (default: the config's eos_token_id). */
  stopIds?: number[];
}

/** Generates up to maxNewTokens ids after `promptIds` (which must be non-empty); returns only the new ids. */
export function generate(model: LlamaModel, promptIds: number[], opts: GenerateOptions = {}): number[] {
  const maxNew = opts.maxNewTokens ?? MAX_NEW_TOKENS.default;
  const temperature = opts.temperature ?? TEMPERATURE.default;
  const rand = mulberry32(opts.seed ?? SAMPLING_SEED.default);
  const eos = model.config.eos_token_id;
  const stop = new Set(opts.stopIds ?? (eos === null ? [] : Array.isArray(eos) ? eos : [eos]));
  const out: number[] = [];
  let cache: KVCache | undefined;
  let next = promptIds;
  try {
    for (let step = 0; step < maxNew; step++) {
      if ((cache?.length ?? 0) + next.length > model.config.max_position_embeddings) break;
      const r = forward(model, [next], { logits: 'last', cache, returnCache: true });
      if (cache) disposeCache(cache);
      cache = r.cache;
      const logits = r.logits!.dataSync() as Float32Array;
      r.logits!.dispose();
      const id = temperature > 0 ? sample(logits, temperature, rand) : argmax(logits);
      out.push(id);
      if (stop.has(id)) break;
      next = [id];
    }
  } finally {
    if (cache) disposeCache(cache);
  }
  return out;
}

/** Index of the largest value (the first on ties, as numpy's argmax). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

function sample(logits: Float32Array, temperature: number, rand: () => number): number {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  const p = Array.from(logits, (v) => Math.exp((v - max) / temperature));
  const total = p.reduce((a, b) => a + b, 0);
  let u = rand() * total;
  for (let i = 0; i < p.length; i++) {
    u -= p[i];
    if (u <= 0) return i;
  }
  return p.length - 1;
}

