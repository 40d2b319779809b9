/**
 * What an MMLU evaluation will feed the model, worked out before any forward pass: the fitted prompt of
 * every test question, its token ids, and how the questions of a subject share a cached few-shot prefix.
 *
 * Fitting follows Hendrycks' evaluate.py: while the prompt (with BOS, unless scoring without it) is longer than the model's
 * max_position_embeddings, drop dev examples from the end; a question whose 0-shot prompt is still too
 * long keeps its last max_position_embeddings tokens. The count of a prompt that is clearly too long
 * (its prefix's tokens plus its question's tokens exceed the limit by more than ESTIMATE_MARGIN) is
 * taken from that sum instead of a full tokenization, which is the slow part of planning; every prompt
 * near or under the limit is tokenized in full, so the kept prompt is the one Hendrycks' loop keeps
 * whenever the token count grows with the number of examples.
 *
 * Prefix caching: questions that kept k examples share the prefix "header + k examples". The cached path
 * must feed exactly the ids of the full prompt, so the cache holds only positions every member's full
 * tokenization shares with the prefix's (all but the last few when the tokenizer merges across the
 * boundary: the scorer's BOUNDARY_TOKENS); a question sharing less (and a cut question) runs alone. The perplexity
 * of a question (the paper's labels: the last len(tokenize(question part)) tokens of the prompt) needs
 * logits just before the question part, so a group's cache also stops before the first of those
 * positions, which each question then feeds again.
 */
import { UserError } from '../../runtime/errors.ts';
import { encodeHead, encodeTail } from '../../tokenizer/bounded.ts';
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { planRows } from '../scoring/plan.ts';
import { MAX_PADDING, batchesOf, type ScoreRow } from '../scoring/rows.ts';
import { ANSWER_LETTERS, type MmluData, type MmluQuestion } from './data.ts';
import { fitPrompt, formatExample, genPrompt } from './prompt.ts';
import { flag } from '../../runtime/options.ts';
import { ANSWER_TOKENS } from './options.ts';

export type AnswerTokens = 'letter' | 'space';

export { MAX_PADDING, batchesOf };

/** Token count above the limit beyond which a prompt's length is estimated instead of tokenized. */
export const ESTIMATE_MARGIN = 64;

/** One test question as it will be fed to the model. */
export interface PlannedQuestion {
  question: MmluQuestion;
  /** The fitted prompt text (for a cut question: the whole 0-shot prompt). */
  prompt: string;
  /** The token ids fed to the model (for a cut question: the last maxTokens ids). */
  ids: number[];
  ntrainKept: number;
  droppedExamples: number;
  /** Even the 0-shot prompt was too long: only its last tokens are fed. */
  truncated: boolean;
  /** Number of final tokens of `ids` whose loss makes the question's perplexity term. */
  nllTokens: number;
}

/** Questions that share one cached prefix. */
export interface PrefixGroup {
  ntrain: number;
  /** Token ids of the prefix (header + ntrain examples, with BOS unless scoring without it). */
  prefixIds: number[];
  /** Positions 0..start-1 are cached once; each member feeds ids.slice(start). */
  start: number;
  /** Members, longest first (less padding in batches). */
  members: PlannedQuestion[];
}

export interface SubjectPlan {
  subject: string;
  /** Every planned question, in file order. */
  questions: PlannedQuestion[];
  /** Prefix groups, most examples first (empty for the naive path). */
  groups: PrefixGroup[];
  /** Questions that run alone on their full ids (all of them on the naive path). */
  alone: PlannedQuestion[];
}

/**
 * The ids whose logits are compared for A, B, C, D: the last token of the tokenized letter ("A", as
 * the paper's `tokenizer(c).input_ids[-1]`), or of " A" with 'space'.
 */
export function answerTokenIds(tokenizer: Tokenizer, mode: AnswerTokens, vocabSize: number): number[] {
  const ids = ANSWER_LETTERS.map((l) => tokenizer.encode(mode === 'space' ? ` ${l}` : l).at(-1) ?? -1);
  if (new Set(ids).size !== 4 || ids.some((id) => id < 0 || id >= vocabSize)) {
    throw new UserError(`${flag(ANSWER_TOKENS)} ${mode}: the tokenizer maps A, B, C, D to ids [${ids}], which are not 4 distinct ids `
      + `of the model's vocabulary (${vocabSize}); try ${flag(ANSWER_TOKENS)} ${mode === 'space' ? 'letter' : 'space'}`);
  }
  return ids;
}

