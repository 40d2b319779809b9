/**
 * The models, prompts and texts of the GGUF goldens (test/goldens/gguf/), shared by the script that
 * makes them (make.ts, with llama.cpp and the Python references) and the tests that check mka against
 * them (test/gguf-*.test.ts), so both build the same inputs.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { convertLlama2c } from '../../../src/convert/llama2c.ts';
import { makePaperModel } from '../../../scripts/make-paper-model.ts';
import { replayPlan } from '../../../src/pipeline/compress.ts';
import { quantizeModel } from '../../../src/pipeline/quantize.ts';
import { parseQuantization } from '../../../src/quant/registry.ts';

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
 * 4-bit in groups of 128 (Q4_1 blocks repeating each group's scale and min). The embedding and lm_head
 * are quantized as llama.cpp's files hold them (mka quantize's default).
 */
export const PACKED_CASES = [
  { name: 'w4g32', quantize: 'rtn:w4g32', type: 'q4_0' },
  { name: 'w8g32', quantize: 'rtn:w8g32', type: 'q8_0' },
  { name: 'w4g128-asym', quantize: 'rtn:w4g128-asym', type: 'q4_0' },
] as const;

/** Writes the merged demo (made by makeMergedDemo in `merged`) quantized as `quantize` says into `dir`. */
export async function makePackedDemo(merged: string, dir: string, quantize: string): Promise<void> {
  await quantizeModel({ model: merged, out: dir, quantization: parseQuantization(quantize)!, quiet: true });
}
