/**
 * The GGUF format layer on its own: the writer and reader agree on every value type, alignment and
 * tensor layout; the Q8_0/Q4_0 quantizers give the bytes of ggml's compiled reference quantizers
 * (test/goldens/gguf/quantizers.json, made by test/goldens/gguf/quant.c against libggml-base) on
 * values chosen for their edge cases; dequantization is d·q exactly, and the other block types
 * llama.cpp's presets write (Q4_1, Q5_0, Q5_1, Q2_K-Q6_K) dequantize to ggml's and gguf-py's bits; llama.cpp's Q/K row order is
 * convert_hf_to_gguf.py's `permute`; packed blocks split and join without requantizing; llama3 RoPE
 * factors go to rope_freqs and back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { GGML_BLOCK, GgmlType, type ReadType, ValueType } from '../src/gguf/format.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { meta, writeGguf } from '../src/gguf/writer.ts';
import { type PackedParts, blockTypeOf, dequantize, packBlocks, quantizeQ4_0, quantizeQ8_0, unpackBlocks } from '../src/gguf/quants.ts';
import { permuteRows } from '../src/gguf/tensor-names.ts';
import { llama3ScalingFromFactors, ropeFreqFactors, shortestFloat32, type HfConfigFields } from '../src/gguf/hparams.ts';
import { fromFloat32 } from '../src/io/safetensors.ts';
import { KQUANT_VALUES, QUANT_EDGE_VALUES } from './goldens/gguf/quant-values.ts';
import { scratchDir } from './scratch.ts';

const GOLDEN = JSON.parse(readFileSync('test/goldens/gguf/quantizers.json', 'utf8')) as { values_sha256: string; q8_0_hex: string; q4_0_hex: string };
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('the writer and the reader agree on every value type, tensor types, alignment and offsets', async () => {
  const dir = scratchDir('gguf');
  try {
    const file = join(dir, 'x.gguf');
    const f32 = Float32Array.from({ length: 96 }, (_, i) => i / 7 - 3);
    const tensors = [
      { name: 'a', dims: [96], type: GgmlType.F32, data: new Uint8Array(f32.buffer) },
      { name: 'b', dims: [32, 3], type: GgmlType.F16, data: fromFloat32(f32, 'F16') },
      { name: 'c', dims: [32, 3], type: GgmlType.Q8_0, data: quantizeQ8_0(f32) },
      { name: 'd', dims: [32, 3], type: GgmlType.Q4_0, data: quantizeQ4_0(f32) },
      { name: 'e', dims: [96], type: GgmlType.BF16, data: fromFloat32(f32, 'BF16') },
    ];
    const md: [string, ReturnType<typeof meta.u32>][] = [
      ['u32', meta.u32(4294967295)], ['i32', meta.i32(-7)], ['f32', meta.f32(1e-5)], ['yes', meta.bool(true)], ['no', meta.bool(false)],
      ['s', meta.str('ünïcödé ▁ 🦙')], ['empty', meta.str('')], ['strs', meta.strings(['', 'a b', '<0x0A>'])],
      ['floats', meta.f32s(Float32Array.of(-1, 0.5))], ['ints', meta.i32s(Int32Array.of(1, -2, 3))],
      ['u8', { type: ValueType.UINT8, value: 255 }], ['i64', { type: ValueType.INT64, value: -5n }], ['f64', { type: ValueType.FLOAT64, value: Math.PI }],
    ];
    const size = await writeGguf(file, md, tensors, (name) => tensors.find((t) => t.name === name)!.data);
    assert.deepEqual(readdirSync(dir), ['x.gguf'], 'no temporary file left');
    const g = new GgufFile(file);
    try {
      assert.equal(g.size, size);
      assert.equal(g.version, 3);
      assert.equal(g.int('u32'), 4294967295);
      assert.equal(g.int('i32'), -7);
      assert.equal(g.float('f32'), Math.fround(1e-5));
      assert.equal(g.bool('yes'), true);
      assert.equal(g.bool('no'), false);
      assert.equal(g.string('s'), 'ünïcödé ▁ 🦙');
      assert.equal(g.string('empty'), '');
      assert.deepEqual(g.array('strs', { type: ValueType.STRING })!.values, ['', 'a b', '<0x0A>']);
      assert.deepEqual(Array.from(g.array('floats')!.values as Float32Array), [-1, 0.5]);
      assert.deepEqual(Array.from(g.array('ints')!.values as Int32Array), [1, -2, 3]);
      assert.equal(g.int('u8'), 255);
      assert.equal(g.int('i64'), -5);
      assert.equal(g.float('f64'), Math.PI);
      assert.throws(() => g.string('u32'), /metadata "u32" must be a string, not a uint32/);
      assert.throws(() => g.int('missing'), /metadata "missing" is missing/);
      let expected = 0;
      for (const t of tensors) {
        const info = g.tensors.get(t.name)!;
        assert.equal(info.offset % 32, 0, `${t.name} is aligned`);
        assert.equal(info.offset - g.dataStart, expected, `${t.name} follows the previous tensor, padded to 32 (llama.cpp's layout)`);
        expected += Math.ceil(t.data.length / 32) * 32;
        assert.deepEqual(info.dims, t.dims);
        assert.equal(info.type, t.type);
        assert.deepEqual(Buffer.from(g.readTensor(t.name)), Buffer.from(t.data));
      }
    } finally {
      g.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Q8_0 and Q4_0 quantize to the bytes of ggml\'s reference quantizers (zeros, subnormals, ties, 1e-6 to 1e6)', () => {
  const x = QUANT_EDGE_VALUES();
  assert.equal(sha(new Uint8Array(x.buffer)), GOLDEN.values_sha256, 'the values the golden was made from');
  assert.equal(Buffer.from(quantizeQ8_0(x)).toString('hex'), GOLDEN.q8_0_hex);
  assert.equal(Buffer.from(quantizeQ4_0(x)).toString('hex'), GOLDEN.q4_0_hex);
});

test('Q4_1, Q5_0, Q5_1 and the k-quants Q2_K to Q6_K dequantize to the bits ggml\'s dequantize_row_* and gguf-py give', () => {
  const g = JSON.parse(readFileSync('test/goldens/gguf/kquants.json', 'utf8')) as { values_sha256: string; types: Record<string, { blocks_hex: string; ggml_dequant_sha256: string; gguf_py_dequant_sha256: string }> };
  const x = KQUANT_VALUES();
  assert.equal(sha(new Uint8Array(x.buffer)), g.values_sha256);
  assert.deepEqual(Object.keys(g.types).sort(), ['Q2_K', 'Q3_K', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K']);
  for (const [name, t] of Object.entries(g.types)) {
    const blocks = Buffer.from(t.blocks_hex, 'hex');
    const values = dequantize(GgmlType[name as keyof typeof GgmlType] as ReadType, new Uint8Array(blocks), x.length);
    assert.equal(sha(new Uint8Array(values.buffer)), t.ggml_dequant_sha256, `${name}: ggml's dequantize_row`);
    assert.equal(t.gguf_py_dequant_sha256, t.ggml_dequant_sha256, `${name}: gguf-py agrees with ggml`);
    // and they are the values, to within the row's range over the type's levels (2 bits: 4 levels)
    for (let r = 0; r < x.length / 256; r++) {
      const row = Array.from(x.subarray(r * 256, (r + 1) * 256));
      const range = Math.max(...row) - Math.min(...row, 0);
      const err = Math.max(...row.map((v, j) => Math.abs(v - values[r * 256 + j])));
      assert.ok(err <= range / 2, `${name} row ${r}: error ${err} for a range of ${range}`);
    }
  }
});

test('dequantization is d·q (Q8_0) and d·(q − 8) (Q4_0) with the f16 scale, exactly', () => {
  const x = QUANT_EDGE_VALUES();
  for (const type of [GgmlType.Q8_0, GgmlType.Q4_0] as const) {
    const bytes = type === GgmlType.Q8_0 ? quantizeQ8_0(x) : quantizeQ4_0(x);
    const values = dequantize(type, bytes, x.length);
    const bb = GGML_BLOCK[type].bytes;
    for (let b = 0; b < x.length / 32; b++) {
      const d = dequantize(GgmlType.F16, bytes.subarray(b * bb, b * bb + 2), 1)[0];
      for (let j = 0; j < 32; j++) {
        const q = type === GgmlType.Q8_0 ? (bytes[b * bb + 2 + j] << 24) >> 24 : ((bytes[b * bb + 2 + (j % 16)] >> (j < 16 ? 0 : 4)) & 15) - 8;
        assert.equal(values[b * 32 + j], Math.fround(d * q));
      }
    }
    // close to the input: half a step plus the f16 rounding of the scale (Q8_0); a step where Q4_0 clamps 16 to 15
    // (where the scale overflows f16, ggml's blocks hold inf and NaN: not checked)
    for (let b = 0; b < x.length / 32; b++) {
      const block = Array.from(x.subarray(b * 32, b * 32 + 32));
      const step = Math.max(...block.map(Math.abs)) / (type === GgmlType.Q8_0 ? 127 : 8);
      const err = Math.max(...block.map((v, j) => Math.abs(v - values[b * 32 + j])));
      if (step > 1e-3 && step < 65504) assert.ok(err <= step * (type === GgmlType.Q8_0 ? 0.6 : 1.01), `block ${b}: error ${err} for a step of ${step}`);
    }
  }
});

test('Q/K rows go to llama.cpp\'s order (convert_hf_to_gguf permute) and back', () => {
  // 2 heads of 4 rows: GGUF row 2j+s of a head is HF row s·2+j → HF order [0 1 2 3 | 4 5 6 7] becomes [0 2 1 3 | 4 6 5 7]
  const rows = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(Array.from(permuteRows(rows, 1, 2, true)), [0, 2, 1, 3, 4, 6, 5, 7]);
  // head size 8: [0 4 1 5 2 6 3 7]
  assert.deepEqual(Array.from(permuteRows(Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 1, 1, true)), [0, 4, 1, 5, 2, 6, 3, 7]);
  const data = Uint8Array.from({ length: 12 * 6 }, (_, i) => i % 251);
  for (const heads of [1, 3, 6]) assert.deepEqual(permuteRows(permuteRows(data, 6, heads, true), 6, heads, false), data);
});

/** A packed matrix's values by the packed format's formulas (docs/quantization.md) (scale·q, scale·(q − 8), scale·q + min). */
function contractValues(p: PackedParts): Float32Array {
  const out = new Float32Array(p.rows * p.cols);
  const groups = Math.ceil(p.cols / p.spec.group), rowBytes = (p.cols / 32) * (p.spec.bits === 8 ? 32 : 16);
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      const g = r * groups + Math.floor(c / p.spec.group), b = Math.floor(c / 32), j = c % 32;
      const byte = p.quants[r * rowBytes + b * (p.spec.bits === 8 ? 32 : 16) + (p.spec.bits === 8 ? j : j % 16)];
      const q = p.spec.bits === 8 ? (p.spec.symmetric ? (byte << 24) >> 24 : byte) : j < 16 ? byte & 15 : byte >> 4;
      out[r * p.cols + c] = p.spec.symmetric ? p.scales[g] * (p.spec.bits === 8 ? q : q - 8) : p.scales[g] * q + p.mins![g];
    }
  }
  return out;
}

