/**
 * The options of `mka export tfjs`, `mka export hf` and `mka export gguf`, declared once (contract 5,
 * src/runtime/options.ts). No tfjs here.
 */
import { option } from '../runtime/options.ts';
import type { OutputFileKind } from '../io/output-dir.ts';
import { OUT } from '../io/output-options.ts';
import { withGguf } from '../gguf/reader.ts';
import { QUANT_SCHEMES } from '../weights/options.ts';

export const TFJS_QUANTIZE = option({
  name: 'quantize', option: 'quantize', type: 'choice', choices: QUANT_SCHEMES, default: 'none',
  help: 'weight storage: float32, float16, or uint8/uint16 affine per tensor (tfjs dequantizes at load)',
});
export const TFJS_SHARD_MB = option({ name: 'shardMb', option: 'shard-mb', type: 'number', above: 0, default: 4, help: 'weight shard size in MiB' });
export const MAX_SEQ = option({ name: 'maxSeq', option: 'max-seq', type: 'integer', min: 1, help: 'longest input the model accepts (default: max_position_embeddings)' });

/** `export hf` writes with the Hugging Face writer and takes its options. */
export { HF_DTYPE, HF_SHARD_MB } from '../weights/options.ts';

/** The tensor types `mka export gguf` writes. */
export const GGUF_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const;
export type GgufOutType = (typeof GGUF_TYPES)[number];

export const GGUF_OUT = option({ ...OUT, required: true, path: 'output-file', help: 'the .gguf file to write (replaced atomically)' });
export const GGUF_TYPE = option({
  name: 'type', option: 'type', type: 'choice', choices: GGUF_TYPES, default: 'f16',
  help: 'weight type of the matrices (norms stay f32; q8_0/q4_0 matrices whose rows do not divide into blocks of 32 fall back to f16; with q8_0/q4_0 packed weights keep their own blocks)',
});
export const GGUF_NAME = option({ name: 'name', option: 'name', type: 'string', help: 'general.name in the file (default: the model directory\'s name)' });

/** Whether `path` is a GGUF file mka wrote (its metadata has mka.version). */
function ggufByMka(path: string): boolean {
  try {
    return withGguf(path, (g) => g.has('mka.version'));
  } catch {
    return false;
  }
}

/** The output file of `mka export gguf`: every GGUF starts with "GGUF", so mka's own are told by their mka.version. */
export const GGUF_FILE: OutputFileKind = { label: 'a GGUF file mka exported', prefix: 'GGUF', owned: ggufByMka };
