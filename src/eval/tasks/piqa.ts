/**
 * PIQA (Bisk et al., 2020) as lm-eval's `piqa` task: the validation split of baber/piqa, prompt
 * "Question: <goal>\nAnswer:", the two solutions as continuations, acc and acc_norm.
 */
import type { TaskDefinition } from './task.ts';

export const piqa: TaskDefinition = {
  name: 'piqa',
  version: 1,
  dataset: { path: 'baber/piqa', name: null, split: 'validation', fewshotSplit: 'train', testSplit: null },
  fields: { goal: 'string', sol1: 'string', sol2: 'string', label: 'integer' },
  docToText: (doc) => `Question: ${doc.goal}\nAnswer:`,
  docToChoices: (doc) => [doc.sol1 as string, doc.sol2 as string],
  docToTarget: (doc) => Number(doc.label),
  defaultShots: 0,
  sampler: 'default',
  metrics: ['acc', 'acc_norm'],
  headline: 'acc_norm',
  config: {
    task: 'piqa', dataset_path: 'baber/piqa', training_split: 'train', validation_split: 'validation',
    doc_to_text: 'Question: {{goal}}\nAnswer:', doc_to_target: 'label', doc_to_choice: '{{[sol1, sol2]}}', output_type: 'multiple_choice',
    should_decontaminate: true, doc_to_decontamination_query: 'goal',
    metric_list: [{ metric: 'acc', aggregation: 'mean', higher_is_better: true }, { metric: 'acc_norm', aggregation: 'mean', higher_is_better: true }],
  },
};
