/**
 * A minimal k-shot evaluator for the demo benchmark, used by the training script to score the model it
 * made (the project's MMLU evaluator is the real one). Prompts are Hendrycks' (header, the first k dev
 * examples with answers, the test question ending in "Answer:"); the prediction is the letter whose
 * answer token (the last token of the letter encoded alone) has the largest next-token logit.
 *
 * The prompts of one subject share their first tokens (header and dev examples): those are run once
 * and the questions continue from the cached keys and values, in right-padded batches.
 */
import * as tf from '@tensorflow/tfjs';
import { forward, disposeCache } from '../model/forward.ts';
import type { LlamaModel } from '../model/model.ts';
import { ANSWER_LETTERS, type MmluQuestion } from '../eval/mmlu/data.ts';
import { formatExample, genPrompt } from '../eval/mmlu/prompt.ts';

export interface SubjectScore {
  correct: number;
  total: number;
  accuracy: number;
}

export interface DemoScores {
  /** Correct over all questions (micro average). */
  accuracy: number;
  subjects: Record<string, SubjectScore>;
}

export interface DemoEvalOptions {
  ntrain?: number;
  /** Questions per forward call. */
  batch?: number;
  /** Only the first `limit` test questions of each subject. */
  limit?: number;
}

/** The token id each letter A–D is scored by: the last id of the letter encoded alone. */
export function answerTokenIds(encode: (text: string) => number[]): number[] {
  return ANSWER_LETTERS.map((l) => {
    const ids = encode(l);
    return ids[ids.length - 1];
  });
}

/**
 * Scores `model` on the subjects' test questions. `encode` must give what the model sees (with BOS
 * when the tokenizer adds it).
 */
export function evaluateDemo(
  model: LlamaModel,
  encode: (text: string) => number[],
  dev: ReadonlyMap<string, readonly MmluQuestion[]>,
  test: ReadonlyMap<string, readonly MmluQuestion[]>,
  opts: DemoEvalOptions = {},
): DemoScores {
  const ntrain = opts.ntrain ?? 5, batch = opts.batch ?? 32;
  const letters = answerTokenIds(encode);
  const subjects: Record<string, SubjectScore> = {};
  let correct = 0, total = 0;
  for (const [subject, questions] of test) {
    const qs = questions.slice(0, opts.limit ?? questions.length);
    const prefix = genPrompt(dev.get(subject) ?? [], subject, ntrain);
    const prompts = qs.map((q) => encode(prefix + formatExample(q, false)));
    let shared = Math.min(...prompts.map((p) => p.length)) - 1;
    for (const p of prompts) {
      let i = 0;
      while (i < shared && p[i] === prompts[0][i]) i++;
      shared = i;
    }
    const cache = forward(model, [prompts[0].slice(0, shared)], { logits: 'none', returnCache: true }).cache!;
    let right = 0;
    try {
      for (let b0 = 0; b0 < qs.length; b0 += batch) {
        const rows = prompts.slice(b0, b0 + batch).map((p) => p.slice(shared));
        const T = Math.max(...rows.map((r) => r.length));
        const padded = rows.map((r) => [...r, ...new Array(T - r.length).fill(0)]);
        const predicted = tf.tidy(() => {
          const { logits } = forward(model, padded, { cache, logits: 'last', lastIndex: rows.map((r) => r.length - 1) });
          return tf.gather(logits!, tf.tensor1d(letters, 'int32'), 1).argMax(1); // [rows]: 0..3
        });
        const best = predicted.dataSync() as Int32Array;
        predicted.dispose();
        best.forEach((k, i) => { if (ANSWER_LETTERS[k] === qs[b0 + i].answer) right++; });
      }
    } finally {
      disposeCache(cache);
    }
    subjects[subject] = { correct: right, total: qs.length, accuracy: right / qs.length };
    correct += right;
    total += qs.length;
  }
  return { accuracy: total ? correct / total : 0, subjects };
}

/**
 * The model without the decoder layers in `drop` (0-based), the rest renumbered in order: the crude
 * layer-removal check. Shares the tensors of `model`: do not dispose the result.
 */
export function dropLayers(model: LlamaModel, drop: readonly number[]): LlamaModel {
  const L = model.config.num_hidden_layers;
  const keep = Array.from({ length: L }, (_, i) => i).filter((i) => !drop.includes(i));
  if (keep.length === 0 || drop.some((i) => !Number.isInteger(i) || i < 0 || i >= L)) {
    throw new Error(`dropLayers: cannot drop layers [${drop}] of ${L}`);
  }
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, t] of model.tensors) {
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(name);
    if (!m) tensors.set(name, t);
    else if (keep.includes(Number(m[1]))) tensors.set(`model.layers.${keep.indexOf(Number(m[1]))}.${m[2]}`, t);
  }
  return { ...model, config: { ...model.config, num_hidden_layers: keep.length }, tensors, stats: { forwardCalls: 0, layerLoads: 0 } };
}
