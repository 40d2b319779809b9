/**
 * An MMLU summary in the shape lm-evaluation-harness (0.4) writes its results JSON, so mka's numbers
 * sit beside lm-eval's in the tools people compare with:
 *   results        {mmlu, mmlu_<category>, mmlu_<subject>: {"acc,none", "acc_stderr,none", alias}}
 *   groups, group_subtasks, configs, versions, n-shot, higher_is_better, n-samples, config, date, ...
 * acc of a subject is its accuracy; its stderr the sample standard error lm-eval computes for a mean
 * (sample standard deviation with n − 1, over √n). Groups weight subjects by their size (lm-eval's
 * mmlu: weight_by_size), so the mmlu acc is the accuracy over all questions, and their stderr is
 * lm-eval's pooled_sample_stderr of the subjects'. The prompts and scoring are mka's (Hendrycks'
 * prompts, arg-max over the answer-letter tokens), which is what `config.mka` says, with whether the
 * prompts began with BOS (`config.mka.bos`, also `add_bos_token` in model_args as lm-eval spells it).
 */
import { categoryOf, type MmluCategory } from './categories.ts';
import type { MmluSummary } from './summary.ts';
import { accStderr, pooledStderr } from '../tasks/metrics.ts';

const GROUP_OF: Record<MmluCategory, string> = { STEM: 'mmlu_stem', humanities: 'mmlu_humanities', 'social sciences': 'mmlu_social_sciences', other: 'mmlu_other' };
const GROUP_ORDER = ['mmlu_humanities', 'mmlu_other', 'mmlu_social_sciences', 'mmlu_stem']; // lm-eval lists groups alphabetically

export interface LmEvalRunInfo {
  /** Test questions per subject in the data (n-samples "original"); defaults to those evaluated. */
  testQuestions?: Record<string, number>;
  /** Per subject, the fewest dev examples any of its prompts kept (n-shot; default ntrain). */
  shotsKept?: Record<string, number>;
  /** How often fitting acted (summary.fitting), recorded under config.mka. */
  fitting?: { promptsWithDroppedExamples: number; droppedExamples: number; truncatedQuestions: number };
  batchSize?: number;
  seconds?: number;
}

/** The lm-eval-style results object of an MMLU summary. */
export function lmEvalResults(summary: MmluSummary, run: LmEvalRunInfo = {}): Record<string, unknown> {
  const bos = summary.bos !== false; // summaries written before the option existed scored with BOS
  const subjects = summary.subjects.map((s) => ({
    task: `mmlu_${s.name}`, subject: s.name, group: GROUP_OF[categoryOf(s.name)], n: s.questions, acc: s.accuracy, stderr: accStderr(s.correct, s.questions),
  }));
  const metric = (acc: number, stderr: number, alias: string) => ({ alias, 'acc,none': acc, 'acc_stderr,none': stderr });
  const groupEntry = (members: typeof subjects, alias: string) => {
    const n = members.reduce((a, m) => a + m.n, 0);
    const acc = members.reduce((a, m) => a + m.acc * m.n, 0) / n;
    return metric(acc, pooledStderr(members.map((m) => m.stderr), members.map((m) => m.n)), alias);
  };
  const groups = GROUP_ORDER.filter((g) => subjects.some((s) => s.group === g));
  const results: Record<string, unknown> = { mmlu: groupEntry(subjects, 'mmlu') };
  const groupResults: Record<string, unknown> = { mmlu: results.mmlu };
  const groupSubtasks: Record<string, string[]> = {};
  for (const g of groups) {
    const members = subjects.filter((s) => s.group === g);
    results[g] = groupResults[g] = groupEntry(members, ` - ${g.slice('mmlu_'.length).replace('_', ' ')}`);
    for (const m of members) results[m.task] = metric(m.acc, m.stderr, `  - ${m.subject}`);
    groupSubtasks[g] = members.map((m) => m.task);
  }
  groupSubtasks.mmlu = groups;
  const perTask = <T>(f: (s: (typeof subjects)[number]) => T) => Object.fromEntries(subjects.map((s) => [s.task, f(s)]));
  return {
    results,
    groups: groupResults,
    group_subtasks: groupSubtasks,
    configs: perTask((s) => ({
      task: s.task, dataset_path: summary.data, dataset_name: s.subject, test_split: 'test', fewshot_split: 'dev',
      num_fewshot: summary.ntrain, output_type: 'multiple_choice', metric_list: [{ metric: 'acc', aggregation: 'mean', higher_is_better: true }],
    })),
    versions: { mmlu: 2, ...Object.fromEntries(groups.map((g) => [g, 2])), ...perTask(() => 1) },
    // the examples every prompt of the subject holds, not the number asked for when prompts had to drop some
    'n-shot': perTask((s) => run.shotsKept?.[s.subject] ?? summary.ntrain),
    higher_is_better: { mmlu: { acc: true }, ...Object.fromEntries(groups.map((g) => [g, { acc: true }])), ...perTask(() => ({ acc: true })) },
    'n-samples': perTask((s) => ({ original: run.testQuestions?.[s.subject] ?? s.n, effective: s.n })),
    config: {
      model: 'mka', model_args: `pretrained=${summary.model ?? '(in memory)'},add_bos_token=${bos ? 'True' : 'False'}`, batch_size: run.batchSize ?? null, limit: summary.limit,
      mka: {
        prompt: 'Hendrycks et al.\'s MMLU prompt, character for character (header, ntrain dev examples, "Answer:")',
        bos, // true: BOS as the model's tokenizer adds it (Hendrycks); false: never (add_bos_token=False, the paper's released code)
        scoring: `arg-max over the logits of the answer tokens A-D (${summary.answerTokens})`,
        reference_model: summary.reference,
        ntrain_requested: summary.ntrain,
        fitting: run.fitting ?? summary.fitting,
      },
    },
    date: Date.now() / 1000,
    total_evaluation_time_seconds: run.seconds !== undefined ? String(run.seconds) : null,
  };
}
