/**
 * Writes the calibration token ids `mka quantize --method gptq --data DATA --seed SEED` feeds its
 * quantizer (pipeline/quantize.ts quantCalibration: the default draw, each question after its 5 dev
 * examples) as JSON {"info", "prompts"}, for scripts/reference/gptq_reference.py. A dev tool run by hand:
 *
 *   node --import tsx scripts/reference/dump-calibration.ts --model models/demo --data data/demo-mmlu --seed 1 --out calib-1.json
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { quantCalibration } from '../../src/pipeline/quantize.ts';
import { DEFAULT_EMBEDDING_BITS } from '../../src/quant/options.ts';
import { getQuantMethod, methodParams, type Quantization } from '../../src/quant/registry.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'models/demo' },
    data: { type: 'string', default: 'data/demo-mmlu' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});
if (!values.out) throw new Error('--out FILE is required');
const method = getQuantMethod('gptq');
const quantization: Quantization = { method: method.name, grid: { bits: 4, group: 32, symmetric: true }, params: methodParams(method), embeddingBits: DEFAULT_EMBEDDING_BITS };
const cal = await quantCalibration(values.model!, quantization, { data: values.data, seed: Number(values.seed) });
writeFileSync(values.out, JSON.stringify({ info: cal.info, prompts: cal.prompts }) + '\n');
process.stdout.write(`${values.out}: ${cal.prompts!.length} prompts, ${cal.prompts!.reduce((a, p) => a + p.length, 0)} tokens\n`);
