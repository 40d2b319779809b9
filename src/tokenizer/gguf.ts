/**
 * The tokenizer of a GGUF model file, from its `tokenizer.ggml.*` metadata, encoding as llama.cpp does:
 * "llama" vocabularies with llama.cpp's own SentencePiece algorithm (spm.ts); "gpt2" ones (Llama 3,
 * Qwen2) as a Hugging Face byte-level BPE with the pre-tokenizer llama.cpp names (same vocabulary,
 * merges, regular expression and BOS handling), run by @huggingface/tokenizers.
 */
import { UserError } from '../runtime/errors.ts';
import { showJson } from '../io/read.ts';
import { ValueType } from '../gguf/format.ts';
import { GgufFile, withGguf } from '../gguf/reader.ts';
import { BPE_PRE_REGEX } from '../gguf/vocab.ts';
import { spmTokenizer, TOKEN_BYTE, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNKNOWN, TOKEN_USER_DEFINED } from './spm.ts';
import { tokenizerFromJson } from './hf-json.ts';
import type { Tokenizer } from './types.ts';

/**
 * The Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json) equivalent to the vocabulary
 * of a GGUF file, for model directories written from it; null when it has no vocabulary. A "llama"
 * vocabulary becomes a BPE whose merges are every split of a token into two tokens, ranked by the
 * token's score (how transformers converts SentencePiece models), which merges as llama.cpp does.
 */
export function ggufTokenizerFiles(path: string): Record<string, string> | null {
  return withGguf(path, (g) => {
    const model = g.string('tokenizer.ggml.model', 'none');
    if (model === 'none' || model === 'no_vocab') return null;
    const { tokens, types, eos, id } = vocabOf(g);
    const bos = id('tokenizer.ggml.bos_token_id', model === 'llama' ? 1 : null);
    const built = model === 'llama' ? spmTokenizerJson(g, tokens, types, eos, bos, id('tokenizer.ggml.unknown_token_id', 0))
      : model === 'gpt2' ? bpeTokenizerJson(g, tokens, types, eos, bos) : g.refuse(`tokenizer.ggml.model ${showJson(model)} is not supported (mka reads "llama" and "gpt2" vocabularies)`);
    const config: Record<string, unknown> = { tokenizer_class: 'PreTrainedTokenizerFast', ...built.config };
    const chat = chatTemplateOf(g);
    if (chat !== undefined) config.chat_template = chat;
    return { 'tokenizer.json': JSON.stringify(built.json) + '\n', 'tokenizer_config.json': JSON.stringify(config, null, 2) + '\n' };
  });
}

const NAMED_TEMPLATE = 'tokenizer.chat_template.';

/**
 * tokenizer_config.json's chat_template from GGUF: tokenizer.chat_template as text, or, when the file has
 * templates by name (tokenizer.chat_template.NAME), the list form with that one named "default" first
 * (transformers' GGUF loader reads only the default; the list keeps every template).
 */
function chatTemplateOf(g: GgufFile): string | { name: string; template: string }[] | undefined {
  const fallback = g.has('tokenizer.chat_template') ? g.string('tokenizer.chat_template') : undefined;
  const named = [...g.metadata.keys()].filter((k) => k.startsWith(NAMED_TEMPLATE) && k.length > NAMED_TEMPLATE.length);
  if (!named.length) return fallback;
  return [...(fallback !== undefined ? [{ name: 'default', template: fallback }] : []), ...named.map((k) => ({ name: k.slice(NAMED_TEMPLATE.length), template: g.string(k) }))];
}

/** Loads the tokenizer stored in a GGUF file, and the rows of its token_embd.weight (undefined without one), from one read of its header. */
export function loadGgufTokenizer(path: string): { tokenizer: Tokenizer; embeddingRows: number | undefined } {
  return withGguf(path, (g) => ({ tokenizer: tokenizerOf(g), embeddingRows: g.tensors.get('token_embd.weight')?.dims[1] }));
}

