/**
 * WinoGrande (Sakaguchi et al., 2019) as lm-eval's `winogrande` task, scored by partial evaluation: each
 * option fills the blank, giving one context per option (the sentence up to the blank, then the option),
 * and the rest of the sentence after the blank is the one continuation scored after each; acc only.
 * The validation split of allenai/winogrande, configuration winogrande_xl.
 */
import { UserError } from '../../runtime/errors.ts';
import { showJson } from '../../io/read.ts';
import { pyStrip } from '../../runtime/python.ts';
import type { Doc, TaskDefinition } from './task.ts';

function blank(doc: Doc): number {
  const i = (doc.sentence as string).indexOf('_');
  if (i < 0) throw new UserError(`sentence ${showJson(doc.sentence)} has no blank "_"`);
  return i;
}

export const winogrande: TaskDefinition = {
  name: 'winogrande',
  version: 1,
  dataset: { path: 'allenai/winogrande', name: 'winogrande_xl', split: 'validation', fewshotSplit: 'train', testSplit: null },
  fields: { sentence: 'string', option1: 'string', option2: 'string', answer: 'integer' },
  multipleInput: true,
  docToText: (doc) => {
    const a = String(doc.answer);
    if (a !== '1' && a !== '2') throw new UserError(`answer ${showJson(doc.answer)} is not "1" or "2"`);
    return a === '1' ? 0 : 1;
  },
  docToChoices: (doc) => {
    const i = blank(doc);
    return [doc.option1 as string, doc.option2 as string].map((o) => (doc.sentence as string).slice(0, i) + o);
  },
  docToTarget: (doc) => pyStrip((doc.sentence as string).slice(blank(doc) + 1)),
  defaultShots: 0,
  sampler: 'default',
  metrics: ['acc'],
  headline: 'acc',
  config: {
    task: 'winogrande', dataset_path: 'allenai/winogrande', dataset_name: 'winogrande_xl', training_split: 'train', validation_split: 'validation',
    doc_to_text: 'preprocess_winogrande.doc_to_text', doc_to_target: 'preprocess_winogrande.doc_to_target', doc_to_choice: 'preprocess_winogrande.doc_to_choice',
    output_type: 'multiple_choice', should_decontaminate: true, doc_to_decontamination_query: 'sentence',
    metric_list: [{ metric: 'acc', aggregation: 'mean', higher_is_better: true }],
  },
};
