/**
 * Karpathy's llama2.c `tokenizer.bin` and its conversion to a Hugging Face `tokenizer.json` that
 * encodes text exactly as llama2.c's `encode()` does.
 *
 * tokenizer.bin: int32 max_token_length, then per token: float32 score, int32 byte length, UTF-8 bytes.
 * Ids 0..2 are <unk>, <s>, </s> (llama2.c stores them as "<unk>", "\n<s>\n", "\n</s>\n"); ids 3..258
 * are the byte pieces "<0x00>".."<0xFF>"; the rest are SentencePiece pieces with "▁" already replaced
 * by a plain space.
 *
 * llama2.c's encoder: a dummy-prefix " " token (for non-empty text), one token per UTF-8 codepoint
 * (or its bytes, id = byte + 3, when the codepoint is not a piece), then repeatedly merge the
 * adjacent pair whose concatenation is a piece with the highest score (leftmost on ties).
 * The HF equivalent: a BPE model over the same pieces whose merge ranks follow the merged piece's
 * score (every split of a piece into two pieces is a merge, as HF's LlamaConverter derives them),
 * byte_fallback, and a normalizer that prepends the dummy " ". The pieces keep llama2.c's plain
 * spaces instead of "▁", so text that itself contains "▁" (U+2581) falls back to its bytes exactly
 * as in llama2.c. One deliberate difference, as in every HF tokenizer: the literal strings "<unk>",
 * "<s>" and "</s>" in the input are read as the special tokens.
 */
import { readRegularFile } from '../io/read.ts';
import { UserError } from '../runtime/errors.ts';

/** The contents of a llama2.c tokenizer.bin. */
export interface Llama2cVocab {
  maxTokenLength: number;
  /** Pieces exactly as llama2.c holds them (spaces, "\n<s>\n"). */
  pieces: string[];
  scores: Float32Array;
}

const LLAMA2C_UNK = 0;
export const LLAMA2C_BOS = 1;
export const LLAMA2C_EOS = 2;
/** llama2.c's byte fallback: byte b is token b + 3. */
export const LLAMA2C_BYTE_OFFSET = 3;
const SPECIAL_PIECES = ['<unk>', '<s>', '</s>'];

/** The piece of byte `b` ("<0x0A>"), as SentencePiece names it. */
export function bytePiece(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}

/** Reads and validates a llama2.c tokenizer.bin (every token up to the end of the file). */
export function readLlama2cTokenizer(path: string): Llama2cVocab {
  const buf = readRegularFile(path, 'llama2.c tokenizer file');
  const fail = (msg: string): never => {
    throw new UserError(`${path}: ${msg}; not a llama2.c tokenizer.bin (export one with llama2.c's tokenizer.py)`);
  };
  if (buf.length < 4) fail(`file is ${buf.length} bytes`);
  const maxTokenLength = buf.readInt32LE(0);
  if (maxTokenLength < 1) fail(`max_token_length is ${maxTokenLength}`);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const pieces: string[] = [];
  const scores: number[] = [];
  let off = 4;
  while (off < buf.length) {
    if (off + 8 > buf.length) fail(`token ${pieces.length} is truncated at byte ${off}`);
    const score = buf.readFloatLE(off);
    const len = buf.readInt32LE(off + 4);
    if (len < 0 || len > maxTokenLength || off + 8 + len > buf.length) {
      fail(`token ${pieces.length} at byte ${off} has length ${len} (max_token_length ${maxTokenLength}, file ${buf.length} bytes)`);
    }
    let piece = '';
    try {
      piece = utf8.decode(buf.subarray(off + 8, off + 8 + len));
    } catch {
      fail(`token ${pieces.length} is not valid UTF-8`);
    }
    pieces.push(piece);
    scores.push(score);
    off += 8 + len;
  }
  if (pieces.length < LLAMA2C_BYTE_OFFSET + 256) fail(`only ${pieces.length} tokens (needs <unk>, <s>, </s> and 256 byte pieces)`);
  for (let b = 0; b < 256; b++) {
    const p = pieces[LLAMA2C_BYTE_OFFSET + b];
    if (p !== bytePiece(b)) fail(`token ${LLAMA2C_BYTE_OFFSET + b} is ${JSON.stringify(p)}, expected the byte piece ${bytePiece(b)}`);
  }
  if (!pieces.includes(' ')) fail('no " " piece (llama2.c needs it for the dummy prefix)');
  return { maxTokenLength, pieces, scores: Float32Array.from(scores) };
}

