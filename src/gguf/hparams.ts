/**
 * Model hyperparameters between a Hugging Face config (its field names) and GGUF metadata, as
 * llama.cpp's convert_hf_to_gguf.py writes them and llama.cpp reads them (llama and qwen2
 * architectures; Mistral is written as llama, as llama.cpp's converter does).
 *
 * Llama 3.1's `llama3` RoPE scaling has no metadata key in llama.cpp: its converter stores the
 * per-frequency divisors as the tensor `rope_freqs.weight`, which `ropeFreqFactors` computes and
 * `llama3ScalingFromFactors` turns back into rope_scaling parameters.
 */
import { GgmlType, type GgufValue, ValueType } from './format.ts';
import type { GgufFile } from './reader.ts';
import { meta } from './writer.ts';
import type { LlamaConfig } from '../io/llama-config.ts';
import { showJson } from '../io/read.ts';

/** The config fields this module reads (a LlamaConfig has them all). */
export type HfConfigFields = Pick<LlamaConfig,
  'model_type' | 'vocab_size' | 'hidden_size' | 'intermediate_size' | 'num_hidden_layers' | 'num_attention_heads' | 'num_key_value_heads' |
  'head_dim' | 'max_position_embeddings' | 'rms_norm_eps' | 'rope_theta' | 'rope_scaling' | 'sliding_window'>;

/** The GGUF architecture a Hugging Face model type is written as. */
export function ggufArch(modelType: string): 'llama' | 'qwen2' {
  return modelType === 'qwen2' ? 'qwen2' : 'llama';
}

/** The `{arch}.*` hyperparameter metadata of a config. */
export function hparamMetadata(c: HfConfigFields): [string, GgufValue][] {
  const a = ggufArch(c.model_type);
  const out: [string, GgufValue][] = [
    [`${a}.vocab_size`, meta.u32(c.vocab_size)],
    [`${a}.context_length`, meta.u32(c.max_position_embeddings)],
    [`${a}.embedding_length`, meta.u32(c.hidden_size)],
    [`${a}.block_count`, meta.u32(c.num_hidden_layers)],
    [`${a}.feed_forward_length`, meta.u32(c.intermediate_size)],
    [`${a}.attention.head_count`, meta.u32(c.num_attention_heads)],
    [`${a}.attention.head_count_kv`, meta.u32(c.num_key_value_heads)],
    [`${a}.rope.freq_base`, meta.f32(c.rope_theta)],
    [`${a}.attention.layer_norm_rms_epsilon`, meta.f32(c.rms_norm_eps)],
  ];
  if (a === 'llama') out.push([`${a}.rope.dimension_count`, meta.u32(c.head_dim)]);
  if (c.head_dim * c.num_attention_heads !== c.hidden_size) {
    out.push([`${a}.attention.key_length`, meta.u32(c.head_dim)], [`${a}.attention.value_length`, meta.u32(c.head_dim)]);
  }
  if (c.rope_scaling?.rope_type === 'linear') {
    out.push([`${a}.rope.scaling.type`, meta.str('linear')], [`${a}.rope.scaling.factor`, meta.f32(c.rope_scaling.factor)]);
  }
  if (c.sliding_window !== null && c.model_type === 'mistral') out.push([`${a}.attention.sliding_window`, meta.u32(c.sliding_window)]);
  return out;
}

/** The metadata key where mka's exports keep llama3 rope_scaling as JSON (llama.cpp reads rope_freqs). */
export const MKA_ROPE_SCALING = 'mka.rope_scaling';

/** llama3 rope_scaling parameters from mka's JSON, or null when they are not that. */
function parseScaling(text: string): NonNullable<HfConfigFields['rope_scaling']> | null {
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    const nums = ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'];
    if (j.rope_type !== 'llama3' || !nums.every((k) => typeof j[k] === 'number' && (j[k] as number) > 0)) return null;
    if (!((j.low_freq_factor as number) < (j.high_freq_factor as number))) return null;
    return j as unknown as NonNullable<HfConfigFields['rope_scaling']>;
  } catch {
    return null;
  }
}

