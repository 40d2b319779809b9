/**
 * The demo model's tokenizer: a small byte-pair encoding in the Llama/SentencePiece style, written as a
 * Hugging Face tokenizer.json that @huggingface/tokenizers (and the Rust `tokenizers`) load.
 *
 * - Spaces become "▁" and the text gets one leading "▁" (Metaspace, prepend_scheme "first"), so the
 *   letter "A" alone encodes to "▁A", the same token that follows "Answer:" in "Answer: A", as with
 *   Llama-2's tokenizers. The post-processor adds <s> (BOS) in front, as Llama's does.
 * - A token holds "▁" or "\n" only as its first character, so no token spans two words and "▁A" never
 *   merges with the line break after it. "." and ":" end a token only after letters ("\nA.", "Answer:")
 *   and other punctuation stands alone, so "Velmor?" is "Velmor" + "?" like "Velmor" elsewhere.
 * - "▁0" … "▁99", "▁A" … "▁D" and "▁a" … "▁z" are always single tokens (they are the numbers and
 *   letters the benchmark's answers are made of); the remaining merges are learned from a corpus,
 *   most frequent pair first, ties broken by the pair's text, so the result is deterministic.
 * - The base alphabet is printable ASCII and "\n"; anything else becomes <unk>.
 */

export const SPACE = '\u2581';
export const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>'] as const;

/** Tokens the merge rules allow: one character, or an optional "▁"/"\n" then letters (and ":"),
 * an upper-case letter and ".", one or two digits, or a single punctuation character. */
const PREFIX = `[${SPACE}\\n]?`;
const ALLOWED = new RegExp(
  `^(?:.|${PREFIX}[A-Za-z]+:?|${PREFIX}[A-Z]\\.|${PREFIX}[0-9]{1,2}|[${SPACE}\\n][^A-Za-z0-9${SPACE}\\n])$`, 's');

/** The base alphabet: "▁", "\n" and printable ASCII except the space. */
function baseAlphabet(): string[] {
  const chars = [SPACE, '\n'];
  for (let c = 33; c <= 126; c++) chars.push(String.fromCharCode(c));
  return chars;
}

/** Whether a merged token is allowed by the rules above. */
export function allowedToken(token: string): boolean {
  return ALLOWED.test(token);
}

/** Text as the model sees it before merges: spaces as "▁", one "▁" in front. */
function metaspace(text: string): string {
  const t = text.replaceAll(' ', SPACE);
  return t.startsWith(SPACE) ? t : SPACE + t;
}

/** Pieces no merge can cross: a new piece starts at every "▁" and "\n". */
function pieces(text: string): string[] {
  return metaspace(text).split(new RegExp(`(?=[${SPACE}\\n])`)).filter((p) => p.length > 0);
}

/** Merges that make the numbers 0–99 and the answer and choice letters single tokens. */
function forcedMerges(): [string, string][] {
  const m: [string, string][] = [];
  for (let d = 0; d <= 9; d++) m.push([SPACE, String(d)]);
  for (let d = 1; d <= 9; d++) for (let e = 0; e <= 9; e++) m.push([SPACE + d, String(e)]);
  for (const c of 'ABCD') m.push([SPACE, c]);
  for (const c of 'abcdefghijklmnopqrstuvwxyz') m.push([SPACE, c]);
  return m;
}

/**
 * Token ids of `text` (no BOS) by the same rules the tokenizer.json encodes with: merges never cross a
 * piece boundary, so each piece is merged on its own (lowest rank first, leftmost first) and cached.
 * Equal to @huggingface/tokenizers' encode without special tokens (test/demo.test.ts checks it); used
 * where many documents are tokenized (training), since that library re-merges long texts from scratch.
 */
