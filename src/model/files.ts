/**
 * Where a model's weights come from: a Hugging Face directory (safetensors) or a GGUF model file,
 * both read as a checkpoint of tensors by Hugging Face name. No tfjs here (`mka info` uses it).
 */
import { type Checkpoint, openCheckpoint } from '../io/checkpoint.ts';
import { isGgufFile } from '../gguf/reader.ts';
import { openGgufCheckpoint } from '../gguf/checkpoint.ts';

/** The weights of a model directory or GGUF model file; close it. */
export function openWeights(path: string): Checkpoint {
  return isGgufFile(path) ? openGgufCheckpoint(path) : openCheckpoint(path);
}

/** Whether a checkpoint stores a tensor in blocks of quantized values (GGUF Q8_0, Q4_0, Q4_K, ...). */
export function isBlockQuantized(ckpt: Checkpoint, name: string): boolean {
  const dtype = ckpt.info(name)?.dtype;
  return dtype !== undefined && dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16';
}

export { isGgufFile };
