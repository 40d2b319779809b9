import { defineCommand } from '../options.ts';
import { FORCE_FILE, claimFile, emitJson, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { option } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { MODEL_OR_OTHER, REVISION } from '../../model/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE } from '../../compress/options.ts';
import { ANALYSIS_OPTIONS, analysisOptions } from './compress-options.ts';

const ACTIVATIONS = option({ name: 'activations', option: 'activations', type: 'string', path: 'file', help: 'JSON {"activations": [layers][samples][hidden]} instead of --model' });
const OUT = option({ ...OUT_SPEC, path: 'output-file', help: 'output sim.json (default: stdout)' });

export const similarityCommand = defineCommand({
  command: 'similarity',
  describe: 'Layer similarity (diffusion embedding + NPIB, or --metric cka) from a model\'s calibration pass or from activations',
  options: [...COMPUTE_OPTIONS, MODEL_OR_OTHER, REVISION, ACTIVATIONS, ...ANALYSIS_OPTIONS, OUT, FORCE_FILE],
  conflicts: [[MODEL_OR_OTHER, ACTIVATIONS], [CALIBRATION_DATA, CALIBRATION_FILE]],
  examples: [
    ['$0 similarity --model models/demo --data data/demo-mmlu --out sim.json', ''],
    ['$0 similarity --activations acts.json --out sim.json', ''],
    ['$0 similarity --model models/demo --data data/demo-mmlu --metric cka --out cka.json', 'linear CKA instead of NPIB'],
  ],
  check: (v) => {
    if (v.model === undefined && v.activations === undefined) throw new UserError('similarity: give --model (with --data or --calibration) or --activations');
  },
  run: async (v, ctx) => {
    const { OUTPUT_FILES } = await import('../../io/output-dir.ts');
    claimFile(v.out, OUTPUT_FILES.similarity, v.force, ctx.inputs);
    await setup({ ...v, quiet: ctx.quiet });
    const { activationsSimilarity, modelSimilarity } = await import('../../pipeline/compress.ts');
    const opts = analysisOptions(v, ctx.log);
    const result = v.activations !== undefined
      ? activationsSimilarity(v.activations, { similarity: opts.similarity, metric: opts.metric, quiet: ctx.quiet, log: ctx.log })
      : await modelSimilarity({ ...opts, model: v.model ?? '', quiet: ctx.quiet, log: ctx.log });
    emitJson(result, v.out);
  },
});
