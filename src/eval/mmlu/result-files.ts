/**
 * The schemas of the MMLU result files mka reads back (src/io/schema.ts): a subject's results
 * (subjects/<subject>.json, read when a run resumes) and the summary a sweep point stores. A file that
 * does not fit (written by an older mka, edited, or cut short) is refused naming the field and the fix.
 */
import { array, boolean, integer, literal, nullable, number, object, optional, string } from '../../io/schema.ts';

const LETTER = literal('A', 'B', 'C', 'D');

/** One question's record (QuestionRecord). */
export const QUESTION_RECORD = object({
  subject: string, index: integer, answer: LETTER, prediction: LETTER, correct: boolean, answerLogits: array(number),
  ntrainKept: integer, truncated: boolean, cached: boolean, nll: number, nllTokens: integer,
  referencePrediction: optional(LETTER), agreement: optional(boolean), kl: optional(number),
});

/** subjects/<subject>.json: the subject, the run key and data fingerprint it was computed under, its questions in file order. */
export const SUBJECT_RESULT = object({ subject: string, runKey: string, data: string, questions: array(QUESTION_RECORD) });

/** One row of a summary (overall, a category, a subcategory or a subject). */
const SCORE_ROW = object({
  name: string, subjects: integer, questions: integer, correct: integer, accuracy: number, perplexity: nullable(number),
  agreement: nullable(number), kl: nullable(number),
});

/** An MMLU summary (MmluSummary), as a sweep point stores it. */
export const MMLU_SUMMARY = object({
  subjects: array(SCORE_ROW), subcategories: array(SCORE_ROW), categories: array(SCORE_ROW),
  overall: object({ accuracy: number, macroAccuracy: number }),
});
