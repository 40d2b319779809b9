/**
 * BoolQ (Clark et al., 2019) as lm-eval's `boolq` task (SuperGLUE): the validation split of
 * aps/super_glue, configuration boolq, prompt "<passage>\nQuestion: <question>?\nAnswer:", continuations
 * " no" and " yes", acc only.
 */
import type { TaskDefinition } from './task.ts';

export const boolq: TaskDefinition = {
  name: 'boolq',
  version: 2,
  dataset: { path: 'aps/super_glue', name: 'boolq', split: 'validation', fewshotSplit: 'train', testSplit: null },
  fields: { passage: 'string', question: 'string', label: 'integer' },
  docToText: (doc) => `${doc.passage}\nQuestion: ${doc.question}?\nAnswer:`,
  docToChoices: () => ['no', 'yes'],
  docToTarget: (doc) => Number(doc.label),
  defaultShots: 0,
  sampler: 'default',
  metrics: ['acc'],
  headline: 'acc',
  config: {
    task: 'boolq', tag: ['super-glue-lm-eval-v1'], dataset_path: 'aps/super_glue', dataset_name: 'boolq', training_split: 'train', validation_split: 'validation',
    doc_to_text: '{{passage}}\nQuestion: {{question}}?\nAnswer:', doc_to_target: 'label', doc_to_choice: ['no', 'yes'], output_type: 'multiple_choice',
    should_decontaminate: true, doc_to_decontamination_query: 'passage', metric_list: [{ metric: 'acc' }],
  },
};