test('Q8_0/Q4_0/Q4_1 blocks split into packed matrices (contract 1) and join back byte for byte, meaning the values ggml dequantizes', () => {
  const x = QUANT_EDGE_VALUES().subarray(0, 32 * 8);
  const q41 = JSON.parse(readFileSync('test/goldens/gguf/kquants.json', 'utf8')).types.Q4_1.blocks_hex as string; // ggml's quantize_row_q4_1
  const cases: [GgmlType.Q8_0 | GgmlType.Q4_0 | GgmlType.Q4_1, Uint8Array, number][] = [
    [GgmlType.Q8_0, quantizeQ8_0(x), 4], [GgmlType.Q4_0, quantizeQ4_0(x), 4], [GgmlType.Q4_1, new Uint8Array(Buffer.from(q41, 'hex')), 0],
  ];
  for (const [type, bytes, given] of cases) {
    const rows = given || bytes.length / 20 / 2;
    const p = unpackBlocks(type, bytes, rows, 64);
    assert.deepEqual(p.spec, { bits: type === GgmlType.Q8_0 ? 8 : 4, group: 32, symmetric: type !== GgmlType.Q4_1 });
    assert.equal(p.scales.length, rows * 2);
    assert.equal(p.mins?.length, type === GgmlType.Q4_1 ? rows * 2 : undefined);
    assert.equal(p.quants.length, rows * 2 * (type === GgmlType.Q8_0 ? 32 : 16));
    assert.deepEqual(contractValues(p), dequantize(type, bytes, rows * 64), `${GgmlType[type]}: the packed matrix means ggml's values`);
    assert.deepEqual(packBlocks(p), { type, bytes }, `${GgmlType[type]}: joined back`);
    p.scales[3] = 0.1; // not representable in f16
    assert.equal(packBlocks(p), null);
  }
});

