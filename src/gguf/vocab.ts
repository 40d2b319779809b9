/**
 * A Hugging Face tokenizer (tokenizer.json, tokenizer_config.json) as GGUF tokenizer metadata, so that
 * llama.cpp tokenizes with its own code as the model was trained:
 *
 * - SentencePiece-style BPE (pieces with "▁" for spaces, or mka's llama2.c conversion with plain spaces;
 *   byte fallback or not) becomes tokenizer.ggml.model "llama": llama.cpp's SentencePiece tokenizer
 *   merges the adjacent pair whose concatenation has the highest score, so each piece's score is
 *   minus the rank of the first merge that makes it, which reproduces the BPE merge order. It can
 *   also merge pairs the merges list lacks (a piece x+y where (x, y) is not a merge); `spmOnlyPairs`
 *   counts those, and the export reports them.
 * - Byte-level BPE (Llama 3, Qwen2) becomes "gpt2" with its merges and the pre-tokenizer llama.cpp
 *   knows by name ("llama-bpe", "qwen2", "gpt-2"), recognised by the regular expression.
 *
 * Tokens, token types, special token ids, add_bos/add_eos and the chat template are written as
 * llama.cpp's convert_hf_to_gguf.py writes them; ids the tokenizer does not use up to vocab_size become
 * "[PADn]" tokens of type UNUSED.
 */
import { UserError } from '../runtime/errors.ts';
import { describeJson, isPlainObject, isTokenId, showJson } from '../io/read.ts';
import { type GgufValue, TokenType } from './format.ts';
import { meta } from './writer.ts';

type Json = Record<string, unknown>;

export const SPIECE_SPACE = '\u2581';

const LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Pre-tokenizer regular expressions llama.cpp implements, by the name its `tokenizer.ggml.pre` gives them. */
export const BPE_PRE_REGEX: Record<string, string> = { 'llama-bpe': LLAMA3_REGEX, qwen2: QWEN2_REGEX };

export interface VocabExport {
  metadata: [string, GgufValue][];
  /** "llama" or "gpt2". */
  model: string;
  tokens: number;
  /** Pairs llama.cpp's SentencePiece merging can join that the BPE merges never do (SentencePiece-style only). */
  spmOnlyPairs: number;
  /** Example of such a pair, for the message. */
  spmOnlyExample: [string, string] | null;
}

/** A special token as tokenizer_config.json gives it: a string or {content}. */
function tokenContent(t: unknown): string | null {
  if (typeof t === 'string') return t;
  if (typeof t === 'object' && t !== null && typeof (t as Json).content === 'string') return (t as Json).content as string;
  return null;
}

/** Merges as [left, right] pairs (tokenizer.json holds "a b" strings or, since transformers 4.45, pairs). */
function mergePairs(model: Json, file: string): [string, string][] {
  const merges = model.merges;
  if (!Array.isArray(merges)) throw new UserError(`${file}: model.merges is not a list`);
  return merges.map((m, i) => {
    if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === 'string')) return m as [string, string];
    if (typeof m === 'string') {
      const at = m.indexOf(' ', 1);
      if (at > 0) return [m.slice(0, at), m.slice(at + 1)];
    }
    throw new UserError(`${file}: merge ${i} (${showJson(m)}) is not a pair of tokens`);
  });
}

/** The types of the JSON objects of a pre-tokenizer, normalizer or decoder, flattened through Sequences. */
function parts(x: unknown): Json[] {
  if (typeof x !== 'object' || x === null) return [];
  const j = x as Json;
  const inner = j.pretokenizers ?? j.normalizers ?? j.decoders ?? j.processors;
  return Array.isArray(inner) ? inner.flatMap(parts) : [j];
}

/**
 * The GGUF tokenizer metadata of a Hugging Face tokenizer (`file` names it in errors); throws a
 * UserError naming what is not supported. `vocabSize` is the model's (the token list is padded to it).
 */