/**
 * The tokenizer MMLU prompts are encoded with: `tokenizer` itself when `bos` (BOS as the tokenizer adds
 * it, as Hendrycks' evaluate.py and transformers' `tokenizer(prompt)`), else one that never adds BOS
 * (the paper's released code scores with `add_bos_token=False`). Answer tokens are unaffected: they
 * are the last id of an encoded letter either way.
 */
export function scoringTokenizer(tokenizer: Tokenizer, bos: boolean): Tokenizer {
  if (bos) return tokenizer;
  return { ...tokenizer, encode: (text, opts) => tokenizer.encode(text, { ...opts, addBos: opts?.addBos ?? false }) };
}

export interface PlanOptions {
  ntrain: number;
  /** First N test questions (default all). */
  limit?: number;
  /** Longest prompt in tokens (the model's max_position_embeddings). */
  maxTokens: number;
  /** Group questions by prefix for caching (default true). */
  cached?: boolean;
}

/** Fits, tokenizes and groups the test questions of one subject. */
export function planSubject(tokenizer: Tokenizer, data: MmluData, subject: string, opts: PlanOptions): SubjectPlan {
  const dev = data.dev.get(subject), test = data.test.get(subject);
  if (!dev || !test) throw new UserError(`${data.dir}/test/${subject}_test.csv: subject ${subject} was not loaded`);
  if (opts.maxTokens < 2) throw new UserError(`max_position_embeddings ${opts.maxTokens}: too small to hold a prompt`);
  const bosCount = tokenizer.encode('').length;
  const prefixIds = new Map<string, number[]>();
  const encodePrefix = (prefix: string): number[] => {
    let ids = prefixIds.get(prefix);
    if (!ids) prefixIds.set(prefix, (ids = tokenizer.encode(prefix)));
    return ids;
  };

  const questions: PlannedQuestion[] = [];
  for (const q of test.slice(0, opts.limit ?? test.length)) {
    const questionText = formatExample(q, false);
    // counted only as far as the prompt could hold (a question of a million characters is cut anyway)
    const questionLen = encodeHead(tokenizer, questionText, opts.maxTokens + ESTIMATE_MARGIN + bosCount + 1).length;
    let exact: { prompt: string; ids: number[] } | null = null;
    const countTokens = (prompt: string): number => {
      const estimate = encodePrefix(prompt.slice(0, prompt.length - questionText.length)).length + questionLen - bosCount;
      if (estimate > opts.maxTokens + ESTIMATE_MARGIN) return estimate;
      exact = { prompt, ids: tokenizer.encode(prompt) };
      return exact.ids.length;
    };
    const fit = fitPrompt(q, dev, opts.ntrain, countTokens, opts.maxTokens);
    const done = exact as { prompt: string; ids: number[] } | null;
    const ids = done && done.prompt === fit.prompt ? done.ids.slice(fit.truncatedQuestion ? -opts.maxTokens : 0)
      : fit.truncatedQuestion ? encodeTail(tokenizer, fit.prompt, opts.maxTokens) : tokenizer.encode(fit.prompt);
    questions.push({
      question: q, prompt: fit.prompt, ids, ntrainKept: fit.ntrainKept, droppedExamples: fit.droppedExamples,
      truncated: fit.truncatedQuestion, nllTokens: Math.min(questionLen, ids.length - 1),
    });
  }
  return { subject, questions, ...groupByPrefix(questions, dev, subject, encodePrefix, opts.cached ?? true) };
}

/** The row the scorer runs for a question: its ids, the question part's tokens as targets and the answer logits at the end. */
export function questionRow(pq: PlannedQuestion, answerIds: readonly number[], wantNll: boolean): ScoreRow {
  const P = pq.ids.length;
  return {
    ids: pq.ids,
    targets: [{ start: P - pq.nllTokens - 1, tokens: wantNll ? pq.ids.slice(P - pq.nllTokens) : [], greedy: false }],
    logits: { position: P - 1, ids: answerIds },
  };
}

