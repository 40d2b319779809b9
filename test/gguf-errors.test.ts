/**
 * Bad GGUF input: a wrong magic, an unsupported version, truncation, an unknown or unsupported tensor
 * type, metadata that contradicts the tensors, data out of bounds or misaligned, absurd counts and
 * lengths, duplicate keys, an unsupported architecture. Each exits 1 with one line naming the file and
 * the problem (checked through the CLI), and a fuzz over truncations and bit flips of a real GGUF file
 * never crashes, hangs or fails with anything but such an error (checked in process).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportGguf } from '../src/export/gguf.ts';
import { readConfig } from '../src/model/config.ts';
import { openModelDir } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { UserError } from '../src/runtime/errors.ts';
import { GgmlType, ValueType } from '../src/gguf/format.ts';
import { meta, writeGguf } from '../src/gguf/writer.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { assertUserError, runAllInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

let dir: string;
let good: Buffer;

before(async () => {
  dir = scratchDir('gguf-errors');
  const file = join(dir, 'demo.gguf');
  await exportGguf({ model: 'models/demo', out: file, type: 'q4_0', quiet: true });
  good = readFileSync(file);
});

/** Where a string (a key or tensor name, as GGUF writes it: u64 length then bytes) ends in the file. */
function after(buf: Buffer, s: string): number {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(s)));
  const at = buf.indexOf(Buffer.concat([len, Buffer.from(s)]));
  assert.ok(at >= 0, `${s} not found`);
  return at + 8 + Buffer.byteLength(s);
}

/** A copy of the good file with `edit` applied, written as NAME.gguf. */
function variant(name: string, edit: (b: Buffer) => Buffer | void): string {
  const b = Buffer.from(good);
  const out = edit(b) ?? b;
  const path = join(dir, `${name}.gguf`);
  writeFileSync(path, out);
  return path;
}

/** Everything a command reads of a model: config, checkpoint (validated against it), every tensor, the tokenizer. */
async function loadAll(path: string): Promise<void> {
  readConfig(path);
  const { ckpt } = openModelDir(path);
  try {
    for (const name of ckpt.names()) ckpt.read(name);
  } finally {
    ckpt.close();
  }
  const tok = await loadTokenizer(path);
  tok.decode(tok.encode('Question: What is 7 + 5?\nAnswer: A'));
}

test('each kind of bad GGUF file exits 1 with one line naming the file and the problem', async () => {
  const embdType = (b: Buffer) => after(b, 'token_embd.weight') + 4 + 2 * 8; // n_dims, two dims, then the type
  const cases: [string, string[]][] = [
    [variant('magic', (b) => { b.write('GGUX', 0); }), ['wrong magic "GGUX"']],
    [variant('text', () => Buffer.from('{"model_type": "llama"}\n')), ['wrong magic']],
    [variant('v1', (b) => { b.writeUInt32LE(1, 4); }), ['unsupported GGUF version 1']],
    [variant('v4', (b) => { b.writeUInt32LE(4, 4); }), ['unsupported GGUF version 4']],
    [variant('empty', () => Buffer.alloc(0)), ['truncated: 0 bytes']],
    [variant('trunc-header', (b) => b.subarray(0, 200)), ['tensor count', 'corrupt or truncated']],
    [variant('trunc-meta', (b) => b.subarray(0, 1000)), ['truncated']],
    [variant('trunc-data', (b) => b.subarray(0, b.length - 1000)), ['past the end of the file', 'truncated?']],
    [variant('type99', (b) => { b.writeUInt32LE(99, embdType(b)); }), ['token_embd.weight', 'unknown ggml type 99']],
    [variant('iq4nl', (b) => { b.writeUInt32LE(GgmlType.IQ4_NL, embdType(b)); }), ['token_embd.weight (IQ4_NL)', 'mka reads F32, F16, BF16, Q8_0, Q4_0']],
    [variant('offset', (b) => { b.writeBigUInt64LE(1n << 40n, embdType(b) + 4); }), ['token_embd.weight', 'past the end of the file']],
    [variant('misaligned', (b) => { b.writeBigUInt64LE(b.readBigUInt64LE(embdType(b) + 4) + 4n, embdType(b) + 4); }), ['not a multiple of the alignment 32']],
    [variant('n-tensors', (b) => { b.writeBigUInt64LE(1n << 62n, 8); }), ['tensor count', 'more than']],
    [variant('n-kv', (b) => { b.writeBigUInt64LE((1n << 64n) - 1n, 16); }), ['metadata count', 'more than']],
    [variant('strlen', (b) => { b.writeBigUInt64LE(1n << 50n, after(b, 'general.architecture') + 4); }), ['length of value of "general.architecture"', 'more than']],
    [variant('arrlen', (b) => { b.writeBigUInt64LE(1n << 40n, after(b, 'tokenizer.ggml.tokens') + 8); }), ['element count of "tokenizer.ggml.tokens"', 'more than']],
    [variant('dupkey', (b) => { b.write('general.name', after(b, 'general.type') - 12); }), ['metadata key "general.name" appears twice']],
    [variant('arch', (b) => { b.write('llamb', after(b, 'general.architecture') + 4 + 8); }), ['architecture "llamb" is not supported']],
    [variant('dims', (b) => { b.writeUInt32LE(7, after(b, 'token_embd.weight')); }), ['token_embd.weight', '7 dimensions']],
    [variant('bool', (b) => { b.writeUInt8(7, after(b, 'tokenizer.ggml.add_bos_token') + 4); }), ['not a boolean']],
  ];
  const results = await runAllInProcess(cases.map(([path]) => ['info', '--model', path]));
  results.forEach((r, i) => assertUserError(r, cases[i][0], ...cases[i][1]));
  // commands that run the model stop the same way, before loading anything; they also check the tensors against the metadata
  const running: [string, string[]][] = [
    [cases[0][0], ['wrong magic']],
    [variant('ffn-len', (b) => { b.writeUInt32LE(192, after(b, 'llama.feed_forward_length') + 4); }), ['blk.0.ffn_gate.weight', 'has shape [176,64]', 'its GGUF metadata implies [192,64]']],
    [variant('embd-len', (b) => { b.writeUInt32LE(96, after(b, 'llama.embedding_length') + 4); }), ['rope.dimension_count 16 is not the head size 24']],
    [variant('blocks', (b) => { b.writeUInt32LE(9, after(b, 'llama.block_count') + 4); }), ['blk.8.attn_norm.weight', 'missing']],
    [variant('blocks7', (b) => { b.writeUInt32LE(7, after(b, 'llama.block_count') + 4); }), ['says 7 layers (block_count)', 'blk.7']],
    // a flipped exponent: a Q4_0 block's f16 scale becomes NaN, an F32 norm value Infinity
    [variant('nan-scale', (b) => { b.writeUInt16LE(0x7e00, dataOf('blk.1.attn_v.weight') + 18 * 5); }), ['"blk.1.attn_v.weight" has a block scale of NaN (block 5)', 'corrupt', '--allow-nonfinite']],
    [variant('inf-norm', (b) => { b.writeFloatLE(Infinity, dataOf('blk.2.ffn_norm.weight') + 4 * 3); }), ['"blk.2.ffn_norm.weight" holds Infinity at index 3', 'corrupt', '--allow-nonfinite']],
  ];
  const ran = await runAllInProcess(running.map(([path]) => ['forward', '--model', path, '--ids', '1', '--backend', 'wasm']));
  // (the backend line comes first: it is chosen before the model is opened; the note on how the blocks are held comes before an error met while reading them)
  ran.forEach((r, i) => assertUserError({ ...r, stderr: r.stderr.split('\n').filter((l) => !/^backend: |dequantized one layer at a time/.test(l)).join('\n') }, running[i][0], ...running[i][1]));
  // --allow-nonfinite runs them anyway
  const allowed = await runAllInProcess(running.slice(-2).map(([path]) => ['forward', '--model', path, '--ids', '1', '--backend', 'wasm', '--allow-nonfinite', '--quiet']));
  allowed.forEach((r) => assert.equal(r.status, 0, r.stderr));
});

