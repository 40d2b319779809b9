/**
 * GPTQ's solver (src/quant/gptq-solve.ts) against an independent PyTorch float64 implementation of the
 * paper's algorithm (test/goldens/quant/make_gptq.py), and the linear algebra under it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf } from '../src/runtime/tf.ts';
import { gptqQuantize, layerObjective } from '../src/quant/gptq-solve.ts';
import { inverseUpperCholesky } from '../src/quant/linalg.ts';
import { dequantize, getCode, quantizeRtn } from '../src/io/packed.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';

interface Case {
  name: string; rows: number; cols: number; bits: 4 | 8; group: number | 'in'; sym: boolean; blocksize: number; actorder: boolean;
  W: number[]; H: number[]; codes: number[]; scales: number[]; mins: number[] | null; Q: number[]; loss: number;
}
const golden = JSON.parse(readFileSync(new URL('./goldens/quant/gptq.json', import.meta.url), 'utf8')) as { cases: Case[] };

test('GPTQ equals the PyTorch reference: every code, scale and quantized value, and the loss', () => {
  const before = tf.memory().numTensors;
  for (const c of golden.cases) {
    const spec = { bits: c.bits, group: c.group === 'in' ? c.cols : c.group, symmetric: c.sym };
    const r = gptqQuantize(Float32Array.from(c.W), c.rows, c.cols, Float32Array.from(c.H), spec, { blockSize: c.blocksize, actOrder: c.actorder, what: c.name });
    const codes = Array.from({ length: c.rows * c.cols }, (_, i) => getCode(r.packed, Math.floor(i / c.cols), i % c.cols));
    assert.deepEqual(codes, c.codes, `${c.name}: codes`);
    assert.deepEqual(Array.from(r.packed.scales), c.scales.map(Math.fround), `${c.name}: scales`);
    if (c.mins) assert.deepEqual(Array.from(r.packed.mins!), c.mins.map(Math.fround), `${c.name}: mins`);
    assert.deepEqual(Array.from(r.dequantized, (x) => x + 0), c.Q.map((x) => Math.fround(x) + 0), `${c.name}: Q`);
    assert.ok(Math.abs(r.loss - c.loss) <= 1e-9 * Math.max(1, c.loss), `${c.name}: loss ${r.loss} vs ${c.loss}`);
  }
  assert.equal(tf.memory().numTensors, before);
});

test('GPTQ lowers the layer objective ‖WX − QX‖² below round-to-nearest on the same grid', () => {
  for (const c of golden.cases) {
    const spec = { bits: c.bits, group: c.group === 'in' ? c.cols : c.group, symmetric: c.sym };
    const H = Float32Array.from(c.H);
    const g = gptqQuantize(Float32Array.from(c.W), c.rows, c.cols, H, spec, { blockSize: c.blocksize, actOrder: c.actorder });
    const rtn = dequantize(quantizeRtn(Float32Array.from(c.W), c.rows, c.cols, spec));
    const W = Float32Array.from(c.W);
    assert.ok(layerObjective(W, g.dequantized, c.rows, c.cols, H) < layerObjective(W, rtn, c.rows, c.cols, H), c.name);
  }
});

test('the upper Cholesky factor of H⁻¹ satisfies UᵀU·H = I on a blocked size (products in float32 beyond 2^21 multiply-adds)', () => {
  for (const n of [70, 200, 300]) {
    const rand = mulberry32(n);
    const X = Array.from({ length: n * 2 * n }, () => normal(rand));
    const H = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < 2 * n; p++) s += X[i * 2 * n + p] * X[j * 2 * n + p];
      H[i * n + j] = s / n + (i === j ? 0.01 : 0);
    }
    const U = Float64Array.from(H);
    inverseUpperCholesky(U, n);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < i; j++) assert.equal(U[i * n + j], 0, 'U is upper triangular');
      assert.ok(U[i * n + i] > 0);
    }
    // (UᵀU)·H − I, column by column
    const UH = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let p = i; p < n; p++) {
      const u = U[i * n + p];
      for (let j = 0; j < n; j++) UH[i * n + j] += u * H[p * n + j];
    }
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p <= Math.min(i, n - 1); p++) s += U[p * n + i] * UH[p * n + j];
      worst = Math.max(worst, Math.abs(s - (i === j ? 1 : 0)));
    }
    assert.ok(worst < (n * n * n < 1 << 21 ? 1e-10 : 1e-4), `n=${n}: |UᵀUH − I| = ${worst}`);
  }
});
