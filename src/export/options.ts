/**
 * The options of `mka export tfjs` and `mka export hf`, declared once (contract 5,
 * src/runtime/options.ts). No tfjs here.
 */
import { option } from '../runtime/options.ts';
import { QUANT_SCHEMES } from '../weights/options.ts';

export const TFJS_QUANTIZE = option({
  name: 'quantize', option: 'quantize', type: 'choice', choices: QUANT_SCHEMES, default: 'none',
  help: 'weight storage: float32, float16, or uint8/uint16 affine per tensor (tfjs dequantizes at load)',
});
export const TFJS_SHARD_MB = option({ name: 'shardMb', option: 'shard-mb', type: 'number', above: 0, default: 4, help: 'weight shard size in MiB' });
export const MAX_SEQ = option({ name: 'maxSeq', option: 'max-seq', type: 'integer', min: 1, help: 'longest input the model accepts (default: max_position_embeddings)' });

/** `export hf` writes with the Hugging Face writer and takes its options. */
export { HF_DTYPE, HF_SHARD_MB } from '../weights/options.ts';
