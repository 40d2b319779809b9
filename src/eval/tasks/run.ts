/**
 * The library side of `mka eval TASK` and `mka eval tasks`: load the tokenizer, each task's data and the
 * model, evaluate (one pass over a streamed model for all the lm-eval-style tasks; the paper's `mmlu`,
 * when named, by its own evaluator into OUT/mmlu/ first), and write the results directory:
 *
 *   lm_eval_results.json   lm-eval's results schema (results.ts)
 *   samples_<task>.jsonl   with logSamples: one line per document, as lm-eval's --log_samples
 *   summary.json           mka's metrics map (task → metric → {value, stderr, n}) and what truncation cost
 *   run.json               timings, backend, options
 *   <task>/                run-key.json and the finished shards (resumable)
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWriteText } from '../../io/atomic.ts';
import { writeMarker } from '../../io/output-dir.ts';
import { checkModelFits } from '../../model/memory-estimate.ts';
import { disposeModel, loadModel } from '../../model/model.ts';
import { loadTokenizer, type Tokenizer } from '../../tokenizer/tokenizer.ts';
import { evaluateTasks, type EvaluateTasksProgress, type TaskInput, type TaskResult } from './evaluate.ts';
import { loadTask } from './load.ts';
import { openParquetReader } from '../../io/parquet.ts';
import type { MetricsMap } from './metrics.ts';
import { getTask, PAPER_MMLU } from './registry.ts';
import { UserError } from '../../runtime/errors.ts';
import { currentProfile } from '../../runtime/profile.ts';
import { mmluPointMetrics } from './metrics.ts';
import { loadMmlu, type MmluData } from '../mmlu/data.ts';
import { evaluateMmlu, mmluWorkload } from '../mmlu/evaluate.ts';
import { flag, keyFields } from '../../runtime/options.ts';
import { TASK_BATCH_SIZE, TASK_SUBJECTS } from './options.ts';
import { ANSWER_TOKENS, MMLU_EVAL_KEY, NTRAIN } from '../mmlu/options.ts';
import { checkNtrain } from '../mmlu/prompt.ts';
import { mmluSamplesText } from '../mmlu/samples.ts';
import { lmEvalJson, sampleOf, samplesFile } from './results.ts';
import { drawShotsFor } from './evaluate.ts';

export interface RunTasksOptions {
  model: string;
  /** Task names and their data (a file, directory or resolved hub snapshot; for the paper's mmlu an MMLU directory). */
  tasks: { name: string; data: string }[];
  limit?: number;
  /** Few-shot examples (default each task's own). */
  shots?: number;
  /** MMLU subjects (mmlu_lmeval). */
  subjects?: string[];
  out: string;
  logSamples?: boolean;
  batchSize?: number;
  /** Every row alone, no prefix cache or batching (the reference path). */
  naive?: boolean;
  /** The model's context in tokens (default max_position_embeddings). */
  maxLength?: number;
  streaming?: boolean;
  fresh?: boolean;
  onProgress?: (p: EvaluateTasksProgress) => void;
  log?: (msg: string) => void;
  signal?: AbortSignal;
  /** The model's tokenizer when the caller holds it loaded (several runs on one model); else loaded from `model`. */
  tokenizer?: Tokenizer;
}

export interface RunTasksResult {
  out: string;
  results: TaskResult[];
  metrics: MetricsMap;
  seconds: number;
  computedDocs: number;
  resumedShards: number;
}

/** The metrics map of finished tasks (a group task by its result name, e.g. mmlu_lmeval as "mmlu_lmeval"). */
export function metricsMap(results: readonly TaskResult[]): MetricsMap {
  return Object.fromEntries(results.map((r) => [r.task.name, r.metrics]));
}

/** A run's tokenizer and data, loaded and checked before any model (so a data error comes first). */
export interface PreparedTasks {
  tokenizer: Tokenizer;
  inputs: TaskInput[];
  /** The paper's MMLU when it is one of the tasks. */
  mmlu: MmluData | null;
}

