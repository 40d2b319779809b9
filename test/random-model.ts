/**
 * Seeded random Llama-family models for tests and benchmarks, in memory or as a model directory: the
 * one place random weights are made (scripts/make-paper-model.ts makes paper-shape bf16 checkpoints).
 * Each tensor's values depend only on the seed and its name, so a config change leaves the other
 * tensors' values alone. Norm weights are near 1, biases small, embeddings N(0, 1), matrices
 * N(0, 1/in), so activations stay of order 1 at any width.
 */
import { tf } from '../src/runtime/tf.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LlamaConfig, configToJson, expectedTensors, parseConfig } from '../src/model/config.ts';
import { layOutForBackend, modelFromTensors, type LlamaModel } from '../src/model/model.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { atomicWriteDir } from '../src/io/atomic.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';

/** A tiny Llama-family config.json object; `overrides` replace fields. */
export function tinyConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 96, hidden_size: 32,
    intermediate_size: 48, num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2,
    max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
    bos_token_id: 1, eos_token_id: 2, torch_dtype: 'float32', ...overrides,
  };
}

function nameSeed(seed: number, name: string): number {
  let h = seed >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** The seeded values of tensor `name` of shape `shape`. */
export function randomTensor(name: string, shape: number[], seed: number): Float32Array {
  const rand = mulberry32(nameSeed(seed, name));
  const n = shape.reduce((a, b) => a * b, 1);
  const isNorm = name.endsWith('norm.weight'), isBias = name.endsWith('.bias');
  const std = isNorm ? 0.1 : isBias ? 0.05 : name.includes('embed') ? 1 : 1 / Math.sqrt(shape[shape.length - 1]);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (isNorm ? 1 : 0) + std * normal(rand);
  return out;
}

/** A random-weight model of config `c` in memory (float32), laid out for the backend as loadModel does. */
export function randomModel(c: LlamaConfig, seed = 1): LlamaModel {
  const tensors = new Map<string, tf.Tensor>();
  for (const [name, shape] of expectedTensors(c)) tensors.set(name, tf.tensor(randomTensor(name, shape, seed), shape));
  return layOutForBackend(modelFromTensors(c, tensors));
}

/** Writes a model directory (config.json, generation_config.json, model.safetensors) of tinyConfigJson(overrides). */
export async function writeRandomModel(dir: string, overrides: Record<string, unknown> = {}, seed = 1): Promise<void> {
  const config = parseConfig(tinyConfigJson(overrides));
  const shapes = expectedTensors(config);
  await atomicWriteDir(dir, async (tmp) => {
    writeFileSync(join(tmp, 'config.json'), JSON.stringify(configToJson(config), null, 2));
    writeFileSync(join(tmp, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
    await writeSafetensors(join(tmp, 'model.safetensors'), [...shapes].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const })),
      (name) => randomTensor(name, shapes.get(name)!, seed));
  });
}
