/**
 * llama.cpp's SentencePiece tokenizer (llama-vocab.cpp, `LLAMA_VOCAB_TYPE_SPM`), so that a GGUF
 * model with `tokenizer.ggml.model = "llama"` gives in mka the ids llama.cpp gives:
 *
 * - the text is split around special tokens (control, user-defined and unknown tokens, longest first);
 * - each text piece gets a leading space when `add_space_prefix` is set and it begins the text or
 *   follows a special token, and its spaces become "▁";
 * - its characters are merged pairwise, always the adjacent pair whose concatenation is the token of
 *   highest score (the leftmost on ties), as long as any is;
 * - what is not a token is written as its UTF-8 bytes ("<0xE2>" byte tokens, else the byte as a
 *   one-character token). llama.cpp aborts when neither exists; mka writes the unknown token then
 *   (consecutive ones fused, as Hugging Face's BPE does).
 */
import { UserError } from '../runtime/errors.ts';
import type { Tokenizer } from './types.ts';

/** Token types as GGUF stores them (llama_token_type). */
export const TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_USER_DEFINED = 4, TOKEN_UNUSED = 5, TOKEN_BYTE = 6;

export interface SpmVocab {
  tokens: string[];
  scores: ArrayLike<number>;
  types: ArrayLike<number>;
  bos: number | null;
  /** Ids that end generation. */
  eos: number[];
  unk: number | null;
  addBos: boolean;
  addEos: boolean;
  addSpacePrefix: boolean;
}

const SPACE = '\u2581';

/** A max-heap of candidate merges: highest score first, then leftmost. */
class BigramQueue {
  private items: { left: number; right: number; score: number; size: number }[] = [];

  private before(a: number, b: number): boolean {
    const x = this.items[a], y = this.items[b];
    return x.score > y.score || (x.score === y.score && x.left < y.left);
  }

  push(item: { left: number; right: number; score: number; size: number }): void {
    const it = this.items;
    it.push(item);
    for (let i = it.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      [it[i], it[p]] = [it[p], it[i]];
      i = p;
    }
  }

  pop(): { left: number; right: number; score: number; size: number } | undefined {
    const it = this.items;
    if (!it.length) return undefined;
    const top = it[0];
    const last = it.pop()!;
    if (it.length) {
      it[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < it.length && this.before(l, m)) m = l;
        if (r < it.length && this.before(r, m)) m = r;
        if (m === i) break;
        [it[i], it[m]] = [it[m], it[i]];
        i = m;
      }
    }
    return top;
  }
}

