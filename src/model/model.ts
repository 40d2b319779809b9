/**
 * A loaded model: its config and its weights by Hugging Face name. Weights are either resident (tfjs
 * tensors held for the model's lifetime) or streamed: a decoder layer's tensors are read from the
 * checkpoint when the forward pass reaches it and freed after, so peak memory stays near one layer
 * plus activations. How weights are laid out is the backend profile's call (runtime/profile.ts) and
 * the run's compute dtype: with --compute bfloat16 the matrices of the products (decoder projections,
 * lm_head) are packed once into the bf16 kernels' panels; on a backend whose kernels take 16-bit
 * weights (the native backend), BF16/F16 matrices otherwise stay 16-bit in memory, resident or
 * streamed; where the profile transposes projections (plain WebAssembly) they are held as Wᵀ [in,
 * out], laid out once as they are read. Whatever needs Hugging Face layout reads `readHfWeight`.
 */
import { tf } from '../runtime/tf.ts';
import { type LlamaConfig, expectedTensors, layerTensorShapes } from './config.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { isBlockQuantized } from './files.ts';
import { UserError } from '../runtime/errors.ts';
import type { ComputeChoice, ComputeDtype } from '../runtime/backend-choice.ts';
import { currentProfile, resolveCompute } from '../runtime/profile.ts';
import { unpackBf16Panels } from '../runtime/native-addon.ts';
import { disposeWeight, packBf16, packedProducts, packedSpec, takes16BitWeights, weightShape, type Weight } from './ops.ts';
import { dequantizeRows, type PackedMatrix } from '../io/packed.ts';
import type { PackedCheckpoint } from './packed-checkpoint.ts';
import { openModelDir } from './open.ts';

export { openModelDir };

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
  /** The dtype of the matrix products (--compute, resolved for this model): what run.json records. */
  compute: ComputeDtype;
}

export interface LoadOptions {
  /** Read each decoder layer from disk when needed instead of keeping it resident. */
  streaming?: boolean;
  /** Keep BF16/F16 matrices 16-bit in memory (default: when the current backend's kernels take them). */
  keep16Bit?: boolean;
  /** The compute dtype (default: the backend profile's --compute). */
  compute?: ComputeChoice;
}

/** The weights multiplied as x·Wᵀ: decoder projections and an untied lm_head (a tied one is the embedding). */
const PROJECTION = /^(model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight|lm_head\.weight)$/;

/** Whether `name` is the matrix of a product x·Wᵀ in `config`: a projection, lm_head, or the embedding it is tied to. */
function isMatrix(config: LlamaConfig, name: string): boolean {
  return PROJECTION.test(name) || (config.tie_word_embeddings && name === 'model.embed_tokens.weight');
}

/** How a weight is held: as read (float32, or 16-bit when keep16), transposed (Wᵀ), or packed into bf16 panels. */
type Layout = 'hf' | 'transposed' | 'panels';

/** The layout of weight `name` for a model computing in `compute` on the current backend profile. */
function layoutOf(config: LlamaConfig, compute: ComputeDtype, name: string): Layout {
  if (!isMatrix(config, name)) return 'hf';
  if (compute === 'bfloat16') return 'panels';
  return PROJECTION.test(name) && currentProfile().transposedProjections ? 'transposed' : 'hf';
}

/** A weight read in Hugging Face layout (float32, or 16-bit words) put into `layout`; the input is freed when replaced. */
function toLayout(w: Weight, layout: Layout): Weight {
  if (layout === 'hf' || w.transposed || w.panels) return w;
  if (layout === 'panels') {
    try {
      return packBf16(w);
    } finally {
      disposeWeight(w);
    }
  }
  if (w.dtype !== 'float32') return w;
  const tensor = tf.transpose(w.tensor); // [in, out]
  w.tensor.dispose();
  return { tensor, dtype: 'float32', transposed: true };
}

/** Decoder-layer weights take int8 activations when the model says so (SmoothQuant W8A8); embeddings and lm_head never. */
function actBitsOf(config: LlamaConfig, name: string): 8 | undefined {
  return config.quantization_config?.act_bits === 8 && name.startsWith('model.layers.') ? 8 : undefined;
}