test('a group of 64 or a whole row repeats its scale (and min) in each of its blocks; rows not in blocks and 8-bit asymmetric quants have no block type', () => {
  const rows = 3, cols = 128;
  const quants = Uint8Array.from({ length: rows * cols }, (_, i) => (i * 37) % 256);
  const scales = Float32Array.from({ length: rows * 2 }, (_, i) => (i + 1) / 8 * (i % 2 ? -1 : 1));
  const mins = Float32Array.from({ length: rows * 2 }, (_, i) => -i / 4);
  const g64: PackedParts = { rows, cols, spec: { bits: 8, group: 64, symmetric: true }, quants, scales, mins: null };
  const joined = packBlocks(g64)!;
  assert.equal(joined.type, GgmlType.Q8_0);
  assert.deepEqual(dequantize(GgmlType.Q8_0, joined.bytes, rows * cols), contractValues(g64));
  const back = unpackBlocks(GgmlType.Q8_0, joined.bytes, rows, cols);
  assert.deepEqual(Array.from(back.scales), Array.from(scales).flatMap((s) => [s, s]));
  assert.deepEqual(back.quants, quants);
  const q4 = { rows, cols, quants: quants.subarray(0, rows * cols / 2) };
  const perRow: PackedParts = { ...q4, spec: { bits: 4, group: cols, symmetric: false }, scales: scales.subarray(0, rows), mins: mins.subarray(0, rows) };
  const j4 = packBlocks(perRow)!;
  assert.equal(j4.type, GgmlType.Q4_1);
  assert.deepEqual(dequantize(GgmlType.Q4_1, j4.bytes, rows * cols), contractValues(perRow));
  assert.equal(packBlocks({ ...perRow, spec: { bits: 4, group: cols, symmetric: true }, mins: null })!.type, GgmlType.Q4_0);
  assert.equal(blockTypeOf({ cols: 176, spec: { bits: 8, group: 32, symmetric: true } }), null, 'rows of 176 end in a partial block');
  assert.equal(blockTypeOf({ cols: 176, spec: { bits: 8, group: 176, symmetric: true } }), null);
  assert.equal(blockTypeOf({ cols: 128, spec: { bits: 8, group: 128, symmetric: false } }), null, 'ggml has no 8-bit type with a min');
  assert.equal(packBlocks({ ...g64, spec: { bits: 8, group: 64, symmetric: false }, mins: scales }), null);
});