/** The token list, token types, end-of-generation ids and a checked id reader of a GGUF vocabulary. */
function vocabOf(g: GgufFile) {
  const model = g.string('tokenizer.ggml.model', 'none');
  const tokens = (g.array('tokenizer.ggml.tokens', { type: ValueType.STRING, required: true }) as { values: string[] }).values;
  const n = tokens.length;
  const types = g.array('tokenizer.ggml.token_type', { type: [ValueType.INT32, ValueType.UINT32] })?.values as ArrayLike<number> | undefined ?? new Int32Array(n).fill(1);
  if (types.length !== n) g.fail(`tokenizer.ggml.token_type has ${types.length} entries for ${n} tokens`);
  // llama.cpp's token types: 0 undefined, 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
  const badType = Array.prototype.findIndex.call(types, (t: number) => !(t >= 0 && t <= 6));
  if (badType >= 0) g.fail(`tokenizer.ggml.token_type of token ${badType} is ${types[badType]}, not a token type (0 to 6)`);
  const id = (key: string, def: number | null): number | null => {
    const v = g.has(key) ? g.int(key) : def;
    return v !== null && v >= 0 && v < n ? v : null;
  };
  const eos = [...new Set([id('tokenizer.ggml.eos_token_id', model === 'llama' ? 2 : null), id('tokenizer.ggml.eot_token_id', null), id('tokenizer.ggml.eom_token_id', null)])]
    .filter((x): x is number => x !== null);
  return { tokens, types, eos, id };
}

