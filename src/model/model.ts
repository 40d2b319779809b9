/**
 * A loaded model: its config and its weights by Hugging Face name. Weights are either resident (tfjs
 * tensors held for the model's lifetime) or streamed: a decoder layer's tensors are read from the
 * checkpoint when the forward pass reaches it and freed after, so peak memory stays near one layer
 * plus activations. On a backend whose kernels take 16-bit weights (the native backend), BF16/F16
 * matrices stay 16-bit in memory, resident or streamed. On plain WebAssembly the decoder's projections
 * (and an untied lm_head) are held as Wᵀ [in, out], laid out once as they are read, because its
 * untransposed product is the fast one; whatever needs Hugging Face layout reads `readHfWeight`.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { type LlamaConfig, checkLayerCount, expectedTensors, layerTensorShapes, readConfig } from './config.ts';
import { type Checkpoint, openCheckpoint } from '../io/checkpoint.ts';
import { UserError } from '../runtime/errors.ts';
import { dequantizeRows, type PackedMatrix } from '../io/packed.ts';
import { disposeWeight, isPacked, packedSpec, prefersTransposedWeights, takes16BitWeights, type Weight } from './ops.ts';
import { withPackedWeights, type PackedCheckpoint } from './packed-checkpoint.ts';

export interface LlamaModel {
  config: LlamaConfig;
  /** The model directory it came from, if any. */
  dir: string | null;
  /**
   * Resident float32 tensors by HF name and shape: all of them, or only the non-layer ones when
   * streaming, less those in `packed`.
   */
  tensors: Map<string, tf.Tensor>;
  /**
   * Resident weights in a compute layout (see ops.Weight), by HF name; these are not in `tensors`:
   * 16-bit ones kept as stored, or float32 projections laid out transposed (`transposed`, plain wasm).
   */
  packed?: Map<string, Weight>;
  /**
   * The checkpoint, kept open when layers stream or some weights are packed: any weight not in
   * `tensors` is read from it (as float32 by exporters, as stored by the decoder).
   */
  checkpoint: Checkpoint | null;
  /** Counters for tests and benchmarks. */
  stats: { forwardCalls: number; layerLoads: number };
}

export interface LoadOptions {
  /** Read each decoder layer from disk when needed instead of keeping it resident. */
  streaming?: boolean;
  /** Keep BF16/F16 matrices 16-bit in memory (default: when the current backend's kernels take them). */
  keep16Bit?: boolean;
}

/** Checks that every tensor the config implies is present with the right shape (as floats, or packed). */
function validateCheckpoint(config: LlamaConfig, ckpt: PackedCheckpoint): void {
  checkLayerCount(config, ckpt.names(), ckpt.dir);
  const packed = [...expectedTensors(config).keys()].filter((name) => ckpt.packedInfo(name));
  if (packed.length && !config.quantization_config) {
    throw new UserError(`${ckpt.dir}: holds packed weights ("${packed[0]}") but config.json has no quantization_config; re-quantize the model with mka quantize`);
  }
  for (const [name, shape] of expectedTensors(config)) {
    if (ckpt.packedInfo(name)) continue; // its parts were checked against the shape when the checkpoint was opened
    const info = ckpt.info(name);
    if (!info) throw new UserError(`${ckpt.dir}: tensor "${name}" is missing from the checkpoint (config.json expects it)`);
    if (info.shape.join(',') !== shape.join(',')) {
      throw new UserError(`${info.file}: tensor "${name}" has shape [${info.shape}] but config.json implies [${shape}]`);
    }
  }
}

/**
 * Opens a model directory's config and checkpoint, validated against each other; close the checkpoint.
 * Packed weights read as floats through it (dequantized) and packed through readPacked.
 */
export function openModelDir(dir: string): { config: LlamaConfig; ckpt: PackedCheckpoint } {
  if (!existsSync(dir)) throw new UserError(`${dir}: model directory not found`);
  const config = readConfig(dir);
  const opened = openCheckpoint(dir);
  let ckpt: PackedCheckpoint;
  try {
    ckpt = withPackedWeights(opened, config);
    validateCheckpoint(config, ckpt);
  } catch (e) {
    opened.close();
    throw e;
  }
  return { config, ckpt };
}

