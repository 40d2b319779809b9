/**
 * Tokenizing only as much of a long text as a caller keeps: the first or last n tokens of a text of a
 * million characters come from tokenizing a piece of it that holds n tokens and a margin, grown by
 * doubling, instead of the whole text (the BPE of @huggingface/tokenizers takes tens of seconds for a
 * megabyte, as one word when the pre-tokenizer does not split on spaces). The tokens near the cut of a
 * piece can differ from the whole text's; MARGIN of them are dropped, which a merge never reaches across.
 */
import type { Tokenizer } from './types.ts';

/** Tokens dropped next to the cut of a piece: far more than any token's merges reach across. */
const MARGIN = 64;
/** Characters of the first piece per token wanted. */
const CHARS_PER_TOKEN = 16;

/** The first `n` ids of `tok.encode(text, opts)` (all of them when there are fewer), tokenizing a prefix of `text` where that suffices. */
export function encodeHead(tok: Tokenizer, text: string, n: number, opts?: { addBos?: boolean }): number[] {
  for (let chars = CHARS_PER_TOKEN * (n + MARGIN); chars < text.length; chars *= 2) {
    const ids = tok.encode(text.slice(0, chars), opts);
    if (ids.length >= n + MARGIN) return ids.slice(0, n);
  }
  return tok.encode(text, opts).slice(0, n);
}

/** The last `n` ids of `tok.encode(text, opts)`, tokenizing a suffix of `text` where that suffices (its BOS is then beyond the n). */
export function encodeTail(tok: Tokenizer, text: string, n: number, opts?: { addBos?: boolean }): number[] {
  for (let chars = CHARS_PER_TOKEN * (n + MARGIN); chars < text.length; chars *= 2) {
    const ids = tok.encode(text.slice(text.length - chars), { ...opts, addBos: false });
    if (ids.length >= n + MARGIN) return ids.slice(-n);
  }
  return tok.encode(text, opts).slice(-n);
}