/** Loads every task's data and the tokenizer (a data error comes before the tokenizer's load), and checks the run fits in memory. */
export async function prepareTasksEval(opts: RunTasksOptions): Promise<PreparedTasks> {
  const inputs: TaskInput[] = [];
  let mmlu: MmluData | null = null;
  const parquet = openParquetReader();
  try {
    for (const t of opts.tasks) {
      if (t.name === PAPER_MMLU) {
        mmlu = loadMmlu(t.data, { subjects: opts.subjects });
        checkNtrain(mmlu, opts.shots ?? NTRAIN.default);
      } else {
        const task = getTask(t.name);
        // --subjects picks MMLU subjects: of the tasks that have them (any other refuses it when alone)
        const subjects = task.load || opts.tasks.length === 1 ? opts.subjects : undefined;
        inputs.push(await loadTask(task, t.data, { shots: opts.shots, limit: opts.limit, subjects, parquet }));
      }
    }
  } finally {
    await parquet.close();
  }
  if (opts.subjects && !mmlu && !inputs.some((i) => i.task.load)) throw new UserError(`${flag(TASK_SUBJECTS)}: none of the tasks (${opts.tasks.map((t) => t.name).join(', ')}) has subjects; only mmlu and mmlu_lmeval do`);
  const tokenizer = opts.tokenizer ?? await loadTokenizer(opts.model);
  // rows of requests on a cached context, as MMLU's questions on their prefix
  checkModelFits(`eval ${opts.tasks.length === 1 ? opts.tasks[0].name : 'tasks'}`, opts.model, { ...mmluWorkload(opts), batch: { option: TASK_BATCH_SIZE, field: 'rows' } });
  return { tokenizer, inputs, mmlu };
}

