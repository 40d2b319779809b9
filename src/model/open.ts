/**
 * Opening a model directory (or GGUF file) for reading: its config and its checkpoint, checked against each
 * other before any weight is read. No tfjs: the memory estimate opens models this way before loading them.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { groupCount } from '../io/packed.ts';
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
  if (ckpt.configSource === undefined) checkPackedGrids(config, ckpt);
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

/** A grid in words: "4-bit symmetric, groups of 32". */
function showGrid(bits: number, symmetric: boolean, group: number, cols: number): string {
  return `${bits}-bit ${symmetric ? 'symmetric' : 'asymmetric'}, ${group >= cols ? 'one group per row' : `groups of ${group}`}`;
}

/**
 * Checks config.json's quantization_config against the packed tensors it describes: each decoder linear
 * packed with its bits, group_size and sym, the embedding and lm_head with theirs in `tables`. The packed
 * tensors' shapes and dtypes decide how they are read, so a config that says otherwise (edited, or copied
 * from another quantization) would label the weights wrongly in info, model cards and exports.
 * A group size at least as wide as the row is the row's one group, as the shapes store it.
 */
function checkPackedGrids(config: LlamaConfig, ckpt: PackedCheckpoint): void {
  const q = config.quantization_config;
  if (!q) return;
  const file = join(ckpt.dir, 'config.json');
  for (const name of expectedTensors(config).keys()) {
    const p = ckpt.packedInfo(name);
    if (!p) continue;
    const stated = q.tables?.[name] ?? (name.startsWith('model.layers.') ? q : undefined);
    if (!stated) continue; // an embedding or lm_head a config of an older version gives no grid for
    const statedGroup = stated.group_size === -1 ? p.cols : stated.group_size;
    if (stated.bits === p.spec.bits && stated.sym === p.spec.symmetric && groupCount(p.cols, statedGroup) === groupCount(p.cols, p.spec.group)) continue;
    const where = q.tables?.[name] ? `tables["${name}"]` : '';
    throw new UserError(`${file}: quantization_config${where ? `.${where}` : ''} says ${showGrid(stated.bits, stated.sym, statedGroup, p.cols)} `
      + `(bits ${stated.bits}, group_size ${stated.group_size}, sym ${stated.sym}), but tensor "${p.quants}" in ${ckpt.info(p.quants)?.file ?? ckpt.dir} is packed ${showGrid(p.spec.bits, p.spec.symmetric, p.spec.group, p.cols)}; `
      + 'the config does not describe these weights: restore the config.json they were written with, or re-quantize the model');
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

