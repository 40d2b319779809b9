/**
 * MMLU score aggregation, as Hendrycks' evaluate.py reports it: accuracy per subject, per subcategory and
 * per category (each the mean over all questions of the group), and overall both as the mean over
 * questions (micro) and the mean of the per-subject accuracies (macro).
 */
import { MMLU_CATEGORIES, MMLU_SUBCATEGORIES, categoryOf, subcategoryOf } from './categories.ts';

/** The outcome of one test question. */
export interface QuestionResult {
  subject: string;
  correct: boolean;
}

/** Accuracy of one group (subject, subcategory or category). */
export interface GroupScore {
  name: string;
  correct: number;
  total: number;
  /** correct / total. */
  accuracy: number;
  /** Number of subjects in the group. */
  subjects: number;
}

export interface MmluScores {
  /** Sorted by subject name. */
  subjects: GroupScore[];
  /** In MMLU_SUBCATEGORIES order; only groups with questions. */
  subcategories: GroupScore[];
  /** In MMLU_CATEGORIES order; only groups with questions. */
  categories: GroupScore[];
  overall: {
    correct: number;
    total: number;
    subjects: number;
    /** Mean over questions. */
    micro: number;
    /** Mean over subjects of the subject accuracies. */
    macro: number;
  };
}

function group(name: string, members: readonly GroupScore[]): GroupScore {
  const correct = members.reduce((s, m) => s + m.correct, 0);
  const total = members.reduce((s, m) => s + m.total, 0);
  return { name, correct, total, accuracy: correct / total, subjects: members.length };
}

/** Aggregates per-question results (any order) into subject, subcategory, category and overall accuracy. */
export function aggregateScores(results: Iterable<QuestionResult>): MmluScores {
  const counts = new Map<string, { correct: number; total: number }>();
  for (const r of results) {
    const c = counts.get(r.subject) ?? { correct: 0, total: 0 };
    c.total++;
    if (r.correct) c.correct++;
    counts.set(r.subject, c);
  }
  if (counts.size === 0) throw new Error('aggregateScores: no results to aggregate');
  const subjects = [...counts.keys()].sort().map((name) => {
    const { correct, total } = counts.get(name)!;
    return { name, correct, total, accuracy: correct / total, subjects: 1 };
  });
  const subcategories = MMLU_SUBCATEGORIES
    .map((name) => ({ name, members: subjects.filter((s) => subcategoryOf(s.name) === name) }))
    .filter(({ members }) => members.length > 0)
    .map(({ name, members }) => group(name, members));
  const categories = MMLU_CATEGORIES
    .map((name) => ({ name, members: subjects.filter((s) => categoryOf(s.name) === name) }))
    .filter(({ members }) => members.length > 0)
    .map(({ name, members }) => group(name, members));
  const all = group('overall', subjects);
  return {
    subjects,
    subcategories,
    categories,
    overall: {
      correct: all.correct,
      total: all.total,
      subjects: subjects.length,
      micro: all.accuracy,
      macro: subjects.reduce((s, x) => s + x.accuracy, 0) / subjects.length,
    },
  };
}
