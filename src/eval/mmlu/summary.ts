/**
 * The shape of an MMLU summary (results.ts computes it; lm-eval.ts converts it; a sweep point stores it),
 * apart from both so that neither imports the other's module for its type.
 */

/** Scores of a subject, subcategory, category or of everything. */
export interface ScoreRow {
  name: string;
  subjects: number;
  questions: number;
  correct: number;
  accuracy: number;
  /** exp of the mean over questions of each question's mean loss (the paper's perplexity). */
  perplexity: number;
  /** Fraction of questions where the model's answer equals the reference model's (null without one). */
  agreement: number | null;
  /** Mean KL(reference || model) of the answer distribution over A–D (null without a reference). */
  kl: number | null;
}

export interface MmluSummary {
  model: string | null;
  reference: string | null;
  data: string;
  ntrain: number;
  limit: number | null;
  answerTokens: string;
  [extra: string]: unknown;
  subjects: (ScoreRow & { subcategory: string; category: string })[];
  subcategories: ScoreRow[];
  categories: ScoreRow[];
  /** accuracy: mean over questions; macroAccuracy: mean of the subject accuracies. */
  overall: ScoreRow & { macroAccuracy: number };
  fitting: { promptsWithDroppedExamples: number; droppedExamples: number; truncatedQuestions: number };
}
