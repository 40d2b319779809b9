/**
 * `mka quantize`d models shipped to llama.cpp (#24 item 5): the merged demo (test/fixtures/plans) quantized
 * by round to nearest (symmetric 4-bit and 8-bit in groups of 32, asymmetric 4-bit in groups of 128),
 * exported with `mka export gguf`, against what the gguf package and llama.cpp made of the same files
 * (test/goldens/gguf/packed.json, test/goldens/gguf/make.ts --only packed):
 *
 * - packed weights are written as their own Q4_0/Q8_0/Q4_1 blocks, not quantized again: every such
 *   tensor reads back to exactly the packed model's values, and the gguf package dequantizes every
 *   tensor to the bytes mka's reader gives;
 * - the GGUF loads packed (`--model F.gguf`), and its logits are the packed directory's within 0.01 (the
 *   down projections, rows of 176 inputs, fall back to F16 as llama.cpp's converter does);
 * - llama.cpp tokenizes the prompt to mka's ids; on the same weights in F32 its logits equal mka's within
 *   1e-4 and its greedy tokens are mka's; its own Q4_0/Q8_0/Q4_1 products quantize the activations to
 *   8-bit blocks, which moves this model's logits (up to 14) by up to 0.35: compared within 0.5.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { runForward } from '../src/model/inspect.ts';
import { exportGguf, type GgufExportResult } from '../src/export/gguf.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { type SupportedType } from '../src/gguf/format.ts';
import { blockTypeOf, dequantize } from '../src/gguf/quants.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { disposeModel, loadModel, openModelDir } from '../src/model/model.ts';
import { generate } from '../src/model/generate.ts';
import { modelInfo } from '../src/model/info.ts';
import { PACKED_CASES, makeMergedDemo, makePackedDemo } from './goldens/gguf/cases.ts';
import { scratchDir } from './scratch.ts';

const GOLDEN = JSON.parse(readFileSync('test/goldens/gguf/packed.json', 'utf8'));
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/** Values with −0 as 0 (ggml's d·(q − 8) is −0 for a negative d where mka's dequantizer gives 0: the same weight). */
const noSignedZero = (x: Float32Array) => x.map((v) => v + 0);
const maxDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

let dir: string;
const models: Record<string, string> = {}, files: Record<string, string> = {}, results: Record<string, GgufExportResult> = {};

before(async () => {
  await initBackend('wasm');
  dir = scratchDir('gguf-packed');
  const merged = join(dir, 'merged');
  await makeMergedDemo('.', merged);
  for (const c of PACKED_CASES) {
    models[c.name] = join(dir, c.name);
    await makePackedDemo(merged, models[c.name], c.quantize);
    files[c.name] = join(dir, `${c.name}.gguf`);
    results[c.name] = await exportGguf({ model: models[c.name], out: files[c.name], type: c.type, quiet: true });
  }
});

test('packed weights go to GGUF as their own Q4_0/Q8_0/Q4_1 blocks: the same values exactly, nothing quantized again; the gguf package reads them so', () => {
  for (const c of PACKED_CASES) {
    const golden = GOLDEN.cases[c.name];
    const g = new GgufFile(files[c.name]);
    try {
      const tensors = [...g.tensors.values()];
      assert.deepEqual(tensors.map((x) => ({ name: x.name, type: x.type, shape: x.dims })), golden.gguf_py.tensors, `${c.name}: tensor list`);
      assert.deepEqual(Object.fromEntries(tensors.map((x) => [x.name, sha(g.readTensor(x.name))])), golden.tensor_sha256, `${c.name}: the file llama.cpp ran`);
      for (const x of tensors) {
        const values = dequantize(x.type as SupportedType, g.readTensor(x.name), x.dims.reduce((a, b) => a * b, 1));
        assert.equal(sha(new Uint8Array(values.buffer)), golden.dequant_sha256[x.name], `${c.name} ${x.name}: gguf-py's dequantization`);
      }
    } finally {
      g.close();
    }
    const src = openModelDir(models[c.name]).ckpt, out = openModelDir(files[c.name]).ckpt;
    try {
      let kept = 0;
      for (const name of src.names().filter((n) => n.endsWith('.qweight')).map((n) => n.replace(/\.qweight$/, '.weight'))) {
        const info = src.packedInfo(name)!;
        if (blockTypeOf(info) === null) continue; // rows of 176: F16, as the fallback test of gguf-export checks
        kept++;
        assert.deepEqual(noSignedZero(out.read(name)), noSignedZero(src.read(name)), `${c.name} ${name}: the packed values`);
        const back = out.readPacked(name), orig = src.readPacked(name);
        assert.deepEqual(back.quants, orig.quants, `${c.name} ${name}: quants`);
        const repeat = info.spec.group / 32; // a group of 128 is 4 blocks sharing its scale (and min)
        assert.deepEqual(Array.from(back.scales), Array.from(orig.scales).flatMap((s) => Array(repeat).fill(s)), `${c.name} ${name}: scales`);
        assert.deepEqual(back.mins && Array.from(back.mins), orig.mins && Array.from(orig.mins).flatMap((s) => Array(repeat).fill(s)), `${c.name} ${name}: mins`);
      }
      assert.equal(kept, 32, `${c.name}: 5 layers × 6 matrices of rows of 64, the embedding and lm_head`);
      assert.equal(results[c.name].packedKept, kept);
      assert.deepEqual(results[c.name].requantized, []);
    } finally {
      src.close();
      out.close();
    }
  }
});