/** A packed matrix as an ops.Weight (contract 1): its quants viewed as int32 words (not copied where the backend keeps typed arrays), scales and mins as float32. */
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
 * One weight from a checkpoint in its layout: packed weights as stored (packedWeight), 16-bit matrices
 * as stored (int32 [rows, cols/2] of raw words) when `keep16` or bf16 panels are wanted and the
 * checkpoint gives raw bytes, everything else widened to float32; then transposed or packed into
 * panels (see layoutOf).
 */
function readWeight(ckpt: Checkpoint, config: LlamaConfig, name: string, shape: number[], keep16: boolean, layout: Layout): Weight {
  if (ckpt.packedInfo?.(name)) return packedWeight(ckpt.readPacked!(name), actBitsOf(config, name));
  const dtype = ckpt.info(name)?.dtype;
  if ((keep16 || layout === 'panels') && ckpt.readRaw && (dtype === 'BF16' || dtype === 'F16') && shape.length === 2 && shape[1] % 2 === 0) {
    const { data } = ckpt.readRaw(name);
    const words = new Int32Array(data.buffer, data.byteOffset, data.byteLength / 4); // two 16-bit words per element
    return toLayout({ tensor: tf.tensor2d(words, [shape[0], shape[1] / 2], 'int32'), dtype: dtype === 'BF16' ? 'bfloat16' : 'float16' }, layout);
  }
  return toLayout({ tensor: tf.tensor(ckpt.read(name), shape), dtype: 'float32' }, layout);
}

/** Whether a checkpoint's matrices are stored as bf16 (layer 0's q_proj, else config.json's dtype). */
function storedBf16(config: LlamaConfig, ckpt: Checkpoint | null): boolean {
  const dtype = ckpt?.info('model.layers.0.self_attn.q_proj.weight')?.dtype;
  return dtype ? dtype === 'BF16' : config.torch_dtype === 'bfloat16';
}

/** The compute dtype of a model: `choice` (default the profile's --compute) resolved for its weights. */
function computeOf(config: LlamaConfig, ckpt: Checkpoint | null, choice?: ComputeChoice): ComputeDtype {
  const profile = currentProfile();
  return resolveCompute(choice ? { ...profile, compute: choice } : profile, storedBf16(config, ckpt));
}

/**
 * What results depend on of how `model` computes, for run keys: the compute dtype unless float32 (so
 * float32 keys stay as they were), and for a model with packed weights how they multiply (float32 rows,
 * or the integer kernels, which round the activations): each gives other scores.
 */
export function computeKey(model: LlamaModel): { compute?: ComputeDtype; packed_products?: 'float32' | 'int8' } {
  return {
    ...(model.compute === 'float32' ? {} : { compute: model.compute }),
    ...(model.config.quantization_config ? { packed_products: packedProducts() } : {}),
  };
}