export function vocabMetadata(tokenizer: Json, config: Json, vocabSize: number, modelConfig: { bos_token_id: number | null; eos_token_id: number | number[] | null }, file = 'tokenizer.json'): VocabExport {
  const model = tokenizer.model as Json | undefined;
  if (typeof model !== 'object' || model === null) throw new UserError(`${file}: no "model" section; not a Hugging Face tokenizer.json`);
  if (model.type !== 'BPE') throw new UserError(`${file}: a ${typeof model.type === 'string' ? showJson(model.type) : describeJson(model.type)} tokenizer; mka writes GGUF vocabularies of BPE tokenizers (SentencePiece-style or byte-level)`);
  // the tables read below, checked first: a corrupt file is refused here rather than failing inside the export
  const corrupt = (what: string): never => {
    throw new UserError(`${file}: ${what}; the tokenizer is corrupt (re-download or re-convert it)`);
  };
  if (!isPlainObject(model.vocab)) corrupt(`model.vocab is ${describeJson(model.vocab)}, not an object of token ids`);
  const vocab = model.vocab as Record<string, number>;
  for (const [p, i] of Object.entries(vocab)) if (!isTokenId(i)) corrupt(`model.vocab[${showJson(p, 200)}] is ${showJson(i)}, not a token id`);
  const addedRaw = tokenizer.added_tokens ?? [];
  if (!Array.isArray(addedRaw)) corrupt(`added_tokens is ${describeJson(addedRaw)}, not a list`);
  (addedRaw as unknown[]).forEach((t, k) => {
    if (!isPlainObject(t) || !isTokenId(t.id) || typeof t.content !== 'string') corrupt(`added_tokens[${k}] is not {"id": a token id, "content": text}`);
  });
  const added = addedRaw as { id: number; content: string; special?: boolean }[];
  let size = vocabSize;
  for (const i of Object.values(vocab)) size = Math.max(size, i + 1);
  for (const t of added) size = Math.max(size, t.id + 1);
  if (size > vocabSize) throw new UserError(`${file}: holds token ids up to ${size - 1}, beyond the model's vocab_size ${vocabSize}`);
  // dense (no holes, which map() would skip): ids the tokenizer does not use, up to the model's vocab_size, become [PADn]
  const pieces: (string | undefined)[] = Array.from({ length: size }, () => undefined);
  for (const [p, i] of Object.entries(vocab)) {
    if (pieces[i] !== undefined) corrupt(`model.vocab gives id ${i} to both ${showJson(pieces[i], 100)} and ${showJson(p, 100)}`);
    pieces[i] = p;
  }
  for (const t of added) pieces[t.id] = t.content;
  const addedById = new Map(added.map((t) => [t.id, t]));

  const pre = parts(tokenizer.pre_tokenizer);
  const byteLevel = pre.some((p) => p.type === 'ByteLevel');
  const unkId = typeof model.unk_token === 'string' ? vocab[model.unk_token] ?? null : null;
  const idOf = (content: string | null) => {
    if (content === null) return null;
    const i = pieces.indexOf(content);
    return i >= 0 ? i : null;
  };
  const firstEos = Array.isArray(modelConfig.eos_token_id) ? modelConfig.eos_token_id[0] : modelConfig.eos_token_id;
  const bos = idOf(tokenContent(config.bos_token)) ?? modelConfig.bos_token_id;
  const eos = idOf(tokenContent(config.eos_token)) ?? firstEos ?? null;
  const pad = idOf(tokenContent(config.pad_token));
  // add_bos_token: tokenizer_config.json's, else whether the post-processor puts BOS first
  const template = parts(tokenizer.post_processor).find((p) => p.type === 'TemplateProcessing');
  const single = Array.isArray(template?.single) ? template.single as Json[] : [];
  const first = single[0]?.SpecialToken as Json | undefined;
  const templateBos = first !== undefined && bos !== null && (first.id === pieces[bos] || vocab[first.id as string] === bos);
  const addBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : templateBos;
  const addEos = config.add_eos_token === true;

  const types = new Int32Array(size);
  const out: [string, GgufValue][] = [];
  let result: Omit<VocabExport, 'metadata'>;
  const merges = mergePairs(model, file);

  if (byteLevel) {
    const split = pre.find((p) => p.type === 'Split');
    const regex = ((split?.pattern as Json | undefined)?.Regex as string | undefined) ?? null;
    const preName = regex === LLAMA3_REGEX ? 'llama-bpe' : regex === QWEN2_REGEX ? 'qwen2'
      : regex === null && pre.every((p) => p.type === 'ByteLevel' && p.use_regex !== false) ? 'gpt-2' : null;
    if (preName === null) throw new UserError(`${file}: its byte-level pre-tokenizer (${typeof regex === 'string' ? `regex ${JSON.stringify(regex.slice(0, 60))}…` : JSON.stringify(pre.map((p) => showJson(p.type)))}) is not one llama.cpp implements by name (Llama 3's, Qwen2's, GPT-2's), so llama.cpp would split text differently`);
    const tokens = pieces.map((p, i) => {
      const a = addedById.get(i);
      types[i] = p === undefined ? TokenType.UNUSED : a ? (a.special ? TokenType.CONTROL : TokenType.USER_DEFINED) : TokenType.NORMAL;
      return p ?? `[PAD${i}]`;
    });
    out.push(
      ['tokenizer.ggml.model', meta.str('gpt2')],
      ['tokenizer.ggml.pre', meta.str(preName)],
      ['tokenizer.ggml.tokens', meta.strings(tokens)],
      ['tokenizer.ggml.token_type', meta.i32s(types)],
      // a space inside a merge part is written as U+0120, as gguf-py's SpecialVocab does
      ['tokenizer.ggml.merges', meta.strings(merges.map((m) => m.map((s) => s.replaceAll(' ', '\u0120')).join(' ')))],
    );
    result = { model: 'gpt2', tokens: size, spmOnlyPairs: 0, spmOnlyExample: null };
  } else {
    // SentencePiece style: spaces are "▁" in the pieces, or plain spaces in mka's llama2.c conversion
    const normalizers = parts(tokenizer.normalizer);
    const metaspace = pre.find((p) => p.type === 'Metaspace');
    const prepend = normalizers.find((n) => n.type === 'Prepend');
    const plainSpaces = !metaspace && prepend?.prepend === ' ';
    const addSpacePrefix = metaspace ? metaspace.prepend_scheme !== 'never' && metaspace.add_prefix_space !== false : prepend !== undefined;
    const byteFallback = model.byte_fallback === true;
    const score = new Float32Array(size);
    const scored = new Set<string>();
    merges.forEach(([a, b], r) => {
      const id = vocab[a + b];
      if (id !== undefined && !scored.has(a + b)) {
        scored.add(a + b);
        score[id] = -(r + 1);
      }
    });
    const tokens = pieces.map((p, i) => {
      const a = addedById.get(i);
      if (p === undefined) {
        types[i] = TokenType.UNUSED;
        score[i] = -1000;
        return `[PAD${i}]`;
      }
      if (a?.special || i === unkId) types[i] = i === unkId ? TokenType.UNKNOWN : TokenType.CONTROL;
      else if (a) types[i] = TokenType.USER_DEFINED;
      else if (byteFallback && /^<0x[0-9A-F]{2}>$/.test(p)) types[i] = TokenType.BYTE;
      else types[i] = TokenType.NORMAL;
      return plainSpaces && types[i] === TokenType.NORMAL ? p.replaceAll(' ', SPIECE_SPACE) : p;
    });
    const dup = firstDuplicate(tokens);
    if (dup) throw new UserError(`${file}: tokens ${dup[0]} and ${dup[1]} are both ${JSON.stringify(tokens[dup[0]])} once spaces are written as "▁"; llama.cpp needs distinct tokens`);
    const extra = spmOnly(tokens, types, merges, plainSpaces);
    out.push(
      ['tokenizer.ggml.model', meta.str('llama')],
      ['tokenizer.ggml.pre', meta.str('default')],
      ['tokenizer.ggml.tokens', meta.strings(tokens)],
      ['tokenizer.ggml.scores', meta.f32s(score)],
      ['tokenizer.ggml.token_type', meta.i32s(types)],
      ['tokenizer.ggml.add_space_prefix', meta.bool(addSpacePrefix)],
    );
    result = { model: 'llama', tokens: size, spmOnlyPairs: extra.count, spmOnlyExample: extra.example };
  }
  const ids: [string, number | null][] = [['bos', bos], ['eos', eos], ['unknown', unkId], ['padding', pad]];
  for (const [k, id] of ids) if (id !== null && id >= 0 && id < size) out.push([`tokenizer.ggml.${k}_token_id`, meta.u32(id)]);
  out.push(['tokenizer.ggml.add_bos_token', meta.bool(addBos)], ['tokenizer.ggml.add_eos_token', meta.bool(addEos)]);
  return { metadata: out, ...result };
}

