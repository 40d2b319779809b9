/** What an MMLU evaluation records of each test question (a file of its own: the evaluator and the results writer both use it). */
import type { AnswerLetter } from './data.ts';

/** The outcome of one test question. */
export interface QuestionRecord {
  subject: string;
  /** Row in <subject>_test.csv (0-based). */
  index: number;
  answer: AnswerLetter;
  prediction: AnswerLetter;
  correct: boolean;
  /** Next-token logits of the answer tokens A, B, C, D at the end of the prompt. */
  answerLogits: number[];
  ntrainKept: number;
  /** The 0-shot prompt was too long and only its last tokens were fed. */
  truncated: boolean;
  /** Whether the question ran on a cached prefix. */
  cached: boolean;
  /** Summed negative log-likelihood (nats) of the question part's nllTokens tokens. */
  nll: number;
  nllTokens: number;
  /** With a reference model: its prediction, whether it agrees, KL(reference || model) over A–D. */
  referencePrediction?: AnswerLetter;
  agreement?: boolean;
  kl?: number;
}
