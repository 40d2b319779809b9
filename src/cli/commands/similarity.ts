import type { Argv, CommandModule } from 'yargs';
import { type ArgsOf, type GlobalArgs, claimFile, emitJson, FORCE_FILE, forceOption, logger, setup, computeOptions } from '../common.ts';
import { OUTPUT_FILES } from '../../io/output-dir.ts';
import { UserError } from '../../runtime/errors.ts';
import { activationsSimilarity, modelSimilarity } from '../../pipeline/compress.ts';
import { analysisOptions, calibrationOptions } from './compress-options.ts';

const builder = (y: Argv<GlobalArgs>) => forceOption(calibrationOptions(computeOptions(y)), FORCE_FILE)
  .option('model', { type: 'string', describe: 'Hugging Face model directory' })
  .option('activations', { type: 'string', describe: 'JSON {"activations": [layers][samples][hidden]} instead of --model' })
  .option('out', { type: 'string', describe: 'output sim.json (default: stdout)' })
  .conflicts('model', 'activations')
  .conflicts('data', 'calibration')
  .check((a) => {
    if (!a.model && !a.activations) throw new UserError('similarity: give --model (with --data or --calibration) or --activations');
    return true;
  })
  .example('$0 similarity --model models/demo --data data/demo-mmlu --out sim.json', '')
  .example('$0 similarity --activations acts.json --out sim.json', '')
  .example('$0 similarity --model models/demo --data data/demo-mmlu --metric cka --out cka.json', 'linear CKA instead of NPIB');

export const similarityCommand: CommandModule<GlobalArgs, ArgsOf<typeof builder>> = {
  command: 'similarity',
  describe: 'Layer similarity (diffusion embedding + NPIB, or --metric cka) from a model\'s calibration pass or from activations',
  builder,
  handler: async (a) => {
    claimFile(a.out, OUTPUT_FILES.similarity, a);
    await setup(a);
    const log = logger(a);
    const opts = analysisOptions(a, log);
    const result = a.activations !== undefined
      ? activationsSimilarity(a.activations, { similarity: opts.similarity, metric: opts.metric, quiet: a.quiet, log })
      : await modelSimilarity({ ...opts, model: a.model ?? '', quiet: a.quiet, log });
    emitJson(result, a.out);
  },
};