/** Evaluates the tasks on a model directory and writes the results directory (prepared: from prepareTasksEval). */
export async function runTasksEval(opts: RunTasksOptions, prepared?: PreparedTasks): Promise<RunTasksResult> {
  const startTime = Date.now();
  const log = opts.log ?? (() => {});
  const { tokenizer, inputs, mmlu } = prepared ?? await prepareTasksEval(opts);
  const model = loadModel(opts.model, { streaming: opts.streaming });
  try {
    mkdirSync(opts.out, { recursive: true });
    writeMarker(opts.out, 'task-results');
    // the paper's MMLU (its own evaluator and results directory, OUT/mmlu/), then the others in shared passes
    const paper = mmlu ? await evaluateMmlu({
      model, tokenizer, data: mmlu, ntrain: opts.shots ?? NTRAIN.default, limit: opts.limit, batchSize: opts.batchSize, cached: !opts.naive, out: join(opts.out, PAPER_MMLU),
      fresh: opts.fresh, keyExtra: keyFields(MMLU_EVAL_KEY, { bos: true }), signal: opts.signal,
      onProgress: (p) => opts.onProgress?.({ phase: 'mmlu', label: `mmlu (${p.subjectsDone}/${p.subjectsTotal} subjects)`, docs: p.questions, docsToRun: p.questionsToRun }),
    }) : null;
    if (paper?.summary) {
      const fit = paper.summary.fitting;
      if (fit.promptsWithDroppedExamples || fit.truncatedQuestions) {
        log(`mmlu: ${fit.promptsWithDroppedExamples} of ${paper.summary.overall.questions} prompts lost dev examples to fit the model's context (${fit.droppedExamples} in all)`
          + `${fit.truncatedQuestions ? `; ${fit.truncatedQuestions} questions were cut to their last tokens` : ''}`);
      }
      if (opts.logSamples) {
        for (const subject of paper.summary.subjects.map((x) => x.name)) {
          atomicWriteText(join(opts.out, PAPER_MMLU, `samples_mmlu_${subject}.jsonl`), mmluSamplesText(mmlu!, paper.records.filter((q) => q.subject === subject), ANSWER_TOKENS.default));
        }
      }
    }
    const r = await evaluateTasks({
      model, tokenizer, tasks: inputs, out: opts.out, fresh: opts.fresh, batchSize: opts.batchSize, cached: !opts.naive, maxLength: opts.maxLength,
      onProgress: opts.onProgress, signal: opts.signal,
    });
    const maxLength = opts.maxLength ?? model.config.max_position_embeddings;
    const taskHashes: Record<string, string> = {};
    for (const [i, res] of r.results.entries()) {
      for (const [j, sub] of res.subtasks.entries()) {
        const input = inputs[i];
        const docs = input.subtasks[j].docs;
        const shots = drawShotsFor(input, input.subtasks[j], docs.slice(0, sub.records.length));
        const lines = sub.records.map((rec) => sampleOf(input, docs[rec.doc_id], shots[rec.doc_id], rec));
        const f = samplesFile(lines.map((l) => l.sample), lines.map((l) => l.hash));
        taskHashes[sub.name] = f.taskHash;
        if (opts.logSamples) atomicWriteText(join(opts.out, `samples_${sub.name}.jsonl`), f.text);
      }
      if (res.targetsOutOfRange) {
        log(`${res.task.name}: ${res.targetsOutOfRange} of ${res.subtasks.reduce((n, s) => n + s.records.length, 0)} documents have a target that is none of their choices `
          + '(scored as wrong, as lm-eval scores them; recorded in summary.json)');
      }
      if (res.truncatedPrompts) {
        log(`${res.task.name}: ${res.truncatedPrompts} of ${res.subtasks.reduce((n, s) => n + s.records.length, 0)} prompts were longer than the model's ${maxLength} tokens and lost their first tokens`
          + (res.shots ? `; ${res.promptsWithFewerShots} of them hold fewer than ${res.shots} complete few-shot examples (recorded in lm_eval_results.json)` : ''));
      }
    }
    const endTime = Date.now();
    const byTask: MetricsMap = { ...metricsMap(r.results), ...(paper ? { [PAPER_MMLU]: mmluPointMetrics(paper.records).metrics } : {}) };
    const metrics = Object.fromEntries(opts.tasks.map((t) => [t.name, byTask[t.name]]));
    atomicWriteText(join(opts.out, 'lm_eval_results.json'), JSON.stringify(lmEvalJson(r.results, {
      model, modelDir: opts.model, tokenizer, maxLength, batchSize: opts.batchSize ?? TASK_BATCH_SIZE.default, backend: currentProfile().backend, compute: model.compute, startTime, endTime, taskHashes,
    }), null, 2) + '\n');
    atomicWriteText(join(opts.out, 'summary.json'), JSON.stringify({
      model: opts.model, metrics,
      tasks: Object.fromEntries(r.results.map((res) => [res.task.name, {
        shots: res.shots, limit: res.limit, documents: res.subtasks.reduce((n, s) => n + s.records.length, 0),
        truncatedPrompts: res.truncatedPrompts, promptsWithFewerShots: res.promptsWithFewerShots, targetsOutOfRange: res.targetsOutOfRange,
        ...(res.subtasks.length > 1 ? { subtasks: Object.fromEntries(res.subtasks.map((s) => [s.name, s.metrics])) } : {}),
      }])),
    }, null, 2) + '\n');
    atomicWriteText(join(opts.out, 'run.json'), JSON.stringify({
      finished: new Date(endTime).toISOString(), backend: currentProfile().backend, compute: model.compute, seconds: r.seconds, computedDocs: r.computedDocs, resumedShards: r.resumedShards,
      batchSize: opts.batchSize ?? TASK_BATCH_SIZE.default, naive: !!opts.naive, streaming: !!opts.streaming, maxLength,
    }, null, 2) + '\n');
    return {
      out: opts.out, results: r.results, metrics, seconds: r.seconds + (paper?.seconds ?? 0), computedDocs: r.computedDocs + (paper?.computedQuestions ?? 0),
      resumedShards: r.resumedShards,
    };
  } finally {
    disposeModel(model);
  }
}
