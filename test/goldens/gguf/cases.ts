/**
 * The models, prompts and texts of the GGUF goldens (test/goldens/gguf/), shared by the script that
 * makes them (make.ts, with llama.cpp and the Python references) and the tests that check mka against
 * them (test/gguf-*.test.ts), so both build the same inputs.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { convertLlama2c } from '../../../src/convert/llama2c.ts';
import { makePaperModel } from '../../../scripts/make-paper-model.ts';
import { replayPlan } from '../../../src/pipeline/compress.ts';
import { quantizeModel } from '../../../src/pipeline/quantize.ts';
import { parseQuantization } from '../../../src/quant/registry.ts';
import { openModelDir } from '../../../src/model/model.ts';
import { expectedTensors } from '../../../src/model/config.ts';
import { writeSafetensors } from '../../../src/io/safetensors.ts';
import { atomicWriteDir } from '../../../src/io/atomic.ts';
import { quantizeRtn, type PackedMatrix, type PackedSpec } from '../../../src/io/packed.ts';
import { packBlocks } from '../../../src/gguf/quants.ts';
import { GgmlType } from '../../../src/gguf/format.ts';
import { GgufFile } from '../../../src/gguf/reader.ts';

/** The demo model's prompt: a dozen tokens of the benchmark's kind. */
export const DEMO_PROMPT = 'Question: What is 7 + 5?\nAnswer:';
export const STORIES_PROMPT = 'Once upon a time, there was a little';
export const LLAMA3_PROMPT = 'The capital of France is';
/** Greedy tokens llama.cpp is asked for. */
export const GREEDY_TOKENS = 8;

/** Texts every vocabulary can encode (printable ASCII, spaces and line breaks: the demo tokenizer's alphabet). */
export const ASCII_TEXTS = [
  DEMO_PROMPT,
  'Hello world',
  ' leading space',
  'two  spaces and a trailing one ',
  '\n\nnew\nlines\n',
  'digits 0 7 42 99 100 12345 3.14 3..3',
  'Punctuation: a,b;c.d!e?f (g) [h] {i} "j" \'k\' -l_ m/n\\o @p #q $r %s ^t &u *v +w =x |y ~z `end`',
  'UPPER lower MiXeD CamelCase',
  'The following are multiple choice questions (with answers) about facts.\n\nQuestion: Which of these is largest?\nA. 12\nB. 7\nC. 31\nD. 5\nAnswer: C\n\nQuestion: What comes after B?\nA. A\nB. C\nC. D\nD. E\nAnswer:',
  '',
];

/** Texts beyond ASCII, for byte-fallback and byte-level vocabularies. */
export const UNICODE_TEXTS = [
  ...ASCII_TEXTS,
  'café naïve résumé Ünïcödé',
  '日本語のテキストと中文',
  'emoji 🦙🚀 ok 😶‍🌫️',
  'tabs\tand\ttabs',
  '“quotes” ‘single’ — dash … ellipsis',
  "I've been 'told' he's there, 'RE you sure? We'Ve a'lL",
  ' 333333 3.3 3...3 ------======= ',
];

/** Special tokens written in the text, which llama.cpp (parse_special) and Hugging Face read as those tokens. */
export const SPM_SPECIAL_TEXT = '<s> literal special </s> end';
export const LLAMA3_SPECIAL_TEXT = '<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>';

/** The tiny model with the real Llama 3.1 tokenizer and rope scaling: 2 layers at hidden 64, random BF16 weights. */
export const LLAMA3_TINY = {
  shape: 'llama3.1-8b', layers: 2, seed: 1,
  overrides: { hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, tie_word_embeddings: true },
};

/** Writes the Llama 3 tiny model into `dir` (a fresh directory). */
export async function makeLlama3Tiny(dir: string): Promise<void> {
  await makePaperModel({ ...LLAMA3_TINY, out: dir, quiet: true, force: true });
}

/** stories260K converted to a Hugging Face model directory in `dir`. */
export async function convertStories(shared: string, dir: string): Promise<void> {
  const src = join(shared, 'models', 'stories260K');
  if (!existsSync(join(src, 'stories260K.bin'))) throw new Error(`${src}: stories260K is missing`);
  await convertLlama2c({ checkpoint: join(src, 'stories260K.bin'), tokenizer: join(src, 'tok512.bin'), out: dir });
}

