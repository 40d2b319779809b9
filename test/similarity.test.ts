import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { UserError } from '../src/runtime/errors.ts';
import { mulberry32, normal } from '../src/runtime/random.ts';
import {
  accumulateGram, degenerateKernelWarning, fusionRatio, getSimilarityMetric, gramFromActivations, similarityFromGram,
} from '../src/compress/similarity/index.ts';
import { calibrate } from '../src/compress/calibration.ts';
import { calibrationPrompts } from '../src/pipeline/analyse.ts';
import { convertLlama2c } from '../src/convert/llama2c.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { diffusionOperator, distancesFromGram } from '../src/compress/similarity/diffusion.ts';
import { symmetricEigenDense, topEigenpairs } from '../src/compress/similarity/eigen.ts';
import { digamma, knnEntropy, ksgMutualInformation, sortColumn } from '../src/compress/similarity/knn-mi.ts';
import { npibMatrix } from '../src/compress/similarity/npib.ts';
import { midRanks, midRanksColumn } from '../src/compress/similarity/rank.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

interface Golden {
  activations: number[][][];
  eigenvalues: number[][];
  embeddings: number[][][];
  rank_embeddings: number[][][];
  entropy: number[];
  npib_deterministic: number[][];
  npib_sklearn_random_state0: number[][];
  fusion_ratio: Record<string, number>;
  npib_exact: number[][];
  entropy_exact: number[];
  fusion_ratio_exact: Record<string, number>;
}

const column = (rows: number[][], c: number) => rows.map((r) => r[c]);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>, sign = 1) => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - sign * b[i]));
  return m;
};
/** Sign s making s·a closest to b. */
const alignSign = (a: number[], b: number[]) => (maxDiff(a, b, 1) <= maxDiff(a, b, -1) ? 1 : -1);

test('golden: similarity stage matches similarity_reference.py and npib_exact.py', { skip: NO_SHARED }, () => {
  const g: Golden = JSON.parse(readFileSync(join(SHARED!, 'fixtures/similarity/npib-golden.json'), 'utf8'));
  const n = g.activations[0].length;
  const grams = g.activations.map((x) => gramFromActivations(x));
  const r = similarityFromGram(grams, n);
  let embErr = 0, eigErr = 0;
  const flips = r.embeddings.map((e, l) => [0, 1].map((c) => {
    const s = alignSign(column(e, c), column(g.embeddings[l], c));
    embErr = Math.max(embErr, maxDiff(column(g.embeddings[l], c), column(e, c), s));
    return s;
  }));
  r.eigenvalues.forEach((w, l) => { eigErr = Math.max(eigErr, maxDiff(w, g.eigenvalues[l])); });
  assert.ok(embErr <= 1e-4, `embedding (up to sign) max error ${embErr}`);
  assert.ok(eigErr <= 1e-10, `eigenvalue max error ${eigErr}`);
  assert.ok(flips.flat().includes(-1), 'the stage orients some columns opposite to LAPACK: the sign-free check below bites');
  assert.deepEqual(r.undefinedPairs, []);

  // The exact estimator: on ranks, ties resolved exactly, so the stage's own column signs give the spec's values.
  const tol = 1e-9;
  let npibErr = 0, fusionErr = 0;
  r.npib.forEach((row, i) => row.forEach((v, j) => {
    assert.equal(typeof v, 'number');
    npibErr = Math.max(npibErr, Math.abs(v! - g.npib_exact[i][j]));
  }));
  for (const [key, want] of Object.entries(g.fusion_ratio_exact)) {
    const [i, j] = key.split(',').map(Number);
    fusionErr = Math.max(fusionErr, Math.abs(fusionRatio(r.npib, i, j) - want));
  }
  assert.ok(npibErr <= tol, `npib max error ${npibErr}`);
  assert.ok(fusionErr <= tol, `fusion ratio max error ${fusionErr}`);
  assert.ok(maxDiff(r.entropy, g.entropy_exact) <= tol, `entropy max error ${maxDiff(r.entropy, g.entropy_exact)}`);
  // The reference's ranks of its own embeddings are ours up to the mirror r -> n - 1 - r of a flipped column.
  r.rankEmbeddings.forEach((e, l) => [0, 1].forEach((c) => {
    const want = column(g.rank_embeddings[l], c).map((v) => (flips[l][c] > 0 ? v : (n - 1) / n - v));
    assert.ok(maxDiff(column(e, c), want) <= 1e-12, `rank embedding ${l}:${c}`);
  }));
  // The float versions (ties broken by rounding; sklearn's random noise) are not the spec: they differ.
  let floatGap = 0, sklearnGap = 0;
  r.npib.forEach((row, i) => row.forEach((v, j) => {
    floatGap = Math.max(floatGap, Math.abs(v! - g.npib_deterministic[i][j]));
    sklearnGap = Math.max(sklearnGap, Math.abs(v! - g.npib_sklearn_random_state0[i][j]));
  }));
  assert.ok(floatGap > 1e-3 && sklearnGap > 1e-2, `gaps ${floatGap} ${sklearnGap}`);
});

