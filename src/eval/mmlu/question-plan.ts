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
 * boundary, BOUNDARY_TOKENS); a question sharing less (and a cut question) runs alone. The perplexity
 * of a question (the paper's labels: the last len(tokenize(question part)) tokens of the prompt) needs
 * logits just before the question part, so a group's cache also stops before the first of those
 * positions, which each question then feeds again.
 */
import { UserError } from '../../runtime/errors.ts';
import type { Tokenizer } from '../../tokenizer/tokenizer.ts';
import { ANSWER_LETTERS, type MmluData, type MmluQuestion } from './data.ts';
import { fitPrompt, formatExample, genPrompt } from './prompt.ts';
import { flag } from '../../runtime/options.ts';
import { ANSWER_TOKENS } from './options.ts';

export type AnswerTokens = 'letter' | 'space';

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

/** How many leading ids two sequences share. */
function commonLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/**
 * A question joins its prefix group when its ids share all but at most this many of the prefix's last
 * ids: a tokenizer may merge the prefix's final "\n\n" with the question's first word, so the full
 * prompt's tokenization need not extend the prefix's.
 */
const BOUNDARY_TOKENS = 4;

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
    const questionLen = tokenizer.encode(questionText).length;
    let exact: { prompt: string; ids: number[] } | null = null;
    const countTokens = (prompt: string): number => {
      const estimate = encodePrefix(prompt.slice(0, prompt.length - questionText.length)).length + questionLen - bosCount;
      if (estimate > opts.maxTokens + ESTIMATE_MARGIN) return estimate;
      exact = { prompt, ids: tokenizer.encode(prompt) };
      return exact.ids.length;
    };
    const fit = fitPrompt(q, dev, opts.ntrain, countTokens, opts.maxTokens);
    const done = exact as { prompt: string; ids: number[] } | null;
    let ids = done && done.prompt === fit.prompt ? done.ids : tokenizer.encode(fit.prompt);
    if (fit.truncatedQuestion) ids = ids.slice(-opts.maxTokens);
    questions.push({
      question: q, prompt: fit.prompt, ids, ntrainKept: fit.ntrainKept, droppedExamples: fit.droppedExamples,
      truncated: fit.truncatedQuestion, nllTokens: Math.min(questionLen, ids.length - 1),
    });
  }
  return { subject, questions, ...groupByPrefix(questions, dev, subject, encodePrefix, opts.cached ?? true) };
}

/** Splits planned questions into prefix groups and questions that must run alone. */
function groupByPrefix(
  questions: PlannedQuestion[], dev: readonly MmluQuestion[], subject: string,
  encodePrefix: (prefix: string) => number[], cached: boolean,
): { groups: PrefixGroup[]; alone: PlannedQuestion[] } {
  if (!cached) return { groups: [], alone: [...questions] };
  const alone: PlannedQuestion[] = [];
  const byK = new Map<number, PlannedQuestion[]>();
  for (const pq of questions) {
    if (pq.truncated) alone.push(pq);
    else byK.set(pq.ntrainKept, [...(byK.get(pq.ntrainKept) ?? []), pq]);
  }
  const groups: PrefixGroup[] = [];
  for (const k of [...byK.keys()].sort((a, b) => b - a)) {
    const prefixIds = encodePrefix(genPrompt(dev, subject, k));
    const L = prefixIds.length;
    // Positions a member can take from the cache: those its ids share with the prefix's (the tokenizer may
    // merge the prefix's last tokens with the question's first), and none it needs logits for (perplexity).
    const cacheable = (pq: PlannedQuestion) => Math.min(commonLength(pq.ids, prefixIds), pq.ids.length - pq.nllTokens - 1);
    const members: PlannedQuestion[] = [];
    for (const pq of byK.get(k)!) {
      if (pq.ids.length > L - BOUNDARY_TOKENS && commonLength(pq.ids, prefixIds) >= L - BOUNDARY_TOKENS && cacheable(pq) > 0) members.push(pq);
      else alone.push(pq);
    }
    if (members.length === 0) continue;
    const start = Math.min(...members.map(cacheable));
    members.sort((a, b) => b.ids.length - a.ids.length || a.question.index - b.question.index);
    groups.push({ ntrain: k, prefixIds, start, members });
  }
  alone.sort((a, b) => a.question.index - b.question.index);
  return { groups, alone };
}

/** Default bound on a batch row's padding, as a fraction of its batch's longest row. */
export const MAX_PADDING = 0.1;

/**
 * Splits questions sorted longest first into batches of at most batchSize whose rows are fed
 * `skip` tokens less, starting a new batch when a row would need more than maxPadding padding.
 */
export function batchesOf(sorted: readonly PlannedQuestion[], batchSize: number, skip = 0, maxPadding = MAX_PADDING): PlannedQuestion[][] {
  const batches: PlannedQuestion[][] = [];
  let cur: PlannedQuestion[] = [];
  for (const pq of sorted) {
    if (cur.length > 0 && (cur.length >= batchSize || pq.ids.length - skip < (1 - maxPadding) * (cur[0].ids.length - skip))) {
      batches.push(cur);
      cur = [];
    }
    cur.push(pq);
  }
  if (cur.length > 0) batches.push(cur);
  return batches;
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