/** Loads a Hugging Face model directory (config.json + safetensors). */
export function loadModel(dir: string, opts: LoadOptions = {}): LlamaModel {
  const { config, ckpt } = openModelDir(dir);
  const keep16 = opts.keep16Bit ?? takes16BitWeights();
  const tensors = new Map<string, tf.Tensor>();
  const packed = new Map<string, Weight>();
  let blockQuantized = 0;
  let compute: ComputeDtype;
  try {
    compute = computeOf(config, ckpt, opts.compute);
    for (const [name, shape] of expectedTensors(config)) {
      if (opts.streaming && name.startsWith('model.layers.')) continue;
      if (name.startsWith('model.layers.') && !ckpt.packedInfo(name) && isBlockQuantized(ckpt, name)) {
        // GGUF blocks that are not packed weights (k-quants, Q5_0, ...): kept in memory as stored, dequantized per layer at use (acquireLayer)
        ckpt.hold?.(name);
        blockQuantized++;
        continue;
      }
      const w = readWeight(ckpt, config, name, shape, keep16, layoutOf(config, compute, name));
      if (w.dtype === 'float32' && !w.transposed) tensors.set(name, w.tensor);
      else packed.set(name, w);
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    for (const w of packed.values()) disposeWeight(w);
    ckpt.close();
    throw e;
  }
  // 16-bit weights and held GGUF blocks are read back from the checkpoint (transposed float32 and packed integer ones are not)
  const keepOpen = !!opts.streaming || blockQuantized > 0 || [...packed.values()].some((w) => w.dtype !== 'float32' && !w.quant);
  if (!keepOpen) ckpt.close();
  return { config, dir, tensors, packed, checkpoint: keepOpen ? ckpt : null, stats: { forwardCalls: 0, layerLoads: 0 }, compute };
}

/**
 * Wraps tensors already in memory (random weights, training, merges) as a model, and weights already
 * in a compute form (`packed`, e.g. contract 1's packed integers). Takes ownership.
 */
export function modelFromTensors(config: LlamaConfig, tensors: Map<string, tf.Tensor>, dir: string | null = null, packed?: Map<string, Weight>): LlamaModel {
  for (const [name, shape] of expectedTensors(config)) {
    const t = tensors.get(name), w = packed?.get(name);
    if (!t && !w) throw new UserError(`model tensors: "${name}" is missing`);
    const got = t ? t.shape : weightShape(w!);
    if (got.join(',') !== shape.join(',')) throw new UserError(`model tensors: "${name}" has shape [${got}], config implies [${shape}]`);
  }
  return { config, dir, tensors, ...(packed ? { packed } : {}), checkpoint: null, stats: { forwardCalls: 0, layerLoads: 0 }, compute: 'float32' };
}

/**
 * A model in memory from float tensors and packed matrices by Hugging Face name (a quantized sweep
 * point), laid out for the backend. Takes ownership of the tensors; packed matrices become packed
 * weights (layer linears take int8 activations when quantization_config says act_bits 8).
 */
export function modelFromParts(config: LlamaConfig, floats: Map<string, tf.Tensor>, parts: Map<string, PackedMatrix>): LlamaModel {
  const packed = new Map<string, Weight>();
  for (const [name, pm] of parts) packed.set(name, packedWeight(pm, actBitsOf(config, name)));
  return layOutForBackend(modelFromTensors(config, floats, null, packed));
}

/**
 * Lays out an in-memory model's weights for the current backend and compute dtype as loadModel does
 * (the compute dtype resolved from config.json's dtype: a merge of a BF16 model computes as that
 * model does), in place: matrices packed into bf16 panels, or on plain wasm projections as Wᵀ, in
 * `packed`. Without it such a model still runs in float32, transposing per call where the profile
 * says so. Not for models being trained (their tensors are variables).
 */
export function layOutForBackend(model: LlamaModel, compute?: ComputeChoice): LlamaModel {
  model.compute = computeOf(model.config, model.checkpoint, compute);
  const packed = model.packed ?? new Map<string, Weight>();
  for (const [name, tensor] of [...model.tensors]) {
    const layout = layoutOf(model.config, model.compute, name);
    if (layout === 'hf') continue;
    const w = toLayout({ tensor, dtype: 'float32' }, layout);
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
  if (w?.quant) return dequantizeWeight(w);
  if (w?.transposed) {
    const hf = tf.transpose(w.tensor); // [out, in]
    try {
      return hf.dataSync() as Float32Array;
    } finally {
      hf.dispose();
    }
  }
  if (model.checkpoint) return model.checkpoint.read(name);
  if (w?.panels) return unpackBf16Panels(w.tensor.dataSync() as Int32Array, ...weightShape(w)); // an in-memory model computing in bf16: its bf16 values
  throw new Error(`model has no tensor "${name}"`);
}

/** A packed weight's values, dequantized whole (exports and merges read one tensor at a time). */
function dequantizeWeight(w: Weight): Float32Array {
  const q = w.quant!;
  const rows = w.tensor.shape[0];
  const words = w.tensor.dataSync() as Int32Array;
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const mins = q.mins ? (q.mins.dataSync() as Float32Array) : null;
  return dequantizeRows(bytes, q.scales.dataSync() as Float32Array, mins, q.cols, packedSpec(w), 0, rows, new Float32Array(rows * q.cols));
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
  const weight = readWeight(model.checkpoint, model.config, name, shape, takes16BitWeights(), layoutOf(model.config, model.compute, name));
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
      else if (model.checkpoint) own.set(suffix, readWeight(model.checkpoint, model.config, prefix + suffix, shape, takes16BitWeights(), layoutOf(model.config, model.compute, prefix + suffix)));
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
