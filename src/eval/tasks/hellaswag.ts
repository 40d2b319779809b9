/**
 * HellaSwag (Zellers et al., 2019) as lm-eval's `hellaswag` task: the validation split of Rowan/hellaswag,
 * the prompt "<activity_label>: <ctx_a> <Ctx_b>" cleaned of WikiHow's bracket artifacts, the four endings
 * cleaned the same way as continuations, acc and acc_norm.
 */
import { pyCapitalize, pyStrip } from '../../runtime/python.ts';
import type { Doc, TaskDefinition } from './task.ts';

/** lm-eval's hellaswag preprocess: strip, " [title]" → ". ", drop "[...]", then one pass of "  " → " ". */
export function hellaswagClean(text: string): string {
  return pyStrip(text).replaceAll(' [title]', '. ').replace(/\[[^\n]*?\]/g, '').replaceAll('  ', ' ');
}

export const hellaswag: TaskDefinition = {
  name: 'hellaswag',
  version: 1,
  dataset: { path: 'Rowan/hellaswag', name: null, split: 'validation', fewshotSplit: 'train', testSplit: null },
  fields: { activity_label: 'string', ctx_a: 'string', ctx_b: 'string', endings: 'string[]', label: 'integer' },
  processDoc: (doc: Doc): Doc => ({
    ...doc,
    query: hellaswagClean(`${doc.activity_label}: ${doc.ctx_a} ${pyCapitalize(doc.ctx_b as string)}`),
    choices: (doc.endings as string[]).map(hellaswagClean),
    gold: Number(doc.label),
  }),
  docToText: (doc) => doc.query as string,
  docToChoices: (doc) => doc.choices as string[],
  docToTarget: (doc) => Number(doc.label),
  defaultShots: 0,
  sampler: 'default',
  metrics: ['acc', 'acc_norm'],
  headline: 'acc_norm',
  config: {
    task: 'hellaswag', tag: ['multiple_choice'], dataset_path: 'Rowan/hellaswag', training_split: 'train', validation_split: 'validation',
    process_docs: 'utils.process_docs', doc_to_text: '{{query}}', doc_to_target: '{{label}}', doc_to_choice: 'choices', output_type: 'multiple_choice',
    metric_list: [{ metric: 'acc', aggregation: 'mean', higher_is_better: true }, { metric: 'acc_norm', aggregation: 'mean', higher_is_better: true }],
  },
};