/** The tokenizer of a SentencePiece vocabulary stored in GGUF metadata; `file` names it in errors. */
export function spmTokenizer(v: SpmVocab, file: string): Tokenizer {
  const n = v.tokens.length;
  if (v.scores.length !== n || v.types.length !== n) throw new UserError(`${file}: ${n} tokens but ${v.scores.length} scores and ${v.types.length} token types; the vocabulary is corrupt`);
  const idOf = new Map<string, number>();
  v.tokens.forEach((t, i) => idOf.set(t, i)); // a later duplicate wins, as in llama.cpp's map
  const byteToken = (b: number): number | null => idOf.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`) ?? (b < 0x80 ? idOf.get(String.fromCharCode(b)) ?? null : null);
  const special = [...v.tokens.keys()]
    .filter((i) => (v.types[i] === TOKEN_CONTROL || v.types[i] === TOKEN_USER_DEFINED || v.types[i] === TOKEN_UNKNOWN) && v.tokens[i].length > 0)
    .sort((a, b) => Buffer.byteLength(v.tokens[b]) - Buffer.byteLength(v.tokens[a]) || a - b);

  /** The text split around special tokens: strings of text and ids of special tokens. */
  const partition = (text: string): (string | number)[] => {
    let frags: (string | number)[] = [text];
    for (const id of special) {
      const s = v.tokens[id];
      const next: (string | number)[] = [];
      for (const f of frags) {
        if (typeof f === 'number' || !f.includes(s)) {
          next.push(f);
          continue;
        }
        const pieces = f.split(s);
        pieces.forEach((p, k) => {
          if (k > 0) next.push(id);
          if (p) next.push(p);
        });
      }
      frags = next;
    }
    return frags;
  };

  /** llama.cpp's llm_tokenizer_spm_session on one escaped text piece. */
  const tokenizePiece = (text: string, out: number[]): void => {
    const chars = Array.from(text);
    const sym = chars.map((c, i) => ({ text: c, prev: i - 1, next: i + 1 < chars.length ? i + 1 : -1, live: true }));
    const queue = new BigramQueue();
    const tryAdd = (left: number, right: number) => {
      if (left < 0 || right < 0) return;
      const id = idOf.get(sym[left].text + sym[right].text);
      if (id === undefined) return;
      queue.push({ left, right, score: v.scores[id], size: sym[left].text.length + sym[right].text.length });
    };
    for (let i = 1; i < sym.length; i++) tryAdd(i - 1, i);
    for (let b = queue.pop(); b; b = queue.pop()) {
      const l = sym[b.left], r = sym[b.right];
      if (!l.live || !r.live || l.text.length + r.text.length !== b.size || l.next !== b.right) continue;
      l.text += r.text;
      r.live = false;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      tryAdd(l.prev, b.left);
      tryAdd(b.left, l.next);
    }
    for (let i = sym.length ? 0 : -1; i !== -1; i = sym[i].next) {
      const id = idOf.get(sym[i].text);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const byte of Buffer.from(sym[i].text, 'utf8')) {
        const t = byteToken(byte);
        if (t !== null) out.push(t);
        else if (v.unk !== null && out[out.length - 1] !== v.unk) out.push(v.unk);
        else if (v.unk === null) throw new UserError(`${file}: the text holds ${JSON.stringify(sym[i].text)}, which the vocabulary cannot encode (no byte tokens, no unknown token)`);
      }
    }
  };

  const encode = (text: string, opts: { addBos?: boolean } = {}): number[] => {
    const out: number[] = [];
    if ((opts.addBos ?? v.addBos) && v.bos !== null) out.push(v.bos);
    let prevSpecial = true;
    for (const f of text ? partition(text) : []) {
      if (typeof f === 'number') {
        out.push(f);
        prevSpecial = true;
        continue;
      }
      const t = (v.addSpacePrefix && prevSpecial ? ' ' : '') + f;
      tokenizePiece(t.replaceAll(' ', SPACE), out);
      prevSpecial = false;
    }
    if (v.addEos && v.eos.length) out.push(v.eos[0]);
    return out;
  };

  const decode = (ids: number[], opts: { skipSpecial?: boolean } = {}): string => {
    const bytes: number[] = [];
    ids.forEach((id, k) => {
      const type = v.types[id];
      const t = v.tokens[id];
      if (t === undefined) return;
      if (type === TOKEN_CONTROL || type === TOKEN_UNKNOWN) {
        if (!opts.skipSpecial) bytes.push(...Buffer.from(t, 'utf8'));
      } else if (type === TOKEN_BYTE) {
        bytes.push(parseInt(t.slice(3, 5), 16));
      } else {
        let s = t.replaceAll(SPACE, ' ');
        if (k === 0 && v.addSpacePrefix && s.startsWith(' ')) s = s.slice(1);
        bytes.push(...Buffer.from(s, 'utf8'));
      }
    });
    return new TextDecoder('utf-8').decode(Uint8Array.from(bytes));
  };

  // (its Hugging Face twin, ggufTokenizerFiles, is a PreTrainedTokenizerFast: transformers' add_bos_token leaves it as it is)
  return { encode, decode, bos: v.bos, addsBos: v.addBos && v.bos !== null, obeysAddBosToken: false, eos: v.eos, vocabSize: n };
}
