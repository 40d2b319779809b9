/**
 * The model configuration: Hugging Face `config.json` field names, parsed and validated in one place.
 * Every other module reads a `LlamaConfig` (declared in io/llama-config.ts, below the GGUF code that
 * also reads it); nothing else looks at raw JSON.
 */
import { existsSync } from 'node:fs';
import { flag } from '../runtime/options.ts';
import { MODEL } from './options.ts';
import { isTokenId, readJsonFile, showJson, showJsonList } from '../io/read.ts';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { isGgufFile } from '../gguf/reader.ts';
import { ggufConfigJson } from '../gguf/checkpoint.ts';

export { SUPPORTED_MODEL_TYPES, type LlamaConfig, type ModelType, type PackedGrid, type QuantizationConfig, type RopeScaling } from '../io/llama-config.ts';
import { SUPPORTED_MODEL_TYPES, type LlamaConfig, type ModelType, type PackedGrid, type QuantizationConfig, type RopeScaling } from '../io/llama-config.ts';

const ARCH_OF: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

const KNOWN = new Set([
  'architectures', 'model_type', 'vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers',
  'num_attention_heads', 'num_key_value_heads', 'head_dim', 'max_position_embeddings', 'rms_norm_eps',
  'rope_theta', 'rope_scaling', 'tie_word_embeddings', 'attention_bias', 'mlp_bias', 'sliding_window',
  'use_sliding_window', 'bos_token_id', 'eos_token_id', 'hidden_act', 'torch_dtype', 'dtype', 'quantization_config',
]);

/** Largest size a config may give: tensor dimensions are int32 in tfjs (and a corrupt value must not size an allocation). */
const MAX_SIZE = 2 ** 31 - 1;
/** Most decoder layers a config may give (the largest Llama-family models have a few hundred). */
const MAX_LAYERS = 10_000;

/** Parses `quantization_config`: only mka's own packed format is read (others store weights in layouts mka does not run). */
function parseQuantization(raw: unknown, fail: (msg: string) => never): QuantizationConfig | null {
  if (raw === undefined || raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw)) return fail('"quantization_config" must be an object');
  const q = raw as Record<string, unknown>;
  if (q.quant_method !== 'mka') {
    return fail(`quantization_config.quant_method ${showJson(q.quant_method)} is not supported: mka runs its own packed format (README "Quantized model directories"); quantize the float model with \`mka quantize\` instead`);
  }
  const grid = parseGrid(q, 'quantization_config', fail);
  const act = q.act_bits ?? null;
  if (act !== null && act !== 8) fail(`quantization_config.act_bits must be 8 or null, got ${showJson(act)}`);
  let tables: Record<string, PackedGrid> | undefined;
  if (q.tables !== undefined) {
    if (typeof q.tables !== 'object' || q.tables === null || Array.isArray(q.tables)) fail(`quantization_config.tables must map weight names to their bits, group_size and sym, got ${showJson(q.tables)}`);
    tables = Object.fromEntries(Object.entries(q.tables as Record<string, unknown>).map(([name, t]) => {
      const at = `quantization_config.tables[${showJson(name)}]`;
      if (typeof t !== 'object' || t === null || Array.isArray(t)) fail(`${at} must be an object with bits, group_size and sym, got ${showJson(t)}`);
      return [name, parseGrid(t as Record<string, unknown>, at, fail)];
    }));
  }
  return { ...q, quant_method: 'mka', method: String(q.method ?? 'unknown'), ...grid, act_bits: act as 8 | null, ...(tables ? { tables } : {}) };
}

/** bits, group_size and sym of a quantization_config (or of one of its tables) at `at`. */
function parseGrid(q: Record<string, unknown>, at: string, fail: (msg: string) => never): PackedGrid {
  if (q.bits !== 4 && q.bits !== 8) fail(`${at}.bits must be 4 or 8, got ${showJson(q.bits)}`);
  if (typeof q.group_size !== 'number' || !Number.isInteger(q.group_size) || (q.group_size < 1 && q.group_size !== -1)) {
    fail(`${at}.group_size must be a positive integer or -1 (per channel), got ${showJson(q.group_size)}`);
  }
  if (typeof q.sym !== 'boolean') fail(`${at}.sym must be true or false, got ${showJson(q.sym)}`);
  return { bits: q.bits as 4 | 8, group_size: q.group_size as number, sym: q.sym as boolean };
}

