import type { Argv, CommandModule } from 'yargs';
import { type GlobalArgs, claimOutput, forceOption, interruptOnSignals, logger, setup, type ArgsOf, computeOptions } from '../common.ts';
import { LM_EVAL_TASKS, getTask, parseTasks, PAPER_MMLU } from '../../eval/tasks/registry.ts';
import { TasksInterrupted } from '../../eval/tasks/evaluate.ts';
import { prepareTasksEval, runTasksEval, type RunTasksOptions, type RunTasksResult } from '../../eval/tasks/run.ts';
import { defaultTasksOut } from '../../eval/tasks/results.ts';
import { progress, type Progress } from '../../runtime/progress.ts';
import { UserError } from '../../runtime/errors.ts';
import { resolveTaskData } from '../../hub/dataset.ts';
import { resolveMmluData } from '../../hub/mmlu.ts';

const common = (y: Argv<GlobalArgs>) => forceOption(computeOptions(y))
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory (or hub id)' })
  .option('limit', { type: 'number', describe: 'first N documents (per subject for mmlu_lmeval)' })
  .option('num-fewshot', { type: 'number', describe: 'few-shot examples per prompt (default: the task\'s own: 0, or 5 for mmlu_lmeval)' })
  .option('ntrain', { type: 'number', describe: 'mmlu_lmeval: the same as --num-fewshot' })
  .option('subjects', { type: 'string', describe: 'mmlu_lmeval: comma-separated MMLU subjects (default all)' })
  .option('out', { type: 'string', describe: 'results directory (default results/<task>/<model name>); rerun to resume' })
  .option('log-samples', { type: 'boolean', default: false, describe: 'also write samples_<task>.jsonl: every document\'s requests, loglikelihoods and metrics, as lm-eval --log_samples' })
  .option('batch-size', { type: 'number', default: 16, describe: 'rows per forward pass' })
  .option('naive', { type: 'boolean', default: false, describe: 'no prefix cache or batching: every request alone (reference path)' })
  .option('max-length', { type: 'number', describe: 'the model\'s context in tokens (lm-eval\'s max_length; default max_position_embeddings): longer inputs lose their first tokens' })
  .option('fresh', { type: 'boolean', default: false, describe: 'discard earlier results in the results directory' })
  .option('streaming', { type: 'boolean', default: false, describe: 'one decoder layer in memory at a time (every pass reads the layers from disk)' });

const oneTaskOptions = (y: Argv<GlobalArgs>) => common(y)
  .option('data', { type: 'string', describe: 'the task\'s data: a .parquet/.jsonl file of the evaluated split, a directory of split files, or a hub dataset id (default: the one lm-eval uses)' });

const manyTaskOptions = (y: Argv<GlobalArgs>) => common(y)
  .option('tasks', { type: 'string', demandOption: true, describe: `comma-separated tasks, evaluated in one pass over a streamed model: ${LM_EVAL_TASKS.map((t) => t.name).join(', ')}, and mmlu (the paper's, first, into OUT/mmlu/)` })
  .option('data', { type: 'string', describe: 'per task TASK=PATH, comma-separated (default: each task\'s hub dataset), e.g. hellaswag=hs.parquet,piqa=piqa/' });

type OneArgs = ArgsOf<typeof oneTaskOptions>;
type ManyArgs = ArgsOf<typeof manyTaskOptions>;

/** The --data value of each task of `eval tasks`: TASK=PATH pairs, else every task's hub dataset. */
export function taskData(names: readonly string[], data: string | undefined): Record<string, string> {
  const out: Record<string, string> = Object.fromEntries(names.map((n) => [n, n === PAPER_MMLU ? 'cais/mmlu' : getTask(n).dataset.path]));
  for (const pair of data ? data.split(',').map((s) => s.trim()).filter(Boolean) : []) {
    const m = /^([a-z_0-9]+)=(.+)$/.exec(pair);
    if (!m) throw new UserError(`--data ${pair}: expected TASK=PATH (e.g. hellaswag=hs.parquet), one per task, comma-separated`);
    if (!names.includes(m[1])) throw new UserError(`--data ${pair}: ${m[1]} is not one of --tasks (${names.join(', ')})`);
    out[m[1]] = m[2];
  }
  return out;
}