/** The piece each id gets in tokenizer.json: llama2.c's, except "<unk>", "<s>", "</s>" for ids 0..2. */
function hfPieces(v: Llama2cVocab, file: string): string[] {
  const pieces = v.pieces.map((p, i) => (i < SPECIAL_PIECES.length ? SPECIAL_PIECES[i] : p));
  const seen = new Map<string, number>();
  pieces.forEach((p, i) => {
    const j = seen.get(p);
    if (j !== undefined) throw new UserError(`${file}: tokens ${j} and ${i} are both ${JSON.stringify(p)}; a tokenizer needs distinct pieces`);
    seen.set(p, i);
  });
  return pieces;
}

/**
 * BPE merges in rank order: every split of a piece into two pieces, ranked by the merged piece's
 * score (highest first), which is the order llama2.c's greedy merging applies them. Ties (the same
 * piece from different splits) are ordered by the left part's id. Special tokens take no part, and
 * pieces whose score llama2.c would never pick (not above -1e10) give no merge.
 */
function llama2cMerges(v: Llama2cVocab): [string, string][] {
  const ids = new Map<string, number>();
  v.pieces.forEach((p, i) => {
    if (i >= SPECIAL_PIECES.length) ids.set(p, i);
  });
  const merges: { left: string; right: string; score: number; id: number; leftId: number }[] = [];
  for (let id = SPECIAL_PIECES.length; id < v.pieces.length; id++) {
    const piece = v.pieces[id];
    const score = v.scores[id];
    if (!(score > -1e10)) continue;
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      const leftId = ids.get(left);
      if (leftId !== undefined && ids.has(right)) merges.push({ left, right, score, id, leftId });
    }
  }
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.leftId - b.leftId);
  return merges.map((m) => [m.left, m.right]);
}

/** The Hugging Face tokenizer.json (BPE with byte fallback) equivalent to a llama2.c tokenizer. */
export function llama2cTokenizerJson(v: Llama2cVocab, file = 'tokenizer.bin'): Record<string, unknown> {
  const pieces = hfPieces(v, file);
  const vocab: Record<string, number> = {};
  pieces.forEach((p, i) => {
    vocab[p] = i;
  });
  const special = (id: number) => ({
    id, content: pieces[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
  const bos = pieces[LLAMA2C_BOS];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(LLAMA2C_UNK), special(LLAMA2C_BOS), special(LLAMA2C_EOS)],
    normalizer: { type: 'Prepend', prepend: ' ' },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [LLAMA2C_BOS], tokens: [bos] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: pieces[LLAMA2C_UNK],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: llama2cMerges(v),
    },
  };
}

/** tokenizer_config.json for a converted llama2.c tokenizer: BOS added, no EOS, no space clean-up. */
export function llama2cTokenizerConfig(modelMaxLength: number): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  SPECIAL_PIECES.forEach((content, id) => {
    decoder[String(id)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  });
  return {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: decoder,
    bos_token: SPECIAL_PIECES[LLAMA2C_BOS],
    eos_token: SPECIAL_PIECES[LLAMA2C_EOS],
    unk_token: SPECIAL_PIECES[LLAMA2C_UNK],
    pad_token: null,
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    tokenizer_class: 'LlamaTokenizerFast',
  };
}
