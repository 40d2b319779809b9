/**
 * The project's tokenizer: a model directory's Hugging Face `tokenizer.json` and
 * `tokenizer_config.json`, run by @huggingface/tokenizers, with BOS handled as transformers does.
 */
import { existsSync } from 'node:fs';
import { readRegularFile } from '../io/read.ts';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../runtime/errors.ts';

export interface Tokenizer {
  /**
   * Token ids of `text`. By default special tokens are added as `tokenizer(text)` in transformers
   * adds them (BOS for Llama); `addBos` forces BOS on or off.
   */
  encode(text: string, opts?: { addBos?: boolean }): number[];
  /** Text of `ids`; `skipSpecial` drops special tokens such as BOS/EOS (default false, as in HF). */
  decode(ids: number[], opts?: { skipSpecial?: boolean }): string;
  bos: number | null;
  /** Every id that ends generation: the tokenizer's EOS and generation_config.json's eos_token_id. */
  eos: number[];
  /** Number of token ids (highest id + 1, added tokens included). */
  vocabSize: number;
}

type Json = Record<string, unknown>;

function readJson(file: string, required: boolean): Json | null {
  if (!existsSync(file)) {
    if (!required) return null;
    throw new UserError(`${file}: not found; the model directory needs a Hugging Face tokenizer.json (llama2.c tokenizers: \`mka convert-llama2c\`)`);
  }
  const text = readRegularFile(file, 'tokenizer file').toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: invalid JSON (${(e as Error).message}); re-download or re-convert it`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new UserError(`${file}: expected a JSON object; re-download or re-convert it`);
  }
  return raw as Json;
}

/** A special token as tokenizer_config.json gives it: a string or {content}. */
function tokenContent(t: unknown): string | null {
  if (typeof t === 'string') return t;
  if (typeof t === 'object' && t !== null && typeof (t as Json).content === 'string') return (t as Json).content as string;
  return null;
}

/** Loads `DIR/tokenizer.json` with `DIR/tokenizer_config.json` (optional) and generation_config.json (optional). */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  const file = join(dir, 'tokenizer.json');
  const json = readJson(file, true)!;
  const config = readJson(join(dir, 'tokenizer_config.json'), false) ?? {};
  const generation = readJson(join(dir, 'generation_config.json'), false) ?? {};
  return tokenizerFromJson(json, config, generation, file);
}

/**
 * The tokenizer of a parsed tokenizer.json, tokenizer_config.json and generation_config.json (the
 * last two may be {}); `file` names the source in errors.
 */
export function tokenizerFromJson(json: Json, config: Json = {}, generation: Json = {}, file = 'tokenizer.json'): Tokenizer {
  if (typeof json.model !== 'object' || json.model === null) {
    throw new UserError(`${file}: no "model" section; not a Hugging Face tokenizer.json`);
  }
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(
      {
        normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [],
        ...json,
      },
      config,
    );
  } catch (e) {
    throw new UserError(`${file}: unsupported or corrupt tokenizer (${(e as Error).message})`);
  }

  const idOf = (t: unknown): number | null => {
    const c = tokenContent(t);
    return c === null ? null : (hf.token_to_id(c) ?? null);
  };
  const probe = (special: boolean) => hf.encode('a', { add_special_tokens: special }).ids;
  const withSpecial = probe(true);
  const plain = probe(false);
  // The token the post_processor puts before the text, if any (Llama: BOS).
  const templateFirst = withSpecial.length > plain.length && withSpecial[0] !== plain[0] ? withSpecial[0] : null;

  const bos = idOf(config.bos_token) ?? templateFirst;
  const eos = new Set<number>();
  const tokEos = idOf(config.eos_token);
  if (tokEos !== null) eos.add(tokEos);
  for (const id of [generation.eos_token_id].flat()) if (typeof id === 'number') eos.add(id);

  // transformers' Llama tokenizers rebuild the template from add_bos_token/add_eos_token; others
  // use tokenizer.json's post_processor as is.
  const configured = typeof config.add_bos_token === 'boolean';
  const templateBos = bos !== null && templateFirst === bos;
  const defaultBos = configured ? (config.add_bos_token as boolean) : templateBos;
  const addEos = config.add_eos_token === true && tokEos !== null;
  const cleanUp = config.clean_up_tokenization_spaces === true;

  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  return {
    encode(text, opts = {}) {
      const wantBos = (opts.addBos ?? defaultBos) && bos !== null;
      if (configured) {
        const ids = hf.encode(text, { add_special_tokens: false }).ids;
        return [...(wantBos ? [bos!] : []), ...ids, ...(addEos ? [tokEos!] : [])];
      }
      const ids = hf.encode(text).ids;
      if (wantBos && !templateBos) return [bos!, ...ids];
      if (!wantBos && templateBos && ids[0] === bos) return ids.slice(1);
      return ids;
    },
    decode(ids, opts = {}) {
      if (ids.length === 0) return '';
      return hf.decode(ids, { skip_special_tokens: opts.skipSpecial ?? false, clean_up_tokenization_spaces: cleanUp });
    },
    bos,
    eos: [...eos],
    vocabSize,
  };
}
