import { defineCommand } from '../options.ts';
import { FORCE_DIR, claimOutput, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { flag, option, type OptionSpec } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { MODEL, REVISION } from '../../model/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE } from '../../compress/options.ts';
import { DEFAULT_METHOD, METHOD, OUT_DTYPE, PLAN, REMOVE } from '../../pipeline/options.ts';
import { ANALYSIS_OPTIONS, METHOD_OPTIONS, analysisOptions, checkMethodOptions, methodParameters } from './compress-options.ts';
import { QUANTIZE_AFTER, QUANTIZE_SHOTS } from '../../quant/options.ts';

const OUT = option({ ...OUT_SPEC, required: true, help: 'output model directory' });

/** Options that choose or feed a plan, which --plan replaces. */
const PLANNING = [METHOD, REMOVE, CALIBRATION_DATA, CALIBRATION_FILE, ...METHOD_OPTIONS];

export const compressCommand = defineCommand({
  command: 'compress',
  describe: 'Remove K layers by merging (mka, laco) or pruning (reverse, shortgpt, angular, sleb, taylor, magnitude); writes a HF model, merge.json, mergekit.yaml and a model card',
  options: [...COMPUTE_OPTIONS, MODEL, REVISION, METHOD, REMOVE, PLAN, ...ANALYSIS_OPTIONS, ...METHOD_OPTIONS, OUT_DTYPE, QUANTIZE_AFTER, QUANTIZE_SHOTS, OUT, FORCE_DIR],
  conflicts: [[CALIBRATION_DATA, CALIBRATION_FILE]],
  examples: [
    ['$0 compress --model models/demo --method mka --remove 2 --data data/demo-mmlu --out out/mka-2', ''],
    ['$0 compress --model models/demo --plan out/mka-2/merge.json --out out/mka-2-again', 'the same model again, byte for byte, without calibration'],
    ['$0 compress --model models/demo --method mka --remove 2 --data data/demo-mmlu --quantize gptq:w4g32 --out out/mka-2-w4', 'merged, then quantized (packed 4-bit weights)'],
  ],
  check: (v) => {
    const given = v as Record<string, unknown>;
    if (v.quantizeShots !== undefined && v.quantize === undefined) throw new UserError(`${flag(QUANTIZE_SHOTS)} sets the calibration of ${flag(QUANTIZE_AFTER)}: give both, or neither`);
    if (v.plan !== undefined) {
      // with --plan, --data/--calibration feed only the quantizer
      const feedsQuantizer = (s: OptionSpec) => v.quantize !== undefined && (s === CALIBRATION_DATA || s === CALIBRATION_FILE);
      const planning = PLANNING.filter((s) => given[s.name] !== undefined && !feedsQuantizer(s));
      if (planning.length) throw new UserError(`${flag(PLAN)} replays a recorded plan: leave out ${planning.map(flag).join(', ')} (edit the plan file to change it)`);
    } else if (v.remove === undefined) {
      throw new UserError(`${flag(REMOVE)} is required (the number of layers to remove), or replay a recorded plan with ${flag(PLAN)} merge.json`);
    } else {
      checkMethodOptions(v, [v.method ?? DEFAULT_METHOD], `${flag(METHOD)} ${v.method ?? DEFAULT_METHOD}`);
    }
  },
  run: async (v, ctx) => {
    const { readPlanFile } = await import('../../compress/plan-file.ts');
    const { getQuantMethod, parseQuantization } = await import('../../quant/registry.ts');
    const quantize = v.quantize !== undefined ? parseQuantization(v.quantize, flag(QUANTIZE_AFTER)) : null;
    if (quantize && getQuantMethod(quantize.method).calibration !== 'none' && !v.data && !v.calibrationFile) {
      throw new UserError(`${flag(QUANTIZE_AFTER)} ${v.quantize}: ${quantize.method} needs calibration prompts: give ${flag(CALIBRATION_DATA)} MMLU_DIR or ${flag(CALIBRATION_FILE)} FILE`);
    }
    const recorded = v.plan !== undefined ? readPlanFile(v.plan, v.model) : undefined; // checked before any work
    const release = claimOutput(v.out, 'compress', 'hf-model', v.force, ctx.inputs);
    await setup({ ...v, quiet: ctx.quiet });
    const { compressModel, replayPlan } = await import('../../pipeline/compress.ts');
    const plan = v.plan !== undefined
      ? await replayPlan({ model: v.model, plan: v.plan, out: v.out, dtype: v.dtype, recorded, quantize, quantizeShots: v.quantizeShots, calibration: analysisOptions(v, ctx.log), quiet: ctx.quiet, log: ctx.log })
      : await compressModel({
        ...analysisOptions(v, ctx.log), model: v.model, out: v.out, method: v.method ?? DEFAULT_METHOD, remove: v.remove!, // check() refuses a missing --remove without --plan
        params: methodParameters(v), fitLambda: v.fitLambda, dtype: v.dtype, quantize, quantizeShots: v.quantizeShots, quiet: ctx.quiet, log: ctx.log,
      });
    release();
    if (ctx.json) process.stdout.write(JSON.stringify({ out: v.out, layers: plan.layers.length, steps: plan.steps }) + '\n');
  },
});