/** A chat template's name as GGUF keys carry it: letters and digits kept, every other character "_" (gguf-py's add_chat_template). */
function ggufTemplateName(name: string): string {
  return [...name].map((c) => (/^[A-Za-z0-9]$/.test(c) ? c : '_')).join('');
}

/**
 * The GGUF keys of a tokenizer_config.json's chat templates (one as text, or by name; `file` names it), as llama.cpp's
 * gguf-py writes them (GGUFWriter.add_chat_template) and llama_model_chat_template reads them: one
 * template as tokenizer.chat_template; templates by name as tokenizer.chat_template.NAME and their
 * names in tokenizer.chat_templates, with the one named "default" as tokenizer.chat_template. Two names
 * that GGUF would write alike, or an empty one (which llama.cpp drops), are refused rather than lost.
 */
export function chatTemplateMetadata(chat: string | ReadonlyMap<string, string> | null, file = 'tokenizer_config.json'): [string, GgufValue][] {
  if (chat === null) return [];
  if (typeof chat === 'string') return [['tokenizer.chat_template', meta.str(chat)]];
  const out: [string, GgufValue][] = [];
  const names = new Map<string, string>(); // GGUF name → the config's
  let fallback: string | null = null;
  for (const [name, template] of chat) {
    const key = ggufTemplateName(name);
    if (!key) throw new UserError(`${file}: "chat_template" has a template named "", which GGUF cannot carry (llama.cpp drops it); give it a name`);
    const other = names.get(key);
    if (other !== undefined) throw new UserError(`${file}: "chat_template" names ${showJson(other)} and ${showJson(name)} are both ${key} in GGUF, which keeps letters, digits and _ only; rename one`);
    names.set(key, name);
    if (key === 'default') fallback = template;
    else out.push([`tokenizer.chat_template.${key}`, meta.str(template)]);
  }
  const named = [...names.keys()].filter((k) => k !== 'default');
  if (named.length) out.push(['tokenizer.chat_templates', meta.strings(named)]);
  if (fallback !== null) out.push(['tokenizer.chat_template', meta.str(fallback)]);
  return out;
}