/** The inverse frequencies theta^(−2i/d) of RoPE, in float32 as PyTorch computes them. */
function baseFrequencies(theta: number, headDim: number): Float64Array {
  const f = new Float64Array(headDim / 2);
  for (let i = 0; i < headDim / 2; i++) f[i] = Math.fround(1 / Math.fround(Math.pow(theta, Math.fround((2 * i) / headDim))));
  return f;
}

/**
 * The llama3 RoPE frequency divisors (head_dim/2 of them) that llama.cpp's converter stores as
 * rope_freqs.weight: 1 for short wavelengths, `factor` for long ones, smoothly in between. (The
 * converter reads original_max_position_embeddings from the top level of config.json, where Llama 3.1
 * does not have it, and so always uses 8192; this uses rope_scaling's own value, which is what
 * transformers computes with.)
 */
export function ropeFreqFactors(c: HfConfigFields): Float32Array | null {
  const s = c.rope_scaling;
  if (s?.rope_type !== 'llama3') return null;
  const old = s.original_max_position_embeddings!, lo = s.low_freq_factor!, hi = s.high_freq_factor!;
  const lowWavelen = old / lo, highWavelen = old / hi;
  return Float32Array.from(baseFrequencies(c.rope_theta, c.head_dim), (freq) => {
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) return 1;
    if (wavelen > lowWavelen) return s.factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return 1 / ((1 - smooth) / s.factor + smooth);
  });
}

/**
 * llama3 rope_scaling parameters reproducing stored frequency divisors (within 1e-5 relative), or a
 * message saying why none do. The divisors fix the factor and, through the smoothed ones, the
 * wavelengths A = original/low_freq_factor and B = original/high_freq_factor where the smoothing ends
 * and starts; with fewer than two smoothed values only bounds on them, and any A and B within the
 * bounds give the same divisors. The parameters are returned as original_max_position_embeddings = A
 * rounded, low_freq_factor ≈ 1, high_freq_factor ≈ A/B (Llama 3.1's own 8192, 1, 4 come back).
 */
export function llama3ScalingFromFactors(factors: Float32Array, theta: number, headDim: number): { scaling: NonNullable<HfConfigFields['rope_scaling']> } | { error: string } {
  const pattern = { error: 'rope_freqs does not follow the llama3 scaling pattern mka reads (1, then a smooth rise, then the factor)' };
  if (factors.length * 2 !== headDim) return { error: `rope_freqs has ${factors.length} values, head_dim ${headDim} needs ${headDim / 2}` };
  if (!factors.every((f) => Number.isFinite(f) && f >= 1)) return { error: 'rope_freqs holds values below 1 or not finite, which llama3 scaling never gives' };
  const freqs = baseFrequencies(theta, headDim);
  const factor = factors.reduce((m, f) => Math.max(m, f), 1);
  if (factor === 1) return { error: 'rope_freqs is all ones (no scaling): write no rope_freqs tensor instead' };
  const wave = (i: number) => (2 * Math.PI) / freqs[i];
  const n = factors.length;
  const isOne = (i: number) => factors[i] <= 1 + 1e-6, isFull = (i: number) => factors[i] >= factor * (1 - 1e-6);
  const mid = [...factors.keys()].filter((i) => !isOne(i) && !isFull(i));
  let lastOne = -1;
  factors.forEach((_, i) => { if (isOne(i)) lastOne = i; });
  const firstFull = [...factors.keys()].find(isFull)!;
  // s = (1/f − 1/F) / (1 − 1/F) is linear in 1/wavelength between the bounds: s = (1/λ − 1/A) / (1/B − 1/A)
  const s = (i: number) => (1 / factors[i] - 1 / factor) / (1 - 1 / factor);
  let A: number, B: number; // long and short wavelength bounds
  if (mid.length >= 2) {
    const [i, j] = [mid[0], mid[mid.length - 1]];
    const slope = (s(j) - s(i)) / (1 / wave(j) - 1 / wave(i));
    const invA = 1 / wave(i) - s(i) / slope;
    A = 1 / invA;
    B = 1 / (invA + 1 / slope);
  } else if (mid.length === 1) {
    const i = mid[0];
    A = firstFull < n ? (wave(i) + wave(firstFull)) / 2 : 2 * wave(i);
    B = 1 / (1 / A + (1 / wave(i) - 1 / A) / s(i));
  } else {
    if (firstFull <= lastOne) return pattern;
    const lo = lastOne >= 0 ? wave(lastOne) : wave(0) / 2, hi = wave(firstFull);
    B = lo + (hi - lo) / 3;
    A = lo + (2 * (hi - lo)) / 3;
  }
  if (!(A > B && B > 0) || !Number.isFinite(A)) return pattern;
  const orig = Math.max(1, Math.round(A));
  const scaling = {
    rope_type: 'llama3' as const, factor: shortestFloat32(factor), original_max_position_embeddings: orig,
    low_freq_factor: roundTo(orig / A, 1e-6), high_freq_factor: roundTo(orig / B, 1e-6),
  };
  const again = ropeFreqFactors({ rope_theta: theta, head_dim: headDim, rope_scaling: scaling } as HfConfigFields)!;
  const worst = again.reduce((m, f, i) => Math.max(m, Math.abs(f - factors[i]) / factors[i]), 0);
  if (worst > 1e-5) return { error: `rope_freqs is not a llama3 scaling mka can reproduce (the closest parameters are off by ${worst.toExponential(1)})` };
  return { scaling };
}