/** The weights multiplied as x·Wᵀ that plain wasm holds transposed: decoder projections, an untied lm_head. */
const PROJECTION = /^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight|lm_head\.weight)$/;

/**
 * Weight `name` in the current backend's compute layout: on plain wasm a float32 projection becomes Wᵀ
 * [in, out] and its Hugging Face tensor is freed (so at most one extra copy exists, briefly); any
 * other weight is returned as it is.
 */
function toComputeLayout(name: string, w: Weight): Weight {
  if (w.dtype !== 'float32' || w.transposed || !PROJECTION.test(name) || !prefersTransposedWeights()) return w;
  const tensor = tf.transpose(w.tensor); // [in, out]
  w.tensor.dispose();
  return { tensor, dtype: 'float32', transposed: true };
}

/** Decoder-layer weights take int8 activations when the model says so (SmoothQuant W8A8); embeddings and lm_head never. */
function actBitsOf(config: LlamaConfig, name: string): 8 | undefined {
  return config.quantization_config?.act_bits === 8 && name.startsWith('model.layers.') ? 8 : undefined;
}

/** A packed weight as the kernels take it (ops.Weight): the quants in an int32 tensor, scales and mins as float32. */
function readPackedWeight(ckpt: Checkpoint, name: string, actBits: 8 | undefined): Weight {
  return packedWeight(ckpt.readPacked!(name), actBits);
}

/** A packed matrix as an ops.Weight (its quants viewed as int32 words, not copied where the backend keeps typed arrays). */
export function packedWeight(pm: PackedMatrix, actBits?: 8): Weight {
  const groups = pm.scales.length / pm.rows;
  const words = new Int32Array(pm.quants.buffer, pm.quants.byteOffset, pm.quants.byteLength / 4);
  const tensor = tf.tensor2d(words, [pm.rows, words.length / pm.rows], 'int32');
  const scales = tf.tensor2d(pm.scales, [pm.rows, groups]);
  const mins = pm.mins ? tf.tensor2d(pm.mins, [pm.rows, groups]) : undefined;
  return {
    tensor, dtype: pm.spec.bits === 8 ? 'q8' : 'q4',
    quant: { cols: pm.cols, group: pm.spec.group, symmetric: pm.spec.symmetric, scales, mins, ...(actBits ? { actBits } : {}) },
  };
}

/**
 * One weight from a checkpoint in compute layout: packed weights packed (readPackedWeight), 16-bit
 * matrices as stored (int32 [rows, cols/2] of raw words) when `keep16` and the checkpoint gives raw
 * bytes, everything else widened to float32 (projections transposed on plain wasm, see toComputeLayout).
 */
function readWeight(ckpt: Checkpoint, config: LlamaConfig, name: string, shape: number[], keep16: boolean): Weight {
  if (ckpt.packedInfo?.(name)) return readPackedWeight(ckpt, name, actBitsOf(config, name));
  const dtype = ckpt.info(name)?.dtype;
  if (keep16 && ckpt.readRaw && (dtype === 'BF16' || dtype === 'F16') && shape.length === 2 && shape[1] % 2 === 0) {
    const { data } = ckpt.readRaw(name);
    const words = new Int32Array(data.buffer, data.byteOffset, data.byteLength / 4); // two 16-bit words per element
    return { tensor: tf.tensor2d(words, [shape[0], shape[1] / 2], 'int32'), dtype: dtype === 'BF16' ? 'bfloat16' : 'float16' };
  }
  return toComputeLayout(name, { tensor: tf.tensor(ckpt.read(name), shape), dtype: 'float32' });
}

