/**
 * GPTQ's solver (src/quant/gptq-solve.ts) against an independent PyTorch float64 implementation of the
 * paper's algorithm (test/goldens/quant/make_gptq.py), and the linear algebra under it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { tf } from '../src/runtime/tf.ts';
import { gptqQuantize, layerObjective } from '../src/quant/gptq-solve.ts';
import { gemm, hessianInverseFactor, inverseUpperCholesky, restoreSymmetric, view } from '../src/quant/linalg.ts';
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

test('large products are made a tile at a time: gemm with small tiles, every transpose, equals float64 products', () => {
  const before = tf.memory().numTensors;
  const rand = mulberry32(7);
  const [m, n, k] = [70, 90, 1200]; // 7.6M multiply-adds: through tfjs, in 64-wide tiles when a tile holds 4096 values
  const A = Float64Array.from({ length: m * k }, () => normal(rand)), B = Float64Array.from({ length: k * n }, () => normal(rand));
  const want = new Float64Array(m * n), scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) {
    want[i * n + j] += A[i * k + p] * B[p * n + j];
    scale[i * n + j] += Math.abs(A[i * k + p] * B[p * n + j]);
  }
  const transpose = (x: Float64Array, r: number, c: number) => Float64Array.from({ length: r * c }, (_, i) => x[(i % r) * c + Math.floor(i / r)]);
  const At = transpose(A, m, k), Bt = transpose(B, k, n);
  for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
    for (const tile of [4096, 1 << 22]) {
      const C = Float64Array.from({ length: m * n }, (_, i) => i); // added to
      gemm(-2, ta ? view(At, k, m) : view(A, m, k), ta, tb ? view(Bt, n, k) : view(B, k, n), tb, view(C, m, n), tile);
      // float32 products: within a few float32 roundings of Σ|a·b|
      let worst = 0;
      for (let i = 0; i < m * n; i++) worst = Math.max(worst, Math.abs(C[i] - (i - 2 * want[i])) / (2 * scale[i]));
      assert.ok(worst < 2 ** -20, `${ta ? 'Aᵀ' : 'A'}·${tb ? 'Bᵀ' : 'B'}, tile ${tile}: error ${worst} of Σ|a·b|`);
    }
  }
  assert.equal(tf.memory().numTensors, before);
});

test('a float64 Hessian is GPTQ\'s workspace: the same result as from a copy, and H as it was afterwards, bit for bit (blocked size, act-order, an input that never varies, more dampening needed)', () => {
  const before = tf.memory().numTensors;
  const n = 300, rows = 24, rand = mulberry32(3);
  const X = Array.from({ length: n * n }, () => normal(rand));
  for (let t = 0; t < n; t++) X[17 * n + t] = 0; // input 17 never varies
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) {
    let s = 0;
    for (let t = 0; t < n / 3; t++) s += X[i * n + t] * X[j * n + t]; // rank n/3: positive definite only once dampened
    H[i * n + j] = H[j * n + i] = Math.fround((2 * s) / n); // float32 values, so that a float32 copy holds the same H
  }
  const W = Float32Array.from({ length: rows * n }, () => normal(rand) / 10);
  const spec = { bits: 4 as const, group: 32, symmetric: false };
  for (const actOrder of [false, true]) {
    for (const dampening of [0.01, 1e-9]) { // 1e-9 of the mean diagonal is not enough: dampened again ×10 until it is
      const h = Float64Array.from(H);
      const inPlace = gptqQuantize(W, rows, n, h, spec, { actOrder, dampening });
      const copied = gptqQuantize(W, rows, n, Float32Array.from(H), spec, { actOrder, dampening });
      assert.ok(h.every((v, i) => Object.is(v, H[i])), `act-order ${actOrder}, dampening ${dampening}: H restored`);
      assert.equal(inPlace.dead, 1);
      if (dampening < 0.01) assert.ok(inPlace.dampening > dampening, 'dampened more');
      assert.deepEqual(inPlace.packed, copied.packed);
      assert.equal(inPlace.loss, copied.loss);
      if (actOrder || dampening < 0.01) continue;
      const objective = layerObjective(W, inPlace.dequantized, rows, n, h);
      assert.ok(objective < layerObjective(W, dequantize(quantizeRtn(W, rows, n, spec)), rows, n, h));
      const tiles = layerObjective(W, inPlace.dequantized, rows, n, h, 3 * n); // three rows of H per product
      assert.ok(Math.abs(tiles - objective) <= 1e-5 * objective, `the objective does not depend on its tiles: ${tiles} vs ${objective}`);
    }
  }
  assert.equal(tf.memory().numTensors, before);
});

test('the factorisation recurses through triangular products (n = 640) and keeps H\'s strict lower triangle: UᵀU·(H + damp·I) = I on random vectors', () => {
  const before = tf.memory().numTensors;
  const n = 640, rand = mulberry32(640);
  const X = Array.from({ length: n * 64 }, () => normal(rand));
  const H = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) {
    let s = 0;
    for (let t = 0; t < 64; t++) s += X[i * 64 + t] * X[j * 64 + t];
    H[i * n + j] = H[j * n + i] = s / 64 + (i === j ? 0.5 : 0);
  }
  const a = Float64Array.from(H);
  const { diagonal, damp } = hessianInverseFactor(a, n, 0.01, 'test');
  for (let i = 0; i < n; i++) {
    assert.equal(diagonal[i], H[i * n + i]);
    for (let j = 0; j < i; j++) assert.equal(a[i * n + j], H[i * n + j], 'the strict lower triangle is H\'s');
  }
  for (let probe = 0; probe < 3; probe++) {
    const x = Float64Array.from({ length: n }, () => normal(rand));
    const hx = new Float64Array(n), ux = new Float64Array(n), y = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) hx[i] += (H[i * n + j] + (i === j ? damp : 0)) * x[j];
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) ux[i] += a[i * n + j] * hx[j]; // U·(H_d·x), U upper
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) y[i] += a[j * n + i] * ux[j]; // Uᵀ·(...)
    const worst = Math.max(...x.map((v, i) => Math.abs(y[i] - v)));
    assert.ok(worst < 1e-4, `probe ${probe}: |UᵀU·H_d·x − x| = ${worst}`);
  }
  restoreSymmetric(a, n, diagonal);
  assert.ok(a.every((v, i) => v === H[i]), 'restoreSymmetric gives H back');
  assert.equal(tf.memory().numTensors, before);
});