/** The shortest decimal within `rel` (relative) of `v`: the factors are fitted from float32 values. */
function roundTo(v: number, rel: number): number {
  for (let p = 1; p < 16; p++) {
    const d = Number(v.toPrecision(p));
    if (Math.abs(d - v) <= rel * Math.abs(v)) return d;
  }
  return v;
}

/** The shortest decimal that is the same float32 as `v` (1e-5 rather than 9.999999747378752e-6). */
export function shortestFloat32(v: number): number {
  const f = Math.fround(v);
  for (let p = 1; p < 17; p++) {
    const d = Number(f.toPrecision(p));
    if (Math.fround(d) === f) return d;
  }
  return f;
}

/** A per-layer value given once or as an array (llama.cpp allows both) that must be the same for all layers. */
function uniform(g: GgufFile, key: string, def?: number): number {
  const arr = g.metadata.get(key);
  if (arr?.type === ValueType.ARRAY) {
    const values = Array.from(arr.array.values as ArrayLike<number>, Number);
    if (!values.length || values.some((v) => v !== values[0])) g.refuse(`"${key}" differs between layers (${values.slice(0, 8).join(', ')}…), which mka's models do not support`);
    return values[0];
  }
  return g.int(key, def);
}

/**
 * The Hugging Face config.json object (before parseConfig validates it) of a GGUF model, from its
 * metadata and which tensors it holds. `ropeFreqs` gives the rope_freqs values when the file has them.
 */