test('--model F.gguf loads Q4_0/Q8_0/Q4_1 blocks as packed weights and gives the packed directory\'s logits', async () => {
  const n0 = tf.memory().numTensors;
  for (const c of PACKED_CASES) {
    const m = loadModel(files[c.name]);
    try {
      const q = m.packed?.get('model.layers.0.self_attn.q_proj.weight');
      assert.equal(q?.dtype, c.type === 'q8_0' ? 'q8' : 'q4', c.name);
      assert.deepEqual({ group: q!.quant!.group, symmetric: q!.quant!.symmetric }, { group: 32, symmetric: !c.name.endsWith('asym') });
      assert.equal(m.packed?.get('lm_head.weight')?.dtype ?? m.packed?.get('model.embed_tokens.weight')?.dtype, 'q8', 'lm_head: 8-bit, as mka quantize wrote it');
    } finally {
      disposeModel(m);
    }
    const ids = GOLDEN.cases[c.name].llamacpp.ids as number[];
    const a = await runForward({ model: files[c.name], ids, logits: 'all' });
    const b = await runForward({ model: models[c.name], ids, logits: 'all' });
    const d = Math.max(...a.logits!.map((row, p) => maxDiff(row, b.logits![p])));
    assert.ok(d < 0.01, `${c.name}: max |GGUF − packed directory| = ${d}`);
    assert.match(modelInfo(files[c.name]).quantization ?? '', /gguf/, `${c.name}: mka info names the quantization`);
  }
  assert.equal(tf.memory().numTensors, n0);
});

test('llama.cpp runs the packed models\' GGUF as mka does: the same ids, logits within 1e-4 on F32 products, the same greedy tokens', async () => {
  const n0 = tf.memory().numTensors;
  for (const c of PACKED_CASES) {
    const { llamacpp: direct, llamacpp_f32: exact } = GOLDEN.cases[c.name];
    assert.deepEqual((await loadTokenizer(files[c.name])).encode(GOLDEN.prompt), direct.ids, `${c.name}: prompt ids`);
    const r = await runForward({ model: files[c.name], ids: direct.ids, logits: 'all' });
    exact.positions.forEach((p: number, k: number) => {
      const d = maxDiff(exact.logits[k], r.logits![p]);
      assert.ok(d < 1e-4, `${c.name}: position ${p}: max |mka − llama.cpp (F32 products)| = ${d}`);
    });
    const m = loadModel(files[c.name]);
    try {
      assert.deepEqual(generate(m, direct.ids, { maxNewTokens: exact.greedy.length, stopIds: [] }), exact.greedy, `${c.name}: greedy tokens`);
    } finally {
      disposeModel(m);
    }
    direct.positions.forEach((p: number, k: number) => {
      const d = maxDiff(direct.logits[k], r.logits![p]);
      assert.ok(d < 0.5, `${c.name}: position ${p}: max |mka − llama.cpp (its quantized products)| = ${d}`);
    });
  }
  assert.equal(tf.memory().numTensors, n0);
});
