/**
 * llama2.c import: checkpoint layouts (legacy and "ak42" v1, shared or separate classifier) land in
 * the right HF tensors, the q/k row permutation turns llama2.c's interleaved RoPE into HF's
 * rotate-half, bad files fail with a UserError naming them, and the converted tokenizer.json encodes
 * exactly as llama2.c's encode() (ported in src/tokenizer/llama2c-encode.ts) on thousands of strings.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { generate } from '../src/model/generate.ts';
import { UserError } from '../src/runtime/errors.ts';
import { convertLlama2c, interleavedToRotateHalf, readLlama2cCheckpoint } from '../src/convert/llama2c.ts';
import { openCheckpoint } from '../src/io/checkpoint.ts';
import { readConfig } from '../src/model/config.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';
import { bytePiece, llama2cTokenizerConfig, llama2cTokenizerJson, readLlama2cTokenizer, type Llama2cVocab } from '../src/tokenizer/llama2c-tokenizer.ts';
import { llama2cDecode, llama2cEncode } from './llama2c-encode.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { parseCsv } from '../src/eval/mmlu/csv.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const MODELS = SHARED ? join(SHARED, 'models') : '';
const KNOWN_IDS = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337];
const KNOWN_TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play';
const KNOWN_SENTENCE = `${KNOWN_TEXT} outside in the park.`;

function tmp(): string {
  return scratchDir('llama2c');
}

// ---------------------------------------------------------------------------------------------
// Synthetic llama2.c files, written by following export.py / tokenizer.py literally.

/** A small tokenizer.bin: specials, 256 byte pieces, then pieces with scores -1, -2, ... */
const SYNTH_PIECES = [' ', 'a', 'b', 'c', ' a', 'ab', 'bc', ' ab', 'abc', ' abc', 'ca'];
function writeTokenizerBin(path: string, extra: string[] = SYNTH_PIECES): Llama2cVocab {
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n', ...Array.from({ length: 256 }, (_, b) => bytePiece(b)), ...extra];
  const scores = pieces.map((_, i) => (i < 259 ? 0 : -(i - 259)));
  const parts: Buffer[] = [];
  const bytes = pieces.map((p) => Buffer.from(p, 'utf8'));
  const head = Buffer.alloc(4);
  head.writeInt32LE(Math.max(...bytes.map((b) => b.length)));
  parts.push(head);
  bytes.forEach((b, i) => {
    const h = Buffer.alloc(8);
    h.writeFloatLE(scores[i], 0);
    h.writeInt32LE(b.length, 4);
    parts.push(h, b);
  });
  writeFileSync(path, Buffer.concat(parts));
  return { maxTokenLength: head.readInt32LE(0), pieces, scores: Float32Array.from(scores) };
}

interface Dims { dim: number; hidden: number; layers: number; heads: number; kvHeads: number; vocab: number; seqLen: number }
const DIMS: Dims = { dim: 8, hidden: 12, layers: 2, heads: 2, kvHeads: 1, vocab: 259 + SYNTH_PIECES.length, seqLen: 16 };

/** Value j of the tensor written k-th: unique across the file and exact in float32. */
const pattern = (k: number, j: number) => k * 10000 + j;

/**
 * Writes a llama2.c checkpoint tensor by tensor in export.py's order (legacy_export or
 * version1_export) and returns, per HF name, the values written (llama2.c row order).
 */
