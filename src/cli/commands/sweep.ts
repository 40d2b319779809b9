import { readFileSync } from 'node:fs';
import { defineCommand, type RunContext } from '../options.ts';
import { FORCE_DIR, claimOutput, interruptOnSignals, setup } from '../common.ts';
import { type OptionValues, flag } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { MODEL, REVISION } from '../../model/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE } from '../../compress/options.ts';
import { LIMIT, NTRAIN } from '../../eval/mmlu/options.ts';
import { SEQ_LEN, STRIDE } from '../../eval/ppl/options.ts';
import { ATTEMPTS, SWEEP_QUEUE_NAME, SWEEP_QUEUE_URL } from '../../queue/options.ts';
import {
  CHOSEN, KEEP_MODELS, LIST_POINTS, POINT, REPORT, SWEEP_BATCH_SIZE, SWEEP_EVAL_SUBJECTS, SWEEP_METHODS, SWEEP_OUT, SWEEP_REMOVE, SWEEP_TEXT,
} from '../../sweep/options.ts';
import type { SweepOptions } from '../../sweep/sweep.ts';
import { ANALYSIS_SETTINGS, METHOD_OPTIONS, analysisOptions, methodParameters } from './compress-options.ts';

const OPTIONS = [
  ...COMPUTE_OPTIONS, MODEL, REVISION, SWEEP_METHODS, SWEEP_REMOVE, { ...CALIBRATION_DATA, required: true }, ...ANALYSIS_SETTINGS,
  ...METHOD_OPTIONS, { ...NTRAIN, help: 'few-shot examples per MMLU prompt' }, LIMIT, SWEEP_EVAL_SUBJECTS, SWEEP_BATCH_SIZE, CHOSEN, KEEP_MODELS, SWEEP_OUT,
  SWEEP_TEXT, { ...SEQ_LEN, help: 'with --text: window length (default 2048, or the model\'s context)' }, { ...STRIDE, help: 'with --text: tokens between window starts (default --seq-len)' },
  LIST_POINTS, POINT, REPORT, SWEEP_QUEUE_URL, SWEEP_QUEUE_NAME, ATTEMPTS, FORCE_DIR,
] as const;

export const sweepCommand = defineCommand({
  command: 'sweep',
  describe: 'MMLU accuracy of every method at every removal count: results.csv/json, plots, summary.md (resumable)',
  options: OPTIONS,
  conflicts: [[CALIBRATION_DATA, CALIBRATION_FILE], [LIST_POINTS, POINT], [LIST_POINTS, REPORT], [LIST_POINTS, SWEEP_QUEUE_URL],
    [SWEEP_QUEUE_URL, POINT], [SWEEP_QUEUE_URL, REPORT], [POINT, REPORT]],
  examples: [
    ['$0 sweep --model models/demo --data data/demo-mmlu --remove 0,1,2,4 --out results/demo', ''],
    ['$0 sweep --model llama-3-8b --data mmlu --point mka:4 --out /shared/run', 'one point (e.g. one Slurm array task); then --report'],
    ['$0 sweep --model llama-3-8b --data mmlu --methods mka,reverse --remove 0,4,8,12,14 --out results/llama3-8b', ''],
  ],
  check: (v) => checkChosen(v.chosen, v.methods, v.remove),
  run: async (v, ctx) => {
    if (v.listPoints) {
      const { listSweepPoints } = await import('../../sweep/single.ts');
      const ids = listSweepPoints(sweepOptions(v, ctx));
      process.stdout.write(ctx.json ? JSON.stringify(ids) + '\n' : ids.join('\n') + '\n');
      return;
    }
    const opts = sweepOptions(v, ctx);
    // One point, or a queue: many processes write one --out at once, so the directory is checked but
    // not locked (every file they write is atomic and keyed); a whole sweep or a report locks it.
    const shared = v.point !== undefined || v.url !== undefined;
    const { checkOutputDir } = await import('../../io/output-dir.ts');
    if (shared) checkOutputDir(v.out, { kind: 'sweep', inputs: ctx.inputs, force: v.force });
    const release = shared ? () => {} : claimOutput(v.out, 'sweep', 'sweep', v.force, ctx.inputs);
    const backend = await setup({ ...v, quiet: ctx.quiet });
    opts.runInfo = { backend: backend.description, argv: process.argv.slice(2) };
    // Ctrl-C: stop after the current MMLU batch; finished points and subjects stay saved (a queued sweep only waits, so it just stops).
    const stop = interruptOnSignals(ctx.log, 'batch');
    opts.signal = stop.signal;
    const { SweepInterrupted, runSweep } = await import('../../sweep/sweep.ts');
    try {
      if (v.point !== undefined) {
        const { runSweepPoint } = await import('../../sweep/single.ts');
        const row = await runSweepPoint(opts, v.point);
        if (ctx.json) process.stdout.write(JSON.stringify(row) + '\n');
        else if (row) process.stdout.write(`${v.point}: MMLU ${(100 * row.mmlu).toFixed(2)}% (${row.layers} layers) in ${v.out}\n`);
        return;
      }
      const points = v.report ? await (await import('../../sweep/assemble.ts')).assembleSweepReport(opts)
        : v.url !== undefined ? await (await import('../../queue/sweep.ts')).runQueuedSweep(opts, { url: v.url, name: v.name, attempts: v.attempts })
        : await runSweep(opts);
      if (ctx.json) process.stdout.write(JSON.stringify(points) + '\n');
      else process.stdout.write(readFileSync(`${v.out}/summary.md`, 'utf8'));
    } catch (e) {
      if (!(e instanceof SweepInterrupted)) throw e;
      process.stderr.write(`mka: interrupted; ${e.pointsDone} of ${e.pointsTotal} points (and the finished subjects of the next) are saved in ${v.out}: run the same command again to resume\n`);
      release();
      process.exit(130);
    } finally {
      release();
      stop.dispose();
    }
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
    ntrain: v.ntrain, limit: v.limit, evalSubjects: v.evalSubjects, batchSize: v.batchSize, params: methodParameters(v),
    chosen: v.chosen, keepModels: v.keepModels, out: v.out, quiet: ctx.quiet, log: ctx.log, runInfo: {},
    ppl: v.text ? { text: v.text, seqLen: v.seqLen, stride: v.stride } : undefined,
  };
}
