/**
 * The project's tokenizer: a model directory's Hugging Face `tokenizer.json` and
 * `tokenizer_config.json` (hf-json.ts: run by @huggingface/tokenizers, BOS as transformers handles it),
 * or the vocabulary of a GGUF model file (gguf.ts: encoding as llama.cpp does).
 */
import { existsSync } from 'node:fs';
import { describeJson, isPlainObject, parseJsonText, readTextFile } from '../io/read.ts';
import { join } from 'node:path';
import { UserError } from '../runtime/errors.ts';
import { isGgufFile } from '../gguf/reader.ts';
import { loadGgufTokenizer } from './gguf.ts';
import { tokenizerFromJson } from './hf-json.ts';
import { checkGenerationConfig, checkTokenizerConfig } from './config.ts';
import type { Tokenizer } from './types.ts';

export type { Tokenizer } from './types.ts';
export { tokenizerFromJson } from './hf-json.ts';

type Json = Record<string, unknown>;

function readJson(file: string, required: boolean): Json | null {
  if (!existsSync(file)) {
    if (!required) return null;
    throw new UserError(`${file}: not found; the model directory needs a Hugging Face tokenizer.json (llama2.c tokenizers: \`mka convert-llama2c\`)`);
  }
  const what = 'tokenizer file';
  let raw: unknown;
  try {
    raw = parseJsonText(readTextFile(file, what), file, what);
  } catch (e) {
    // one line, with the fix: parseJsonText's message quotes the parser's first line only
    throw e instanceof UserError ? new UserError(`${e.message}; re-download or re-convert it`) : e;
  }
  if (!isPlainObject(raw)) throw new UserError(`${file}: expected a JSON object, not ${describeJson(raw)}; re-download or re-convert it`);
  return raw;
}

/**
 * Loads `DIR/tokenizer.json` with `DIR/tokenizer_config.json` (optional) and generation_config.json
 * (optional), or the tokenizer stored in a GGUF model file.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  if (isGgufFile(dir)) {
    const { tokenizer, embeddingRows } = loadGgufTokenizer(dir);
    return embeddingRows === undefined ? tokenizer : withinVocabulary(tokenizer, embeddingRows, dir, 'rows of token_embd.weight');
  }
  const file = join(dir, 'tokenizer.json');
  const json = readJson(file, true)!;
  const configFile = join(dir, 'tokenizer_config.json');
  const config = readJson(configFile, false) ?? {};
  checkTokenizerConfig(config, configFile);
  const generationFile = join(dir, 'generation_config.json');
  const generation = readJson(generationFile, false) ?? {};
  checkGenerationConfig(generation, generationFile);
  const tok = tokenizerFromJson(json, config, generation, file, configFile);
  const vocab = readJson(join(dir, 'config.json'), false)?.vocab_size;
  return Number.isSafeInteger(vocab) ? withinVocabulary(tok, vocab as number, file, 'vocab_size in config.json') : tok;
}

/**
 * `tok` refusing, when a text encodes to it, an id the model has no embedding for (a tokenizer.json of
 * another model, or with tokens added after training): a one-line error naming the file, rather than a
 * failure inside the forward pass. Ids are checked when used, so a tokenizer with unused extra tokens loads.
 */
function withinVocabulary(tok: Tokenizer, vocabSize: number, file: string, source: string): Tokenizer {
  return {
    ...tok,
    encode(text, opts) {
      const ids = tok.encode(text, opts);
      const bad = ids.find((id) => id >= vocabSize);
      if (bad !== undefined) {
        throw new UserError(`${file}: encodes the text to token id ${bad}, but the model's vocabulary has ${vocabSize} tokens (${source}); use the tokenizer the model was trained with`);
      }
      return ids;
    },
  };
}

/**
 * Whether `AutoTokenizer.from_pretrained(dir, add_bos_token=False)(text)` still begins with BOS, as
 * the paper's released code calls it: no for tokenizers that obey the flag (Llama 2, Mistral), the
 * tokenizer's own default for the others (yes for Llama 3, whose class ignores it: transformers#30947).
 */
export function bosUnderAddBosTokenFalse(tok: Tokenizer): boolean {
  return !tok.obeysAddBosToken && tok.addsBos;
}