/** Loads a Hugging Face model directory (config.json + safetensors). */
export function loadModel(dir: string, opts: LoadOptions = {}): LlamaModel {
  const { config, ckpt } = openModelDir(dir);
  const keep16 = opts.keep16Bit ?? takes16BitWeights();
  const tensors = new Map<string, tf.Tensor>();
  const packed = new Map<string, Weight>();
  try {
    for (const [name, shape] of expectedTensors(config)) {
      if (opts.streaming && name.startsWith('model.layers.')) continue;
      const w = readWeight(ckpt, config, name, shape, keep16);
      if (w.dtype === 'float32' && !w.transposed) tensors.set(name, w.tensor);
      else packed.set(name, w);
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    for (const w of packed.values()) disposeWeight(w);
    ckpt.close();
    throw e;
  }
  const keepOpen = !!opts.streaming || [...packed.values()].some((w) => w.dtype !== 'float32' && !isPacked(w));
  if (!keepOpen) ckpt.close();
  return { config, dir, tensors, packed, checkpoint: keepOpen ? ckpt : null, stats: { forwardCalls: 0, layerLoads: 0 } };
}

/**
 * A model in memory from float tensors and packed matrices by Hugging Face name (a quantized sweep
 * point). Takes ownership of the tensors; packed matrices become packed weights (layer linears take
 * int8 activations when the config's quantization_config says act_bits 8).
 */
export function modelFromParts(config: LlamaConfig, floats: Map<string, tf.Tensor>, packedParts: Map<string, PackedMatrix>): LlamaModel {
  const packed = new Map<string, Weight>();
  for (const [name, pm] of packedParts) packed.set(name, packedWeight(pm, actBitsOf(config, name)));
  for (const [name, shape] of expectedTensors(config)) {
    const t = floats.get(name);
    if (!t && !packed.has(name)) throw new UserError(`model parts: "${name}" is missing`);
    if (t && t.shape.join(',') !== shape.join(',')) throw new UserError(`model parts: "${name}" has shape [${t.shape}], config implies [${shape}]`);
  }
  return layOutForBackend({ config, dir: null, tensors: floats, packed, checkpoint: null, stats: { forwardCalls: 0, layerLoads: 0 } });
}

/** Wraps tensors already in memory (random weights, training, merges) as a model. Takes ownership. */
export function modelFromTensors(config: LlamaConfig, tensors: Map<string, tf.Tensor>, dir: string | null = null): LlamaModel {
  for (const [name, shape] of expectedTensors(config)) {
    const t = tensors.get(name);
    if (!t) throw new UserError(`model tensors: "${name}" is missing`);
    if (t.shape.join(',') !== shape.join(',')) throw new UserError(`model tensors: "${name}" has shape [${t.shape}], config implies [${shape}]`);
  }
  return { config, dir, tensors, checkpoint: null, stats: { forwardCalls: 0, layerLoads: 0 } };
}

/**
 * Lays out an in-memory model's weights for the current backend as loadModel does (on plain wasm,
 * projections become Wᵀ in `packed`; elsewhere nothing changes), in place. Without it such a model
 * still runs, transposing per call. Not for models being trained (their tensors are variables).
 */
export function layOutForBackend(model: LlamaModel): LlamaModel {
  if (!prefersTransposedWeights()) return model;
  const packed = model.packed ?? new Map<string, Weight>();
  for (const [name, tensor] of [...model.tensors]) {
    const w = toComputeLayout(name, { tensor, dtype: 'float32' });
    if (!w.transposed) continue;
    model.tensors.delete(name);
    packed.set(name, w);
  }
  model.packed = packed;
  return model;
}

/**
 * A weight's values in Hugging Face layout, however the model holds it: a resident float32 tensor
 * (copied), one laid out transposed (transposed back; exact), else read from the checkpoint (streamed
 * layers, 16-bit weights). Exporters, merges and fingerprints read weights through this.
 */
export function readHfWeight(model: LlamaModel, name: string): Float32Array {
  const t = model.tensors.get(name);
  if (t) return Float32Array.from(t.dataSync() as Float32Array);
  const w = model.packed?.get(name);
  if (w && isPacked(w)) return dequantizeWeight(w);
  if (w?.transposed) {
    const hf = tf.transpose(w.tensor); // [out, in]
    try {
      return hf.dataSync() as Float32Array;
    } finally {
      hf.dispose();
    }
  }
  if (!model.checkpoint) throw new Error(`model has no tensor "${name}"`);
  return model.checkpoint.read(name);
}

/** A packed weight's values, dequantized whole (exports and merges read one tensor at a time). */
function dequantizeWeight(w: Weight & { quant: NonNullable<Weight['quant']> }): Float32Array {
  const rows = w.tensor.shape[0];
  const words = w.tensor.dataSync() as Int32Array;
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const mins = w.quant.mins ? (w.quant.mins.dataSync() as Float32Array) : null;
  return dequantizeRows(bytes, w.quant.scales.dataSync() as Float32Array, mins, w.quant.cols, packedSpec(w), 0, rows, new Float32Array(rows * w.quant.cols));
}

/** Frees every tensor of the model and closes its checkpoint. */
export function disposeModel(model: LlamaModel): void {
  for (const t of model.tensors.values()) t.dispose();
  model.tensors.clear();
  for (const w of model.packed?.values() ?? []) disposeWeight(w);
  model.packed?.clear();
  model.checkpoint?.close();
}

/** A resident weight by HF name (float32 or packed), or undefined. */
function residentWeight(model: LlamaModel, name: string): Weight | undefined {
  const t = model.tensors.get(name);
  if (t) return { tensor: t, dtype: 'float32' };
  return model.packed?.get(name);
}

/** Whether the model reads its decoder layers from the checkpoint as a forward pass reaches them (loaded with streaming). */
export function streamsLayers(model: LlamaModel): boolean {
  return model.checkpoint !== null && !residentWeight(model, 'model.layers.0.input_layernorm.weight');
}

/** A weight for one use: resident, or read from the checkpoint (then freed by `release()`). */
export function useWeight(model: LlamaModel, name: string, shape: number[]): { weight: Weight; release(): void } {
  const resident = residentWeight(model, name);
  if (resident) return { weight: resident, release: () => {} };
  if (!model.checkpoint) throw new Error(`model has no tensor "${name}"`);
  const weight = readWeight(model.checkpoint, model.config, name, shape, takes16BitWeights());
  return { weight, release: () => disposeWeight(weight) };
}

/** One decoder layer's weights by suffix (`self_attn.q_proj.weight`); call `release()` when done. */
export interface LayerWeights {
  /** A weight as the kernels take it (float32 or 16-bit). */
  weight(suffix: string): Weight;
  /** A float32 tensor (norms and biases are always float32). */
  get(suffix: string): tf.Tensor;
  has(suffix: string): boolean;
  release(): void;
}

/**
 * The weights of decoder layer `i`: resident ones as they are, the rest read from the checkpoint once
 * (16-bit matrices kept 16-bit when the backend takes them) and freed by release().
 */
export function acquireLayer(model: LlamaModel, i: number): LayerWeights {
  const shapes = layerTensorShapes(model.config);
  const prefix = `model.layers.${i}.`;
  const own = new Map<string, Weight>();
  const resident = new Map<string, Weight>();
  try {
    for (const [suffix, shape] of shapes) {
      const r = residentWeight(model, prefix + suffix);
      if (r) resident.set(suffix, r);
      else if (model.checkpoint) own.set(suffix, readWeight(model.checkpoint, model.config, prefix + suffix, shape, takes16BitWeights()));
    }
  } catch (e) {
    for (const w of own.values()) disposeWeight(w);
    throw e;
  }
  if (own.size) model.stats.layerLoads++;
  const weight = (suffix: string): Weight => {
    const w = resident.get(suffix) ?? own.get(suffix);
    if (!w) throw new Error(`layer ${i} has no tensor ${suffix}`);
    return w;
  };
  return {
    weight,
    get: (suffix) => {
      const w = weight(suffix);
      if (w.dtype !== 'float32') throw new Error(`layer ${i}: ${suffix} is ${w.dtype}, expected float32`);
      return w.tensor;
    },
    has: (suffix) => shapes.has(suffix),
    release: () => {
      for (const w of own.values()) disposeWeight(w);
      own.clear();
    },
  };
}

/** The output projection's name: lm_head, or the embedding matrix when tied. */
export function lmHeadName(config: LlamaConfig): string {
  return config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
}

/** Parameter count implied by the config (tied embeddings counted once). */
export function parameterCount(config: LlamaConfig): number {
  let n = 0;
  for (const shape of expectedTensors(config).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
