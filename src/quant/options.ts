/**
 * The options of `mka quantize` and `compress --quantize` that are not a method's own (a method declares
 * its parameters in its file, methods/), declared once (contract 5, src/runtime/options.ts). No tfjs here.
 */
import { OptionError, flag, option, type OptionSpec } from '../runtime/options.ts';

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
/**
 * Bits of the token embedding (round to nearest, symmetric groups of 32: ggml's Q8_0 or Q4_0 blocks). 8 by
 * default whatever the layers' bits: the GPTQ and AWQ reference code leave the embedding unquantized (their
 * algorithms do not apply to a lookup table), and at 4 bits its rounding, the same for every method, is
 * the largest part of a 4-bit model's output error (docs/quantization.md).
 */
export const DEFAULT_EMBEDDING_BITS = 8;

export const EMBEDDING_BITS = option({
  name: 'embeddingBits', option: 'embedding-bits', type: 'choice', choices: ['8', '4'], group: G,
  help: `bits of the token embedding (round to nearest, symmetric groups of 32: Q8_0 or Q4_0 blocks; default ${DEFAULT_EMBEDDING_BITS}); lm_head is 8-bit`,
});
export const KEEP_EMBEDDINGS = option({
  name: 'keepEmbeddings', option: 'keep-embeddings', type: 'boolean', default: false, group: G,
  help: 'keep the embedding and lm_head as floats (as the GPTQ/AWQ papers do); default: lm_head 8-bit, the embedding at --embedding-bits',
});
export const CALIB_SHOTS = option({
  name: 'shots', option: 'calib-shots', type: 'integer', min: 0, default: 5, group: 'Calibration:',
  help: 'dev examples before each calibration question (the 5-shot contexts evaluation runs; 0: the question alone)',
});

/** compress --quantize: the quantizer's dev examples before each of the merge's calibration questions. */
export const QUANTIZE_SHOTS = option({
  name: 'quantizeShots', option: 'quantize-shots', type: 'integer', min: 0, group: G,
  help: 'with --quantize: dev examples before each of the merge\'s calibration questions in the quantizer\'s calibration (default 5; 0: the merge\'s own prompts, not tokenized again)',
});

/** compress --quantize: quantize the compressed model as it is written. */
export const QUANTIZE_AFTER = option({
  name: 'quantize', option: 'quantize', type: 'string', group: G,
  help: 'then quantize the compressed model: METHOD:wBITS[gGROUP][eBITS][a8][-asym], e.g. gptq:w4g128, rtn:w8, smoothquant:w8a8, gptq:w4g32e4 (embedding at 4 bits; default 8) (calibrated on the questions the merge drew, each after 5 dev examples: --quantize-shots)',
});

/** A quantization spec: METHOD:wBITS[gGROUP][eBITS][a8][-asym] (registry.ts parses it against the methods; eBITS: the embedding's bits). */
export const QUANT_SPEC = /^([a-z]+):w(4|8)(?:g(32|64|128))?(?:e(4|8))?(a8)?(-asym)?$/;

/** The error for a spec that is not METHOD:wBITS[gGROUP][eBITS][a8][-asym] of a known method (checked without loading the methods). */
export function specSyntaxError(spec: string, option: string): string | null {
  if (spec === 'none') return null;
  const m = QUANT_SPEC.exec(spec);
  if (!m || !(QUANT_METHOD_NAMES as readonly string[]).includes(m[1])) {
    return `${option} ${spec}: expected METHOD:wBITS[gGROUP][eBITS][a8][-asym] with METHOD one of ${QUANT_METHOD_NAMES.join(', ')}, such as gptq:w4g128, rtn:w8, awq:w4g128, smoothquant:w8a8, gptq:w4g32e4 (or none)`;
  }
  return null;
}

/** Checks every spec of a list option (e.g. sweep --quantize) before any work: a one-line OptionError naming the option. */
export function checkSpecList(spec: OptionSpec, values: readonly string[]): void {
  for (const v of values) {
    const e = specSyntaxError(v, flag(spec));
    if (e) throw new OptionError(spec, e);
  }
}
