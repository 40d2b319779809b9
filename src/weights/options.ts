/**
 * Weight storage choices and the options of the Hugging Face writer (contract 5), apart from the code
 * that converts weights so that parsing options does not load tfjs.
 */
import { option } from '../runtime/options.ts';

/** tfjs' own weight quantization: none (float32), float16, or uint8/uint16 affine per tensor. */
export const QUANT_SCHEMES = ['none', 'float16', 'uint8', 'uint16'] as const;
export type QuantScheme = (typeof QUANT_SCHEMES)[number];

/** The dtypes a Hugging Face model directory is written in. */
export const HF_DTYPES = ['bfloat16', 'float16', 'float32'] as const;
export type HfDtype = (typeof HF_DTYPES)[number];

export const HF_DTYPE = option({
  name: 'dtype', option: 'dtype', type: 'choice', choices: HF_DTYPES,
  help: 'storage dtype (default: the source model\'s torch_dtype, else float32)',
});
/** A recorded plan (the merge.json of a compressed model directory), replayed by `mka compress`; model cards name it. */
export const PLAN = option({
  name: 'plan', option: 'plan', type: 'string', path: 'file',
  help: 'replay a recorded plan (a merge.json of mka compress, or the same fields in YAML) without calibrating',
});
export const HF_SHARD_MB = option({ name: 'shardMb', option: 'shard-mb', type: 'number', above: 0, default: 5000, help: 'largest shard in MB (10^6 bytes)' });
