/**
 * A plain port of llama2.c's `encode()` and `decode()` (run.c), the reference the converted
 * Hugging Face tokenizer is tested against. Not used for inference.
 */
import { LLAMA2C_BOS, LLAMA2C_BYTE_OFFSET, LLAMA2C_EOS, type Llama2cVocab } from '../src/tokenizer/llama2c-tokenizer.ts';

/**
 * Encodes `text` as llama2.c does: BOS if asked, a dummy-prefix " " token if the text is non-empty,
 * one token per UTF-8 codepoint (its bytes + 3 when the codepoint is no piece), then merges of the
 * adjacent pair whose concatenation is the piece with the highest score, leftmost on ties, until no
 * pair merges; EOS if asked. (C strings end at NUL; this port encodes a NUL like any other byte.)
 */
export function llama2cEncode(v: Llama2cVocab, text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
  const lookup = new Map<string, number>();
  v.pieces.forEach((p, i) => {
    if (!lookup.has(p)) lookup.set(p, i);
  });
  const tokens: number[] = [];
  if (opts.bos) tokens.push(LLAMA2C_BOS);
  if (text.length > 0) tokens.push(lookup.get(' ') ?? -1);
  const utf8 = new TextEncoder();
  for (const cp of text) {
    const id = lookup.get(cp);
    if (id !== undefined) tokens.push(id);
    else for (const b of utf8.encode(cp)) tokens.push(b + LLAMA2C_BYTE_OFFSET);
  }
  // pairScore[i]: the piece id tokens[i] + tokens[i+1] would merge into, or -1 (cached, same rule as run.c).
  const mergeOf = (i: number): number => lookup.get(v.pieces[tokens[i]] + v.pieces[tokens[i + 1]]) ?? -1;
  const pair = tokens.slice(0, -1).map((_, i) => mergeOf(i));
  for (;;) {
    let bestScore = -1e10;
    let bestIdx = -1;
    for (let i = 0; i < pair.length; i++) {
      if (pair[i] !== -1 && v.scores[pair[i]] > bestScore) {
        bestScore = v.scores[pair[i]];
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens.splice(bestIdx, 2, pair[bestIdx]);
    pair.splice(bestIdx, 1);
    if (bestIdx < pair.length) pair[bestIdx] = mergeOf(bestIdx);
    if (bestIdx > 0) pair[bestIdx - 1] = mergeOf(bestIdx - 1);
  }
  if (opts.eos) tokens.push(LLAMA2C_EOS);
  return tokens;
}

/**
 * Decodes a token sequence as llama2.c prints it: byte pieces become their bytes, and a piece right
 * after BOS loses its leading space. BOS/EOS print as their pieces, so callers usually drop them.
 */
export function llama2cDecode(v: Llama2cVocab, ids: number[]): string {
  const bytes: number[] = [];
  const utf8 = new TextEncoder();
  ids.forEach((id, i) => {
    let piece = v.pieces[id];
    if (i > 0 && ids[i - 1] === LLAMA2C_BOS && piece.startsWith(' ')) piece = piece.slice(1);
    // run.c: sscanf(piece, "<0x%02hhX>", &byte)
    const m = /^<0x([0-9A-Fa-f]{1,2})/.exec(piece);
    if (m) bytes.push(parseInt(m[1], 16));
    else bytes.push(...utf8.encode(piece));
  });
  return new TextDecoder().decode(Uint8Array.from(bytes));
}
