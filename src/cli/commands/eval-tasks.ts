import { FORCE_DIR, claimOutput, runResumable, setup } from '../common.ts';
import { defineCommand, type RunContext } from '../options.ts';
import { flag, type OptionValues } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { progress, type Progress } from '../../runtime/progress.ts';
import { MODEL, REVISION, STREAMING } from '../../model/options.ts';
import { FRESH } from '../../eval/mmlu/options.ts';
import { LM_EVAL_TASKS, getTask, parseTasks, PAPER_MMLU } from '../../eval/tasks/registry.ts';
import {
  LOG_SAMPLES, MAX_LENGTH, NUM_FEWSHOT, TASK_BATCH_SIZE, TASK_DATA, TASK_LIMIT, TASK_NAIVE, TASK_NTRAIN, TASK_OUT, TASK_SUBJECTS, TASKS, TASKS_DATA,
} from '../../eval/tasks/options.ts';

const COMMON = [
  ...COMPUTE_OPTIONS, MODEL, REVISION, TASK_LIMIT, NUM_FEWSHOT, TASK_NTRAIN, TASK_SUBJECTS, TASK_OUT, LOG_SAMPLES, TASK_BATCH_SIZE, TASK_NAIVE, MAX_LENGTH,
  FRESH, STREAMING, FORCE_DIR,
] as const;
const ONE_TASK = [...COMMON, TASK_DATA] as const;
const MANY_TASKS = [...COMMON, TASKS, TASKS_DATA] as const;

/** The --data value of each task of `eval tasks`: TASK=PATH pairs, else every task's hub dataset. */
export function taskData(names: readonly string[], data: string | undefined, spec: { option: string } = TASKS_DATA): Record<string, string> {
  const out: Record<string, string> = Object.fromEntries(names.map((n) => [n, n === PAPER_MMLU ? 'cais/mmlu' : getTask(n).dataset.path]));
  for (const pair of data ? data.split(',').map((s) => s.trim()).filter(Boolean) : []) {
    const m = /^([a-z_0-9]+)=(.+)$/.exec(pair);
    if (!m) throw new UserError(`${flag(spec)} ${pair}: expected TASK=PATH (e.g. hellaswag=hs.parquet), one per task, comma-separated`);
    if (!names.includes(m[1])) throw new UserError(`${flag(spec)} ${pair}: ${m[1]} is not one of the tasks (${names.join(', ')})`);
    out[m[1]] = m[2];
  }
  return out;
}

async function run(v: OptionValues<typeof COMMON>, ctx: RunContext, names: string[], given: Record<string, string>, label: string): Promise<void> {
  const { defaultTasksOut } = await import('../../eval/tasks/results.ts');
  const { resolveTaskData } = await import('../../hub/dataset.ts');
  const { resolveMmluData } = await import('../../hub/mmlu.ts');
  const out = v.out ?? defaultTasksOut(label, v.model);
  const shots = v.numFewshot ?? v.ntrain;
  const data: Record<string, string> = {};
  for (const name of names) {
    const common = { quiet: ctx.quiet, log: ctx.log };
    if (name === PAPER_MMLU) data[name] = await resolveMmluData(given[name], common);
    else data[name] = await resolveTaskData(given[name], getTask(name), shots ?? getTask(name).defaultShots, common);
  }
  const release = claimOutput(out, `eval ${label}`, 'task-results', v.force, [...ctx.inputs, ...Object.values(data)]);
  const { TasksInterrupted } = await import('../../eval/tasks/evaluate.ts');
  const { prepareTasksEval, runTasksEval } = await import('../../eval/tasks/run.ts');
  let bar: Progress | null = null, barPhase = '';
  const saved = (e: unknown) => {
    if (!(e instanceof TasksInterrupted)) return null;
    (bar as Progress | null)?.done();
    return `${e.docsDone} of ${e.docsTotal} documents are saved in ${out}`;
  };
  await runResumable(ctx, 'batch', release, saved, async (signal) => {
    const opts = {
      model: v.model, tasks: names.map((name) => ({ name, data: data[name] })), limit: v.limit, shots,
      subjects: v.subjects, out, logSamples: v.logSamples, batchSize: v.batchSize,
      naive: v.naive, maxLength: v.maxLength, streaming: v.streaming, fresh: v.fresh, log: ctx.log, signal,
      onProgress: (p: { phase?: string; label: string; docs: number; docsToRun: number }) => {
        // one bar per phase (the paper's MMLU questions, then the other tasks' documents)
        const phase = p.phase ?? 'tasks';
        if (bar && barPhase !== phase) bar.done();
        if (!bar || barPhase !== phase) bar = progress(phase === 'mmlu' ? 'mmlu' : label, p.docsToRun, { unit: phase === 'mmlu' ? 'questions' : 'docs', quiet: ctx.quiet });
        barPhase = phase;
        bar.tick(p.docs, `| ${p.label}`);
      },
    };
    const prepared = await prepareTasksEval(opts); // data errors before the backend line
    await setup({ ...v, quiet: ctx.quiet });
    const r = await runTasksEval(opts, prepared);
    (bar as Progress | null)?.done();
    ctx.log(`${r.computedDocs} documents in ${r.seconds.toFixed(1)} s${r.resumedShards ? ` (${r.resumedShards} shards loaded from an earlier run)` : ''}; results in ${out}`);
    if (ctx.json) {
      process.stdout.write(JSON.stringify(r.metrics) + '\n');
      return;
    }
    const rows = Object.entries(r.metrics).flatMap(([task, ms]) => Object.entries(ms).map(([m, x]) =>
      `| ${task} | ${m} | ${(100 * x.value).toFixed(2)}% | ${x.stderr === null ? 'n/a' : `± ${(100 * x.stderr).toFixed(2)}`} | ${x.n} |`));
    process.stdout.write(['| task | metric | value | stderr | documents |', '|---|---|---:|---:|---:|', ...rows].join('\n') + '\n');
  });
}

/** `mka eval TASK` for each task of the registry but the paper's MMLU (`eval mmlu`). */
export const taskCommands = LM_EVAL_TASKS.map((task) => defineCommand({
  command: task.name,
  describe: `${task.name} as lm-evaluation-harness scores it (${task.metrics.join(', ')}; ${task.defaultShots}-shot by default)`,
  options: ONE_TASK,
  examples: [
    [`$0 eval ${task.name} --model models/demo --data ${task.name}.parquet --limit 100 --log-samples`, ''],
    [`$0 eval ${task.name} --model meta-llama/Meta-Llama-3-8B`, `data from ${task.dataset.path} in the hub cache`],
  ],
  run: (v, ctx) => run(v, ctx, [task.name], { [task.name]: v.data ?? task.dataset.path }, task.name),
}));

/** `mka eval tasks --tasks a,b,c`. */
export const tasksCommand = defineCommand({
  command: 'tasks',
  describe: 'several tasks in one run (one pass over a streamed model for all of them)',
  options: MANY_TASKS,
  examples: [
    ['$0 eval tasks --model llama3-8b --tasks hellaswag,arc_easy,arc_challenge,piqa,winogrande,boolq --streaming', 'the pruning papers\' zero-shot table'],
  ],
  check: (v) => { parseTasks(v.tasks.join(',')); },
  run: (v, ctx) => {
    const names = parseTasks(v.tasks.join(','));
    return run(v, ctx, names, taskData(names, v.data), 'tasks');
  },
});
