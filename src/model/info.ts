/**
 * `mka info`: what a model directory (or GGUF file) holds, read from its config and checkpoint headers only (no
 * tfjs, so the command starts fast).
 */
import { statSync } from 'node:fs';
import { isGgufFile } from './files.ts';
import { expectedTensors, type QuantizationConfig } from './config.ts';
import { openModelDir } from './open.ts';

export interface ModelInfo {
  dir: string;
  architecture: string;
  model_type: string;
  layers: number;
  hidden_size: number;
  intermediate_size: number;
  heads: number;
  kv_heads: number;
  head_dim: number;
  vocab_size: number;
  max_position_embeddings: number;
  parameters: number;
  dtypes: string[];
  bytes_on_disk: number;
  tied_embeddings: boolean;
  rope: string;
  /** How the weights are packed (`gptq w4 g128 sym`), null for float checkpoints. */
  quantization: string | null;
}

/** A packed model's quantization in a few words: method, bits, group, symmetry, activations. */
function quantizationLabel(q: QuantizationConfig | null): string | null {
  if (!q) return null;
  const group = q.group_size === -1 ? 'per channel' : `group ${q.group_size}`;
  // the embedding's and lm_head's bits, as mka quantize records them (quantization_config.tables)
  const tables = typeof q.tables === 'object' && q.tables !== null ? q.tables as Record<string, { bits?: unknown }> : {};
  const bits = (name: string, label: string) => (typeof tables[name]?.bits === 'number' ? `, ${label} ${tables[name].bits}-bit` : '');
  return `${q.method} ${q.bits}-bit ${group} ${q.sym ? 'symmetric' : 'asymmetric'}${q.act_bits ? `, int${q.act_bits} activations` : ''}`
    + `${bits('model.embed_tokens.weight', 'embedding')}${bits('lm_head.weight', 'lm_head')} (packed)`;
}

/** Architecture, sizes, parameter count, storage dtypes and size on disk of a model directory. */
export function modelInfo(dir: string): ModelInfo {
  const { config: c, ckpt } = openModelDir(dir); // checked as every command checks it: info describes only what loads
  try {
    const dtypes = new Set(ckpt.names().map((n) => ckpt.info(n)!.dtype));
    return {
      dir,
      architecture: c.architectures[0],
      model_type: c.model_type,
      layers: c.num_hidden_layers,
      hidden_size: c.hidden_size,
      intermediate_size: c.intermediate_size,
      heads: c.num_attention_heads,
      kv_heads: c.num_key_value_heads,
      head_dim: c.head_dim,
      vocab_size: c.vocab_size,
      max_position_embeddings: c.max_position_embeddings,
      parameters: [...expectedTensors(c).values()].reduce((n, shape) => n + shape.reduce((a, b) => a * b, 1), 0), // as parameterCount (model.ts), without loading tfjs
      dtypes: [...dtypes],
      bytes_on_disk: ckpt.bytesOnDisk() + (isGgufFile(dir) ? 0 : statSync(`${dir}/config.json`).size),
      tied_embeddings: c.tie_word_embeddings,
      rope: `theta ${c.rope_theta}${c.rope_scaling ? `, ${c.rope_scaling.rope_type} x${c.rope_scaling.factor}` : ''}`,
      quantization: quantizationLabel(c.quantization_config),
    };
  } finally {
    ckpt.close();
  }
}
