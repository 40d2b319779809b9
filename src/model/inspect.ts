/**
 * The library side of `mka info`, `mka forward` and `mka generate`: load, run, and shape the output.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel, disposeModel } from './model.ts';
import { forward } from './forward.ts';
import { generate } from './generate.ts';
import { nonFiniteAllowed, openCheckpoint } from '../io/checkpoint.ts';
import { ALLOW_NONFINITE } from '../io/options.ts';
import { readConfig } from './config.ts';
import { loadTokenizer } from '../tokenizer/tokenizer.ts';
import { UserError } from '../runtime/errors.ts';
import { OptionError, checkOption, flag } from '../runtime/options.ts';
import { IDS, LOGITS, MAX_NEW_TOKENS, PROMPT, TEXT, TOP_K, type ForwardLogits } from './options.ts';
import { checkModelFits, type Workload } from './memory-estimate.ts';

export { modelInfo, type ModelInfo } from './info.ts';

/** Parses "1,2,3" into token ids. */
export function parseIds(s: string): number[] {
  const items = s.split(',').map((x) => x.trim());
  const ids = items.map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
  if (ids.some((x) => !Number.isSafeInteger(x))) throw new OptionError(IDS, `${flag(IDS)} "${s}": expected comma-separated token ids (decimal, no empty items), e.g. 1,450,22`);
  return ids;
}

/** Throws unless every token id lies in the vocabulary of the model in `modelDir`. */
export function checkIds(ids: readonly number[], modelDir: string): void {
  const vocabSize = readConfig(modelDir).vocab_size;
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) throw new OptionError(IDS, `${flag(IDS)}: token id ${bad} is outside the vocabulary (0 to ${vocabSize - 1})`);
}

export { FORWARD_LOGITS, type ForwardLogits } from './options.ts';

/** One candidate next token: id, its text (when the model has a tokenizer), logit and softmax probability. */
export interface TopToken {
  id: number;
  token?: string;
  logit: number;
  prob: number;
}

/**
 * What `mka forward` writes. `top_k`: the k most likely next tokens after the last position, most
 * likely first. `logits` (only when asked): one row of vocab_size logits per position listed in
 * `logits_positions` (the last position, or every position 0..T-1 in order); `hidden_states` (when
 * asked): [L+1][T][H], the embeddings then each decoder block's output (the last one after the final
 * norm), as transformers' output_hidden_states.
 */
export interface ForwardJson {
  input_ids: number[];
  top_k: TopToken[];
  logits_positions?: number[];
  logits?: number[][];
  hidden_states?: number[][][];
}

export interface RunForwardOptions {
  model: string;
  text?: string;
  ids?: number[];
  /** Logits to write (default 'none': only top_k). */
  logits?: ForwardLogits;
  /** Candidates in top_k (default 10). */
  topK?: number;
  hiddenStates?: boolean;
}

/** The k largest logits of `row` (ties: lower id first) with their softmax probabilities over the whole row. */
export function topTokens(row: ArrayLike<number>, k: number): TopToken[] {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const best: number[] = [];
  for (let i = 0; i < row.length; i++) {
    if (best.length === k && row[i] <= row[best[k - 1]]) continue;
    let j = best.length;
    while (j > 0 && row[best[j - 1]] < row[i]) j--;
    best.splice(j, 0, i);
    if (best.length > k) best.pop();
  }
  return best.map((id) => ({ id, logit: row[id], prob: Math.exp(row[id] - max) / sum }));
}

/**
 * Runs one sequence (text through the model's tokenizer, or ids) and returns the top-k next tokens,
 * and the logits and hidden states asked for. Only the logits written are computed (plus the last
 * position's for top_k), so a long prompt never holds [T, vocab] logits unless `logits: 'all'`.
 */
