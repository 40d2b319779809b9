import { defineCommand } from '../options.ts';
import { FORCE_DIR, claimOutput, setup } from '../common.ts';
import { OUT as OUT_SPEC } from '../../io/output-options.ts';
import { flag, option, type OptionSpec } from '../../runtime/options.ts';
import { UserError } from '../../runtime/errors.ts';
import { COMPUTE_OPTIONS } from '../../runtime/backend-choice.ts';
import { MODEL } from '../../model/options.ts';
import { CALIBRATION_DATA, CALIBRATION_FILE, CALIB_SUBJECTS, SEEDED_CALIBRATION_SEED, MICRO_BATCH, PER_SUBJECT } from '../../compress/options.ts';
import { ASYM, BITS, CALIB_SHOTS, DEFAULT_EMBEDDING_BITS, EMBEDDING_BITS, GROUP_SIZE, KEEP_EMBEDDINGS, QUANT_METHOD } from '../../quant/options.ts';
import { QUANT_METHODS, checkGrid, getQuantMethod, methodParams, quantizationName } from '../../quant/registry.ts';
import type { QuantGrid } from '../../quant/method.ts';

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Every method's own parameters as options (a name two methods share is declared once: they mean the same). */
const METHOD_PARAMS: OptionSpec[] = [];
for (const m of QUANT_METHODS) {
  for (const p of m.params) {
    if (METHOD_PARAMS.some((s) => s.option === p.name)) continue;
    METHOD_PARAMS.push(option({
      name: camel(p.name), option: p.name, type: p.type, min: p.min, max: p.max, group: 'Method:',
      help: `${m.name}: ${p.describe} (default ${p.default})`,
    }));
  }
}

const OUT = option({ ...OUT_SPEC, required: true, help: 'output model directory (packed weights)' });
const MICRO = option({ ...MICRO_BATCH, help: 'prompts per micro-batch inside a layer, at most (a micro-batch also keeps within the padded tokens whose pass through a layer fits in 1 GiB: 3,373 at Llama-3-8B\'s shape)' });

export const quantizeCommand = defineCommand({
  command: 'quantize',
  describe: 'Quantize a model to packed 8/4-bit weights (rtn, gptq, awq, smoothquant); writes a model directory every command takes',
  options: [
    ...COMPUTE_OPTIONS, MODEL, QUANT_METHOD, BITS, GROUP_SIZE, ASYM, EMBEDDING_BITS, KEEP_EMBEDDINGS, ...METHOD_PARAMS,
    CALIBRATION_DATA, CALIBRATION_FILE, CALIB_SUBJECTS, PER_SUBJECT, CALIB_SHOTS, SEEDED_CALIBRATION_SEED, MICRO, OUT, FORCE_DIR,
  ],
  conflicts: [[CALIBRATION_DATA, CALIBRATION_FILE]],
  examples: [
    ['$0 quantize --model models/demo --method gptq --bits 4 --group-size 32 --data data/demo-mmlu --out out/demo-gptq-w4g32', ''],
    ['$0 quantize --model models/demo --method rtn --bits 8 --out out/demo-rtn-w8', 'no calibration'],
  ],
  run: async (v, ctx) => {
    const method = getQuantMethod(v.method, flag(QUANT_METHOD));
    const g = v.groupSize;
    if (g !== undefined && ![0, 32, 64, 128].includes(g)) throw new UserError(`${flag(GROUP_SIZE)} ${g}: must be 32, 64, 128 or 0 (one group per output channel)`);
    const grid: QuantGrid = checkGrid({
      bits: Number(v.bits) as 4 | 8, group: g === 0 ? 'channel' : g ?? (method.name === 'smoothquant' ? 'channel' : 128), symmetric: !v.asym,
    }, method);
    const values = v as Record<string, unknown>;
    const given = Object.fromEntries(method.params.map((p) => [p.name, values[camel(p.name)]]).filter(([, x]) => x !== undefined));
    const others = METHOD_PARAMS.filter((s) => !method.params.some((p) => p.name === s.option) && values[s.name] !== undefined);
    if (others.length) throw new UserError(`${flag(others[0])} is not a parameter of ${method.name}; its parameters: ${method.params.map((p) => `--${p.name}`).join(', ') || 'none'}`);
    if (v.keepEmbeddings && v.embeddingBits !== undefined) {
      throw new UserError(`${flag(EMBEDDING_BITS)} ${v.embeddingBits} and ${flag(KEEP_EMBEDDINGS)} contradict each other: the first quantizes the embedding, the second keeps it float; give one`);
    }
    const embeddingBits = Number(v.embeddingBits ?? DEFAULT_EMBEDDING_BITS) as 4 | 8;
    const quantization = { method: method.name, grid, params: methodParams(method, given), embeddingBits };
    if (method.calibration !== 'none' && !v.data && !v.calibrationFile) {
      throw new UserError(`${flag(QUANT_METHOD)} ${method.name} needs calibration prompts: give ${flag(CALIBRATION_DATA)} MMLU_DIR or ${flag(CALIBRATION_FILE)} FILE`);
    }
    const release = claimOutput(v.out, 'quantize', 'hf-model', v.force, ctx.inputs);
    await setup({ ...v, quiet: ctx.quiet });
    const { quantizeModel } = await import('../../pipeline/quantize.ts');
    const report = await quantizeModel({
      model: v.model, out: v.out, quantization, data: v.data, calibrationFile: v.calibrationFile, subjects: v.subjects,
      perSubject: v.perSubject, shots: v.shots, seed: v.seed, microBatch: v.microBatch, keepEmbeddings: v.keepEmbeddings, quiet: ctx.quiet, log: ctx.log,
    });
    release();
    if (ctx.json) process.stdout.write(JSON.stringify({ out: v.out, quantization: quantizationName(quantization), seconds: report.seconds }) + '\n');
  },
});
