/**
 * `--data org/name` for a task (`mka eval hellaswag --data Rowan/hellaswag`, and every task's default):
 * the parquet files of the task's split (and its few-shot split when shots are asked for) in the task's
 * configuration folder are fetched into the hub cache like a model's files (resumed, verified, offline
 * mode honoured) and the snapshot directory is returned, which the task then reads as a local
 * directory of split files. mmlu_lmeval reads cais/mmlu through the MMLU conversion (mmlu.ts) instead.
 */
import { existsSync } from 'node:fs';
import { selectSplitFiles } from '../eval/tasks/data.ts';
import type { TaskDefinition } from '../eval/tasks/task.ts';
import { resolveMmluData } from './mmlu.ts';
import { HUB_ID, type ResolveOptions } from './model.ts';
import { snapshot } from './snapshot.ts';

/** A local path for a task's `--data`: the path itself when it exists, else the hub dataset's cached snapshot. */
export async function resolveTaskData(arg: string, task: TaskDefinition, shots: number, opts: ResolveOptions = {}): Promise<string> {
  if (existsSync(arg) || !HUB_ID.test(arg)) return arg;
  if (task.load) return resolveMmluData(arg, opts); // mmlu_lmeval: the Hendrycks layout
  const splits = [task.dataset.split, ...(shots > 0 && task.dataset.fewshotSplit ? [task.dataset.fewshotSplit] : [])];
  return snapshot({
    repo: { type: 'dataset', name: arg }, env: opts.env, quiet: opts.quiet, log: opts.log,
    select: async (files) => {
      const paths = files.map((f) => f.path).filter((p) => p.endsWith('.parquet'));
      return [...new Set(splits.flatMap((s) => selectSplitFiles(paths, s, task.dataset.name, `datasets/${arg}`)))].sort();
    },
  });
}