function writeCheckpoint(path: string, version: 0 | 1, shared: boolean, d: Dims = DIMS): Map<string, Float32Array> {
  const hs = d.dim / d.heads;
  const layers = Array.from({ length: d.layers }, (_, i) => i);
  const lay = (s: string, shape: number[]) => layers.map((i) => [`model.layers.${i}.${s}`, shape] as [string, number[]]);
  const emb: [string, number[]] = ['model.embed_tokens.weight', [d.vocab, d.dim]];
  const attnNorm = lay('input_layernorm.weight', [d.dim]);
  const ffnNorm = lay('post_attention_layernorm.weight', [d.dim]);
  const wq = lay('self_attn.q_proj.weight', [d.heads * hs, d.dim]);
  const wk = lay('self_attn.k_proj.weight', [d.kvHeads * hs, d.dim]);
  const wv = lay('self_attn.v_proj.weight', [d.kvHeads * hs, d.dim]);
  const wo = lay('self_attn.o_proj.weight', [d.dim, d.heads * hs]);
  const w1 = lay('mlp.gate_proj.weight', [d.hidden, d.dim]);
  const w2 = lay('mlp.down_proj.weight', [d.dim, d.hidden]);
  const w3 = lay('mlp.up_proj.weight', [d.hidden, d.dim]);
  const norm: [string, number[]] = ['model.norm.weight', [d.dim]];
  const freqs: [string, number[]] = ['freq_cis', [d.seqLen * hs / 2]];
  const order = version === 0
    ? [emb, ...attnNorm, ...wq, ...wk, ...wv, ...wo, ...ffnNorm, ...w1, ...w2, ...w3, norm, freqs, freqs]
    : [...attnNorm, ...ffnNorm, norm, emb, ...wq, ...wk, ...wv, ...wo, ...w1, ...w2, ...w3];
  if (!shared) order.push(['lm_head.weight', [d.vocab, d.dim]]);

  let header: Buffer;
  const params = [d.dim, d.hidden, d.layers, d.heads, d.kvHeads, version === 0 && !shared ? -d.vocab : d.vocab, d.seqLen];
  if (version === 0) {
    header = Buffer.alloc(28);
    params.forEach((p, i) => header.writeInt32LE(p, 4 * i));
  } else {
    header = Buffer.alloc(256);
    header.writeUInt32LE(0x616b3432, 0);
    header.writeInt32LE(1, 4);
    params.forEach((p, i) => header.writeInt32LE(p, 8 + 4 * i));
    header.writeUInt8(shared ? 1 : 0, 36);
  }
  const written = new Map<string, Float32Array>();
  const parts: Buffer[] = [header];
  order.forEach(([name, shape], k) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, j) => (name === 'freq_cis' ? NaN : pattern(k, j)));
    if (name !== 'freq_cis') written.set(name, data);
    parts.push(Buffer.from(data.buffer));
  });
  writeFileSync(path, Buffer.concat(parts));
  return written;
}

/** Exact equality of two float arrays, failing with a short message (assert's diff of large arrays is very slow). */
function assertSameFloats(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const i = got.findIndex((x, j) => !Object.is(x, want[j]));
  assert.equal(i, -1, `${what}: first difference at ${i}: ${got[i]} vs ${want[i]}`);
}

/** Row r of a converted q/k matrix is llama2.c row perm(r): per head [0, 2, 4, ..., 1, 3, 5, ...]. */
function permutedRows(w: Float32Array, rows: number, cols: number, hs: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) {
    const h = Math.floor(r / hs), j = r % hs;
    const src = h * hs + (j < hs / 2 ? 2 * j : 2 * (j - hs / 2) + 1);
    out.set(w.subarray(src * cols, (src + 1) * cols), r * cols);
  }
  return out;
}