export function hfConfigFromGguf(g: GgufFile, ropeFreqs: Float32Array | null): Record<string, unknown> {
  const arch = g.string('general.architecture');
  if (arch !== 'llama' && arch !== 'qwen2') g.refuse(`architecture ${showJson(arch)} is not supported; mka reads GGUF models of the llama and qwen2 architectures (Llama, Mistral, Qwen2)`);
  const key = (k: string) => `${arch}.${k}`;
  const hidden = g.int(key('embedding_length'));
  const heads = uniform(g, key('attention.head_count'));
  if (heads < 1) g.fail(`${key('attention.head_count')} is ${heads}`);
  const kvHeads = uniform(g, key('attention.head_count_kv'), heads);
  const headDim = g.int(key('attention.key_length'), Math.floor(hidden / heads));
  const valueDim = g.int(key('attention.value_length'), headDim);
  if (valueDim !== headDim) g.refuse(`attention.key_length ${headDim} and value_length ${valueDim} differ, which mka's models do not support`);
  const rotary = g.int(key('rope.dimension_count'), headDim);
  if (rotary !== headDim) g.refuse(`rope.dimension_count ${rotary} is not the head size ${headDim} (partial rotary embeddings are not supported)`);
  const embd = g.tensors.get('token_embd.weight');
  const tokens = g.array('tokenizer.ggml.tokens');
  const vocab = g.int(key('vocab_size'), embd?.dims[1] ?? tokens?.values.length ?? 0);
  const theta = g.float(key('rope.freq_base'), 10000);
  const scalingType = g.string(key('rope.scaling.type'), 'none');
  let ropeScaling: Record<string, unknown> | null = null;
  if (scalingType === 'linear') {
    const factor = g.float(key('rope.scaling.factor'), g.float(key('rope.scale_linear'), 1));
    if (factor !== 1) ropeScaling = { rope_type: 'linear', factor: shortestFloat32(factor) };
  } else if (scalingType !== 'none') {
    g.refuse(`${key('rope.scaling.type')} ${showJson(scalingType)} is not supported (mka runs none, linear and llama3 RoPE scaling)`);
  }
  if (ropeFreqs) {
    if (ropeScaling) g.refuse('has both rope.scaling.type linear and a rope_freqs tensor');
    const r = llama3ScalingFromFactors(ropeFreqs, theta, headDim);
    if ('error' in r) g.refuse(r.error);
    ropeScaling = { ...r.scaling };
    // mka's own exports also record the parameters themselves, which the divisors do not fully determine
    const own = g.has(MKA_ROPE_SCALING) ? parseScaling(g.string(MKA_ROPE_SCALING)) : null;
    const theirs = own && ropeFreqFactors({ rope_theta: theta, head_dim: headDim, rope_scaling: own } as HfConfigFields);
    if (theirs && theirs.every((f, i) => Math.abs(f - ropeFreqs[i]) <= 1e-5 * ropeFreqs[i])) ropeScaling = { ...own };
  }
  const window = g.has(key('attention.sliding_window')) ? g.int(key('attention.sliding_window')) : null;
  const modelType = arch === 'qwen2' ? 'qwen2' : window !== null ? 'mistral' : 'llama';
  const optionalId = (k: string) => (g.has(k) ? g.int(k) : null);
  const fileType = g.int('general.file_type', -1);
  const config: Record<string, unknown> = {
    architectures: [{ llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[modelType]],
    model_type: modelType,
    vocab_size: vocab,
    hidden_size: hidden,
    intermediate_size: uniform(g, key('feed_forward_length')),
    num_hidden_layers: g.int(key('block_count')),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    max_position_embeddings: g.int(key('context_length'), 2048),
    rms_norm_eps: shortestFloat32(g.float(key('attention.layer_norm_rms_epsilon'))),
    rope_theta: shortestFloat32(theta),
    rope_scaling: ropeScaling,
    tie_word_embeddings: !g.tensors.has('output.weight'),
    hidden_act: 'silu',
    bos_token_id: optionalId('tokenizer.ggml.bos_token_id'),
    eos_token_id: optionalId('tokenizer.ggml.eos_token_id'),
    torch_dtype: fileType === 1 ? 'float16' : fileType === 32 ? 'bfloat16' : 'float32',
  };
  if (modelType === 'llama') {
    config.attention_bias = g.tensors.has('blk.0.attn_q.bias');
    config.mlp_bias = g.tensors.has('blk.0.ffn_gate.bias');
  }
  if (modelType === 'mistral') config.sliding_window = window;
  const packed = packedQuantization(g);
  if (packed) config.quantization_config = packed;
  return config;
}

/**
 * The quantization_config of a GGUF file whose matrices hold Q8_0, Q4_0 or Q4_1 blocks, which mka
 * loads as packed weights (docs/quantization.md, Format: one group of 32 per block): bits and symmetry of the
 * decoder's blocks (of any matrix when the decoder has none), or null when there are none.
 */
function packedQuantization(g: GgufFile): Record<string, unknown> | null {
  const blocks = [...g.tensors.values()].filter((t) => t.dims.length === 2 && PACKED_TYPES.includes(t.type));
  if (!blocks.length) return null;
  const decoder = blocks.filter((t) => t.name.startsWith('blk.'));
  const counted = decoder.length ? decoder : blocks;
  const four = counted.filter((t) => t.type !== GgmlType.Q8_0).length;
  return {
    quant_method: 'mka', method: 'gguf', bits: four * 2 >= counted.length ? 4 : 8, group_size: 32,
    sym: !counted.some((t) => t.type === GgmlType.Q4_1), act_bits: null,
    gguf_types: Object.fromEntries([...new Set(blocks.map((t) => GgmlType[t.type]))].sort().map((n) => [n, blocks.filter((t) => GgmlType[t.type] === n).length])),
  };
}

/** The ggml block types mka loads as packed weights. */
const PACKED_TYPES: readonly GgmlType[] = [GgmlType.Q8_0, GgmlType.Q4_0, GgmlType.Q4_1];
