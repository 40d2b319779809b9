/**
 * The tasks mka evaluates with lm-eval's scoring, by name. Adding a task: a file beside this one exporting
 * its TaskDefinition (task.ts), listed here. The paper's MMLU protocol (`mmlu`, src/eval/mmlu/) is the
 * one task with its own evaluator; TASK_NAMES lists it first.
 */
import { UserError } from '../../runtime/errors.ts';
import { arcChallenge } from './arc-challenge.ts';
import { arcEasy } from './arc-easy.ts';
import { boolq } from './boolq.ts';
import { hellaswag } from './hellaswag.ts';
import { mmluLmeval } from './mmlu-lmeval.ts';
import { piqa } from './piqa.ts';
import type { TaskDefinition } from './task.ts';
import { winogrande } from './winogrande.ts';

export const LM_EVAL_TASKS: readonly TaskDefinition[] = [hellaswag, arcEasy, arcChallenge, piqa, winogrande, boolq, mmluLmeval];

/** The paper's MMLU (Hendrycks' prompts, arg-max over A-D), evaluated by src/eval/mmlu/. */
export const PAPER_MMLU = 'mmlu';

/** Every task name `--tasks` takes. */
export const TASK_NAMES: readonly string[] = [PAPER_MMLU, ...LM_EVAL_TASKS.map((t) => t.name)];

/** The task of a name; a UserError listing the tasks otherwise. */
export function getTask(name: string): TaskDefinition {
  const t = LM_EVAL_TASKS.find((x) => x.name === name);
  if (!t) throw new UserError(`unknown task "${name}"; tasks: ${TASK_NAMES.join(', ')}`);
  return t;
}

/** Parses a --tasks list (comma-separated, no repeats). */
export function parseTasks(list: string): string[] {
  const names = list.split(',').map((s) => s.trim()).filter(Boolean);
  if (!names.length) throw new UserError('no task named: name at least one, e.g. mmlu,hellaswag');
  for (const n of names) if (!TASK_NAMES.includes(n)) throw new UserError(`unknown task "${n}"; tasks: ${TASK_NAMES.join(', ')}`);
  if (new Set(names).size !== names.length) throw new UserError(`tasks ${list}: a task is named twice`);
  return names;
}