for (const version of [0, 1] as const) {
  for (const shared of [true, false]) {
    test(`synthetic ${version === 0 ? 'legacy' : 'v1 "ak42"'} checkpoint, ${shared ? 'shared' : 'separate'} classifier: every value lands in its HF tensor`, async () => {
      const dir = tmp();
      try {
        const written = writeCheckpoint(join(dir, 'model.bin'), version, shared);
        writeTokenizerBin(join(dir, 'tok.bin'));
        const out = join(dir, 'hf');
        await convertLlama2c({ checkpoint: join(dir, 'model.bin'), tokenizer: join(dir, 'tok.bin'), out });
        const cfg = readConfig(out);
        assert.equal(cfg.tie_word_embeddings, shared);
        assert.deepEqual([cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size, cfg.max_position_embeddings],
          [8, 12, 2, 2, 1, DIMS.vocab, 16]);
        const ck = openCheckpoint(out);
        try {
          assert.deepEqual(new Set(ck.names()), new Set(written.keys()));
          const hs = DIMS.dim / DIMS.heads;
          for (const [name, values] of written) {
            const info = ck.info(name)!;
            assert.equal(info.dtype, 'F32');
            const rows = info.shape[0], cols = info.shape[1] ?? 1;
            const want = /[qk]_proj/.test(name) ? permutedRows(values, rows, cols, hs) : values;
            assertSameFloats(ck.read(name), want, name);
          }
        } finally {
          ck.close();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}

test('bad checkpoints fail with a UserError naming the file, and leave no output behind', async () => {
  const dir = tmp();
  try {
    const tok = join(dir, 'tok.bin');
    writeTokenizerBin(tok);
    const out = join(dir, 'out');
    const expectFail = async (file: string, re: RegExp) => {
      await assert.rejects(convertLlama2c({ checkpoint: file, tokenizer: tok, out }), (e: unknown) => {
        assert.ok(e instanceof UserError, String(e));
        assert.ok(e.message.startsWith(file), e.message);
        assert.match(e.message, re);
        return true;
      });
      assert.equal(existsSync(out), false);
      assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('.')), []);
    };
    for (const version of [0, 1] as const) {
      const f = join(dir, `trunc${version}.bin`);
      writeCheckpoint(f, version, false);
      const size = readFileSync(f).length;
      truncateSync(f, size - 4);
      await expectFail(f, new RegExp(`expected ${size} bytes for dim=8, hidden_dim=12, .* got ${size - 4}; not a llama2.c checkpoint or truncated`));
    }
    // A separate classifier announced but missing (shared file with a negative legacy vocab_size).
    const noCls = join(dir, 'nocls.bin');
    writeCheckpoint(noCls, 0, true);
    const buf = readFileSync(noCls);
    buf.writeInt32LE(-DIMS.vocab, 20);
    writeFileSync(noCls, buf);
    await expectFail(noCls, /separate classifier/);
    const junk = join(dir, 'junk.bin');
    writeFileSync(junk, Buffer.from('this is not a model at all, just some text bytes'));
    await expectFail(junk, /not a llama2.c checkpoint/);
    const v2 = join(dir, 'v2.bin');
    writeCheckpoint(v2, 1, true);
    const b2 = readFileSync(v2);
    b2.writeInt32LE(2, 4);
    writeFileSync(v2, b2);
    await expectFail(v2, /version 2 is not supported/);
    const heads = join(dir, 'heads.bin');
    writeCheckpoint(heads, 0, true);
    const b3 = readFileSync(heads);
    b3.writeInt32LE(3, 12);
    b3.writeInt32LE(3, 16);
    writeFileSync(heads, b3);
    await expectFail(heads, /n_heads=3 does not divide dim=8/);
    await expectFail(join(dir, 'missing.bin'), /cannot open/);

    // A tokenizer of the wrong size, and a corrupt tokenizer, are named too.
    const good = join(dir, 'good.bin');
    writeCheckpoint(good, 1, true);
    const small = join(dir, 'small.bin');
    writeTokenizerBin(small, [' ', 'a']);
    await assert.rejects(convertLlama2c({ checkpoint: good, tokenizer: small, out }),
      (e: unknown) => e instanceof UserError && e.message.startsWith(`${small}: 261 tokens, but ${good} has vocab_size ${DIMS.vocab}`));
    const badTok = join(dir, 'badtok.bin');
    writeFileSync(badTok, readFileSync(tok).subarray(0, 1000));
    await assert.rejects(convertLlama2c({ checkpoint: good, tokenizer: badTok, out }),
      (e: unknown) => e instanceof UserError && e.message.startsWith(`${badTok}: `) && /not a llama2.c tokenizer.bin/.test(e.message));
    assert.equal(existsSync(out), false);

    // An existing directory that is not a model is never replaced.
    const precious = join(dir, 'precious');
    mkdirSync(precious);
    writeFileSync(join(precious, 'notes.txt'), 'keep me');
    await assert.rejects(convertLlama2c({ checkpoint: good, tokenizer: tok, out: precious }), /refusing to replace/);
    assert.equal(readFileSync(join(precious, 'notes.txt'), 'utf8'), 'keep me');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// RoPE: llama2.c's interleaved rotation vs HF's rotate-half on permuted weights (float64, pure JS).

function ropeInterleaved(v: Float64Array, pos: number, hs: number): Float64Array {
  const out = v.slice();
  for (let i = 0; i < hs; i += 2) {
    const a = pos / Math.pow(10000, i / hs);
    out[i] = v[i] * Math.cos(a) - v[i + 1] * Math.sin(a);
    out[i + 1] = v[i] * Math.sin(a) + v[i + 1] * Math.cos(a);
  }
  return out;
}

function ropeRotateHalf(v: Float64Array, pos: number, hs: number): Float64Array {
  const out = v.slice();
  const half = hs / 2;
  for (let j = 0; j < half; j++) {
    const a = pos / Math.pow(10000, (2 * j) / hs);
    out[j] = v[j] * Math.cos(a) - v[j + half] * Math.sin(a);
    out[j + half] = v[j + half] * Math.cos(a) + v[j] * Math.sin(a);
  }
  return out;
}

test('q/k row permutation makes rotate-half RoPE give the same attention scores as interleaved RoPE', () => {
  const rand = mulberry32(7);
  const dim = 24, heads = 4, kvHeads = 2, hs = dim / heads;
  const randn = (n: number) => Float32Array.from({ length: n }, () => normal(rand));
  const wq = randn(heads * hs * dim), wk = randn(kvHeads * hs * dim);
  const x1 = randn(dim), x2 = randn(dim);
  const matvec = (w: Float32Array, x: Float32Array, rows: number) =>
    Float64Array.from({ length: rows }, (_, r) => x.reduce((s, xv, c) => s + w[r * dim + c] * xv, 0));
  const head = (v: Float64Array, h: number) => v.slice(h * hs, (h + 1) * hs);
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, av, i) => s + av * b[i], 0);

  const scores = (q: Float64Array, k: Float64Array, rope: typeof ropeInterleaved, pq: number, pk: number) =>
    Array.from({ length: heads }, (_, h) => dot(rope(head(q, h), pq, hs), rope(head(k, Math.floor(h / (heads / kvHeads))), pk, hs)));
  const q = matvec(wq, x1, heads * hs), k = matvec(wk, x2, kvHeads * hs);
  const qp = matvec(interleavedToRotateHalf(wq, heads, hs, dim), x1, heads * hs);
  const kp = matvec(interleavedToRotateHalf(wk, kvHeads, hs, dim), x2, kvHeads * hs);
  let worst = 0, unpermuted = 0;
  for (const [pq, pk] of [[0, 0], [5, 2], [17, 3], [100, 99], [511, 0]]) {
    const ref = scores(q, k, ropeInterleaved, pq, pk);
    const got = scores(qp, kp, ropeRotateHalf, pq, pk);
    const naive = scores(q, k, ropeRotateHalf, pq, pk);
    ref.forEach((r, h) => {
      worst = Math.max(worst, Math.abs(r - got[h]) / (1 + Math.abs(r)));
      unpermuted = Math.max(unpermuted, Math.abs(r - naive[h]) / (1 + Math.abs(r)));
    });
    // The rotated vectors themselves are the same values, reordered.
    const rq = ropeInterleaved(head(q, 1), pq, hs), gq = ropeRotateHalf(head(qp, 1), pq, hs);
    for (let j = 0; j < hs / 2; j++) {
      assert.ok(Math.abs(rq[2 * j] - gq[j]) < 1e-9 && Math.abs(rq[2 * j + 1] - gq[j + hs / 2]) < 1e-9);
    }
  }
  assert.ok(worst < 1e-9, `permuted rotate-half differs from interleaved by ${worst}`);
  assert.ok(unpermuted > 1e-2, 'without the permutation the scores should differ (test sensitivity)');
});

// ---------------------------------------------------------------------------------------------
// Tokenizer

test('synthetic tokenizer: HF tokenizer.json equals the llama2.c reference; loadTokenizer BOS handling', async () => {
  const dir = tmp();
  try {
    const v = writeTokenizerBin(join(dir, 'tok.bin'));
    assert.deepEqual(readLlama2cTokenizer(join(dir, 'tok.bin')), v);
    const hf = new HfTokenizer(llama2cTokenizerJson(v), llama2cTokenizerConfig(16));
    const id = (p: string) => v.pieces.indexOf(p);
    // Hand-checked: " abc" merges fully; "▁" (U+2581) is no piece and falls back to its 3 bytes.
    assert.deepEqual(llama2cEncode(v, 'abc', { bos: true }), [1, id(' abc')]);
    assert.deepEqual(llama2cEncode(v, 'cab', { eos: true }), [id(' '), id('c'), id('ab'), 2]);
    assert.deepEqual(llama2cEncode(v, '▁a'), [id(' '), 0xe2 + 3, 0x96 + 3, 0x81 + 3, id('a')]);
    for (const s of ['abc', 'cab', 'abcabc abc', ' a b c ', 'bcab', 'ẞ▁é😀 abc\n', '', ' ', 'cccc', 'ab ab ab']) {
      assert.deepEqual(hf.encode(s).ids, llama2cEncode(v, s, { bos: true }), JSON.stringify(s));
    }

    // Template BOS (no tokenizer_config.json): default adds BOS, addBos:false drops it.
    const tdir = join(dir, 'tpl');
    mkdirSync(tdir);
    writeFileSync(join(tdir, 'tokenizer.json'), JSON.stringify(llama2cTokenizerJson(v)));
    let tok = await loadTokenizer(tdir);
    assert.deepEqual(tok.encode('abc'), [1, id(' abc')]);
    assert.deepEqual(tok.encode('abc', { addBos: false }), [id(' abc')]);
    assert.deepEqual(tok.encode(''), [1]);
    assert.equal(tok.bos, 1);
    assert.deepEqual(tok.eos, []);
    assert.equal(tok.vocabSize, v.pieces.length);
    // add_bos_token in tokenizer_config.json overrides the template, as transformers' Llama tokenizer does.
    writeFileSync(join(tdir, 'tokenizer_config.json'), JSON.stringify({ ...llama2cTokenizerConfig(16), add_bos_token: false }));
    writeFileSync(join(tdir, 'generation_config.json'), JSON.stringify({ eos_token_id: [2, 5] }));
    tok = await loadTokenizer(tdir);
    assert.deepEqual(tok.encode('abc'), [id(' abc')]);
    assert.deepEqual(tok.encode('abc', { addBos: true }), [1, id(' abc')]);
    assert.deepEqual(tok.eos.sort(), [2, 5]);
    assert.equal(tok.decode([1, id(' abc'), id(' a'), 2], { skipSpecial: true }), 'abc a');
    assert.equal(tok.decode([]), '');

    // Missing and corrupt tokenizer.json.
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    await assert.rejects(loadTokenizer(empty), (e: unknown) => e instanceof UserError && e.message.startsWith(join(empty, 'tokenizer.json')) && /not found/.test(e.message));
    writeFileSync(join(empty, 'tokenizer.json'), '{"model": {"type": "BPE", "vocab": {');
    await assert.rejects(loadTokenizer(empty), (e: unknown) => e instanceof UserError && /not valid JSON/.test(e.message));
    writeFileSync(join(empty, 'tokenizer.json'), '{"version": "1.0"}');
    await assert.rejects(loadTokenizer(empty), (e: unknown) => e instanceof UserError && /no "model"/.test(e.message));
    writeFileSync(join(empty, 'tokenizer.json'), '{"model": {"type": "Mystery"}}');
    await assert.rejects(loadTokenizer(empty), (e: unknown) => e instanceof UserError && /unsupported or corrupt/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Several thousand MMLU strings (questions, choices, whole prompts) plus hard unicode cases. */
function testStrings(): string[] {
  const mmlu = join(SHARED!, 'data/mmlu');
  const out: string[] = [];
  for (const split of ['dev', 'test']) {
    for (const f of readdirSync(join(mmlu, split)).sort()) {
      const rows = parseCsv(readFileSync(join(mmlu, split, f), 'utf8'), f);
      for (const r of split === 'dev' ? rows : rows.slice(0, 8)) {
        out.push(...r.fields.slice(0, 5));
        if (split === 'dev') out.push(`${r.fields[0]}\nA. ${r.fields[1]}\nB. ${r.fields[2]}\nC. ${r.fields[3]}\nD. ${r.fields[4]}\nAnswer:`);
      }
    }
  }
  out.push('', ' ', '   ', 'a', '\n', '\t\t x', 'héllo wörld', '😀🤖 emoji 👨‍👩‍👧 family', '日本語のテキスト', 'Ελληνικά кириллица',
    '▁ literal U+2581 ▁▁', '\u00a0nbsp\u200bzero-width', 'ẞ ß ǅ ﬁ', 'tabs\tand\r\nCRLF', '\u{10FFFF} max codepoint', '\u0001\u001f controls',
    'x'.repeat(400), ' '.repeat(40) + 'indented', 'Once upon a time', '<0x41> looks like a byte piece');
  return out;
}

for (const model of ['stories260K', 'aidreams260K']) {
  test(`${model} tok512.bin: the converted tokenizer encodes thousands of strings exactly as llama2.c`, { skip: NO_SHARED }, () => {
    const v = readLlama2cTokenizer(join(MODELS, model, 'tok512.bin'));
    const hf = new HfTokenizer(llama2cTokenizerJson(v), llama2cTokenizerConfig(512));
    const strings = testStrings();
    assert.ok(strings.length > 3000, `${strings.length} strings`);
    let mismatches = 0;
    let first = '';
    for (const s of strings) {
      const want = llama2cEncode(v, s, { bos: true });
      const got = hf.encode(s).ids;
      if (want.join() !== got.join()) {
        mismatches++;
        first ||= `${JSON.stringify(s.slice(0, 80))}: llama2.c ${want.slice(0, 20)} vs HF ${got.slice(0, 20)}`;
      }
      // Decoding: HF gives back the text, as llama2.c's decode does after BOS.
      if (s.length > 0) {
        const decoded = hf.decode(got, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
        assert.equal(decoded, s, JSON.stringify(s));
        assert.equal(llama2cDecode(v, want).slice('\n<s>\n'.length), s, JSON.stringify(s));
      }
    }
    assert.equal(mismatches, 0, `${mismatches} of ${strings.length} strings differ; first: ${first}`);
  });
}

test('stories260K converts to a HF directory with the right config, tensors and tokenizer', { skip: NO_SHARED }, async () => {
  const dir = tmp();
  try {
    const bin = join(MODELS, 'stories260K/stories260K.bin');
    const out = join(dir, 'stories260K');
    await convertLlama2c({ checkpoint: bin, tokenizer: join(MODELS, 'stories260K/tok512.bin'), out });
    assert.deepEqual(readdirSync(out).sort(),
      ['.mka-output.json', 'config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const cfg = readConfig(out);
    assert.equal(cfg.num_hidden_layers, 5);
    assert.equal(cfg.num_attention_heads, 8);
    assert.equal(cfg.num_key_value_heads, 4);
    assert.equal(cfg.hidden_size, 64);
    assert.equal(cfg.intermediate_size, 172);
    assert.equal(cfg.vocab_size, 512);
    assert.equal(cfg.max_position_embeddings, 512);
    assert.equal(cfg.tie_word_embeddings, true);
    assert.equal(cfg.rms_norm_eps, 1e-5);
    assert.equal(cfg.rope_theta, 10000);
    assert.deepEqual(cfg.architectures, ['LlamaForCausalLM']);

    const raw = readFileSync(bin);
    const floats = (offset: number, n: number) => new Float32Array(raw.buffer.slice(raw.byteOffset + offset, raw.byteOffset + offset + 4 * n));
    const ck = openCheckpoint(out);
    try {
      assert.equal(ck.names().length, 1 + 5 * 9 + 1);
      assert.equal(ck.info('lm_head.weight'), undefined);
      assert.deepEqual(ck.info('model.embed_tokens.weight')!.shape, [512, 64]);
      assert.deepEqual(ck.info('model.layers.4.self_attn.q_proj.weight')!.shape, [64, 64]);
      assert.deepEqual(ck.info('model.layers.4.self_attn.k_proj.weight')!.shape, [32, 64]);
      assert.deepEqual(ck.info('model.layers.4.self_attn.v_proj.weight')!.shape, [32, 64]);
      assert.deepEqual(ck.info('model.layers.4.self_attn.o_proj.weight')!.shape, [64, 64]);
      assert.deepEqual(ck.info('model.layers.0.mlp.gate_proj.weight')!.shape, [172, 64]);
      assert.deepEqual(ck.info('model.layers.0.mlp.down_proj.weight')!.shape, [64, 172]);
      assert.deepEqual(ck.info('model.layers.0.mlp.up_proj.weight')!.shape, [172, 64]);
      assert.deepEqual(ck.info('model.norm.weight')!.shape, [64]);
      // Legacy layout (run.c memory_map_weights): embeddings at byte 28, then 5 rms_att rows, then wq.
      assertSameFloats(ck.read('model.embed_tokens.weight'), floats(28, 512 * 64), 'embed_tokens');
      const rmsAtt = 28 + 4 * 512 * 64;
      assertSameFloats(ck.read('model.layers.1.input_layernorm.weight'), floats(rmsAtt + 4 * 64, 64), 'layer 1 input_layernorm');
      const wq = rmsAtt + 4 * 5 * 64;
      assertSameFloats(ck.read('model.layers.0.self_attn.q_proj.weight'), permutedRows(floats(wq, 64 * 64), 64, 64, 8), 'layer 0 q_proj');
    } finally {
      ck.close();
    }
    const c = readLlama2cCheckpoint(bin);
    assert.deepEqual([c.version, c.sharedClassifier, c.headSize], [0, true, 8]);

    const tok = await loadTokenizer(out);
    assert.equal(tok.decode(KNOWN_IDS), KNOWN_TEXT);
    assert.equal(tok.decode([1, ...KNOWN_IDS], { skipSpecial: true }), KNOWN_TEXT);
    const ids = tok.encode(KNOWN_SENTENCE);
    assert.deepEqual(ids.slice(0, 21), [1, ...KNOWN_IDS]);
    assert.equal(tok.decode(ids, { skipSpecial: true }), KNOWN_SENTENCE);
    assert.deepEqual(tok.encode(KNOWN_SENTENCE, { addBos: false }), ids.slice(1));
    assert.equal(tok.bos, 1);
    assert.deepEqual(tok.eos, [2]);
    assert.equal(tok.vocabSize, 512);

    // A truncated copy of the real checkpoint names the file.
    const cut = join(dir, 'cut.bin');
    writeFileSync(cut, raw.subarray(0, raw.length - 100));
    assert.throws(() => readLlama2cCheckpoint(cut), (e: unknown) =>
      e instanceof UserError && e.message.startsWith(`${cut}: expected ${raw.length} bytes for dim=64, hidden_dim=172, n_layers=5`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('end to end: converted stories260K and aidreams260K greedy-generate what llama2.c run.c prints', { skip: NO_SHARED }, async () => {
  await initBackend('wasm');
  const dir = tmp();
  try {
    const cases = [
      { name: 'stories260K', ids: KNOWN_IDS, text: KNOWN_TEXT },
      // run.c -t 0 prints '"Echoes of vectors unfold, a gentle hum of precision,' for its first 20 tokens.
      { name: 'aidreams260K', ids: null, text: '"Echoes of vectors unfold, a gentle hum of precision' },
    ];
    for (const c of cases) {
      const out = join(dir, c.name);
      await convertLlama2c({ checkpoint: join(MODELS, c.name, `${c.name}.bin`), tokenizer: join(MODELS, c.name, 'tok512.bin'), out });
      const tok = await loadTokenizer(out);
      const before = tf.memory().numTensors;
      const model = loadModel(out);
      let ids: number[];
      try {
        ids = generate(model, tok.encode(''), { maxNewTokens: 20 });
      } finally {
        disposeModel(model);
      }
      assert.equal(tf.memory().numTensors, before);
      if (c.ids) assert.deepEqual(ids, c.ids);
      assert.ok(tok.decode(ids, { skipSpecial: true }).startsWith(c.text), `${c.name}: ${tok.decode(ids)}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