export async function runForward(opts: RunForwardOptions): Promise<ForwardJson> {
  const topK = opts.topK ?? TOP_K.default;
  checkOption(TOP_K, topK);
  const logitsMode = opts.logits ?? LOGITS.default;
  checkOption(LOGITS, logitsMode);
  const tokenizer = opts.ids && !existsSync(join(opts.model, 'tokenizer.json')) ? null : await loadTokenizer(opts.model);
  let ids = opts.ids;
  if (!ids) {
    if (opts.text === undefined) throw new UserError(`give ${flag(TEXT)} or ${flag(IDS)}`);
    ids = tokenizer!.encode(opts.text);
    if (!ids.length) throw new UserError(`${flag(TEXT)} encodes to no tokens and the tokenizer adds no BOS: give a non-empty ${flag(TEXT)}`);
  }
  checkModelFits('forward', opts.model, sequenceWorkload(ids.length, logitsMode === 'all' ? 'all' : 'last'));
  const model = loadModel(opts.model);
  try {
    if (ids.length > model.config.max_position_embeddings) {
      throw new UserError(`${flag(opts.ids ? IDS : TEXT)} is ${ids.length} tokens, more than the context of ${opts.model} (max_position_embeddings ${model.config.max_position_embeddings}); shorten it`);
    }
    const r = forward(model, [ids], { hiddenStates: opts.hiddenStates, logits: logitsMode === 'all' ? 'all' : 'last' });
    const T = ids.length;
    let rows: number[][];
    try {
      rows = logitsMode === 'all' ? (r.logits!.arraySync() as number[][][])[0] : (r.logits!.arraySync() as number[][]);
    } finally {
      r.logits!.dispose();
    }
    // weights finite but absurd (a flipped exponent bit: 3e38) overflow float32 in the pass; JSON would write the NaN as null
    for (const [t, row] of rows.entries()) {
      const bad = nonFiniteAllowed() ? undefined : row.find((x) => !Number.isFinite(x));
      if (bad === undefined) continue;
      r.hiddenStates?.forEach((h) => h.dispose());
      throw new UserError(`${opts.model}: the forward pass gives ${bad} logits (position ${logitsMode === 'all' ? t : T - 1}): its weights overflow float32, the checkpoint is corrupt (re-download or re-convert it), or pass ${flag(ALLOW_NONFINITE)} to write them anyway`);
    }
    const top = topTokens(rows[rows.length - 1], Math.min(topK, model.config.vocab_size));
    const out: ForwardJson = {
      input_ids: ids,
      top_k: tokenizer ? top.map((t) => ({ id: t.id, token: tokenizer.decode([t.id]), logit: t.logit, prob: t.prob })) : top,
    };
    if (logitsMode !== 'none') {
      out.logits_positions = logitsMode === 'all' ? Array.from({ length: T }, (_, t) => t) : [T - 1];
      out.logits = rows;
    }
    if (r.hiddenStates) {
      try {
        out.hidden_states = r.hiddenStates.map((h) => (h.arraySync() as number[][][])[0]);
      } finally {
        r.hiddenStates.forEach((h) => h.dispose());
      }
    }
    return out;
  } finally {
    disposeModel(model);
  }
}

export interface GenerateJson {
  input_ids: number[];
  output_ids: number[];
  text: string;
}

/**
 * Generates a continuation of `prompt` (BOS as the tokenizer is configured; an empty prompt is BOS
 * alone). A prompt that fills the model's context is refused; fewer new tokens than asked, because
 * the context ends, are said through `log`.
 */
export async function runGenerate(opts: { model: string; prompt: string; maxNewTokens?: number; temperature?: number; seed?: number; log?: (msg: string) => void }): Promise<GenerateJson> {
  const tok = await loadTokenizer(opts.model);
  const ids = tok.encode(opts.prompt);
  if (!ids.length) throw new UserError(`the prompt encodes to no tokens and the tokenizer adds no BOS: give a non-empty ${flag(PROMPT)}`);
  const context = readConfig(opts.model).max_position_embeddings;
  if (ids.length >= context) {
    throw new UserError(`${flag(PROMPT)} is ${ids.length} tokens, but the model's context is ${context} (max_position_embeddings): shorten it by at least ${ids.length - context + 1} tokens to generate anything`);
  }
  const wanted = opts.maxNewTokens ?? MAX_NEW_TOKENS.default;
  if (ids.length + wanted > context) opts.log?.(`generate: at most ${context - ids.length} new tokens, not ${wanted}: the ${ids.length}-token prompt leaves that much of the ${context}-token context`);
  checkModelFits('generate', opts.model, sequenceWorkload(ids.length, 'last', Math.min(wanted, context - ids.length))); // generation stops at the context
  const model = loadModel(opts.model);
  try {
    const out = generate(model, ids, { maxNewTokens: opts.maxNewTokens, temperature: opts.temperature, seed: opts.seed });
    return { input_ids: ids, output_ids: out, text: tok.decode(out, { skipSpecial: true }) };
  } finally {
    disposeModel(model);
  }
}

/** What `mka forward` / `mka generate` need for the memory estimate: one sequence of `tokens` (generation adds `newTokens` cached ones), resident weights. */
export function sequenceWorkload(tokens: number, logits: 'all' | 'last', newTokens = 0): Workload {
  return { streaming: false, rows: 1, microBatch: 1, seqLen: Math.max(1, tokens), cacheTokens: newTokens, logits, streamable: false };
}
