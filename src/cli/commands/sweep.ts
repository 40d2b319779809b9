import { readFileSync } from 'node:fs';
import { defineCommand, type RunContext } from '../options.ts';
import { FORCE_DIR, claimOutput, runResumable, setup } from '../common.ts';
import { type OptionValues, flag } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { MODEL, REVISION } from '../../model/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE } from '../../compress/options.ts';
import { LIMIT, NTRAIN } from '../../eval/mmlu/options.ts';
import { DEFAULT_SEQ_LEN, SEQ_LEN, STRIDE } from '../../eval/ppl/options.ts';
import { ATTEMPTS, SWEEP_QUEUE_NAME, SWEEP_QUEUE_URL } from '../../queue/options.ts';
import {
  CHOSEN, KEEP_MODELS, LIST_POINTS, POINT, REPORT, SWEEP_BATCH_SIZE, SWEEP_EVAL_SUBJECTS, SWEEP_METHODS, SWEEP_OUT, SWEEP_QUANTIZE, SWEEP_REMOVE, SWEEP_TEXT,
} from '../../sweep/options.ts';
import type { SweepOptions } from '../../sweep/sweep.ts';
import { SWEEP_NUM_FEWSHOT, SWEEP_TASK_DATA, SWEEP_TASKS } from '../../eval/tasks/options.ts';
import { PAPER_MMLU } from '../../eval/tasks/registry.ts';
import { checkSpecList } from '../../quant/options.ts';
import { ANALYSIS_SETTINGS, METHOD_OPTIONS, analysisOptions, checkMethodOptions, methodParameters } from './compress-options.ts';

const OPTIONS = [
  ...COMPUTE_OPTIONS, MODEL, REVISION, SWEEP_METHODS, SWEEP_REMOVE, SWEEP_QUANTIZE, { ...CALIBRATION_DATA, required: true }, ...ANALYSIS_SETTINGS,
  ...METHOD_OPTIONS, { ...NTRAIN, help: 'few-shot examples per MMLU prompt' }, LIMIT, SWEEP_EVAL_SUBJECTS, SWEEP_TASKS, SWEEP_TASK_DATA, SWEEP_NUM_FEWSHOT, SWEEP_BATCH_SIZE, CHOSEN, KEEP_MODELS, SWEEP_OUT,
  SWEEP_TEXT, { ...SEQ_LEN, help: `with --text: window length (default ${DEFAULT_SEQ_LEN}, or the model's context)` }, { ...STRIDE, help: 'with --text: tokens between window starts (default --seq-len)' },
  LIST_POINTS, POINT, REPORT, SWEEP_QUEUE_URL, SWEEP_QUEUE_NAME, ATTEMPTS, FORCE_DIR,
] as const;

