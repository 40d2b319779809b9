/**
 * A loaded model: its config and its weights by Hugging Face name. Weights are either resident (tfjs
 * tensors held for the model's lifetime) or streamed: a decoder layer's tensors are read from the
 * checkpoint when the forward pass reaches it and freed after, so peak memory stays near one layer
 * plus activations.
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync } from 'node:fs';
import { type LlamaConfig, checkLayerCount, expectedTensors, layerTensorShapes, readConfig } from './config.ts';
import { type Checkpoint, openCheckpoint } from '../io/checkpoint.ts';
import { UserError } from '../runtime/errors.ts';

export interface LlamaModel {
  config: LlamaConfig;
  /** The model directory it came from, if any. */
  dir: string | null;
  /** Resident tensors by HF name: all of them, or only the non-layer ones when streaming. */
  tensors: Map<string, tf.Tensor>;
  /** Set when layers are streamed from disk. */
  checkpoint: Checkpoint | null;
  /** Counters for tests and benchmarks. */
  stats: { forwardCalls: number; layerLoads: number };
}

export interface LoadOptions {
  /** Read each decoder layer from disk when needed instead of keeping it resident. */
  streaming?: boolean;
}

/** Checks that every tensor the config implies is present with the right shape. */
export function validateCheckpoint(config: LlamaConfig, ckpt: Checkpoint): void {
  checkLayerCount(config, ckpt.names(), ckpt.dir);
  for (const [name, shape] of expectedTensors(config)) {
    const info = ckpt.info(name);
    if (!info) throw new UserError(`${ckpt.dir}: tensor "${name}" is missing from the checkpoint (config.json expects it)`);
    if (info.shape.join(',') !== shape.join(',')) {
      throw new UserError(`${info.file}: tensor "${name}" has shape [${info.shape}] but config.json implies [${shape}]`);
    }
  }
}

/** Opens a model directory's config and checkpoint, validated against each other; close the checkpoint. */
export function openModelDir(dir: string): { config: LlamaConfig; ckpt: Checkpoint } {
  if (!existsSync(dir)) throw new UserError(`${dir}: model directory not found`);
  const config = readConfig(dir);
  const ckpt = openCheckpoint(dir);
  try {
    validateCheckpoint(config, ckpt);
  } catch (e) {
    ckpt.close();
    throw e;
  }
  return { config, ckpt };
}

/** Loads a Hugging Face model directory (config.json + safetensors). */
export function loadModel(dir: string, opts: LoadOptions = {}): LlamaModel {
  const { config, ckpt } = openModelDir(dir);
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of expectedTensors(config)) {
    if (opts.streaming && name.startsWith('model.layers.')) continue;
    tensors.set(name, tf.tensor(ckpt.read(name), shape));
  }
  if (!opts.streaming) ckpt.close();
  return { config, dir, tensors, checkpoint: opts.streaming ? ckpt : null, stats: { forwardCalls: 0, layerLoads: 0 } };
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

/** Frees every tensor of the model and closes its checkpoint. */
export function disposeModel(model: LlamaModel): void {
  for (const t of model.tensors.values()) t.dispose();
  model.tensors.clear();
  model.checkpoint?.close();
}

/** One decoder layer's weights by suffix (`self_attn.q_proj.weight`); call `release()` when done. */
export interface LayerWeights {
  get(suffix: string): tf.Tensor;
  has(suffix: string): boolean;
  release(): void;
}

/** The weights of decoder layer `i`, read from disk when the model streams. */
export function acquireLayer(model: LlamaModel, i: number): LayerWeights {
  const shapes = layerTensorShapes(model.config);
  const prefix = `model.layers.${i}.`;
  let own: Map<string, tf.Tensor> | null = null;
  if (model.checkpoint && !model.tensors.has(prefix + 'input_layernorm.weight')) {
    own = new Map();
    for (const [suffix, shape] of shapes) own.set(suffix, tf.tensor(model.checkpoint.read(prefix + suffix), shape));
    model.stats.layerLoads++;
  }
  const get = (suffix: string): tf.Tensor => {
    const t = own ? own.get(suffix) : model.tensors.get(prefix + suffix);
    if (!t) throw new Error(`layer ${i} has no tensor ${suffix}`);
    return t;
  };
  return {
    get,
    has: (suffix) => shapes.has(suffix),
    release: () => {
      if (own) for (const t of own.values()) t.dispose();
      own = null;
    },
  };
}

/** The output projection: lm_head, or the embedding matrix when tied. */
export function lmHead(model: LlamaModel): tf.Tensor2D {
  const name = model.config.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
  return model.tensors.get(name) as tf.Tensor2D;
}

/** Parameter count implied by the config (tied embeddings counted once). */
export function parameterCount(config: LlamaConfig): number {
  let n = 0;
  for (const shape of expectedTensors(config).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
