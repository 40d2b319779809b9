import type { CommandModule } from 'yargs';
import { type GlobalArgs, claimOutput, forceOption, logger, setup } from '../common.ts';
import { compressModel } from '../../compress/compress.ts';
import { METHODS } from '../../compress/methods/registry.ts';
import { HF_DTYPES } from '../../weights/hf-writer.ts';
import { analysisOptions, calibrationOptions } from './compress-options.ts';

type Args = GlobalArgs & Record<string, any>;

export const compressCommand: CommandModule<GlobalArgs, Args> = {
  command: 'compress',
  describe: 'Remove K layers by merging (mka) or pruning (reverse, shortgpt, angular); writes a HF model + merge.json',
  builder: (y) => forceOption(calibrationOptions(y))
    .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
    .option('method', { choices: METHODS.map((m) => m.name), default: 'mka', describe: 'compression method' })
    .option('remove', { type: 'number', demandOption: true, describe: 'number of layers to remove' })
    .option('strategy', { choices: ['last-pair', 'adjacent'], default: 'last-pair', describe: 'mka: merge the last two layers repeatedly (paper) or the most similar adjacent pair' })
    .option('blend-norms', { type: 'boolean', default: false, describe: 'mka: blend RMSNorm weights too (default: keep layer i\'s)' })
    .option('dtype', { choices: HF_DTYPES, describe: 'storage dtype of the output (default: the source model\'s torch_dtype, else float32)' })
    .option('out', { type: 'string', demandOption: true, describe: 'output model directory' })
    .conflicts('data', 'calibration')
    .example('$0 compress --model models/demo --method mka --remove 2 --data data/demo-mmlu --out out/mka-2', '') as never,
  handler: async (a) => {
    const release = claimOutput(a.out, 'compress', 'hf-model', a.force, [a.model]);
    await setup(a);
    const plan = await compressModel({
      ...analysisOptions(a as never), model: a.model, out: a.out, method: a.method, remove: a.remove,
      strategy: a.strategy, blendNorms: a['blend-norms'], dtype: a.dtype, quiet: a.quiet, log: logger(a),
    });
    release();
    if (a.json) process.stdout.write(JSON.stringify({ out: a.out, layers: plan.layers.length, steps: plan.steps }) + '\n');
  },
};
