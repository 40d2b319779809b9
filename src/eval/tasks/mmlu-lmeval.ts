/**
 * lm-eval's own `mmlu` task (0.4, "default" variant), so mka's numbers can sit beside the ones people
 * know (66.6 for Llama-3-8B): per subject a description "The following are multiple choice questions
 * (with answers) about <subject words>.\n\n", the first k dev questions as shots (first_n sampler), each
 * prompt "<question stripped>\nA. ...\nD. ...\nAnswer:", continuations " A" to " D" scored by
 * loglikelihood, acc; the subjects grouped into stem, other, social sciences, humanities and all of
 * them into mmlu, weighted by size. 5 shots by default (lm-eval's CLI default is 0; the MMLU papers' is 5).
 * It reads the same data as the paper's `mmlu`: the Hendrycks CSV layout or cais/mmlu.
 */
import { categoryOf, type MmluCategory } from '../mmlu/categories.ts';
import { ANSWER_LETTERS, loadMmlu, type MmluQuestion } from '../mmlu/data.ts';
import { pyStrip } from '../../runtime/python.ts';
import type { Doc, Subtask, TaskDefinition } from './task.ts';

const GROUP: Record<MmluCategory, string> = { STEM: 'stem', humanities: 'humanities', 'social sciences': 'social_sciences', other: 'other' };

/** A question as cais/mmlu holds it (question, subject, choices, answer index). */
function caisDoc(q: MmluQuestion): Doc {
  return { question: q.question, subject: q.subject, choices: [...q.choices], answer: ANSWER_LETTERS.indexOf(q.answer) };
}

export const mmluLmeval: TaskDefinition = {
  name: 'mmlu_lmeval',
  resultName: 'mmlu',
  version: 2,
  dataset: { path: 'cais/mmlu', name: null, split: 'test', fewshotSplit: 'dev', testSplit: 'test' },
  fields: { question: 'string', choices: 'string[]', answer: 'integer' },
  docToText: (doc) => {
    const c = doc.choices as string[];
    return `${pyStrip(doc.question as string)}\nA. ${c[0]}\nB. ${c[1]}\nC. ${c[2]}\nD. ${c[3]}\nAnswer:`;
  },
  docToChoices: () => ['A', 'B', 'C', 'D'],
  docToTarget: (doc) => Number(doc.answer),
  description: (doc) => `The following are multiple choice questions (with answers) about ${String(doc.subject).replaceAll('_', ' ')}.\n\n`,
  defaultShots: 5,
  sampler: 'first_n',
  metrics: ['acc'],
  headline: 'acc',
  config: {
    dataset_path: 'cais/mmlu', test_split: 'test', fewshot_split: 'dev', fewshot_config: { sampler: 'first_n' }, output_type: 'multiple_choice',
    doc_to_text: '{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\nD. {{choices[3]}}\nAnswer:',
    doc_to_choice: ['A', 'B', 'C', 'D'], doc_to_target: 'answer', metric_list: [{ metric: 'acc', aggregation: 'mean', higher_is_better: true }],
  },
  /** Each subject a subtask mmlu_<subject>, grouped by category as lm-eval's mmlu groups are. */
  load: async (path, opts) => {
    const data = loadMmlu(path, { subjects: opts.subjects });
    const subtasks: Subtask[] = data.subjects.map((s) => ({
      name: `mmlu_${s}`, alias: `  - ${s}`, docs: data.test.get(s)!.map(caisDoc), fewshotDocs: data.dev.get(s)!.map(caisDoc),
      originalSize: data.test.get(s)!.length, source: `${path}/test/${s}_test.csv`,
      config: { task: `mmlu_${s}`, task_alias: s, tag: `mmlu_${GROUP[categoryOf(s)]}_tasks`, dataset_name: s, description: mmluLmeval.description!({ subject: s }) },
    }));
    const groups = (['humanities', 'other', 'social_sciences', 'stem'] as const) // lm-eval lists groups alphabetically
      .map((g) => ({ name: `mmlu_${g}`, alias: ` - ${g.replace('_', ' ')}`, members: subtasks.filter((s) => GROUP[categoryOf(s.name.slice('mmlu_'.length))] === g).map((s) => s.name) }))
      .filter((g) => g.members.length);
    return { subtasks, groups };
  },
};
