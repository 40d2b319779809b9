/**
 * MMLU prompts exactly as Hendrycks' evaluate.py (and the MKA paper's pipeline.py) build them:
 *
 *   "The following are multiple choice questions (with answers) about " + format_subject(subject) + ".\n\n"
 *   + k dev examples, each "<question>\nA. <a>\nB. <b>\nC. <c>\nD. <d>\nAnswer: <X>\n\n"
 *   + the test question "<question>\nA. <a>\nB. <b>\nC. <c>\nD. <d>\nAnswer:"
 *
 * format_subject puts a space before every underscore-separated word, so the header has two spaces before
 * the subject ("about  abstract algebra."). The dev examples are the first k rows of the dev file.
 */
import { UserError } from '../../runtime/errors.ts';
import { ANSWER_LETTERS, type MmluData, type MmluQuestion } from './data.ts';
import { checkOption, flag } from '../../runtime/options.ts';
import { NTRAIN } from './options.ts';

/** " abstract algebra" for "abstract_algebra" (a space before every word, as format_subject). */
export function formatSubject(subject: string): string {
  return subject.split('_').map((w) => ` ${w}`).join('');
}

/** The question, its four lettered choices and "Answer:" (+ " X\n\n" when includeAnswer), as format_example. */
export function formatExample(q: MmluQuestion, includeAnswer = true): string {
  let text = q.question;
  q.choices.forEach((c, j) => { text += `\n${ANSWER_LETTERS[j]}. ${c}`; });
  text += '\nAnswer:';
  if (includeAnswer) text += ` ${q.answer}\n\n`;
  return text;
}

/** The instruction line that opens every prompt of a subject. */
export function promptHeader(subject: string): string {
  return `The following are multiple choice questions (with answers) about ${formatSubject(subject)}.\n\n`;
}

/**
 * The header followed by the first k dev examples with their answers, as gen_prompt
 * (k = -1, the default, takes them all).
 */
export function genPrompt(dev: readonly MmluQuestion[], subject: string, k = -1): string {
  const n = k === -1 ? dev.length : k;
  if (!Number.isInteger(n) || n < 0 || n > dev.length) {
    throw new UserError(`${flag(NTRAIN)} ${k}: subject ${subject} has ${dev.length} dev examples; use ${flag(NTRAIN)} 0 to ${dev.length}`);
  }
  let text = promptHeader(subject);
  for (let i = 0; i < n; i++) text += formatExample(dev[i], true);
  return text;
}

/**
 * A prompt split in two: `prefix` (header + k dev examples, the same for every question of the subject)
 * and `question` (the test question ending in "Answer:"); prefix + question is the full prompt.
 */
export function promptParts(dev: readonly MmluQuestion[], q: MmluQuestion, k: number): { prefix: string; question: string } {
  return { prefix: genPrompt(dev, q.subject, k), question: formatExample(q, false) };
}

/** Checks that every loaded subject has at least `ntrain` dev examples (a UserError naming the file otherwise). */
export function checkNtrain(data: MmluData, ntrain: number): void {
  checkOption(NTRAIN, ntrain);
  for (const subject of data.subjects) {
    const n = data.dev.get(subject)?.length ?? 0;
    if (ntrain > n) {
      throw new UserError(`${data.dir}/dev/${subject}_dev.csv: ${flag(NTRAIN)} ${ntrain} asks for more dev examples than the ${n} `
        + `this file has; use ${flag(NTRAIN)} ${n} or less`);
    }
  }
}

/** The full prompt for test question q with ntrain dev examples of its subject (gen_prompt + format_example). */
export function buildPrompt(data: MmluData, q: MmluQuestion, ntrain: number): string {
  const dev = data.dev.get(q.subject);
  if (dev === undefined) throw new UserError(`${data.dir}/dev/${q.subject}_dev.csv: subject ${q.subject} was not loaded`);
  if (!Number.isInteger(ntrain) || ntrain < 0 || ntrain > dev.length) checkNtrain({ ...data, subjects: [q.subject] }, ntrain);
  const { prefix, question } = promptParts(dev, q, ntrain);
  return prefix + question;
}

/** What fitPrompt chose for one question. */
export interface FitResult {
  /** The prompt with ntrainKept examples (when truncatedQuestion, still longer than maxTokens). */
  prompt: string;
  prefix: string;
  question: string;
  ntrainKept: number;
  /** ntrain - ntrainKept. */
  droppedExamples: number;
  /** Even the 0-shot prompt is longer than maxTokens: the caller must keep its last maxTokens tokens. */
  truncatedQuestion: boolean;
}

/**
 * Fits a prompt into maxTokens as Hendrycks' evaluation does: starting from ntrain dev examples, drop
 * examples from the end (k -= 1, rebuild) until countTokens(prompt) <= maxTokens. If the 0-shot prompt
 * still does not fit, return it with truncatedQuestion set; slicing to the last tokens is the caller's job.
 * countTokens must count what the model will see (include BOS if the caller adds one).
 */
export function fitPrompt(
  q: MmluQuestion,
  devExamples: readonly MmluQuestion[],
  ntrain: number,
  countTokens: (text: string) => number,
  maxTokens: number,
): FitResult {
  checkOption(NTRAIN, ntrain);
  const question = formatExample(q, false);
  for (let k = ntrain; ; k--) {
    const prefix = genPrompt(devExamples, q.subject, k);
    const prompt = prefix + question;
    const fits = countTokens(prompt) <= maxTokens;
    if (fits || k === 0) {
      return { prompt, prefix, question, ntrainKept: k, droppedExamples: ntrain - k, truncatedQuestion: !fits };
    }
  }
}

/** How often fitting had to act: prompts that lost dev examples, examples lost in all, questions truncated. */
export interface FitSummary {
  prompts: number;
  promptsWithDroppedExamples: number;
  droppedExamples: number;
  truncatedQuestions: number;
}

/** Counts what fitPrompt did over a set of prompts (for the evaluation report). */
export function summarizeFits(fits: Iterable<Pick<FitResult, 'droppedExamples' | 'truncatedQuestion'>>): FitSummary {
  const s: FitSummary = { prompts: 0, promptsWithDroppedExamples: 0, droppedExamples: 0, truncatedQuestions: 0 };
  for (const f of fits) {
    s.prompts++;
    if (f.droppedExamples > 0) s.promptsWithDroppedExamples++;
    s.droppedExamples += f.droppedExamples;
    if (f.truncatedQuestion) s.truncatedQuestions++;
  }
  return s;
}