/** The hf-tiny fixtures of ../shared (Llama, Llama 3 rope scaling, tied F16, Mistral, Qwen2 with biases). */
export const HF_TINY = ['a_llama2', 'b_llama3_gqa_bf16_sharded', 'c_llama_tied_f16', 'd_mistral', 'e_qwen2_bias'];

/** The GGUF types exported per case. */
export const DEMO_TYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
export const STORIES_TYPES = ['f32', 'q8_0'] as const;

/** The merged model of the GGUF goldens: the demo with a recorded MKA plan replayed (8 → 5 layers, λ-blended weights). */
export const MERGED_PLAN = 'test/fixtures/plans/mka-3-v0.1.0.json';
export const MERGED_TYPES = ['f32', 'q8_0', 'q4_0'] as const;

/** Writes the merged demo model into `dir` (a path that does not exist yet), `root` being the repository. */
export async function makeMergedDemo(root: string, dir: string): Promise<void> {
  await replayPlan({ model: join(root, 'models', 'demo'), plan: join(root, MERGED_PLAN), out: dir });
}

/**
 * The merged demo quantized by `mka quantize` (round to nearest: no calibration), each exported with
 * the block type asked for: symmetric 4-bit and 8-bit in groups of 32 (Q4_0, Q8_0), and asymmetric
 * 4-bit in groups of 128 (Q4_1 blocks repeating each group's scale and min). lm_head is Q8_0; the
 * embedding is Q4_0 in the 4-bit cases (`e4`: llama.cpp's Q4_0 files hold it so; mka quantize's default
 * is Q8_0, the w8g32 case's blocks) and Q8_0 in the 8-bit one.
 */
export const PACKED_CASES = [
  { name: 'w4g32', quantize: 'rtn:w4g32e4', type: 'q4_0' },
  { name: 'w8g32', quantize: 'rtn:w8g32', type: 'q8_0' },
  { name: 'w4g128-asym', quantize: 'rtn:w4g128e4-asym', type: 'q4_0' },
] as const;

/** Writes the merged demo (made by makeMergedDemo in `merged`) quantized as `quantize` says into `dir`. */
export async function makePackedDemo(merged: string, dir: string, quantize: string): Promise<void> {
  await quantizeModel({ model: merged, out: dir, quantization: parseQuantization(quantize)!, quiet: true });
}

/**
 * The demo with its MLP widened from 176 to 192 neurons, the new ones zero (gate and up rows, down
 * columns): the same function, but every matrix's rows divide into blocks of 32, so a quantized GGUF of
 * it runs every product of llama.cpp on its integer kernels (the demo's own 176-wide down projections
 * stay F16, whose products round the activations to f16).
 */
export const PADDED_INTERMEDIATE = 192;

/** Writes the padded demo (see PADDED_INTERMEDIATE) into `dir` (a fresh directory), `root` being the repository. */
export async function makePaddedDemo(root: string, dir: string): Promise<void> {
  const src = join(root, 'models', 'demo');
  const { config, ckpt } = openModelDir(src);
  const from = config.intermediate_size, to = PADDED_INTERMEDIATE;
  const padded = { ...config, intermediate_size: to };
  const shapes = expectedTensors(padded);
  try {
    await atomicWriteDir(dir, async (tmp) => {
      const json = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8'));
      writeFileSync(join(tmp, 'config.json'), JSON.stringify({ ...json, intermediate_size: to }, null, 2));
      for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(src, f), join(tmp, f));
      await writeSafetensors(join(tmp, 'model.safetensors'), [...shapes].map(([name, shape]) => ({ name, shape, dtype: 'F32' as const })), (name) => {
        const v = ckpt.read(name), [rows, cols] = shapes.get(name)!;
        if (/mlp\.(gate|up)_proj/.test(name)) return Float32Array.from({ length: rows * cols }, (_, i) => (i < from * cols ? v[i] : 0));
        if (/mlp\.down_proj/.test(name)) return Float32Array.from({ length: rows * cols }, (_, i) => (i % cols < from ? v[Math.floor(i / cols) * from + (i % cols)] : 0));
        return v;
      });
    });
  } finally {
    ckpt.close();
  }
}

/**
 * The padded demo quantized by round to nearest and exported with its own blocks: Q4_0 and Q8_0 (lm_head
 * Q8_0 in both; the embedding Q4_0 in the first, `e4`, as the goldens were made). (Asymmetric 4-bit, Q4_1, is left to the single products: on this prompt one rounding
 * tie of an activation goes the other way in llama.cpp on mka's SIMD paths, see test/gguf-int8.test.ts.)
 */