/** NPIB of embeddings with the columns listed in `flip` negated. */
function npibOfFlipped(embeddings: number[][][], flip: (l: number, c: number) => boolean) {
  const flipped = embeddings.map((e, l) => e.map((row) => row.map((v, c) => (flip(l, c) ? -v : v))));
  return npibMatrix(flipped.map(midRanks), { kMi: 5, kEntropy: 50 });
}

test('NPIB is sign-invariant: flipping any embedding column changes no bit (golden embeddings)', { skip: NO_SHARED }, () => {
  const g: Golden = JSON.parse(readFileSync(join(SHARED!, 'fixtures/similarity/npib-golden.json'), 'utf8'));
  const base = npibOfFlipped(g.embeddings, () => false);
  assert.ok(maxDiff(base.npib.flat() as number[], g.npib_exact.flat()) <= 1e-9);
  const rand = mulberry32(4);
  for (let trial = 0; trial < 3; trial++) {
    const mask = g.embeddings.map(() => [rand() < 0.5, rand() < 0.5]);
    assert.deepStrictEqual(npibOfFlipped(g.embeddings, (l, c) => mask[l][c]), base); // Object.is on every number
  }
});

test('NPIB is sign-invariant on synthetic embeddings, tied values included', () => {
  const rand = mulberry32(8);
  const n = 60;
  const layers = Array.from({ length: 4 }, (_, l) => Array.from({ length: n }, () => [normal(rand), normal(rand)].map((v) => v * (l + 1))));
  // duplicate samples (identical prompts give identical rows) and a column with many exact ties
  for (let i = 0; i < 6; i++) layers.forEach((e) => { e[n - 1 - i] = [...e[i]]; });
  layers[2].forEach((row, i) => { row[1] = Math.round(row[1]) + (i % 3 === 0 ? 0.5 : 0); });
  const base = npibOfFlipped(layers, () => false);
  for (let l = 0; l < layers.length; l++) {
    for (let c = 0; c < 2; c++) assert.deepStrictEqual(npibOfFlipped(layers, (a, b) => a === l && b === c), base, `flip ${l}:${c}`);
  }
  assert.deepStrictEqual(npibOfFlipped(layers, () => true), base);
  // a rank reflection is exactly the mirror, ties included (stable ordinal ranks are not: they keep sample order)
  const col = [3, 1, 3, 2, 1, 1];
  assert.deepEqual(Array.from(midRanksColumn(col.map((v) => -v))), Array.from(midRanksColumn(col), (r) => col.length - 1 - r));
});

test('golden: Lanczos gives the dense eigenpairs of a reference diffusion operator', { skip: NO_SHARED }, () => {
  const g: Golden = JSON.parse(readFileSync(join(SHARED!, 'fixtures/similarity/npib-golden.json'), 'utf8'));
  const n = g.activations[0].length;
  const A = diffusionOperator(distancesFromGram(gramFromActivations(g.activations[0]), n), n, 8, 0.5);
  const dense = topEigenpairs(A, n, 3, { method: 'dense' });
  const lanczos = topEigenpairs(A, n, 3, { method: 'lanczos' });
  assert.match(lanczos.method, /^lanczos/);
  assert.ok(maxDiff(lanczos.values, g.eigenvalues[0]) <= 1e-12);
  for (let c = 0; c < 3; c++) {
    const s = alignSign(Array.from(lanczos.vectors[c]), Array.from(dense.vectors[c]));
    assert.ok(maxDiff(dense.vectors[c], lanczos.vectors[c], s) <= 1e-8, `vector ${c}`);
  }
});