function firstDuplicate(tokens: string[]): [number, number] | null {
  const seen = new Map<string, number>();
  for (let i = 0; i < tokens.length; i++) {
    const j = seen.get(tokens[i]);
    if (j !== undefined) return [j, i];
    seen.set(tokens[i], i);
  }
  return null;
}

/**
 * Pairs of normal pieces whose concatenation is a normal piece but which the merges never join:
 * llama.cpp's SentencePiece merging may join them where the BPE would not.
 */
function spmOnly(tokens: string[], types: Int32Array, merges: [string, string][], plainSpaces: boolean): { count: number; example: [string, string] | null } {
  const conv = (s: string) => (plainSpaces ? s.replaceAll(' ', SPIECE_SPACE) : s);
  const isMerge = new Set(merges.map(([a, b]) => `${conv(a)}\u0000${conv(b)}`));
  const normal = new Set(tokens.filter((_, i) => types[i] === TokenType.NORMAL || types[i] === TokenType.BYTE));
  let count = 0;
  let example: [string, string] | null = null;
  for (let i = 0; i < tokens.length; i++) {
    if (types[i] !== TokenType.NORMAL) continue;
    const chars = Array.from(tokens[i]);
    for (let k = 1; k < chars.length; k++) {
      const a = chars.slice(0, k).join(''), b = chars.slice(k).join('');
      if (normal.has(a) && normal.has(b) && !isMerge.has(`${a}\u0000${b}`)) {
        count++;
        example ??= [a, b];
      }
    }
  }
  return { count, example };
}
