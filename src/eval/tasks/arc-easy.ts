/**
 * ARC-Easy (Clark et al., 2018) as lm-eval's `arc_easy` task: the test split of allenai/ai2_arc
 * (configuration ARC-Easy), prompt "Question: <question>\nAnswer:", the answer texts as continuations,
 * the target the position of answerKey among the choice labels (A-E or 1-5), acc and acc_norm.
 */
import { UserError } from '../../runtime/errors.ts';
import { showJson, showJsonList } from '../../io/read.ts';
import type { Doc, TaskDefinition } from './task.ts';

type ArcChoices = { text: string[]; label: string[] };

export const arcEasy: TaskDefinition = {
  name: 'arc_easy',
  version: 1,
  dataset: { path: 'allenai/ai2_arc', name: 'ARC-Easy', split: 'test', fewshotSplit: 'train', testSplit: 'test' },
  fields: { question: 'string', choices: 'choices', answerKey: 'string' },
  docToText: (doc) => `Question: ${doc.question}\nAnswer:`,
  docToChoices: (doc) => (doc.choices as ArcChoices).text,
  docToTarget: (doc: Doc) => {
    const i = (doc.choices as ArcChoices).label.indexOf(doc.answerKey as string);
    if (i < 0) throw new UserError(`answerKey ${showJson(doc.answerKey)} is not one of the choice labels ${showJsonList((doc.choices as ArcChoices).label)}`);
    return i;
  },
  defaultShots: 0,
  sampler: 'default',
  metrics: ['acc', 'acc_norm'],
  headline: 'acc_norm',
  config: {
    task: 'arc_easy', tag: ['ai2_arc'], dataset_path: 'allenai/ai2_arc', dataset_name: 'ARC-Easy', training_split: 'train', validation_split: 'validation', test_split: 'test',
    doc_to_text: 'Question: {{question}}\nAnswer:', doc_to_target: '{{choices.label.index(answerKey)}}', doc_to_choice: '{{choices.text}}', output_type: 'multiple_choice',
    should_decontaminate: true, doc_to_decontamination_query: 'Question: {{question}}\nAnswer:',
    metric_list: [{ metric: 'acc', aggregation: 'mean', higher_is_better: true }, { metric: 'acc_norm', aggregation: 'mean', higher_is_better: true }],
  },
};
