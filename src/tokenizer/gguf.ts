/**
 * The tokenizer of a GGUF model file, from its `tokenizer.ggml.*` metadata, encoding as llama.cpp does:
 * "llama" vocabularies with llama.cpp's own SentencePiece algorithm (spm.ts); "gpt2" ones (Llama 3,
 * Qwen2) as a Hugging Face byte-level BPE with the pre-tokenizer llama.cpp names (same vocabulary,
 * merges, regular expression and BOS handling), run by @huggingface/tokenizers.
 */
import { UserError } from '../runtime/errors.ts';
import { ValueType } from '../gguf/format.ts';
import { GgufFile } from '../gguf/reader.ts';
import { BPE_PRE_REGEX } from '../gguf/vocab.ts';
import { spmTokenizer, TOKEN_CONTROL, TOKEN_USER_DEFINED } from './spm.ts';
import { type Tokenizer, tokenizerFromJson } from './tokenizer.ts';

/** Loads the tokenizer stored in a GGUF file. */
export function loadGgufTokenizer(path: string): Tokenizer {
  const g = new GgufFile(path);
  try {
    return tokenizerOf(g);
  } finally {
    g.close();
  }
}

function tokenizerOf(g: GgufFile): Tokenizer {
  const model = g.string('tokenizer.ggml.model', 'none');
  if (model === 'none' || model === 'no_vocab') g.refuse('has no tokenizer (tokenizer.ggml.model is "none"); give token ids (--ids) instead of text');
  const tokens = g.array('tokenizer.ggml.tokens', { type: ValueType.STRING, required: true }) as { values: string[] };
  const n = tokens.values.length;
  const types = g.array('tokenizer.ggml.token_type', { type: [ValueType.INT32, ValueType.UINT32] })?.values as ArrayLike<number> | undefined ?? new Int32Array(n).fill(1);
  if (types.length !== n) g.fail(`tokenizer.ggml.token_type has ${types.length} entries for ${n} tokens`);
  const id = (key: string, def: number | null): number | null => {
    const v = g.has(key) ? g.int(key) : def;
    return v !== null && v >= 0 && v < n ? v : null;
  };
  const eos = [...new Set([id('tokenizer.ggml.eos_token_id', model === 'llama' ? 2 : null), id('tokenizer.ggml.eot_token_id', null), id('tokenizer.ggml.eom_token_id', null)])]
    .filter((x): x is number => x !== null);

  if (model === 'llama') {
    const scores = g.array('tokenizer.ggml.scores', { type: ValueType.FLOAT32 })?.values as ArrayLike<number> | undefined ?? new Float32Array(n);
    return spmTokenizer({
      tokens: tokens.values, scores, types,
      bos: id('tokenizer.ggml.bos_token_id', 1), eos, unk: id('tokenizer.ggml.unknown_token_id', 0),
      addBos: g.bool('tokenizer.ggml.add_bos_token', true), addEos: g.bool('tokenizer.ggml.add_eos_token', false),
      addSpacePrefix: g.bool('tokenizer.ggml.add_space_prefix', true),
    }, g.path);
  }
  if (model !== 'gpt2') g.refuse(`tokenizer.ggml.model "${model}" is not supported (mka reads "llama" and "gpt2" vocabularies)`);
  const pre = g.string('tokenizer.ggml.pre', 'default');
  const regex = BPE_PRE_REGEX[pre === 'llama3' || pre === 'llama-v3' ? 'llama-bpe' : pre];
  if (!regex && pre !== 'gpt-2') g.refuse(`tokenizer.ggml.pre "${pre}" is not one mka implements (llama-bpe, qwen2, gpt-2)`);
  const merges = g.array('tokenizer.ggml.merges', { type: ValueType.STRING, required: true }) as { values: string[] };
  const vocab: Record<string, number> = {};
  tokens.values.forEach((t, i) => { vocab[t] = i; });
  const added = tokens.values.flatMap((content, i) => (types[i] === TOKEN_CONTROL || types[i] === TOKEN_USER_DEFINED
    ? [{ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[i] === TOKEN_CONTROL }] : []));
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: !regex };
  const json = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: regex
      ? { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, { ...byteLevel, use_regex: false }] }
      : byteLevel,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false,
      byte_fallback: false, ignore_merges: pre === 'llama-bpe' || pre === 'llama3' || pre === 'llama-v3', vocab,
      merges: merges.values.map((m) => {
        const at = m.indexOf(' ', 1);
        if (at < 0) g.fail(`tokenizer.ggml.merges entry ${JSON.stringify(m.slice(0, 40))} is not two tokens separated by a space`);
        return [m.slice(0, at), m.slice(at + 1)];
      }),
    },
  };
  const bos = id('tokenizer.ggml.bos_token_id', null);
  const config = {
    bos_token: bos !== null ? tokens.values[bos] : null,
    eos_token: eos.length ? tokens.values[eos[0]] : null,
    add_bos_token: g.bool('tokenizer.ggml.add_bos_token', pre === 'llama-bpe' || pre === 'llama3' || pre === 'llama-v3'),
    add_eos_token: g.bool('tokenizer.ggml.add_eos_token', false),
    clean_up_tokenization_spaces: false,
  };
  try {
    const tok = tokenizerFromJson(json, config, { eos_token_id: eos }, g.path);
    return tok;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${g.path}: its gpt2 vocabulary does not load (${(e as Error).message})`);
  }
}