/**
 * Splits planned questions into prefix groups (one candidate per number of examples kept, most first;
 * cut questions never join) and questions that must run alone, with the scorer's planRows.
 */
function groupByPrefix(
  questions: PlannedQuestion[], dev: readonly MmluQuestion[], subject: string,
  encodePrefix: (prefix: string) => number[], cached: boolean,
): { groups: PrefixGroup[]; alone: PlannedQuestion[] } {
  if (!cached) return { groups: [], alone: [...questions] };
  const byK = new Map<number, number[]>();
  questions.forEach((pq, i) => {
    if (!pq.truncated) byK.set(pq.ntrainKept, [...(byK.get(pq.ntrainKept) ?? []), i]);
  });
  const ks = [...byK.keys()].sort((a, b) => b - a);
  const candidates = ks.map((k) => ({ prefix: encodePrefix(genPrompt(dev, subject, k)), rows: byK.get(k)! }));
  const plan = planRows(questions.map((pq) => questionRow(pq, [], true)), candidates);
  return {
    groups: plan.groups.map((g) => ({ ntrain: ks[g.candidate!], prefixIds: candidates[g.candidate!].prefix as number[], start: g.start, members: g.rows.map((r) => questions[r]) })),
    alone: plan.alone.map((r) => questions[r]),
  };
}

/** Token counts of a set of plans: what a run costs with and without prefix caching. */
export interface PlanStats {
  subjects: number;
  questions: number;
  /** Questions whose prompt lost dev examples, examples lost in all, questions cut to their last tokens. */
  promptsWithDroppedExamples: number;
  droppedExamples: number;
  truncatedQuestions: number;
  /** Questions that cannot use a cached prefix (cut, or their tokenization does not extend the prefix's). */
  uncachedQuestions: number;
  /** Prefix passes (one per subject and number of examples kept). */
  prefixes: number;
  /** Forward passes of question batches on cached prefixes, for the batch size given. */
  batches: number;
  /** Tokens processed by the naive path (every full prompt). */
  naiveTokens: number;
  /** Tokens processed with prefix caching (each prefix once, then the rest of each prompt). */
  cachedTokens: number;
  /** Mean prompt length, mean cached prefix length and mean fed suffix length, in tokens. */
  meanPromptTokens: number;
  meanPrefixTokens: number;
  meanSuffixTokens: number;
}

/** Adds up the plans of several subjects (made with cached = true), batched as batchesOf does. */
export function planStats(plans: readonly SubjectPlan[], batchSize = 16, maxPadding = MAX_PADDING): PlanStats {
  const s: PlanStats = {
    subjects: plans.length, questions: 0, promptsWithDroppedExamples: 0, droppedExamples: 0, truncatedQuestions: 0,
    uncachedQuestions: 0, prefixes: 0, batches: 0, naiveTokens: 0, cachedTokens: 0, meanPromptTokens: 0, meanPrefixTokens: 0, meanSuffixTokens: 0,
  };
  let prefixTokens = 0, suffixTokens = 0, members = 0;
  for (const p of plans) {
    for (const pq of p.questions) {
      s.questions++;
      if (pq.droppedExamples > 0) s.promptsWithDroppedExamples++;
      s.droppedExamples += pq.droppedExamples;
      if (pq.truncated) s.truncatedQuestions++;
      s.naiveTokens += pq.ids.length;
    }
    s.uncachedQuestions += p.alone.length;
    for (const pq of p.alone) s.cachedTokens += pq.ids.length;
    for (const g of p.groups) {
      s.prefixes++;
      s.batches += batchesOf(g.members, batchSize, g.start, maxPadding).length;
      prefixTokens += g.start;
      s.cachedTokens += g.start;
      for (const pq of g.members) {
        suffixTokens += pq.ids.length - g.start;
        members++;
      }
    }
  }
  s.cachedTokens += suffixTokens;
  s.meanPromptTokens = s.questions ? s.naiveTokens / s.questions : 0;
  s.meanPrefixTokens = s.prefixes ? prefixTokens / s.prefixes : 0;
  s.meanSuffixTokens = members ? suffixTokens / members : 0;
  return s;
}