test('llama3 RoPE scaling becomes rope_freqs and is read back to the same factors (Llama 3.1 8B, hf-tiny b\'s shape)', () => {
  for (const [theta, headDim, s] of [
    [500000, 128, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }],
    [500000, 8, { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 }],
    [500000, 64, { rope_type: 'llama3', factor: 32, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }],
  ] as const) {
    const c = { rope_theta: theta, head_dim: headDim, rope_scaling: s } as unknown as HfConfigFields;
    const f = ropeFreqFactors(c)!;
    assert.equal(f.length, headDim / 2);
    if (headDim === 128) assert.equal(f[0], 1, 'the highest frequency is kept');
    const r = llama3ScalingFromFactors(f, theta, headDim);
    assert.ok(!('error' in r), JSON.stringify(r));
    const again = ropeFreqFactors({ ...c, rope_scaling: r.scaling } as HfConfigFields)!;
    for (let i = 0; i < f.length; i++) assert.ok(Math.abs(again[i] - f[i]) <= 1e-6 * f[i], `factor ${i}: ${again[i]} vs ${f[i]}`);
    if (headDim === 128) assert.deepEqual(r.scaling, s, 'Llama 3.1\'s own parameters come back');
  }
  assert.match((llama3ScalingFromFactors(Float32Array.of(1, 0.5), 10000, 4) as { error: string }).error, /below 1/);
  assert.match((llama3ScalingFromFactors(Float32Array.of(1, 2, 3), 10000, 4) as { error: string }).error, /head_dim 4 needs 2/);
  assert.equal(shortestFloat32(Math.fround(1e-5)), 1e-5);
  assert.equal(shortestFloat32(Math.fround(1e-6)), 1e-6);
  assert.equal(shortestFloat32(500000), 500000);
});
