/**
 * Opening a model directory (or GGUF file) for reading: its config and its checkpoint, checked against each
 * other before any weight is read. No tfjs: the memory estimate opens models this way before loading them.
 */
import { existsSync } from 'node:fs';
import { checkLayerCount, expectedTensors, readConfig, type LlamaConfig } from './config.ts';
import { openWeights } from './files.ts';
import { UserError } from '../runtime/errors.ts';
import { withPackedWeights, type PackedCheckpoint } from './packed-checkpoint.ts';

/** Checks that every tensor the config implies is present with the right shape (as floats, or packed). */
function validateCheckpoint(config: LlamaConfig, ckpt: PackedCheckpoint): void {
  checkLayerCount(config, ckpt.names(), ckpt.dir, ckpt.configSource !== undefined);
  const source = ckpt.configSource ?? 'config.json';
  const label = (name: string) => ckpt.label?.(name) ?? name;
  const packed = [...expectedTensors(config).keys()].filter((name) => ckpt.packedInfo(name));
  if (packed.length && !config.quantization_config) {
    throw new UserError(`${ckpt.dir}: holds packed weights ("${label(packed[0])}") but ${source} has no quantization_config; re-quantize the model with mka quantize`);
  }
  for (const [name, shape] of expectedTensors(config)) {
    const p = ckpt.packedInfo(name); // (a directory's packed parts were checked against the shape when it was opened; a GGUF's here)
    if (p && p.rows === shape[0] && p.cols === shape[1]) continue;
    const info = ckpt.info(name);
    if (!info) throw new UserError(`${ckpt.dir}: tensor "${label(name)}" is missing from the checkpoint (${source} expects it)`);
    if (info.shape.join(',') !== shape.join(',')) {
      throw new UserError(`${info.file}: tensor "${label(name)}" has shape [${info.shape}] but ${source} implies [${shape}]`);
    }
  }
}

/**
 * Opens a model directory's (or GGUF file's) config and checkpoint, validated against each other; close
 * the checkpoint. Packed weights read as floats through it (dequantized) and packed through readPacked.
 */
export function openModelDir(dir: string): { config: LlamaConfig; ckpt: PackedCheckpoint } {
  if (!existsSync(dir)) throw new UserError(`${dir}: model directory not found`);
  const config = readConfig(dir);
  const opened = openWeights(dir);
  let ckpt: PackedCheckpoint;
  try {
    // a GGUF checkpoint knows its packed weights (Q8_0/Q4_0/Q4_1 blocks); a directory's are found by withPackedWeights
    ckpt = opened.packedInfo && opened.readPacked ? (opened as PackedCheckpoint) : withPackedWeights(opened, config);
    validateCheckpoint(config, ckpt);
  } catch (e) {
    opened.close();
    throw e;
  }
  return { config, ckpt };
}