async function run(a: OneArgs | ManyArgs, names: string[], given: Record<string, string>, label: string): Promise<void> {
  const out = a.out ?? defaultTasksOut(label, a.model);
  const shots = a['num-fewshot'] ?? a.ntrain;
  const data: Record<string, string> = {};
  for (const name of names) {
    const common = { quiet: a.quiet, log: logger(a) };
    if (name === PAPER_MMLU) data[name] = await resolveMmluData(given[name], common);
    else data[name] = await resolveTaskData(given[name], getTask(name), shots ?? getTask(name).defaultShots, common);
  }
  const release = claimOutput(out, `eval ${label}`, 'task-results', a, ...Object.values(data));
  const log = logger(a);
  const stop = interruptOnSignals(log, 'batch');
  let bar: Progress | null = null, barPhase = '';
  try {
    const opts: RunTasksOptions = {
      model: a.model, tasks: names.map((name) => ({ name, data: data[name] })), limit: a.limit, shots,
      subjects: a.subjects?.split(',').map((s) => s.trim()).filter(Boolean), out, logSamples: a['log-samples'], batchSize: a['batch-size'],
      naive: a.naive, maxLength: a['max-length'], streaming: a.streaming, fresh: a.fresh, log, signal: stop.signal,
      onProgress: (p) => {
        // one bar per phase (the paper's MMLU questions, then the other tasks' documents)
        const phase = p.phase ?? 'tasks';
        if (bar && barPhase !== phase) bar.done();
        if (!bar || barPhase !== phase) bar = progress(phase === 'mmlu' ? 'mmlu' : label, p.docsToRun, { unit: phase === 'mmlu' ? 'questions' : 'docs', quiet: a.quiet });
        barPhase = phase;
        bar.tick(p.docs, `| ${p.label}`);
      },
    };
    const prepared = await prepareTasksEval(opts); // data errors before the backend line
    await setup(a);
    const r: RunTasksResult = await runTasksEval(opts, prepared);
    (bar as Progress | null)?.done();
    log(`${r.computedDocs} documents in ${r.seconds.toFixed(1)} s${r.resumedShards ? ` (${r.resumedShards} shards loaded from an earlier run)` : ''}; results in ${out}`);
    if (a.json) {
      process.stdout.write(JSON.stringify(r.metrics) + '\n');
      return;
    }
    const rows = Object.entries(r.metrics).flatMap(([task, ms]) => Object.entries(ms).map(([m, v]) =>
      `| ${task} | ${m} | ${(100 * v.value).toFixed(2)}% | ${v.stderr === null ? 'n/a' : `± ${(100 * v.stderr).toFixed(2)}`} | ${v.n} |`));
    process.stdout.write(['| task | metric | value | stderr | documents |', '|---|---|---:|---:|---:|', ...rows].join('\n') + '\n');
  } catch (e) {
    if (!(e instanceof TasksInterrupted)) throw e;
    (bar as Progress | null)?.done();
    process.stderr.write(`mka: interrupted; ${e.docsDone} of ${e.docsTotal} documents are saved in ${out}: run the same command again to resume\n`);
    process.exit(130);
  } finally {
    release();
    stop.dispose();
  }
}

/** `mka eval TASK` for each task of the registry but the paper's MMLU (`eval mmlu`). */
export const taskCommands: CommandModule<GlobalArgs, OneArgs>[] = LM_EVAL_TASKS.map((task) => ({
  command: task.name,
  describe: `${task.name} as lm-evaluation-harness scores it (${task.metrics.join(', ')}; ${task.defaultShots}-shot by default)`,
  builder: (y: Argv<GlobalArgs>) => oneTaskOptions(y)
    .example(`$0 eval ${task.name} --model models/demo --data ${task.name}.parquet --limit 100 --log-samples`, '')
    .example(`$0 eval ${task.name} --model meta-llama/Meta-Llama-3-8B`, `data from ${task.dataset.path} in the hub cache`),
  handler: async (a: OneArgs) => {
    await run(a, [task.name], { [task.name]: a.data ?? task.dataset.path }, task.name);
  },
}));

/** `mka eval tasks --tasks a,b,c`. */
export const tasksCommand: CommandModule<GlobalArgs, ManyArgs> = {
  command: 'tasks',
  describe: 'several tasks in one run (one pass over a streamed model for all of them)',
  builder: (y: Argv<GlobalArgs>) => manyTaskOptions(y)
    .example('$0 eval tasks --model llama3-8b --tasks hellaswag,arc_easy,arc_challenge,piqa,winogrande,boolq --streaming', 'the pruning papers\' zero-shot table'),
  handler: async (a: ManyArgs) => {
    const names = parseTasks(a.tasks);
    await run(a, names, taskData(names, a.data), 'tasks');
  },
};
