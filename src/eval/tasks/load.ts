/**
 * A task's documents from `--data` (data.ts), checked and processed, as the subtasks evaluate.ts runs:
 * one subtask holding the evaluated split, with the few-shot split beside it when shots are asked for.
 */
import { statSync } from 'node:fs';
import { UserError } from '../../runtime/errors.ts';
import { checkDocs, readSplit } from './data.ts';
import { openParquetReader, type ParquetReader } from '../../io/parquet.ts';
import type { TaskInput } from './evaluate.ts';
import { subtaskDocRequests } from './requests.ts';
import type { TaskDefinition } from './task.ts';
import { checkOption, flag } from '../../runtime/options.ts';
import { NUM_FEWSHOT, TASK_LIMIT, TASK_SUBJECTS } from './options.ts';

export interface LoadTaskOptions {
  /** Few-shot examples per prompt (default the task's). */
  shots?: number;
  limit?: number;
  /** MMLU subjects (mmlu_lmeval). */
  subjects?: string[];
  /** The reader of parquet files, shared by the loads of one run (default: one for this load). */
  parquet?: ParquetReader;
}

/**
 * Loads a task's data from a file or directory (a hub id is resolved to its cached snapshot before this),
 * and builds the requests of every document the run evaluates, so that a value the task cannot use is
 * refused here, before any model is loaded, naming the file and the document.
 */
export async function loadTask(task: TaskDefinition, path: string, opts: LoadTaskOptions = {}): Promise<TaskInput> {
  const input = await readTask(task, path, opts);
  for (const sub of input.subtasks) {
    for (let i = 0; i < Math.min(sub.docs.length, input.limit ?? Infinity); i++) subtaskDocRequests(task, sub, i);
  }
  return input;
}

async function readTask(task: TaskDefinition, path: string, opts: LoadTaskOptions): Promise<TaskInput> {
  const shots = opts.shots ?? task.defaultShots;
  checkOption(NUM_FEWSHOT, shots);
  checkOption(TASK_LIMIT, opts.limit);
  const limit = opts.limit ?? null;
  if (task.load) {
    const { subtasks, groups } = await task.load(path, { subjects: opts.subjects, shots });
    for (const s of subtasks) checkDocs(task, s.docs, s.source);
    return { task, subtasks, shots, limit, groups };
  }
  if (opts.subjects) throw new UserError(`${flag(TASK_SUBJECTS)}: ${task.name} has no subjects (only mmlu and mmlu_lmeval do)`);
  const reader = opts.parquet ?? openParquetReader();
  try {
    return await loadSplits(task, path, shots, limit, reader);
  } finally {
    if (!opts.parquet) await reader.close();
  }
}

/** The evaluated split, and the few-shot split when shots are asked for, of a task without its own loader. */
async function loadSplits(task: TaskDefinition, path: string, shots: number, limit: number | null, reader: ParquetReader): Promise<TaskInput> {
  const { docs, files } = await readSplit(path, task.dataset.split, task.dataset.name, reader);
  const source = files.length === 1 ? files[0] : path;
  checkDocs(task, docs, source);
  let fewshotDocs: typeof docs = [];
  let fewshotSource: string | undefined;
  if (shots > 0) {
    const split = task.dataset.fewshotSplit;
    if (!split) throw new UserError(`${flag(NUM_FEWSHOT)} ${shots}: ${task.name} has no split to draw few-shot examples from`);
    if (!statSync(path).isDirectory()) throw new UserError(`${path}: ${flag(NUM_FEWSHOT)} ${shots} draws examples from the ${split} split, which a single file does not hold; give the dataset's directory or hub id`);
    const fs = await readSplit(path, split, task.dataset.name, reader);
    fewshotSource = fs.files.length === 1 ? fs.files[0] : path;
    checkDocs(task, fs.docs, fewshotSource);
    fewshotDocs = fs.docs.map((d) => task.processDoc?.(d) ?? d);
  }
  return {
    task, shots, limit,
    subtasks: [{ name: task.name, alias: task.name, docs: docs.map((d) => task.processDoc?.(d) ?? d), fewshotDocs, originalSize: docs.length, source, ...(fewshotSource ? { fewshotSource } : {}) }],
  };
}
