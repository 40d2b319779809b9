import type { Argv, CommandModule } from 'yargs';
import { readFileSync } from 'node:fs';
import { type ArgsOf, type GlobalArgs, claimOutput, forceOption, inputsOf, interruptOnSignals, logger, setup, computeOptions } from '../common.ts';
import { SweepInterrupted, runSweep, type SweepOptions } from '../../sweep/sweep.ts';
import { listSweepPoints, runSweepPoint } from '../../sweep/single.ts';
import { assembleSweepReport } from '../../sweep/assemble.ts';
import { runQueuedSweep } from '../../queue/sweep.ts';
import { DEFAULT_ATTEMPTS } from '../../queue/jobs.ts';
import { DEFAULT_QUEUE_NAME } from '../../queue/connection.ts';
import { METHODS } from '../../compress/methods/registry.ts';
import { analysisOptions, calibrationOptions, methodParameters, mkaOptions } from './compress-options.ts';
import { checkChosen, parseCounts, parseMethods } from '../validate.ts';
import { checkOutputDir } from '../../io/output-dir.ts';

const builder = (y: Argv<GlobalArgs>) => mkaOptions(forceOption(calibrationOptions(computeOptions(y))))
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('methods', { type: 'string', default: 'mka,reverse,shortgpt,angular', describe: `comma-separated: ${METHODS.map((m) => m.name).join(', ')}` })
  .option('remove', { type: 'string', default: '0,1,2', describe: 'comma-separated numbers of layers to remove' })
  .option('ntrain', { type: 'number', default: 5, describe: 'few-shot examples per MMLU prompt' })
  .option('limit', { type: 'number', describe: 'first N test questions per subject (quick runs)' })
  .option('eval-subjects', { type: 'string', describe: 'comma-separated MMLU subjects to evaluate (default all)' })
  .option('batch-size', { type: 'number', default: 16, describe: 'questions per forward pass' })
  .option('chosen', { type: 'string', describe: 'point for categories.png, e.g. mka:2 (default: largest mka count)' })
  .option('keep-models', { type: 'boolean', default: false, describe: 'also write every compressed model to OUT/models/' })
  .option('out', { type: 'string', default: 'results/sweep', describe: 'results directory (rerun to resume)' })
  .option('text', { type: 'string', describe: 'text corpus: adds each point\'s perplexity on it (`ppl` column, as `mka eval ppl`)' })
  .option('seq-len', { type: 'number', describe: 'with --text: window length (default 2048, or the model\'s context)' })
  .option('stride', { type: 'number', describe: 'with --text: tokens between window starts (default --seq-len)' })
  .option('list-points', { type: 'boolean', describe: 'print the points of the sweep, one a line, and exit', group: 'One point at a time:' })
  .option('point', { type: 'string', describe: 'compute exactly one point (original, METHOD:K, or calibration) into --out', group: 'One point at a time:' })
  .option('report', { type: 'boolean', describe: 'write the report from the points finished in --out', group: 'One point at a time:' })
  .option('queue', { type: 'string', describe: 'Redis URL: enqueue the sweep as jobs for `mka worker`s and wait, e.g. redis://10.0.0.5:6379', group: 'Many machines:' })
  .option('queue-name', { type: 'string', default: DEFAULT_QUEUE_NAME, describe: 'BullMQ queue name', group: 'Many machines:' })
  .option('attempts', { type: 'number', default: DEFAULT_ATTEMPTS, describe: 'runs of a failing job before the sweep stops (user errors: 1)', group: 'Many machines:' })
  .conflicts('list-points', ['point', 'report', 'queue'])
  .conflicts('queue', ['point', 'report'])
  .conflicts('point', 'report')
  .demandOption('data')
  .example('$0 sweep --model models/demo --data data/demo-mmlu --remove 0,1,2,4 --out results/demo', '')
  .example('$0 sweep --model llama-3-8b --data mmlu --point mka:4 --out /shared/run', 'one point (e.g. one Slurm array task); then --report')
  .example('$0 sweep --model llama-3-8b --data mmlu --methods mka,reverse --remove 0,4,8,12,14 --out results/llama3-8b', '');

type Args = ArgsOf<typeof builder>;

export const sweepCommand: CommandModule<GlobalArgs, Args> = {
  command: 'sweep',
  describe: 'MMLU accuracy of every method at every removal count: results.csv/json, plots, summary.md (resumable)',
  builder,
  handler: async (a) => {
    if (a['list-points']) {
      const ids = listSweepPoints(sweepOptions(a, {}));
      process.stdout.write(a.json ? JSON.stringify(ids) + '\n' : ids.join('\n') + '\n');
      return;
    }
    const opts = sweepOptions(a, {});
    checkChosen(a.chosen, opts.methods, opts.remove);
    // One point, or a queue: many processes write one --out at once, so the directory is checked but
    // not locked (every file they write is atomic and keyed); a whole sweep or a report locks it.
    const shared = a.point !== undefined || a.queue !== undefined;
    if (shared) checkOutputDir(a.out, { kind: 'sweep', inputs: inputsOf(a, a.text), force: a.force });
    const release = shared ? () => {} : claimOutput(a.out, 'sweep', 'sweep', a, a.text);
    const backend = await setup(a);
    opts.runInfo = { backend: backend.description, argv: process.argv.slice(2) };
    // Ctrl-C: stop after the current MMLU batch; finished points and subjects stay saved (a queued sweep only waits, so it just stops).
    const stop = interruptOnSignals(opts.log ?? (() => {}), 'batch');
    opts.signal = stop.signal;
    try {
      if (a.point !== undefined) {
        const row = await runSweepPoint(opts, String(a.point));
        if (a.json) process.stdout.write(JSON.stringify(row) + '\n');
        else if (row) process.stdout.write(`${a.point}: MMLU ${(100 * row.mmlu).toFixed(2)}% (${row.layers} layers) in ${a.out}\n`);
        return;
      }
      const points = a.report ? await assembleSweepReport(opts)
        : a.queue !== undefined ? await runQueuedSweep(opts, { url: a.queue, name: a['queue-name'], attempts: a.attempts })
        : await runSweep(opts);
      if (a.json) process.stdout.write(JSON.stringify(points) + '\n');
      else process.stdout.write(readFileSync(`${a.out}/summary.md`, 'utf8'));
    } catch (e) {
      if (!(e instanceof SweepInterrupted)) throw e;
      process.stderr.write(`mka: interrupted; ${e.pointsDone} of ${e.pointsTotal} points (and the finished subjects of the next) are saved in ${a.out}: run the same command again to resume\n`);
      release();
      process.exit(130);
    } finally {
      release();
      stop.dispose();
    }
  },
};

/** The sweep's library options from the parsed command line. */
function sweepOptions(a: Args, runInfo: Record<string, unknown>): SweepOptions {
  const methods = parseMethods(a.methods, METHODS.map((m) => m.name));
  const log = logger(a);
  return {
    ...analysisOptions(a, log), model: a.model, data: a.data, methods, remove: parseCounts(a.remove), ntrain: a.ntrain,
    limit: a.limit, evalSubjects: a['eval-subjects']?.split(','), batchSize: a['batch-size'], params: methodParameters(a),
    chosen: a.chosen, keepModels: a['keep-models'], out: a.out, quiet: a.quiet, log,
    runInfo,
    ppl: a.text ? { text: a.text, seqLen: a['seq-len'], stride: a.stride } : undefined,
  };
}
