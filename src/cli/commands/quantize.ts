import type { Argv, CommandModule } from 'yargs';
import { type ArgsOf, type GlobalArgs, claimOutput, computeOptions, forceOption, logger, setup } from '../common.ts';
import { QUANT_METHODS, checkGrid, getQuantMethod, methodParams, quantizationName } from '../../quant/registry.ts';
import type { QuantGrid } from '../../quant/method.ts';
import { quantizeModel } from '../../pipeline/quantize.ts';
import { UserError } from '../../runtime/errors.ts';

/** Every method's own parameters as options (a name two methods share is declared once: they mean the same). */
function methodOptions<T>(y: Argv<T>): Argv<T> {
  const seen = new Set<string>();
  for (const m of QUANT_METHODS) {
    for (const p of m.params) {
      if (seen.has(p.name)) continue;
      seen.add(p.name);
      y = y.option(p.name, { type: p.type, describe: `${m.name}: ${p.describe} (default ${p.default})`, group: 'Method:' });
    }
  }
  return y;
}

const builder = (y: Argv<GlobalArgs>) => methodOptions(forceOption(computeOptions(y)))
  .option('model', { type: 'string', demandOption: true, describe: 'Hugging Face model directory (float weights)' })
  .option('method', { choices: QUANT_METHODS.map((m) => m.name), demandOption: true, describe: 'quantization method' })
  .option('bits', { type: 'number', choices: [8, 4], default: 4, describe: 'bits per weight of the decoder\'s linears' })
  .option('keep-embeddings', { type: 'boolean', default: false, describe: 'keep the embedding and lm_head as floats (as the GPTQ/AWQ papers do); default: quantized as llama.cpp does (embedding at --bits, lm_head at 8, groups of 32)' })
  .option('group-size', { type: 'number', describe: 'inputs sharing a scale: 32, 64, 128, or 0 for one scale per output channel (default 128; smoothquant: 0)' })
  .option('asym', { type: 'boolean', default: false, describe: 'a min per group beside the scale (asymmetric grid, like ggml Q4_1)' })
  .option('data', { type: 'string', describe: 'MMLU directory to draw calibration prompts from (gptq, awq, smoothquant)', group: 'Calibration:' })
  .option('calibration', { type: 'string', describe: 'text file, one calibration prompt per line (instead of --data)', group: 'Calibration:' })
  .option('calib-subjects', { type: 'number', describe: 'how many MMLU subjects to draw calibration prompts from (default: all)', group: 'Calibration:' })
  .option('per-subject', { type: 'number', describe: 'questions per subject (default: 1 on MMLU, enough for 51 prompts on fewer subjects)', group: 'Calibration:' })
  .option('calib-shots', { type: 'number', default: 5, describe: 'dev examples before each calibration question (the 5-shot contexts evaluation runs; 0: the question alone)', group: 'Calibration:' })
  .option('seed', { type: 'number', default: 1, describe: 'sampling seed', group: 'Calibration:' })
  .option('micro-batch', { type: 'number', default: 8, describe: 'prompts per micro-batch inside a layer', group: 'Calibration:' })
  .option('out', { type: 'string', demandOption: true, describe: 'output model directory (packed weights)' })
  .conflicts('data', 'calibration')
  .example('$0 quantize --model models/demo --method gptq --bits 4 --group-size 32 --data data/demo-mmlu --out out/demo-gptq-w4g32', '')
  .example('$0 quantize --model models/demo --method rtn --bits 8 --out out/demo-rtn-w8', 'no calibration');

type Args = ArgsOf<typeof builder>;

export const quantizeCommand: CommandModule<GlobalArgs, Args> = {
  command: 'quantize',
  describe: 'Quantize a model to packed 8/4-bit weights (rtn, gptq, awq, smoothquant); writes a model directory every command takes',
  builder,
  handler: async (a) => {
    const log = logger(a);
    const method = getQuantMethod(a.method);
    const g = a['group-size'];
    if (g !== undefined && ![0, 32, 64, 128].includes(g)) throw new UserError(`--group-size ${g}: must be 32, 64, 128 or 0 (one group per output channel)`);
    const grid: QuantGrid = checkGrid({
      bits: a.bits as 4 | 8, group: g === 0 ? 'channel' : g ?? (method.name === 'smoothquant' ? 'channel' : 128), symmetric: !a.asym,
    }, method);
    const given = Object.fromEntries(method.params.map((p) => [p.name, (a as Record<string, unknown>)[p.name]]).filter(([, v]) => v !== undefined));
    const others = QUANT_METHODS.filter((m) => m !== method).flatMap((m) => m.params.map((p) => p.name))
      .filter((n) => !method.params.some((p) => p.name === n) && (a as Record<string, unknown>)[n] !== undefined);
    if (others.length) throw new UserError(`--${others[0]} is not a parameter of ${method.name}; its parameters: ${method.params.map((p) => `--${p.name}`).join(', ') || 'none'}`);
    const quantization = { method: method.name, grid, params: methodParams(method, given) };
    if (method.calibration !== 'none' && !a.data && !a.calibration) throw new UserError(`--method ${method.name} needs calibration prompts: give --data MMLU_DIR or --calibration FILE`);
    const release = claimOutput(a.out, 'quantize', 'hf-model', a);
    await setup(a);
    const report = await quantizeModel({
      model: a.model, out: a.out, quantization, data: a.data, calibrationFile: a.calibration, subjects: a['calib-subjects'],
      perSubject: a['per-subject'], shots: a['calib-shots'], seed: a.seed, microBatch: a['micro-batch'], keepEmbeddings: a['keep-embeddings'], quiet: a.quiet, log,
    });
    release();
    if (a.json) process.stdout.write(JSON.stringify({ out: a.out, quantization: quantizationName(quantization), seconds: report.seconds }) + '\n');
  },
};