export const INT8_MODEL_CASES = [
  { name: 'w4g32', quantize: 'rtn:w4g32e4', type: 'q4_0' },
  { name: 'w8g32', quantize: 'rtn:w8g32', type: 'q8_0' },
] as const;

/**
 * Single products y = x·Wᵀ against llama.cpp's ggml_mul_mat (mm.c): W random, quantized by round to
 * nearest into Q8_0, Q4_0 or Q4_1 blocks; x random with outlier inputs, a zero block, a block of 1e-4
 * (its scale a subnormal half) and one of 1e-6 (its scale rounds to zero); one row (decoding), a few,
 * and more than the packed GEMM's tile, k past 64 blocks.
 */
export const INT8_PRODUCTS = [
  { type: 'q4_0', m: 1, n: 64, k: 256 },
  { type: 'q8_0', m: 3, n: 48, k: 2080 },
  { type: 'q4_1', m: 11, n: 40, k: 512 },
  { type: 'q4_0', m: 16, n: 96, k: 2080 },
  { type: 'q8_0', m: 9, n: 32, k: 128 },
] as const;

const PRODUCT_SPECS: Record<(typeof INT8_PRODUCTS)[number]['type'], PackedSpec> = {
  q8_0: { bits: 8, group: 32, symmetric: true }, q4_0: { bits: 4, group: 32, symmetric: true }, q4_1: { bits: 4, group: 32, symmetric: false },
};

/** Case `i` of INT8_PRODUCTS: its x [m][k], its weight packed (contract 1) and as ggml blocks. */
export function int8Product(i: number) {
  const c = INT8_PRODUCTS[i];
  let s = 0x9e3779b9 ^ (i * 7919);
  const uniform = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), (s + 0.5) / 2 ** 32);
  const gauss = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const w = Float32Array.from({ length: c.n * c.k }, () => 0.02 * gauss());
  const x = Float32Array.from({ length: c.m * c.k }, (_, j) => ((j % c.k) % 61 === 7 ? 30 * gauss() : gauss()));
  const row = c.m - 1;
  x.fill(0, row * c.k, row * c.k + 32);
  for (let j = 32; j < 64; j++) x[row * c.k + j] *= 1e-4;
  for (let j = 64; j < 96; j++) x[row * c.k + j] *= 1e-6;
  const packed = quantizeRtn(w, c.n, c.k, PRODUCT_SPECS[c.type]);
  const blocks = packBlocks({ rows: c.n, cols: c.k, spec: packed.spec, quants: packed.quants, scales: packed.scales, mins: packed.mins })!;
  const ggmlType = { q8_0: GgmlType.Q8_0, q4_0: GgmlType.Q4_0, q4_1: GgmlType.Q4_1 }[c.type];
  if (blocks.type !== ggmlType) throw new Error(`int8Product ${i}: packed as ${blocks.type}, want ${ggmlType}`);
  return { ...c, x, packed, blocks: blocks.bytes, ggmlType };
}

/** sha256 (hex) of every tensor's stored bytes in a GGUF file, by name: how the goldens pin a file's tensors. */
export function tensorShas(file: string): Record<string, string> {
  const g = new GgufFile(file);
  try {
    return Object.fromEntries([...g.tensors.keys()].map((n) => [n, createHash('sha256').update(g.readTensor(n)).digest('hex')]));
  } finally {
    g.close();
  }
}

/** Weight (j, c) of a packed matrix (docs/quantization.md, Format) from the format's definition, not mka's reader. */
export function dequantized(pm: PackedMatrix, j: number, c: number): number {
  const kb = Math.ceil(pm.cols / 32), bytes = pm.spec.bits === 8 ? 32 : 16, b = Math.floor(c / 32), v = c % 32;
  const groups = Math.ceil(pm.cols / pm.spec.group), g = j * groups + Math.floor(c / pm.spec.group);
  const byte = pm.quants[j * kb * bytes + b * bytes + (pm.spec.bits === 8 ? v : v & 15)];
  const q = pm.spec.bits === 8 ? (pm.spec.symmetric ? (byte << 24) >> 24 : byte) : v < 16 ? byte & 15 : byte >> 4;
  if (pm.mins) return pm.scales[g] * q + pm.mins[g];
  return pm.scales[g] * (pm.spec.bits === 8 ? q : q - 8);
}