/**
 * The accepted rms_norm_eps: models use 1e-5 or 1e-6 (BERT-style configs down to 1e-12); an epsilon near 1 or
 * above swamps the mean square it is added to, so the norm no longer normalizes.
 */
const RMS_NORM_EPS_RANGE = { min: 1e-12, max: 0.1, why: 'models use 1e-5 or 1e-6' };
/**
 * The accepted rope_theta: models use 10000 (Llama 2) to 500000 (Llama 3) and 1e6 (Qwen2, Mistral), long-context
 * variants up to a few 1e9. The slowest rotary frequency is about 1/rope_theta: below 100 every dimension turns
 * within a few hundred tokens, so positions alias; far above 1e12 most frequencies round to 0 in float32.
 */
const ROPE_THETA_RANGE = { min: 100, max: 1e12, why: 'models use 10000 to 1e6, long-context variants up to a few 1e9' };

/** Parses and validates a config.json object; `file` names the source in error messages. */
export function parseConfig(raw: unknown, file = 'config.json'): LlamaConfig {
  const fail = (msg: string): never => {
    throw new UserError(`${file}: ${msg}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('expected a JSON object');
  const j = raw as Record<string, unknown>;

  const modelType = j.model_type;
  if (typeof modelType !== 'string') fail('missing "model_type" (one of llama, mistral, qwen2)');
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType as string)) {
    fail(`model_type ${showJson(modelType)} is not supported; supported: ${SUPPORTED_MODEL_TYPES.join(', ')} ` +
      `(${Object.values(ARCH_OF).join(', ')})`);
  }
  const mt = modelType as ModelType;
  const listed = Array.isArray(j.architectures) ? (j.architectures as unknown[]) : [ARCH_OF[mt]];
  const archs = listed.map((a) => (typeof a === 'string' ? a : showJson(a)));
  if (!archs.includes(ARCH_OF[mt])) {
    fail(`architectures ${showJsonList(listed)} contradict model_type "${mt}" (expected ${ARCH_OF[mt]})`);
  }

  const int = (key: string, opts: { min?: number; max?: number; def?: number } = {}): number => {
    const v = j[key] ?? opts.def;
    if (v === undefined || v === null) fail(`missing "${key}"`);
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(`"${key}" must be an integer, got ${showJson(v)}`);
    if ((v as number) < (opts.min ?? 1)) fail(`"${key}" must be >= ${opts.min ?? 1}, got ${v}`);
    if ((v as number) > (opts.max ?? MAX_SIZE)) fail(`"${key}" is ${v}, more than ${opts.max ?? MAX_SIZE}: the file is corrupt (re-download or re-convert it)`);
    return v as number;
  };
  /** A positive number from `range` (real models' values, with room): a value outside it is a corrupt or mistyped file. */
  const num = (key: string, def: number, range: { min: number; max: number; why: string }): number => {
    const v = j[key] ?? def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`"${key}" must be a positive number from ${range.min} to ${range.max}, got ${showJson(v)}`);
    if ((v as number) < range.min || (v as number) > range.max) fail(`"${key}" is ${v}, outside ${range.min} to ${range.max} (${range.why}); fix the field`);
    return v as number;
  };
  const bool = (key: string, def: boolean): boolean => {
    const v = j[key] ?? def;
    if (typeof v !== 'boolean') fail(`"${key}" must be true or false, got ${showJson(v)}`);
    return v as boolean;
  };

  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = int('num_key_value_heads', { def: heads });
  if (heads % kvHeads !== 0) fail(`num_attention_heads (${heads}) must be a multiple of num_key_value_heads (${kvHeads})`);
  let headDim: number;
  if (j.head_dim === undefined || j.head_dim === null) {
    if (hidden % heads !== 0) fail(`hidden_size (${hidden}) is not divisible by num_attention_heads (${heads}); set "head_dim"`);
    headDim = hidden / heads;
  } else {
    headDim = int('head_dim');
  }
  if (headDim % 2 !== 0) fail(`head_dim (${headDim}) must be even for rotary embeddings`);

  const act = j.hidden_act ?? 'silu';
  if (act !== 'silu') fail(`hidden_act ${showJson(act)} is not supported (only silu)`);

  let ropeScaling: RopeScaling | null = null;
  if (j.rope_scaling !== undefined && j.rope_scaling !== null) {
    const r = j.rope_scaling as Record<string, unknown>;
    const type = (r.rope_type ?? r.type) as string;
    if (type === 'default') ropeScaling = null;
    else if (type === 'linear' || type === 'llama3') {
      const factor = r.factor;
      if (typeof factor !== 'number' || !(factor > 0)) fail(`rope_scaling.factor must be a positive number`);
      ropeScaling = { rope_type: type, factor: factor as number };
      if (type === 'llama3') {
        for (const k of ['low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings']) {
          if (typeof r[k] !== 'number' || !((r[k] as number) > 0)) fail(`rope_scaling of type llama3 needs "${k}", a positive number`);
        }
        ropeScaling.low_freq_factor = r.low_freq_factor as number;
        ropeScaling.high_freq_factor = r.high_freq_factor as number;
        ropeScaling.original_max_position_embeddings = r.original_max_position_embeddings as number;
        if (ropeScaling.low_freq_factor! >= ropeScaling.high_freq_factor!) {
          fail('rope_scaling.low_freq_factor must be smaller than high_freq_factor');
        }
      }
    } else {
      fail(`rope_scaling type ${showJson(type)} is not supported (default, linear, llama3)`);
    }
  }

  let slidingWindow: number | null = null;
  if (mt === 'mistral' && j.sliding_window != null) slidingWindow = int('sliding_window');
  if (mt === 'qwen2' && j.use_sliding_window === true && j.sliding_window != null) {
    fail('use_sliding_window=true is not supported for qwen2');
  }

  /** A token id (or, when `list`, a list of them) or null; anything else is a corrupt config. */
  const tokenIds = (key: string, list: boolean): number | number[] | null => {
    const v = j[key] ?? null;
    if (v === null || isTokenId(v)) return v as number | null;
    if (list && Array.isArray(v) && v.every(isTokenId)) return v as number[];
    return fail(`"${key}" must be a token id (an integer >= 0)${list ? ', a list of them' : ''} or null, got ${Array.isArray(v) ? 'a list holding something else' : showJson(v)}`);
  };

  const dtypeName = (): string => {
    const v = j.torch_dtype ?? j.dtype ?? 'float32';
    return typeof v === 'string' ? v : fail(`"torch_dtype" must be a dtype name such as "bfloat16", got ${showJson(v)}`);
  };

  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(j)) if (!KNOWN.has(k)) extra[k] = v;

  return {
    architectures: archs,
    model_type: mt,
    vocab_size: int('vocab_size'),
    hidden_size: hidden,
    intermediate_size: int('intermediate_size'),
    num_hidden_layers: int('num_hidden_layers', { max: MAX_LAYERS }),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    max_position_embeddings: int('max_position_embeddings', { def: 2048 }),
    rms_norm_eps: num('rms_norm_eps', 1e-6, RMS_NORM_EPS_RANGE),
    rope_theta: num('rope_theta', 10000, ROPE_THETA_RANGE),
    rope_scaling: ropeScaling,
    tie_word_embeddings: bool('tie_word_embeddings', false),
    attention_bias: mt === 'qwen2' ? true : bool('attention_bias', false),
    mlp_bias: bool('mlp_bias', false),
    sliding_window: slidingWindow,
    bos_token_id: tokenIds('bos_token_id', false) as number | null,
    eos_token_id: tokenIds('eos_token_id', true),
    hidden_act: 'silu',
    torch_dtype: dtypeName(),
    quantization_config: parseQuantization(j.quantization_config, fail),
    extra,
  };
}

/** The layer index and suffix of a decoder-layer tensor name `model.layers.{layer}.{suffix}`; null for other tensors. */
export function splitLayerName(name: string): { layer: number; suffix: string } | null {
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  return m ? { layer: Number(m[1]), suffix: m[2] } : null;
}

/**
 * The tensors of the decoder layers `keep` (in that order, renumbered 0..k-1) and every tensor outside
 * the layers, under their Hugging Face names; the values are shared, not copied.
 */
export function keepLayers<T>(tensors: ReadonlyMap<string, T>, keep: readonly number[]): Map<string, T> {
  const out = new Map<string, T>();
  for (const [name, t] of tensors) {
    const l = splitLayerName(name);
    const j = l ? keep.indexOf(l.layer) : -1;
    if (!l) out.set(name, t);
    else if (j >= 0) out.set(`model.layers.${j}.${l.suffix}`, t);
  }
  return out;
}

/**
 * Throws when the checkpoint holds decoder layers the config does not count (num_hidden_layers too
 * small: the extra layers would be silently ignored). `gguf`: the checkpoint is that GGUF file, whose
 * metadata is the config and whose layers are named blk.N.
 */
export function checkLayerCount(c: LlamaConfig, tensorNames: Iterable<string>, dir: string, gguf = false): void {
  let top = -1;
  for (const name of tensorNames) {
    const l = splitLayerName(name);
    if (l) top = Math.max(top, l.layer);
  }
  if (top < c.num_hidden_layers) return;
  if (gguf) throw new UserError(`${dir}: its metadata says ${c.num_hidden_layers} layers (block_count), but it holds tensors of layer blk.${top}`);
  throw new UserError(`${join(dir, 'config.json')}: num_hidden_layers is ${c.num_hidden_layers}, but the checkpoint holds layers up to model.layers.${top}; set num_hidden_layers to ${top + 1}`);
}

/** Reads and validates `DIR/config.json`, or the config in a GGUF model file's metadata. */
export function readConfig(dir: string): LlamaConfig {
  if (isGgufFile(dir)) return parseConfig(ggufConfigJson(dir), `${dir} (GGUF metadata)`);
  const file = join(dir, 'config.json');
  if (!existsSync(file)) {
    throw new UserError(`${file}: not found; ${flag(MODEL)} must be a Hugging Face model directory (convert llama2.c checkpoints with \`mka convert-llama2c\`)`);
  }
  return parseConfig(readJsonFile(file, 'model config'), file);
}

/** The config as Hugging Face writes it, with changes applied (e.g. a new num_hidden_layers). */
export function configToJson(c: LlamaConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...c.extra,
    architectures: c.architectures,
    model_type: c.model_type,
    vocab_size: c.vocab_size,
    hidden_size: c.hidden_size,
    intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads,
    num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim,
    max_position_embeddings: c.max_position_embeddings,
    rms_norm_eps: c.rms_norm_eps,
    rope_theta: c.rope_theta,
    rope_scaling: c.rope_scaling,
    tie_word_embeddings: c.tie_word_embeddings,
    hidden_act: c.hidden_act,
    bos_token_id: c.bos_token_id,
    eos_token_id: c.eos_token_id,
    torch_dtype: c.torch_dtype,
  };
  if (c.quantization_config) out.quantization_config = c.quantization_config;
  if (c.model_type === 'llama') {
    out.attention_bias = c.attention_bias;
    out.mlp_bias = c.mlp_bias;
  }
  if (c.model_type === 'mistral') out.sliding_window = c.sliding_window;
  if (c.model_type === 'qwen2') {
    out.sliding_window = null;
    out.use_sliding_window = false;
  }
  return out;
}