/** Independent reference: cyclic Jacobi rotations (slow, exact enough for small n). */
function jacobiEigenvalues(A: Float64Array, n: number): number[] {
  const a = Float64Array.from(A);
  for (let sweep = 0; sweep < 50; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        if (apq === 0) continue;
        const theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
      }
    }
  }
  return Array.from({ length: n }, (_, i) => a[i * n + i]);
}

function randomSymmetric(n: number, seed: number): Float64Array {
  const rand = mulberry32(seed);
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) A[i * n + j] = A[j * n + i] = normal(rand);
  return A;
}

test('eigen: dense solver agrees with Jacobi on a random symmetric matrix', () => {
  const n = 40;
  const A = randomSymmetric(n, 5);
  const want = jacobiEigenvalues(A, n).sort((x, y) => x - y);
  const got = Array.from(symmetricEigenDense(A, n).values).sort((x, y) => x - y);
  assert.ok(maxDiff(got, want) <= 1e-12 * 20);
});

test('eigen: Lanczos matches the dense solver on a random symmetric matrix, n = 300', () => {
  const n = 300;
  const A = randomSymmetric(n, 7);
  const dense = topEigenpairs(A, n, 3, { method: 'dense' });
  const lanczos = topEigenpairs(A, n, 3, { method: 'lanczos' });
  const scale = Math.abs(dense.values[0]);
  assert.ok(maxDiff(lanczos.values, dense.values) <= 1e-10 * scale, `${lanczos.values} vs ${dense.values}`);
  assert.ok(dense.residual <= 1e-12 && lanczos.residual <= 1e-10, `residuals ${dense.residual} ${lanczos.residual}`);
  for (let c = 0; c < 3; c++) {
    const s = alignSign(Array.from(lanczos.vectors[c]), Array.from(dense.vectors[c]));
    assert.ok(maxDiff(dense.vectors[c], lanczos.vectors[c], s) <= 1e-7, `vector ${c}`);
  }
});

test('eigen: known spectrum, ordered by |eigenvalue| (negative ones included)', () => {
  const n = 200;
  const rand = mulberry32(11);
  const spectrum = Array.from({ length: n }, () => 6 * rand() - 3);
  spectrum[17] = -5; spectrum[90] = 4.5; spectrum[150] = -4.2;
  // Q = product of 3 random Householder reflections; A = Q diag(λ) Qᵀ, Q's columns the eigenvectors
  const Q = new Float64Array(n * n);
  for (let i = 0; i < n; i++) Q[i * n + i] = 1;
  for (let h = 0; h < 3; h++) {
    const v = Array.from({ length: n }, () => normal(rand));
    const vv = v.reduce((s, x) => s + x * x, 0);
    for (let j = 0; j < n; j++) {
      let dotv = 0;
      for (let i = 0; i < n; i++) dotv += v[i] * Q[i * n + j];
      for (let i = 0; i < n; i++) Q[i * n + j] -= (2 / vv) * v[i] * dotv;
    }
  }
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += Q[i * n + k] * spectrum[k] * Q[j * n + k];
    A[i * n + j] = s;
  }
  for (const method of ['dense', 'lanczos'] as const) {
    const r = topEigenpairs(A, n, 3, { method });
    assert.ok(maxDiff(r.values, [-5, 4.5, -4.2]) <= 1e-12, `${method}: ${r.values}`);
    [17, 90, 150].forEach((k, c) => {
      const want = Array.from({ length: n }, (_, i) => Q[i * n + k]);
      const s = alignSign(Array.from(r.vectors[c]), want);
      assert.ok(maxDiff(want, r.vectors[c], s) <= 1e-9, `${method} vector ${c}`);
    });
  }
});