function tokenizerOf(g: GgufFile): Tokenizer {
  const model = g.string('tokenizer.ggml.model', 'none');
  if (model === 'none' || model === 'no_vocab') g.refuse('has no tokenizer (tokenizer.ggml.model is "none"); give token ids instead of text');
  const { tokens, types, eos, id } = vocabOf(g);
  const n = tokens.length;

  if (model === 'llama') {
    const scores = g.array('tokenizer.ggml.scores', { type: ValueType.FLOAT32 })?.values as ArrayLike<number> | undefined ?? new Float32Array(n);
    if (scores.length !== n) g.fail(`tokenizer.ggml.scores has ${scores.length} entries for ${n} tokens`);
    const badScore = Array.prototype.findIndex.call(scores, (s: number) => !Number.isFinite(s));
    if (badScore >= 0) g.fail(`tokenizer.ggml.scores of token ${badScore} is ${scores[badScore]}; the merges would be ranked arbitrarily`);
    return spmTokenizer({
      tokens, scores, types,
      bos: id('tokenizer.ggml.bos_token_id', 1), eos, unk: id('tokenizer.ggml.unknown_token_id', 0),
      addBos: g.bool('tokenizer.ggml.add_bos_token', true), addEos: g.bool('tokenizer.ggml.add_eos_token', false),
      addSpacePrefix: g.bool('tokenizer.ggml.add_space_prefix', true),
    }, g.path);
  }
  if (model !== 'gpt2') g.refuse(`tokenizer.ggml.model ${showJson(model)} is not supported (mka reads "llama" and "gpt2" vocabularies)`);
  const { json, config } = bpeTokenizerJson(g, tokens, types, eos, id('tokenizer.ggml.bos_token_id', null));
  try {
    return tokenizerFromJson(json, config, { eos_token_id: eos }, g.path);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${g.path}: its gpt2 vocabulary does not load (${(e as Error).message})`);
  }
}

/** The Hugging Face tokenizer.json and tokenizer_config.json objects of a "gpt2" GGUF vocabulary. */
function bpeTokenizerJson(g: GgufFile, tokens: string[], types: ArrayLike<number>, eos: number[], bos: number | null): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const pre = g.string('tokenizer.ggml.pre', 'default');
  const llama3 = pre === 'llama-bpe' || pre === 'llama3' || pre === 'llama-v3';
  const regex = BPE_PRE_REGEX[llama3 ? 'llama-bpe' : pre];
  if (!regex && pre !== 'gpt-2') g.refuse(`tokenizer.ggml.pre "${pre}" is not one mka implements (llama-bpe, qwen2, gpt-2)`);
  const merges = g.array('tokenizer.ggml.merges', { type: ValueType.STRING, required: true }) as { values: string[] };
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => { vocab[t] = i; });
  const added = tokens.flatMap((content, i) => (types[i] === TOKEN_CONTROL || types[i] === TOKEN_USER_DEFINED
    ? [{ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[i] === TOKEN_CONTROL }] : []));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: !regex };
  const addBos = g.bool('tokenizer.ggml.add_bos_token', llama3) && bos !== null;
  const json = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: regex
      ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, { ...byteLevel, use_regex: false }] }
      : byteLevel,
    post_processor: addBos ? bosTemplate(tokens[bos!], bos!) : null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
      byte_fallback: false, ignore_merges: llama3, vocab,
      merges: merges.values.map((m) => {
        const at = m.indexOf(' ', 1);
        if (at < 0) g.fail(`tokenizer.ggml.merges entry ${JSON.stringify(m.slice(0, 40))} is not two tokens separated by a space`);
        return [m.slice(0, at), m.slice(at + 1)];
      }),
    },
  };
  const config = {
    bos_token: bos !== null ? tokens[bos] : null,
    eos_token: eos.length ? tokens[eos[0]] : null,
    add_bos_token: addBos,
    add_eos_token: g.bool('tokenizer.ggml.add_eos_token', false),
    clean_up_tokenization_spaces: false,
  };
  return { json, config };
}

/** A post-processor putting BOS before the text (and before each of a pair), as Llama's tokenizer.json has. */
function bosTemplate(bos: string, id: number): Record<string, unknown> {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [id], tokens: [bos] } },
  };
}

/** The Hugging Face tokenizer.json and tokenizer_config.json objects of a "llama" (SentencePiece) GGUF vocabulary. */
function spmTokenizerJson(g: GgufFile, tokens: string[], types: ArrayLike<number>, eos: number[], bos: number | null, unk: number | null): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const n = tokens.length;
  const scores = g.array('tokenizer.ggml.scores', { type: ValueType.FLOAT32 })?.values as ArrayLike<number> | undefined ?? new Float32Array(n);
  if (scores.length !== n) g.fail(`tokenizer.ggml.scores has ${scores.length} entries for ${n} tokens`);
  const vocab: Record<string, number> = {};
  tokens.forEach((t, i) => { vocab[t] = i; });
  const mergeable = (i: number) => types[i] === TOKEN_NORMAL || types[i] === TOKEN_BYTE || types[i] === TOKEN_USER_DEFINED;
  const ids = new Map<string, number>();
  tokens.forEach((t, i) => { if (mergeable(i)) ids.set(t, i); });
  const merges: { l: string; r: string; score: number; id: number; left: number }[] = [];
  tokens.forEach((t, i) => {
    if (types[i] !== TOKEN_NORMAL) return;
    const chars = Array.from(t);
    for (let k = 1; k < chars.length; k++) {
      const l = chars.slice(0, k).join(''), r = chars.slice(k).join('');
      const left = ids.get(l);
      if (left !== undefined && ids.has(r)) merges.push({ l, r, score: scores[i], id: i, left });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.left - b.left);
  const byteFallback = Array.from(types).some((t) => t === TOKEN_BYTE);
  const addBos = g.bool('tokenizer.ggml.add_bos_token', true) && bos !== null;
  const prefix = g.bool('tokenizer.ggml.add_space_prefix', true);
  const added = tokens.flatMap((content, i) => (types[i] === TOKEN_CONTROL || types[i] === TOKEN_UNKNOWN || types[i] === TOKEN_USER_DEFINED
    ? [{ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[i] !== TOKEN_USER_DEFINED }] : []));
  const json = {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    // as llama.cpp: "▁" before every piece of text (also one that starts with a space, and after a special token), spaces as "▁"
    normalizer: {
      type: 'Sequence',
      normalizers: [...(prefix ? [{ type: 'Prepend', prepend: '\u2581' }] : []), { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }],
    },
    pre_tokenizer: null,
    post_processor: addBos ? bosTemplate(tokens[bos!], bos!) : null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
        ...(byteFallback ? [{ type: 'ByteFallback' }] : []),
        { type: 'Fuse' },
        ...(prefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: unk !== null ? tokens[unk] : null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: byteFallback, ignore_merges: false, vocab, merges: merges.map((m) => [m.l, m.r]),
    },
  };
  const config = {
    bos_token: bos !== null ? tokens[bos] : null,
    eos_token: eos.length ? tokens[eos[0]] : null,
    unk_token: unk !== null ? tokens[unk] : null,
    add_bos_token: addBos,
    add_eos_token: g.bool('tokenizer.ggml.add_eos_token', false),
    clean_up_tokenization_spaces: false,
  };
  return { json, config };
}