/** Names and shapes of every tensor a checkpoint of this config must hold (HF names). */
export function expectedTensors(c: LlamaConfig): Map<string, number[]> {
  const H = c.hidden_size;
  const m = new Map<string, number[]>();
  m.set('model.embed_tokens.weight', [c.vocab_size, H]);
  for (let i = 0; i < c.num_hidden_layers; i++) {
    for (const [k, s] of layerTensorShapes(c)) m.set(`model.layers.${i}.${k}`, s);
  }
  m.set('model.norm.weight', [H]);
  if (!c.tie_word_embeddings) m.set('lm_head.weight', [c.vocab_size, H]);
  return m;
}

/** Suffixes (after `model.layers.${i}.`) and shapes of one decoder layer's tensors. */
export function layerTensorShapes(c: LlamaConfig): Map<string, number[]> {
  const H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const q = c.num_attention_heads * hd, kv = c.num_key_value_heads * hd;
  const m = new Map<string, number[]>([
    ['input_layernorm.weight', [H]],
    ['self_attn.q_proj.weight', [q, H]],
    ['self_attn.k_proj.weight', [kv, H]],
    ['self_attn.v_proj.weight', [kv, H]],
    ['self_attn.o_proj.weight', [H, q]],
    ['post_attention_layernorm.weight', [H]],
    ['mlp.gate_proj.weight', [I, H]],
    ['mlp.up_proj.weight', [I, H]],
    ['mlp.down_proj.weight', [H, I]],
  ]);
  if (c.attention_bias) {
    m.set('self_attn.q_proj.bias', [q]);
    m.set('self_attn.k_proj.bias', [kv]);
    m.set('self_attn.v_proj.bias', [kv]);
    if (c.model_type !== 'qwen2') m.set('self_attn.o_proj.bias', [H]);
  }
  if (c.mlp_bias) {
    m.set('mlp.gate_proj.bias', [I]);
    m.set('mlp.up_proj.bias', [I]);
    m.set('mlp.down_proj.bias', [H]);
  }
  return m;
}
