/**
 * A benchmark task as lm-evaluation-harness declares one in its YAML: where its documents come from,
 * how a document becomes a prompt (`docToText`), its choices and its target, how few-shot examples are
 * drawn, and which metrics it reports. One file per task under src/eval/tasks/, listed in registry.ts;
 * the prompts, requests and metrics are built from these fields the way lm-eval builds them (requests.ts,
 * metrics.ts), so a task file holds only what its YAML holds.
 */

/** A document as the dataset gives it (after the task's processDoc). */
export type Doc = Record<string, unknown>;

/** The metrics a multiple-choice task can report (lm-eval's names). */
export type ChoiceMetric = 'acc' | 'acc_norm';

/** Where lm-eval reads a task's documents: a hub dataset, one of its configurations, and the splits. */
export interface TaskDataset {
  /** Hub dataset id (lm-eval's dataset_path), the default for `--data`. */
  path: string;
  /** Configuration (lm-eval's dataset_name): a folder of the hub repository; null for none. */
  name: string | null;
  /** The split evaluated (lm-eval's test_split, else validation_split). */
  split: string;
  /** The split few-shot examples come from (fewshot_split, else training_split); null when the task has none. */
  fewshotSplit: string | null;
  /**
   * lm-eval's test_split (null when unset). When it and fewshot_split are both unset, lm-eval hands the
   * evaluated document to the sampler, which draws one example more and drops the document if drawn.
   */
  testSplit: string | null;
}

/** A column a document needs, and its type; checked when the data is loaded. */
export type FieldType = 'string' | 'integer' | 'string[]' | 'choices';

/** How few-shot examples are drawn: lm-eval's first_n sampler (the first k of the few-shot split) or its seeded random one. */
export type FewshotSampler = 'first_n' | 'default';

export interface TaskDefinition {
  /** Registry name (lm-eval's task name). */
  name: string;
  /** Name in lm-eval's results when it differs from the registry's (mmlu_lmeval is lm-eval's `mmlu`). */
  resultName?: string;
  /** lm-eval's metadata.version, reported in the results' `versions`. */
  version: number;
  dataset: TaskDataset;
  /** The columns every document needs. */
  fields: Record<string, FieldType>;
  /** lm-eval's process_docs: returns the document with derived fields added. */
  processDoc?: (doc: Doc) => Doc;
  /**
   * The prompt of a document. For a multiple-input task (winogrande) the choices are the contexts and
   * this gives the index of the gold one instead.
   */
  docToText: (doc: Doc) => string | number;
  /** The choices: continuations, or for a multiple-input task the contexts. */
  docToChoices: (doc: Doc) => string[];
  /** The target: an index into the choices, a choice's text, or for a multiple-input task the continuation. */
  docToTarget: (doc: Doc) => number | string;
  /** Whether docToChoices gives contexts (lm-eval's multiple_input, detected there from an int doc_to_text). */
  multipleInput?: boolean;
  /** Text before the few-shot examples (lm-eval's description), possibly per document. */
  description?: (doc: Doc) => string;
  /** Between the prompt and its answer (target_delimiter) and after each few-shot example (fewshot_delimiter). */
  targetDelimiter?: string;
  fewshotDelimiter?: string;
  /** Few-shot examples by default (0 for every task the pruning papers report zero-shot). */
  defaultShots: number;
  sampler: FewshotSampler;
  metrics: ChoiceMetric[];
  /** The metric a table reports for this task (the pruning papers': acc_norm where lm-eval has it, else acc). */
  headline: ChoiceMetric;
  /** lm-eval's YAML fields as its results' `configs` show them (doc_to_text templates and the like). */
  config: Record<string, unknown>;
  /** A task whose data is not one split of one dataset (a group such as MMLU's subjects) loads itself. */
  load?: (path: string, opts: { subjects?: string[]; shots: number }) => Promise<{ subtasks: Subtask[]; groups: TaskGroup[] }>;
}

/** A group entry of the results (MMLU's categories): its members are subtask names. */
export interface TaskGroup {
  name: string;
  alias: string;
  members: string[];
}

/** A task's evaluation unit: the whole task, or one subtask of a group (an MMLU subject). */
export interface Subtask {
  /** Name in results (the task's, or mmlu_<subject>). */
  name: string;
  /** Alias lm-eval prints ("  - abstract_algebra"). */
  alias: string;
  docs: Doc[];
  /** Documents few-shot examples are drawn from (empty without a few-shot split). */
  fewshotDocs: Doc[];
  /** Documents in the split before --limit (n-samples "original"). */
  originalSize: number;
  /** Where the documents came from (a file or directory, or hub id), for messages. */
  source: string;
  /** Where the few-shot documents came from, when not from `source`. */
  fewshotSource?: string;
  /** Fields of its lm-eval config beyond the task's (an MMLU subject's dataset_name, description). */
  config?: Record<string, unknown>;
}