test('digamma and rank normalisation', () => {
  assert.ok(Math.abs(digamma(1) + 0.5772156649015329) < 1e-15);
  assert.ok(Math.abs(digamma(0.5) + 1.9635100260214235) < 1e-14);
  assert.ok(Math.abs(digamma(10) - 2.251752589066721) < 1e-14);
  assert.ok(Math.abs(digamma(100) - 4.600161852738088) < 1e-14);
  assert.ok(Math.abs(digamma(1234.5) - 7.1180162318279985) < 1e-13);
  assert.ok(Math.abs(digamma(-0.5) - 0.03648997397857651) < 1e-14);
  // mid-ranks: tied values share the mean of their positions
  assert.deepEqual(Array.from(midRanksColumn([3, 1, 3, 2])), [2.5, 0, 2.5, 1]);
  assert.deepEqual(Array.from(midRanksColumn([0.2, 0.1, 0.3])), [1, 0, 2]);
});

/** The reference's KSG written out over full n×n distance matrices. */
function bruteKsg(x: Float64Array, y: Float64Array, k: number): number {
  const n = x.length;
  let sx = 0, sy = 0;
  for (let i = 0; i < n; i++) {
    const dz: number[] = [];
    for (let j = 0; j < n; j++) if (j !== i) dz.push(Math.max(Math.abs(x[i] - x[j]), Math.abs(y[i] - y[j])));
    dz.sort((a, b) => a - b);
    const eps = dz[k - 1];
    let nx = 0, ny = 0;
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      if (Math.abs(x[i] - x[j]) < eps) nx++;
      if (Math.abs(y[i] - y[j]) < eps) ny++;
    }
    sx += digamma(nx + 1);
    sy += digamma(ny + 1);
  }
  return Math.max(0, digamma(n) + digamma(k) - sx / n - sy / n);
}

test('KSG: sorted-window search gives the brute-force estimate exactly, ties included', () => {
  const rand = mulberry32(3);
  const psi = Float64Array.from({ length: 200 }, (_, m) => digamma(m));
  for (const n of [30, 150]) {
    const a = Array.from({ length: n }, () => normal(rand));
    const b = a.map((v) => 0.6 * v + normal(rand));
    for (const [u, v] of [[a, b], [midRanksColumn(a), midRanksColumn(b)], [midRanksColumn(a), midRanksColumn(a.map((t) => -t))]]) {
      const x = Float64Array.from(u), y = Float64Array.from(v);
      for (const k of [1, 5]) {
        const fast = ksgMutualInformation(sortColumn(x), sortColumn(y), k, psi);
        assert.equal(fast, bruteKsg(x, y, k), `n=${n} k=${k}`);
      }
    }
  }
});