/** Where tensor `name`'s data begins in the good file. */
function dataOf(name: string): number {
  const g = new GgufFile(join(dir, 'demo.gguf'));
  try {
    return g.tensors.get(name)!.offset;
  } finally {
    g.close();
  }
}

test('a non-power-of-two general.alignment and a model with an unsupported tokenizer are refused', async () => {
  const path = join(dir, 'align.gguf');
  await writeGguf(path, [['general.alignment', meta.u32(24)]], [{ name: 'x', dims: [4], type: GgmlType.F32 }], () => new Uint8Array(16));
  await assert.rejects(loadAll(path), (e: Error) => e instanceof UserError && e.message.includes('general.alignment 24 is not a power of 2'));
  const tok = variant('tok', (b) => { b.write('unigr', after(b, 'tokenizer.ggml.model') + 4 + 8); });
  await assert.rejects(loadTokenizer(tok), (e: Error) => e instanceof UserError && e.message.includes('tokenizer.ggml.model "unigr" is not supported'));
  const f64 = join(dir, 'types.gguf');
  await writeGguf(f64, [['general.architecture', { type: ValueType.FLOAT64, value: 1 }]], [], () => new Uint8Array(0));
  await assert.rejects(loadAll(f64), (e: Error) => e instanceof UserError && e.message.includes('"general.architecture" must be a string, not a float64'));
});

test('fuzz: truncations and bit flips of a GGUF file fail with one UserError or load, never crash or hang', { timeout: 120_000 }, async () => {
  await loadAll(variant('fuzz-base', () => {}));
  let s = 7;
  const rnd = (n: number) => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) % n;
  const header = good.indexOf(Buffer.from('token_embd.weight')) + 4096; // beyond the metadata and tensor descriptions
  const variants: Buffer[] = [];
  for (let i = 0; i < 120; i++) variants.push(good.subarray(0, i < 80 ? rnd(header) : rnd(good.length)));
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(good);
    const at = i < 320 ? rnd(header) : rnd(good.length);
    b[at] ^= 1 << rnd(8);
    if (i % 4 === 0) b[rnd(header)] ^= 0xff; // and sometimes a whole byte elsewhere
    variants.push(b);
  }
  let loaded = 0, refused = 0;
  const path = join(dir, 'fuzz.gguf');
  for (const v of variants) {
    writeFileSync(path, v);
    try {
      await loadAll(path);
      loaded++;
    } catch (e) {
      assert.ok(e instanceof UserError, `not a UserError: ${(e as Error).stack}`);
      assert.ok(!(e as Error).message.includes('\n'), (e as Error).message);
      assert.ok((e as Error).message.startsWith(path), (e as Error).message);
      refused++;
    }
  }
  assert.equal(loaded + refused, variants.length);
  assert.ok(refused > 200, `${refused} of ${variants.length} variants refused`);
});
