/**
 * The options of `mka quantize` and `compress --quantize` that are not a method's own (a method declares
 * its parameters in its file, methods/), declared once (contract 5, src/runtime/options.ts). No tfjs here.
 */
import { option } from '../runtime/options.ts';

/** The quantization methods' names (registry.ts lists the methods themselves). */
export const QUANT_METHOD_NAMES = ['rtn', 'gptq', 'awq', 'smoothquant'] as const;

const G = 'Quantization:';

export const QUANT_METHOD = option({ name: 'method', option: 'method', type: 'choice', choices: QUANT_METHOD_NAMES, required: true, group: G, help: 'quantization method' });
export const BITS = option({ name: 'bits', option: 'bits', type: 'choice', choices: ['8', '4'], default: '4', group: G, help: 'bits per weight of the decoder\'s linears' });
export const GROUP_SIZE = option({
  name: 'groupSize', option: 'group-size', type: 'integer', min: 0, group: G,
  help: 'inputs sharing a scale: 32, 64, 128, or 0 for one scale per output channel (default 128; smoothquant: 0)',
});
export const ASYM = option({ name: 'asym', option: 'asym', type: 'boolean', default: false, group: G, help: 'a min per group beside the scale (asymmetric grid, like ggml Q4_1)' });
export const KEEP_EMBEDDINGS = option({
  name: 'keepEmbeddings', option: 'keep-embeddings', type: 'boolean', default: false, group: G,
  help: 'keep the embedding and lm_head as floats (as the GPTQ/AWQ papers do); default: quantized as llama.cpp does (embedding at --bits, lm_head at 8, groups of 32)',
});
export const CALIB_SHOTS = option({
  name: 'shots', option: 'calib-shots', type: 'integer', min: 0, default: 5, group: 'Calibration:',
  help: 'dev examples before each calibration question (the 5-shot contexts evaluation runs; 0: the question alone)',
});

/** compress --quantize: quantize the compressed model as it is written. */
export const QUANTIZE_AFTER = option({
  name: 'quantize', option: 'quantize', type: 'string', group: G,
  help: 'then quantize the compressed model: METHOD:wBITS[gGROUP][a8][-asym], e.g. gptq:w4g128, rtn:w8, smoothquant:w8a8 (its calibration prompts: the same questions, 5-shot)',
});