export const sweepCommand = defineCommand({
  command: 'sweep',
  describe: 'MMLU (and other tasks\') accuracy of every method at every removal count: results.csv/json, plots, summary.md (resumable)',
  options: OPTIONS,
  conflicts: [[CALIBRATION_DATA, CALIBRATION_FILE], [LIST_POINTS, POINT], [LIST_POINTS, REPORT], [LIST_POINTS, SWEEP_QUEUE_URL],
    [SWEEP_QUEUE_URL, POINT], [SWEEP_QUEUE_URL, REPORT], [POINT, REPORT]],
  examples: [
    ['$0 sweep --model models/demo --data data/demo-mmlu --remove 0,1,2,4 --out results/demo', ''],
    ['$0 sweep --model llama-3-8b --data mmlu --point mka:4 --out /shared/run', 'one point (e.g. one Slurm array task); then --report'],
    ['$0 sweep --model llama-3-8b --data mmlu --methods mka,reverse --remove 0,4,8,12,14 --out results/llama3-8b', ''],
    ['$0 sweep --model models/demo --data data/demo-mmlu --methods mka,reverse --remove 0,2 --quantize none,gptq:w4g32,smoothquant:w8a8 --out results/demo-quant', 'layers removed crossed with quantization: bytes beside the layer ratio, accuracy-size.png'],
    ['$0 sweep --model llama-3-8b --data mmlu --tasks mmlu,hellaswag,arc_easy,arc_challenge,piqa,winogrande,boolq --remove 0,8 --out results/l3-tasks', 'the pruning papers\' table: per-task columns and their average'],
  ],
  check: (v) => {
    checkChosen(v.chosen, v.methods, v.remove);
    checkMethodOptions(v, v.methods, `${flag(SWEEP_METHODS)} ${v.methods.join(',')}`);
    checkSpecList(SWEEP_QUANTIZE, v.quantize);
  },
  run: async (v, ctx) => {
    if (v.listPoints) {
      const { listSweepPoints } = await import('../../sweep/single.ts');
      const ids = listSweepPoints(sweepOptions(v, ctx));
      process.stdout.write(ctx.json ? JSON.stringify(ids) + '\n' : ids.join('\n') + '\n');
      return;
    }
    const opts = sweepOptions(v, ctx);
    // each task's data as a local path (hub datasets fetched into the cache), so queue workers get paths
    const others = (opts.tasks ?? [PAPER_MMLU]).filter((t) => t !== PAPER_MMLU);
    if (others.length) {
      const { taskData } = await import('./eval-tasks.ts');
      const { getTask } = await import('../../eval/tasks/registry.ts');
      const { resolveTaskData } = await import('../../hub/dataset.ts');
      const given = taskData(others, v.taskData, SWEEP_TASK_DATA);
      opts.taskData = {};
      for (const t of others) {
        const shots = t === 'mmlu_lmeval' ? v.numFewshot ?? v.ntrain : v.numFewshot ?? getTask(t).defaultShots;
        opts.taskData[t] = await resolveTaskData(given[t], getTask(t), shots, { quiet: ctx.quiet, log: ctx.log });
      }
    }
    // One point, or a queue: many processes write one --out at once, so the directory is checked but
    // not locked (every file they write is atomic and keyed); a whole sweep or a report locks it.
    const shared = v.point !== undefined || v.url !== undefined;
    const { checkOutputDir } = await import('../../io/output-dir.ts');
    if (shared) checkOutputDir(v.out, { kind: 'sweep', inputs: ctx.inputs, force: v.force });
    const release = shared ? () => {} : claimOutput(v.out, 'sweep', 'sweep', v.force, ctx.inputs);
    const backend = await setup({ ...v, quiet: ctx.quiet });
    opts.runInfo = { backend: backend.description, argv: process.argv.slice(2) };
    const { SweepInterrupted, runSweep } = await import('../../sweep/sweep.ts');
    const saved = (e: unknown) => (e instanceof SweepInterrupted ? `${e.pointsDone} of ${e.pointsTotal} points (and the finished subjects of the next) are saved in ${v.out}` : null);
    // Ctrl-C: stop after the current MMLU batch; finished points and subjects stay saved (a queued sweep only waits, so it just stops).
    await runResumable(ctx, 'batch', release, saved, async (signal) => {
      opts.signal = signal;
      if (v.point !== undefined) {
        const { runSweepPoint } = await import('../../sweep/single.ts');
        const row = await runSweepPoint(opts, v.point);
        if (ctx.json) process.stdout.write(JSON.stringify(row) + '\n');
        else if (row) {
          const { headlineMetric } = await import('../../sweep/tasks.ts');
          const scores = Object.entries(row.metrics).map(([t, m]) => `${t === PAPER_MMLU ? 'MMLU' : t} ${(100 * m[headlineMetric(t)].value).toFixed(2)}%`);
          process.stdout.write(`${v.point}: ${scores.join(', ')} (${row.layers} layers) in ${v.out}\n`);
        }
        return;
      }
      const points = v.report ? await (await import('../../sweep/assemble.ts')).assembleSweepReport(opts)
        : v.url !== undefined ? await (await import('../../queue/sweep.ts')).runQueuedSweep(opts, { url: v.url, name: v.name, attempts: v.attempts })
        : await runSweep(opts);
      if (ctx.json) process.stdout.write(JSON.stringify(points) + '\n');
      else process.stdout.write(readFileSync(`${v.out}/summary.md`, 'utf8'));
    });
  },
});

/** Checks `--chosen method:k` names one of the sweep's methods and counts. */
function checkChosen(chosen: string | undefined, methods: readonly string[], counts: readonly number[]): void {
  if (chosen === undefined) return;
  const m = /^([^:]+):(\d+)$/.exec(chosen);
  if (!m) throw new UserError(`${flag(CHOSEN)} ${chosen}: expected METHOD:COUNT, e.g. mka:2`);
  if (!methods.includes(m[1])) throw new UserError(`${flag(CHOSEN)} ${chosen}: method ${m[1]} is not in ${flag(SWEEP_METHODS)} (${methods.join(', ')})`);
  if (!counts.includes(Number(m[2]))) throw new UserError(`${flag(CHOSEN)} ${chosen}: count ${m[2]} is not in ${flag(SWEEP_REMOVE)} (${counts.join(', ')})`);
}

/** The sweep's library options from its values. */
function sweepOptions(v: OptionValues<typeof OPTIONS>, ctx: RunContext): SweepOptions {
  return {
    ...analysisOptions(v, ctx.log), model: v.model, data: v.data, methods: [...new Set(v.methods)], remove: [...new Set(v.remove)].sort((a, b) => a - b),
    quantize: [...new Set(v.quantize)], ntrain: v.ntrain, limit: v.limit, evalSubjects: v.evalSubjects, batchSize: v.batchSize, params: methodParameters(v), fitLambda: v.fitLambda,
    tasks: [...v.tasks], numFewshot: v.numFewshot,
    chosen: v.chosen, keepModels: v.keepModels, out: v.out, quiet: ctx.quiet, log: ctx.log, runInfo: {},
    ppl: v.text ? { text: v.text, seqLen: v.seqLen, stride: v.stride } : undefined,
  };
}
