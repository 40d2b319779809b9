/**
 * The tasks a sweep evaluates each point on: the paper's MMLU (`mmlu`, on the sweep's `data`) and any
 * task of the registry (src/eval/tasks/), and what a point keeps of them: its metrics map, the
 * per-document scores the paired tests against the original need (as strings of 0s and 1s), and the
 * average column the pruning papers' tables end with.
 */
import { UserError } from '../runtime/errors.ts';
import { loadTask } from '../eval/tasks/load.ts';
import { openParquetReader } from '../io/parquet.ts';
import { getTask, PAPER_MMLU, TASK_NAMES } from '../eval/tasks/registry.ts';
import { bits, mcnemar, type MetricValue, type MetricsMap, type PairedTest } from '../eval/tasks/metrics.ts';
import type { TaskInput, TaskResult } from '../eval/tasks/evaluate.ts';
import type { SweepSettings } from './types.ts';
import { flag } from '../runtime/options.ts';
import { SWEEP_TASKS, SWEEP_TASK_DATA } from '../eval/tasks/options.ts';

/** The sweep's tasks, checked (default: the paper's MMLU alone). */
export function sweepTasks(opts: Pick<SweepSettings, 'tasks'>): string[] {
  const tasks = opts.tasks ?? [PAPER_MMLU];
  if (!tasks.length) throw new UserError(`${flag(SWEEP_TASKS)}: name at least one task, e.g. mmlu,hellaswag`);
  for (const t of tasks) if (!TASK_NAMES.includes(t)) throw new UserError(`${flag(SWEEP_TASKS)}: unknown task "${t}"; tasks: ${TASK_NAMES.join(', ')}`);
  if (new Set(tasks).size !== tasks.length) throw new UserError(`${flag(SWEEP_TASKS)} ${tasks.join(',')}: a task is named twice`);
  return tasks;
}

/** Whether the sweep is the paper's: MMLU alone (its key, layout and report stay as they were before tasks existed). */
export function mmluOnly(opts: Pick<SweepSettings, 'tasks'>): boolean {
  const t = sweepTasks(opts);
  return t.length === 1 && t[0] === PAPER_MMLU;
}

/** The metric a table shows for a task: the paper's MMLU accuracy, else the task's headline (acc_norm where lm-eval has it). */
export function headlineMetric(task: string): string {
  return task === PAPER_MMLU ? 'acc' : getTask(task).headline;
}

/** Loads the data of every task but the paper's MMLU (checked before any model is loaded). */
export async function loadSweepTasks(opts: SweepSettings): Promise<TaskInput[]> {
  const inputs: TaskInput[] = [];
  const parquet = openParquetReader();
  try {
    for (const name of sweepTasks(opts).filter((t) => t !== PAPER_MMLU)) {
      const task = getTask(name);
      const data = opts.taskData?.[name];
      if (!data) throw new UserError(`${flag(SWEEP_TASKS)} ${name}: no data for it; give ${flag(SWEEP_TASK_DATA)} ${name}=PATH (a file, directory or hub id)`);
      const shots = name === 'mmlu_lmeval' ? opts.numFewshot ?? opts.ntrain : opts.numFewshot;
      inputs.push(await loadTask(task, data, { shots, limit: opts.limit, subjects: name === 'mmlu_lmeval' ? opts.evalSubjects : undefined, parquet }));
    }
  } finally {
    await parquet.close();
  }
  return inputs;
}

/** Per task and metric, each document's score as a string of 0s and 1s, in document order. */
export type DocumentScores = Record<string, Record<string, string>>;

export { mmluPointMetrics } from '../eval/tasks/metrics.ts';

/** The metrics and document scores of finished lm-eval-style tasks. */
export function taskPointMetrics(results: readonly TaskResult[]): { metrics: MetricsMap; documents: DocumentScores } {
  const metrics: MetricsMap = {}, documents: DocumentScores = {};
  for (const r of results) {
    metrics[r.task.name] = r.metrics;
    documents[r.task.name] = Object.fromEntries(r.task.metrics.map((m) => [m, bits(r.subtasks.flatMap((s) => s.records.map((rec) => rec[m])))]));
  }
  return { metrics, documents };
}

/** The average of the tasks' headline metrics, as the pruning papers' "avg" column; stderr √(Σ se²)/k (independent tasks). */
export function averageMetric(metrics: MetricsMap, tasks: readonly string[]): MetricValue | null {
  const vs = tasks.map((t) => metrics[t]?.[headlineMetric(t)]).filter((v): v is MetricValue => v !== undefined);
  if (vs.length !== tasks.length || !vs.length) return null;
  const stderr = vs.some((v) => v.stderr === null) ? null : Math.sqrt(vs.reduce((s, v) => s + v.stderr! ** 2, 0)) / vs.length;
  return { value: vs.reduce((s, v) => s + v.value, 0) / vs.length, stderr, n: vs.reduce((s, v) => s + v.n, 0) };
}

/** Paired tests of a point against the original, per task and metric, on the documents both scored. */
export function pairedTests(original: DocumentScores, point: DocumentScores): Record<string, Record<string, PairedTest>> {
  const out: Record<string, Record<string, PairedTest>> = {};
  for (const [task, byMetric] of Object.entries(point)) {
    for (const [metric, s] of Object.entries(byMetric)) {
      const o = original[task]?.[metric];
      if (o === undefined || o.length !== s.length) continue;
      (out[task] ??= {})[metric] = mcnemar([...o].map(Number), [...s].map(Number));
    }
  }
  return out;
}
