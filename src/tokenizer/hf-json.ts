/**
 * A Hugging Face `tokenizer.json` (with tokenizer_config.json and generation_config.json values) as
 * mka's Tokenizer, run by @huggingface/tokenizers, with BOS handled as transformers does.
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { UserError } from '../runtime/errors.ts';
import { describeJson, isPlainObject, isTokenId, showJson } from '../io/read.ts';
import type { Tokenizer } from './types.ts';

type Json = Record<string, unknown>;

/** A special token as tokenizer_config.json gives it: a string or {content}. */
function tokenContent(t: unknown): string | null {
  if (typeof t === 'string') return t;
  if (typeof t === 'object' && t !== null && typeof (t as Json).content === 'string') return (t as Json).content as string;
  return null;
}

/**
 * The tokenizer of a parsed tokenizer.json, tokenizer_config.json and generation_config.json (the
 * last two may be {}; the config's field types are checked by checkTokenizerConfig); `file` and
 * `configFile` name the sources in errors.
 */
export function tokenizerFromJson(json: Json, config: Json = {}, generation: Json = {}, file = 'tokenizer.json', configFile = 'tokenizer_config.json'): Tokenizer {
  if (typeof json.model !== 'object' || json.model === null) {
    throw new UserError(`${file}: no "model" section; not a Hugging Face tokenizer.json`);
  }
  const vocabSize = checkTokenIds(json, file);
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

  // a named BOS the vocabulary lacks: transformers adds it as a new token, an id past the model's embeddings
  const namedBos = tokenContent(config.bos_token);
  if (namedBos !== null && idOf(namedBos) === null) {
    throw new UserError(`${configFile}: "bos_token" ${showJson(namedBos, 80)} is not a token of ${file}; name one of its tokens (e.g. the post-processor's first) or remove the field`);
  }
  const bos = idOf(config.bos_token) ?? templateFirst;
  checkEncodes(hf, idOf(config.unk_token) ?? idOf((json.model as Json).unk_token), file);
  const eos = new Set<number>();
  const tokEos = idOf(config.eos_token);
  if (tokEos !== null) eos.add(tokEos);
  for (const id of [generation.eos_token_id].flat()) if (typeof id === 'number') eos.add(id);

  // transformers' Llama tokenizers rebuild the template from add_bos_token/add_eos_token; others
  // use tokenizer.json's post_processor as is. Without a tokenizer_class (or null), transformers picks the
  // class from config.json's model_type: a Llama tokenizer for the models mka loads.
  const obeysAddBosToken = config.tokenizer_class == null || (typeof config.tokenizer_class === 'string' && OBEYS_ADD_BOS_TOKEN.test(config.tokenizer_class));
  // null is Python's None there, which those classes read as false
  const configured = obeysAddBosToken && (typeof config.add_bos_token === 'boolean' || config.add_bos_token === null);
  const templateBos = bos !== null && templateFirst === bos;
  const defaultBos = configured ? config.add_bos_token === true : templateBos;
  if (configured && defaultBos && (bos === null || config.bos_token === null)) {
    throw new UserError(`${configFile}: "add_bos_token" is true but there is no BOS token ("bos_token" is null or absent and ${file}'s post-processor puts none first); name the BOS token or set add_bos_token to false`);
  }
  const addEos = config.add_eos_token === true && tokEos !== null;
  if (obeysAddBosToken && config.add_eos_token === true && tokEos === null) {
    throw new UserError(`${configFile}: "add_eos_token" is true but "eos_token" is ${config.eos_token == null ? 'not given' : `not a token of ${file}`}; name the EOS token or set add_eos_token to false`);
  }
  const cleanUp = config.clean_up_tokenization_spaces === true;

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
    addsBos: defaultBos && bos !== null,
    obeysAddBosToken,
    eos: [...eos],
    vocabSize,
  };
}

/**
 * Refuses a tokenizer.json whose model.vocab (an object of ids) or added_tokens give a token something
 * other than an id (negative, fractional, text, beyond 2^53): such a token would reach the model as that
 * number. Returns the number of ids (the highest + 1), counted from the tables rather than through the
 * tokenizer's dense id list, whose length a corrupt id of 2^31 would make two billion.
 */
function checkTokenIds(json: Json, file: string): number {
  const corrupt = (what: string): never => {
    throw new UserError(`${file}: ${what}; the tokenizer is corrupt (re-download or re-convert it)`);
  };
  const model = json.model as Json;
  let size = Array.isArray(model.vocab) ? model.vocab.length : 0; // Unigram: [piece, score] pairs, ids by position
  if (isPlainObject(model.vocab)) {
    for (const [p, i] of Object.entries(model.vocab)) {
      if (!isTokenId(i)) corrupt(`model.vocab[${showJson(p, 200)}] is ${showJson(i)}, not a token id`);
      size = Math.max(size, (i as number) + 1);
    }
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) corrupt(`added_tokens is ${describeJson(added)}, not a list`);
  (added as unknown[]).forEach((t, k) => {
    if (!isPlainObject(t) || !isTokenId(t.id) || typeof t.content !== 'string') corrupt(`added_tokens[${k}] is not {"id": a token id, "content": text}`);
    size = Math.max(size, (t as { id: number }).id + 1);
  });
  return size;
}

/** Ordinary text that any working tokenizer of a Llama-family model encodes to known tokens. */
const PROBE_TEXT = 'The answer is 42. Which of the following is true? A, B, C or D.';

/**
 * Refuses a tokenizer that cannot encode ordinary text: nothing at all, or only its unknown token (a
 * truncated vocabulary, a wrong model section), which would silently turn every prompt into <unk>.
 */
function checkEncodes(hf: HfTokenizer, unk: number | null, file: string): void {
  const ids = hf.encode(PROBE_TEXT, { add_special_tokens: false }).ids;
  if (ids.length === 0) throw new UserError(`${file}: encodes ordinary text to no tokens; the tokenizer is broken (re-download or re-convert it)`);
  if (unk !== null && ids.every((id: number) => id === unk)) {
    throw new UserError(`${file}: encodes every word of ordinary text as the unknown token (id ${unk}); its vocabulary is broken (re-download or re-convert it)`);
  }
}

/** tokenizer_config.json classes whose template transformers rebuilds from add_bos_token / add_eos_token. */
const OBEYS_ADD_BOS_TOKEN = /^(Llama|CodeLlama|Gemma)Tokenizer(Fast)?$/;