test('undefined NPIB is reported with its reason, never NaN', () => {
  const n = 20;
  const diagonal = Array.from({ length: n }, (_, i) => [i, i]); // k-NN entropy > 0 with k = n − 1
  const scrambled = Array.from({ length: n }, (_, i) => [i, (7 * i + 3) % n]); // entropy < 0
  const duplicated = Array.from({ length: n }, () => [9.5, 9.5]); // r_k = 0: entropy −∞
  const r = npibMatrix([diagonal, scrambled, duplicated], { kMi: 5, kEntropy: 50 });
  assert.ok(r.entropy[0] > 0 && r.entropy[1] < 0 && r.entropy[2] === -Infinity, `entropies ${r.entropy}`);
  assert.equal(typeof r.npib[0][0], 'number');
  assert.equal(typeof r.npib[1][1], 'number');
  assert.equal(r.npib[0][1], null);
  assert.equal(r.npib[1][0], null);
  assert.ok(r.npib.flat().every((v) => v === null || Number.isFinite(v)));
  const pairs = r.undefinedPairs.map((p) => `${p.i},${p.j}`);
  assert.deepEqual(pairs, ['0,1', '0,2', '1,2', '2,2']);
  assert.match(r.undefinedPairs[0].reason, /entropy of layer 0 is 0\.\d+ and of layer 1 is -0\.\d+.*<= 0/);
  assert.match(r.undefinedPairs[3].reason, /entropy of layer 2 is -Infinity \(duplicate/);
  assert.match(JSON.stringify(r.npib), /null/);
  assert.throws(() => fusionRatio(r.npib, 0, 1), (e: unknown) => e instanceof UserError && /layer 0 with layer\(s\) 1, 2/.test(e.message));
});

test('fusion ratio formula and knn entropy clamp', () => {
  const S = [[2, 1], [1, 3]];
  const r = 1.5 / (1.5 + 2);
  assert.ok(Math.abs(fusionRatio(S, 0, 1) - Math.exp(r) / (1 + Math.exp(r))) < 1e-15);
  assert.ok(Math.abs(fusionRatio(S, 0, 1, 2) - Math.exp(2 * r) / (1 + Math.exp(2 * r))) < 1e-15);
  assert.equal(knnEntropy([[0, 0], [1, 0], [0, 2]], 50).k, 2);
});

test('options are checked, metrics are registered', () => {
  const G = [gramFromActivations([[1, 0], [0, 1], [1, 1], [2, 0], [0, 3], [1, 2], [3, 1]])];
  assert.throws(() => similarityFromGram(G, 7, { sigma: -1 }), UserError);
  assert.throws(() => similarityFromGram(G, 7, { kMi: 7 }), UserError);
  assert.throws(() => getSimilarityMetric('nope'), UserError);
  // linear CKA: invariant to rotation and scale of the representation
  const rand = mulberry32(9);
  const X = Array.from({ length: 12 }, () => [normal(rand), normal(rand), normal(rand)]);
  const c = Math.cos(0.7), s = Math.sin(0.7);
  const Y = X.map(([a, b, z]) => [2 * (c * a - s * b), 2 * (s * a + c * b), 2 * z]);
  const Z = X.map(([a]) => [a, 0, 0]);
  const cka = getSimilarityMetric('cka').compute([gramFromActivations(X), gramFromActivations(Y), gramFromActivations(Z)], 12).matrix;
  assert.ok(Math.abs(cka[0][1]! - 1) < 1e-12);
  assert.ok(cka[0][2]! < 0.9);
  const npib = getSimilarityMetric('npib').compute([gramFromActivations(X), gramFromActivations(Y)], 12).matrix;
  assert.equal(npib.length, 2);
});

test('accumulateGram: float32 chunks summed in float64, no leaked tensors', async () => {
  await initBackend('wasm');
  const rand = mulberry32(21);
  const n = 24, f = 300;
  const rows = Array.from({ length: n }, () => Float32Array.from({ length: f }, () => normal(rand)));
  const want = gramFromActivations(rows);
  const G = new Float64Array(n * n);
  const before = tf.memory().numTensors;
  for (const [lo, hi] of [[0, 100], [100, 250], [250, 300]]) {
    const chunk = tf.tensor2d(rows.map((r) => Array.from(r.subarray(lo, hi)))); // [n, hi - lo]
    accumulateGram(G, chunk);
    chunk.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
  const scale = Math.max(...want.map(Math.abs));
  assert.ok(maxDiff(G, want) <= 1e-5 * scale, `max error ${maxDiff(G, want)} (scale ${scale})`);
  const wrong = tf.zeros([3, 2]) as tf.Tensor2D;
  assert.throws(() => accumulateGram(new Float64Array(4), wrong));
  wrong.dispose();
});

test('bench: `npm run bench -- similarity` runs on tiny sizes and prints one row per size', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/bench.ts', 'similarity', '--sizes', '16,24', '--hidden', '32', '--layers', '3', '--no-python', '--backend', 'wasm'],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => /^\s+\d+\s/.test(l)).map((l) => l.trim().split(/\s+/));
  assert.deepEqual(rows.map((c) => c[0]), ['16', '24']);
  for (const c of rows) {
    const [gram, embed, npib, total] = c.slice(1, 5).map(Number);
    assert.ok(total > 0 && Math.abs(total - (gram + embed + npib)) <= 0.02, `total ${total} is the sum of the stages`);
    assert.equal(c[5], 'skipped');
  }
});

test('kernel diagnostics: σ = 8 on activations scaled by 100 is flagged degenerate; --sigma auto is scale-invariant', () => {
  const rand = mulberry32(31);
  const n = 40, h = 64, L = 3;
  const base = Array.from({ length: n }, () => Array.from({ length: h }, () => 3 * normal(rand)));
  const layers = Array.from({ length: L }, (_, l) => base.map((row) => row.map((v) => v + l * normal(rand))));
  const grams = (scale: number) => layers.map((x) => gramFromActivations(x.map((r) => r.map((v) => v * scale))));
  const paper = similarityFromGram(grams(1), n);
  const scaled = similarityFromGram(grams(100), n);
  for (const k of paper.kernel) {
    assert.equal(k.sigma, 8);
    assert.equal(k.degenerate, null, 'distances of about 34 suit σ = 8');
    assert.ok(k.offDiagonal.mean > 0.05 && k.offDiagonal.mean < 0.9 && k.spectralGap > 1e-3, JSON.stringify(k));
    assert.ok(k.medianDistance > 25 && k.medianDistance < 50, `median distance ${k.medianDistance}`);
  }
  for (const k of scaled.kernel) {
    assert.ok(k.offDiagonal.max < 1e-6, `off-diagonal ${JSON.stringify(k.offDiagonal)}`);
    assert.match(k.degenerate ?? '', /nearly the identity/);
  }
  const warning = degenerateKernelWarning(scaled.kernel)!;
  assert.match(warning, /degenerate in 3 of 3 layers \(0, 1, 2\).*--sigma auto/);
  assert.ok(!warning.includes('\n'));
  assert.equal(degenerateKernelWarning(paper.kernel), null);
  // auto: σ = the median distance, so the kernel and everything after it ignore the scale
  const auto = similarityFromGram(grams(1), n, { sigma: 'auto' });
  const autoScaled = similarityFromGram(grams(100), n, { sigma: 'auto' });
  auto.kernel.forEach((k, l) => {
    assert.equal(k.sigma, k.medianDistance);
    assert.ok(Math.abs(autoScaled.kernel[l].sigma / k.sigma - 100) < 1e-9);
    assert.ok(Math.abs(autoScaled.kernel[l].offDiagonal.mean - k.offDiagonal.mean) < 1e-12);
    assert.equal(k.degenerate, null);
  });
  assert.ok(maxDiff(autoScaled.npib.flat() as number[], auto.npib.flat() as number[]) < 1e-12);
  assert.throws(() => similarityFromGram(grams(1), n, { sigma: 'often' as never }), (e: unknown) => e instanceof UserError && /--sigma often: must be a number > 0 or auto/.test(e.message));
});

test('stories260K: kernel diagnostics with σ = 8 and --sigma auto, on its hidden states and on them scaled by 100', { skip: NO_SHARED }, async () => {
  await initBackend('auto'); // the similarity stage, not a backend, is under test: the fastest one built (20 prompts of 512 tokens)
  const root = scratchDir('kernel');
  const model = join(root, 'stories260K');
  await convertLlama2c({ checkpoint: join(SHARED!, 'models/stories260K/stories260K.bin'), tokenizer: join(SHARED!, 'models/stories260K/tok512.bin'), out: model });
  const m = loadModel(model);
  const tok = await loadTokenizer(model);
  const { ids } = calibrationPrompts(tok, { data: join(SHARED!, 'data/mmlu'), subjects: 20, perSubject: 1 });
  const cal = calibrate(m, ids);
  disposeModel(m);
  const n = cal.n, o = { kEntropy: 19 };
  const scaled = cal.grams.map((g) => g.map((v) => v * 1e4)); // hidden states × 100
  const runs = {
    paper: similarityFromGram(cal.grams, n, o), paperScaled: similarityFromGram(scaled, n, o),
    auto: similarityFromGram(cal.grams, n, { ...o, sigma: 'auto' }), autoScaled: similarityFromGram(scaled, n, { ...o, sigma: 'auto' }),
  };
  for (const [name, r] of Object.entries(runs)) {
    const k = r.kernel;
    console.log(`${name}: median distance ${k.map((x) => x.medianDistance.toPrecision(3)).join(' ')}; mean off-diagonal K ${k.map((x) => x.offDiagonal.mean.toExponential(1)).join(' ')}; `
      + `gap ${k.map((x) => x.spectralGap.toFixed(3)).join(' ')}; degenerate ${k.filter((x) => x.degenerate).length}/${k.length}`);
  }
  assert.ok(runs.paper.kernel.every((k) => k.degenerate === null), 'σ = 8 suits stories260K\'s own hidden states');
  assert.ok(runs.paperScaled.kernel.every((k) => k.degenerate !== null), 'σ = 8 against distances × 100: the identity');
  assert.ok(runs.auto.kernel.every((k) => k.degenerate === null));
  assert.ok(maxDiff(runs.autoScaled.npib.flat() as number[], runs.auto.npib.flat() as number[]) < 1e-9);
});
