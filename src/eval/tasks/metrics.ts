/**
 * Metrics as lm-evaluation-harness computes them, and the metrics map every report consumes.
 *
 * Per document (`ConfigurableTask.process_results`, multiple choice): acc is 1 when the arg-max of the
 * choices' loglikelihoods is the gold index; acc_norm when the arg-max of loglikelihood / len(choice)
 * is (len in characters, Python's code points, of doc_to_choice's strings: without the target
 * delimiter). Per task: the mean, and its standard error as lm-eval's `mean_stderr` (sample standard
 * deviation, n − 1, over √n; none for one document). Groups (MMLU's categories) weight their subtasks
 * by size and pool the standard errors (`pooled_sample_stderr`).
 *
 * Comparing two models on the same documents: an exact McNemar test on the documents one gets right
 * and the other wrong (paired, so far more sensitive than comparing two means with their stderrs).
 */
import { pyLen } from '../../runtime/python.ts';

/** One metric of one task: its value, standard error (null when undefined, e.g. one document) and document count. */
export interface MetricValue {
  value: number;
  stderr: number | null;
  n: number;
}

/** task → metric → value (accuracies as fractions in [0, 1]). */
export type MetricsMap = Record<string, Record<string, MetricValue>>;

/** Index of the largest value (the first on ties, as numpy's argmax). */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** acc and acc_norm of one document from its choices' loglikelihoods. */
export function choiceMetrics(lls: readonly number[], choices: readonly string[], gold: number): { acc: number; acc_norm: number; pred: number; predNorm: number } {
  const pred = argmax(lls);
  const predNorm = argmax(lls.map((ll, i) => ll / pyLen(choices[i])));
  return { acc: pred === gold ? 1 : 0, acc_norm: predNorm === gold ? 1 : 0, pred, predNorm };
}

/** The mean, summed in order as Python's sum(arr) / len(arr). */
export function mean(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** lm-eval's mean_stderr: sample_stddev(xs) / √n, computed as its Python code does; null for fewer than 2 values. */
export function meanStderr(xs: readonly number[]): number | null {
  if (xs.length < 2) return null;
  const mu = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - mu) ** 2;
  return Math.sqrt(s / (xs.length - 1)) / Math.sqrt(xs.length);
}

/** lm-eval's sample standard error of a 0/1 mean in closed form: √(p(1 − p)/(n − 1)) (0 for n < 2). */
export function accStderr(correct: number, n: number): number {
  if (n < 2) return 0;
  const p = correct / n;
  return Math.sqrt((p * (1 - p)) / (n - 1));
}

/** lm-eval's pooled_sample_stderr: the stderr of size-weighted subtasks pooled into one group. */
export function pooledStderr(stderrs: readonly number[], sizes: readonly number[]): number {
  const total = sizes.reduce((a, b) => a + b, 0);
  if (total - sizes.length <= 0) return 0;
  const pooledVar = sizes.reduce((s, n, i) => s + (n - 1) * stderrs[i] ** 2 * n, 0) / (total - sizes.length);
  return Math.sqrt(pooledVar / total);
}

/** A metric from per-document values. */
export function metricOf(values: readonly number[]): MetricValue {
  return { value: mean(values), stderr: meanStderr(values), n: values.length };
}

/** The outcome of a paired comparison of two models on the same documents. */
export interface PairedTest {
  test: 'mcnemar-exact';
  /** Documents both score; those only the base gets right (b) and only the other gets right (c). */
  n: number;
  onlyBase: number;
  onlyOther: number;
  /** other − base, as a fraction. */
  difference: number;
  /** Two-sided exact p-value (binomial on the discordant documents, p = 1/2). */
  p: number;
  /** p ≥ 0.05: the two cannot be told apart on these documents. */
  withinNoise: boolean;
}

/** log of the binomial coefficient C(n, k). */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
}

/**
 * Exact McNemar test of two 0/1 score vectors over the same documents (index by index): the discordant
 * documents split as Binomial(b + c, 1/2) under the hypothesis that both models are equally accurate;
 * p = min(1, 2·P(X ≤ min(b, c))).
 */
export function mcnemar(base: readonly number[], other: readonly number[]): PairedTest {
  if (base.length !== other.length) throw new Error(`mcnemar: ${base.length} and ${other.length} documents differ`);
  let b = 0, c = 0;
  for (let i = 0; i < base.length; i++) {
    if (base[i] && !other[i]) b++;
    else if (!base[i] && other[i]) c++;
  }
  const m = b + c;
  let tail = 0;
  for (let k = 0; k <= Math.min(b, c); k++) tail += Math.exp(logChoose(m, k) - m * Math.LN2);
  const p = m === 0 ? 1 : Math.min(1, 2 * tail);
  return { test: 'mcnemar-exact', n: base.length, onlyBase: b, onlyOther: c, difference: (c - b) / Math.max(1, base.length), p, withinNoise: p >= 0.05 };
}

/** Per-document scores as a string of 0s and 1s (what the paired tests compare). */
export function bits(xs: readonly (number | boolean)[]): string {
  return xs.map((x) => (x ? '1' : '0')).join('');
}

/** The paper's MMLU as a metrics-map entry (acc over questions, lm-eval's stderr) and its per-question scores. */
export function mmluPointMetrics(records: readonly { correct: boolean }[]): { metrics: Record<string, MetricValue>; documents: Record<string, string> } {
  const correct = records.map((r) => (r.correct ? 1 : 0));
  return { metrics: { acc: metricOf(correct) }, documents: { acc: bits(correct) } };
}
