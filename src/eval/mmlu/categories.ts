/**
 * The standard MMLU grouping (Hendrycks et al., categories.py of github.com/hendrycks/test):
 * each of the 57 subjects belongs to one of 17 subcategories, and each subcategory to one of 4 categories.
 */

/** The 4 categories, in the order of categories.py. */
export const MMLU_CATEGORIES = ['STEM', 'humanities', 'social sciences', 'other'] as const;
export type MmluCategory = (typeof MMLU_CATEGORIES)[number];

/** Display names as written in categories.py (only "other" differs from its key). */
export const CATEGORY_LABELS: Readonly<Record<MmluCategory, string>> = {
  STEM: 'STEM',
  humanities: 'humanities',
  'social sciences': 'social sciences',
  other: 'other (business, health, misc.)',
};

/** The 17 subcategories, grouped by category in the order of categories.py. */
export const MMLU_SUBCATEGORIES = [
  'physics', 'chemistry', 'biology', 'computer science', 'math', 'engineering',
  'history', 'philosophy', 'law',
  'politics', 'culture', 'economics', 'geography', 'psychology',
  'other', 'business', 'health',
] as const;
export type MmluSubcategory = (typeof MMLU_SUBCATEGORIES)[number];

/** Category of each subcategory (categories.py `categories`, inverted). */
export const SUBCATEGORY_CATEGORY: Readonly<Record<MmluSubcategory, MmluCategory>> = {
  physics: 'STEM',
  chemistry: 'STEM',
  biology: 'STEM',
  'computer science': 'STEM',
  math: 'STEM',
  engineering: 'STEM',
  history: 'humanities',
  philosophy: 'humanities',
  law: 'humanities',
  politics: 'social sciences',
  culture: 'social sciences',
  economics: 'social sciences',
  geography: 'social sciences',
  psychology: 'social sciences',
  other: 'other',
  business: 'other',
  health: 'other',
};

/** Subcategory of each of the 57 subjects (categories.py `subcategories`; one entry per subject there). */
export const SUBJECT_SUBCATEGORY: Readonly<Record<string, MmluSubcategory>> = {
  abstract_algebra: 'math',
  anatomy: 'health',
  astronomy: 'physics',
  business_ethics: 'business',
  clinical_knowledge: 'health',
  college_biology: 'biology',
  college_chemistry: 'chemistry',
  college_computer_science: 'computer science',
  college_mathematics: 'math',
  college_medicine: 'health',
  college_physics: 'physics',
  computer_security: 'computer science',
  conceptual_physics: 'physics',
  econometrics: 'economics',
  electrical_engineering: 'engineering',
  elementary_mathematics: 'math',
  formal_logic: 'philosophy',
  global_facts: 'other',
  high_school_biology: 'biology',
  high_school_chemistry: 'chemistry',
  high_school_computer_science: 'computer science',
  high_school_european_history: 'history',
  high_school_geography: 'geography',
  high_school_government_and_politics: 'politics',
  high_school_macroeconomics: 'economics',
  high_school_mathematics: 'math',
  high_school_microeconomics: 'economics',
  high_school_physics: 'physics',
  high_school_psychology: 'psychology',
  high_school_statistics: 'math',
  high_school_us_history: 'history',
  high_school_world_history: 'history',
  human_aging: 'health',
  human_sexuality: 'culture',
  international_law: 'law',
  jurisprudence: 'law',
  logical_fallacies: 'philosophy',
  machine_learning: 'computer science',
  management: 'business',
  marketing: 'business',
  medical_genetics: 'health',
  miscellaneous: 'other',
  moral_disputes: 'philosophy',
  moral_scenarios: 'philosophy',
  nutrition: 'health',
  philosophy: 'philosophy',
  prehistory: 'history',
  professional_accounting: 'other',
  professional_law: 'law',
  professional_medicine: 'health',
  professional_psychology: 'psychology',
  public_relations: 'politics',
  security_studies: 'politics',
  sociology: 'culture',
  us_foreign_policy: 'politics',
  virology: 'health',
  world_religions: 'philosophy',
};

/** The 57 subject names, sorted. */
export const MMLU_SUBJECTS: readonly string[] = Object.keys(SUBJECT_SUBCATEGORY).sort();

/**
 * Subcategory of a subject. Subjects outside the standard 57 (a custom benchmark in the same layout,
 * such as mka's demo) count as "other", like Hendrycks' miscellaneous subjects.
 */
export function subcategoryOf(subject: string): MmluSubcategory {
  return Object.hasOwn(SUBJECT_SUBCATEGORY, subject) ? SUBJECT_SUBCATEGORY[subject] : 'other';
}

/** Category (STEM, humanities, social sciences, other) of a subject. */
export function categoryOf(subject: string): MmluCategory {
  return SUBCATEGORY_CATEGORY[subcategoryOf(subject)];
}
