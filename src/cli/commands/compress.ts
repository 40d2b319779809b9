import type { Argv, CommandModule } from 'yargs';
import { type ArgsOf, type GlobalArgs, claimOutput, forceOption, logger, setup, computeOptions } from '../common.ts';
import { compressModel, replayPlan } from '../../pipeline/compress.ts';
import { METHODS } from '../../compress/methods/registry.ts';
import { HF_DTYPES } from '../../weights/hf-writer.ts';
import { UserError } from '../../runtime/errors.ts';
import { readPlanFile } from '../../pipeline/plan-file.ts';
import { getQuantMethod, parseQuantization } from '../../quant/registry.ts';
import { analysisOptions, calibrationOptions, methodParameters, mkaOptions } from './compress-options.ts';

const builder = (y: Argv<GlobalArgs>) => mkaOptions(forceOption(calibrationOptions(computeOptions(y))))
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory' })
  .option('method', { choices: METHODS.map((m) => m.name), describe: 'compression method (default mka)' })
  .option('remove', { type: 'number', describe: 'number of layers to remove (required unless --plan)' })
  .option('plan', { type: 'string', describe: 'replay a recorded plan (a merge.json of mka compress, or the same fields in YAML) without calibrating' })
  .option('dtype', { choices: HF_DTYPES, describe: 'storage dtype of the output (default: the source model\'s torch_dtype, else float32; with --plan, the dtype it records)' })
  .option('quantize', { type: 'string', describe: 'then quantize the compressed model: METHOD:wBITS[gGROUP][a8][-asym], e.g. gptq:w4g128, rtn:w8, smoothquant:w8a8 (its calibration prompts: the same questions, 5-shot)' })
  .option('out', { type: 'string', demandOption: true, describe: 'output model directory' })
  .conflicts('data', 'calibration')
  .example('$0 compress --model models/demo --method mka --remove 2 --data data/demo-mmlu --out out/mka-2', '')
  .example('$0 compress --model models/demo --plan out/mka-2/merge.json --out out/mka-2-again', 'the same model again, byte for byte, without calibration')
  .example('$0 compress --model models/demo --method mka --remove 2 --data data/demo-mmlu --quantize gptq:w4g32 --out out/mka-2-w4', 'merged, then quantized (packed 4-bit weights)');

type Args = ArgsOf<typeof builder>;

/** Options that choose or feed a plan, which --plan replaces. */
const PLANNING = ['method', 'remove', 'data', 'calibration', 'strategy', 'blend-norms'] as const;

export const compressCommand: CommandModule<GlobalArgs, Args> = {
  command: 'compress',
  describe: 'Remove K layers by merging (mka) or pruning (reverse, shortgpt, angular); writes a HF model + merge.json',
  builder,
  handler: async (a) => {
    const log = logger(a);
    const { plan: planFile, remove } = a;
    const quantize = a.quantize !== undefined ? parseQuantization(a.quantize) : null;
    const quantCalibration = !!quantize && getQuantMethod(quantize.method).calibration !== 'none';
    if (quantCalibration && !a.data && !a.calibration) throw new UserError(`--quantize ${a.quantize}: ${quantize!.method} needs calibration prompts: give --data MMLU_DIR or --calibration FILE`);
    if (planFile !== undefined) {
      // with --plan, --data/--calibration feed only the quantizer
      const given = PLANNING.filter((k) => a[k] !== undefined && !(quantCalibration && (k === 'data' || k === 'calibration')));
      if (given.length) throw new UserError(`--plan replays a recorded plan: leave out ${given.map((k) => `--${k}`).join(', ')} (edit the plan file to change it)`);
    } else if (remove === undefined) {
      throw new UserError('--remove is required (the number of layers to remove), or replay a recorded plan with --plan merge.json');
    }
    const recorded = planFile !== undefined ? readPlanFile(planFile, a.model) : undefined; // checked before any work
    const release = claimOutput(a.out, 'compress', 'hf-model', a);
    await setup(a);
    const plan = planFile !== undefined
      ? await replayPlan({ model: a.model, plan: planFile, out: a.out, dtype: a.dtype, recorded, quantize, calibration: analysisOptions(a, log), quiet: a.quiet, log })
      : await compressModel({
        ...analysisOptions(a, log), model: a.model, out: a.out, method: a.method ?? 'mka', remove: remove ?? 0,
        params: methodParameters(a), dtype: a.dtype, quantize, quiet: a.quiet, log,
      });
    release();
    if (a.json) process.stdout.write(JSON.stringify({ out: a.out, layers: plan.layers.length, steps: plan.steps }) + '\n');
  },
};
