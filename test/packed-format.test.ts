/**
 * The packed weight format (src/io/packed.ts, docs/quantization.md) against goldens computed
 * independently in numpy (test/goldens/quant/make_packed.py): quants byte for byte, scales, mins and
 * dequantized values exactly, and the symmetric group-32 rows decoded by the gguf package as ggml's
 * Q8_0/Q4_0 blocks to the same values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fromFloat32, toFloat32 } from '../src/io/safetensors.ts';
import {
  allocPacked, dequantize, getCode, groupCount, quantizeRtn, rowBytes, roundToHalf, setCode, specFromShapes, type PackedSpec,
} from '../src/io/packed.ts';

/** float32 values with −0 read as 0 (numpy keeps the sign of a zero times a negative scale). */
const f32 = (v: ArrayLike<number>) => Array.from(v, (x) => Math.fround(x) + 0);

interface Case {
  matrix: string; bits: 4 | 8; group: number | 'in'; symmetric: boolean;
  quants_hex: string; scales: number[]; mins: number[] | null; dequantized: number[]; gguf_dequantized?: number[];
}
const golden = JSON.parse(readFileSync(new URL('./goldens/quant/packed.json', import.meta.url), 'utf8')) as {
  matrices: Record<string, { shape: [number, number]; values: number[] }>; cases: Case[];
};

test('RTN packing matches the numpy reference byte for byte, and ggml decodes symmetric group-32 rows to the same values', () => {
  let ggml = 0;
  for (const c of golden.cases) {
    const { shape: [rows, cols], values } = golden.matrices[c.matrix];
    const spec: PackedSpec = { bits: c.bits, group: c.group === 'in' ? cols : c.group, symmetric: c.symmetric };
    const label = `${c.matrix} ${c.bits}-bit group ${c.group} ${c.symmetric ? 'sym' : 'asym'}`;
    const pm = quantizeRtn(Float32Array.from(values), rows, cols, spec);
    assert.equal(Buffer.from(pm.quants).toString('hex'), c.quants_hex, `${label}: quants`);
    assert.deepEqual(f32(pm.scales), f32(c.scales), `${label}: scales`);
    if (c.mins) assert.deepEqual(f32(pm.mins!), f32(c.mins), `${label}: mins`);
    else assert.equal(pm.mins, null);
    const deq = dequantize(pm);
    assert.deepEqual(f32(deq), f32(c.dequantized), `${label}: dequantized`);
    if (c.gguf_dequantized) {
      assert.deepEqual(f32(deq), f32(c.gguf_dequantized), `${label}: as ggml blocks`);
      ggml++;
    }
  }
  assert.equal(ggml, 2, 'the 8-bit and 4-bit symmetric group-32 cases were decoded by gguf');
});

test('scales are float16 values: roundToHalf agrees with the F16 storage rounding', () => {
  const values = [0, 1, -1, 65504, 65519, 1e-8, 6e-8, 5.96e-8, 2.98e-8, 6.1e-5, 6.097e-5, 0.1, 1 / 3, 2 ** -14, 2 ** -24, 3 * 2 ** -25, 2049, 2051, 4097];
  for (let i = 0; i < 2000; i++) values.push((Math.random() - 0.5) * 10 ** (Math.random() * 12 - 8));
  const f32 = Float32Array.from(values);
  const viaStorage = toFloat32(fromFloat32(f32, 'F16'), 'F16');
  f32.forEach((v, i) => assert.equal(Math.fround(roundToHalf(v)), viaStorage[i], `roundToHalf(${v})`));
  assert.equal(roundToHalf(65520), Infinity);
});

test('codes round-trip through every layout, including partial last blocks', () => {
  for (const cols of [32, 80, 176]) {
    for (const bits of [4, 8] as const) {
      for (const symmetric of [true, false]) {
        for (const group of [32, 64, 128, cols]) {
          const spec = { bits, group, symmetric };
          const pm = allocPacked(3, cols, spec);
          assert.equal(pm.quants.length, 3 * rowBytes(cols, bits));
          const lo = bits === 8 && symmetric ? -127 : 0, hi = bits === 8 ? (symmetric ? 127 : 255) : 15;
          const codes = Array.from({ length: 3 * cols }, (_, i) => lo + ((i * 37 + 11) % (hi - lo + 1)));
          codes.forEach((q, i) => setCode(pm, Math.floor(i / cols), i % cols, q));
          codes.forEach((q, i) => assert.equal(getCode(pm, Math.floor(i / cols), i % cols), q));
          // the padding past `cols` in the last block stays zero
          const rb = rowBytes(cols, bits), n = cols % 32, last = Math.floor(cols / 32);
          for (let r = 0; r < 3 && n; r++) {
            if (bits === 8) assert.ok(pm.quants.subarray(r * rb + cols, (r + 1) * rb).every((b) => b === 0), 'unused bytes are zero');
            else {
              for (let j = 0; j < 16; j++) {
                const byte = pm.quants[r * rb + last * 16 + j];
                if (j >= n) assert.equal(byte & 15, 0, 'unused low nibble is zero');
                if (j + 16 >= n) assert.equal(byte >> 4, 0, 'unused high nibble is zero');
              }
            }
          }
          const found = specFromShapes('w', 3, cols, [3, rb], bits === 8 && symmetric, [3, groupCount(cols, group)], !symmetric);
          assert.equal(found.bits, bits);
          assert.equal(found.symmetric, symmetric);
          assert.equal(groupCount(cols, found.group), groupCount(cols, group), 'an equivalent grouping');
        }
      }
    }
  }
  assert.throws(() => specFromShapes('w', 3, 64, [3, 24], false, [3, 2], false), /fit neither/);
  assert.throws(() => specFromShapes('w', 3, 64, [3, 64], false, [3, 2], false), /I8/);
  assert.throws(() => specFromShapes('w', 3, 64, [3, 32], false, [3, 3], false), /group size/);
});