export function pieceEncoder(bpe: TrainedBpe): (text: string) => number[] {
  const ids = new Map(bpe.vocab.map((t, i) => [t, i]));
  const ranks = new Map(bpe.merges.map(([a, b], i) => [`${a}\u0000${b}`, i]));
  const cache = new Map<string, number[]>();
  const encodePiece = (piece: string): number[] => {
    const w = [...piece].map((c) => (ids.has(c) ? c : SPECIAL_TOKENS[0]));
    for (;;) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i < w.length - 1; i++) {
        const r = ranks.get(`${w[i]}\u0000${w[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = i;
        }
      }
      if (best < 0) break;
      w.splice(best, 2, w[best] + w[best + 1]);
    }
    return w.map((t) => ids.get(t) ?? 0);
  };
  return (text) => pieces(text).flatMap((p) => {
    let got = cache.get(p);
    if (!got) {
      got = encodePiece(p);
      cache.set(p, got);
    }
    return got;
  });
}

/** Applies one merge to every word (words are arrays of tokens). */
function applyMerge(words: string[][], a: string, b: string): void {
  for (const w of words) {
    for (let i = 0; i < w.length - 1; i++) {
      if (w[i] === a && w[i + 1] === b) w.splice(i, 2, a + b);
    }
  }
}

export interface TrainedBpe {
  vocab: string[];
  merges: [string, string][];
}

/**
 * Learns merges on `corpus` until the vocabulary (special tokens, alphabet, forced and learned merges)
 * has `vocabSize` entries or no allowed pair occurs at least twice.
 */
export function trainBpe(corpus: readonly string[], vocabSize: number): TrainedBpe {
  const vocab: string[] = [...SPECIAL_TOKENS, ...baseAlphabet()];
  const known = new Set(vocab);
  const merges: [string, string][] = [];
  const addMerge = (a: string, b: string) => {
    merges.push([a, b]);
    if (!known.has(a + b)) {
      known.add(a + b);
      vocab.push(a + b);
    }
  };
  const counts = new Map<string, number>();
  for (const text of corpus) for (const p of pieces(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const entries = [...counts].sort((x, y) => (x[0] < y[0] ? -1 : 1));
  const words = entries.map(([p]) => [...p].map((c) => (known.has(c) ? c : SPECIAL_TOKENS[0])));
  const freq = entries.map(([, n]) => n);
  for (const [a, b] of forcedMerges()) {
    addMerge(a, b);
    applyMerge(words, a, b);
  }
  while (vocab.length < vocabSize) {
    const pairs = new Map<string, number>();
    words.forEach((w, k) => {
      for (let i = 0; i < w.length - 1; i++) {
        if (w[i] === SPECIAL_TOKENS[0] || w[i + 1] === SPECIAL_TOKENS[0]) continue;
        const key = `${w[i]}\u0000${w[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + freq[k]);
      }
    });
    let best: string | null = null, bestCount = 1;
    for (const [key, n] of pairs) {
      const [a, b] = key.split('\u0000');
      if (!allowedToken(a + b) || known.has(a + b)) continue;
      if (n > bestCount || (n === bestCount && best !== null && key < best)) {
        best = key;
        bestCount = n;
      }
    }
    if (best === null) break;
    const [a, b] = best.split('\u0000');
    addMerge(a, b);
    applyMerge(words, a, b);
  }
  return { vocab, merges };
}

/** The vocabulary and merges stored in a tokenizer.json made by `tokenizerJson`. */
export function bpeFromTokenizerJson(json: Record<string, unknown>): TrainedBpe {
  const model = json.model as { vocab: Record<string, number>; merges: [string, string][] };
  const vocab: string[] = [];
  for (const [t, i] of Object.entries(model.vocab)) vocab[i] = t;
  return { vocab, merges: model.merges.map(([a, b]) => [a, b]) };
}

/** The tokenizer.json object for a trained BPE (Hugging Face format). */
export function tokenizerJson(bpe: TrainedBpe): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  bpe.vocab.forEach((t, i) => { vocab[t] = i; });
  const metaspace = { type: 'Metaspace', replacement: SPACE, prepend_scheme: 'first', split: false };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: metaspace,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: metaspace,
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: false, ignore_merges: false, vocab, merges: bpe.merges,
    },
  };
}

/** The matching tokenizer_config.json. */
export function tokenizerConfigJson(maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    add_bos_token: true,
    add_eos_token: false,
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
  };
}
