import type { CommandModule } from 'yargs';
import { readFileSync } from 'node:fs';
import { type GlobalArgs, claimOutput, forceOption, logger, setup } from '../common.ts';
import { runSweep } from '../../sweep/sweep.ts';
import { METHODS } from '../../compress/methods/registry.ts';
import { analysisOptions, calibrationOptions } from './compress-options.ts';
import { checkChosen, parseCounts } from '../validate.ts';

type Args = GlobalArgs & Record<string, any>;

export const sweepCommand: CommandModule<GlobalArgs, Args> = {
  command: 'sweep',
  describe: 'MMLU accuracy of every method at every removal count: results.csv/json, plots, summary.md (resumable)',
  builder: (y) => forceOption(calibrationOptions(y))
    .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
    .option('methods', { type: 'string', default: 'mka,reverse,shortgpt,angular', describe: `comma-separated: ${METHODS.map((m) => m.name).join(', ')}` })
    .option('remove', { type: 'string', default: '0,1,2', describe: 'comma-separated numbers of layers to remove' })
    .option('ntrain', { type: 'number', default: 5, describe: 'few-shot examples per MMLU prompt' })
    .option('limit', { type: 'number', describe: 'first N test questions per subject (quick runs)' })
    .option('eval-subjects', { type: 'string', describe: 'comma-separated MMLU subjects to evaluate (default all)' })
    .option('batch-size', { type: 'number', default: 16, describe: 'questions per forward pass' })
    .option('strategy', { choices: ['last-pair', 'adjacent'], default: 'last-pair', describe: 'mka merge strategy' })
    .option('blend-norms', { type: 'boolean', default: false, describe: 'mka: blend RMSNorm weights too' })
    .option('chosen', { type: 'string', describe: 'point for categories.png, e.g. mka:2 (default: largest mka count)' })
    .option('keep-models', { type: 'boolean', default: false, describe: 'also write every compressed model to OUT/models/' })
    .option('out', { type: 'string', default: 'results/sweep', describe: 'results directory (rerun to resume)' })
    .option('text', { type: 'string', describe: 'text corpus: adds each point\'s perplexity on it (`ppl` column, as `mka eval ppl`)' })
    .option('seq-len', { type: 'number', describe: 'with --text: window length (default 2048, or the model\'s context)' })
    .option('stride', { type: 'number', describe: 'with --text: tokens between window starts (default --seq-len)' })
    .demandOption('data')
    .example('$0 sweep --model models/demo --data data/demo-mmlu --remove 0,1,2,4 --out results/demo', '')
    .example('$0 sweep --model llama-3-8b --data mmlu --methods mka,reverse --remove 0,4,8,12,14 --out results/llama3-8b', '') as never,
  handler: async (a) => {
    const methods = String(a.methods).split(',').map((s) => s.trim()).filter(Boolean);
    const remove = parseCounts(a.remove);
    checkChosen(a.chosen, methods, remove);
    const release = claimOutput(a.out, 'sweep', 'sweep', a.force, [a.model]);
    const backend = await setup(a);
    const points = await runSweep({
      ...analysisOptions(a as never), model: a.model, data: a.data, methods, remove, ntrain: a.ntrain,
      limit: a.limit, evalSubjects: a['eval-subjects']?.split(','), batchSize: a['batch-size'], strategy: a.strategy,
      blendNorms: a['blend-norms'], chosen: a.chosen, keepModels: a['keep-models'], out: a.out, quiet: a.quiet, log: logger(a),
      runInfo: { backend: backend.description, argv: process.argv.slice(2) },
      ppl: a.text ? { text: a.text, seqLen: a['seq-len'], stride: a.stride } : undefined,
    });
    release();
    if (a.json) process.stdout.write(JSON.stringify(points) + '\n');
    else process.stdout.write(readFileSync(`${a.out}/summary.md`, 'utf8'));
  },
};
