/**
 * Packed weights (mka quantize, GGUF Q8_0/Q4_0/Q4_1) multiply as float32 rows under --compute auto and
 * float32: the native float32 GEMM widens their rows per tile and multiplies unrounded activations, so a
 * product is the dequantized weight's (what PyTorch computes from the same file); --compute int8 runs
 * them on the integer kernels, which round the activations to 8-bit blocks as llama.cpp does. Checked
 * against float64 products of the weights dequantized from their definition (cases.ts `dequantized`,
 * independent of mka's readers), with bias and residual, on the GEMM and on the few-row path that reads rows in place, and through
 * the model: the native backend's forward equals the JS fallback's (dequantized blocks, tfjs float32
 * products) on a packed demo, and results are keyed by which products ran.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadNativeAddon, Q4, Q8, type WeightDesc } from '../src/runtime/native-addon.ts';
import { quantizeRtn } from '../src/io/packed.ts';
import { runForward } from '../src/model/inspect.ts';
import { packedPath } from '../src/model/ops.ts';
import { dequantized, makePackedDemo } from './goldens/gguf/cases.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const addon = loadNativeAddon().addon;
const NO_NATIVE = addon ? false : 'native addon not built: its float32 products with packed weights need it';

const CASES = [
  { bits: 4, group: 32, symmetric: true, m: 1, n: 70, k: 96 },
  { bits: 8, group: 32, symmetric: true, m: 5, n: 33, k: 256 },
  { bits: 4, group: 64, symmetric: false, m: 9, n: 48, k: 320 },
  { bits: 8, group: 128, symmetric: false, m: 17, n: 40, k: 128 },
  // one group per row of 176 inputs: a last block of 16
  { bits: 4, group: 176, symmetric: false, m: 3, n: 20, k: 176 },
  { bits: 8, group: 176, symmetric: true, m: 12, n: 20, k: 176 },
  // 300 rows of 4096 inputs: k blocks of 256, column strips past 256, a partial last tile
  { bits: 4, group: 128, symmetric: true, m: 6, n: 300, k: 4096 },
] as const;

test('float products of packed weights equal float64 products of the dequantized weights; the integer kernels\' do not', { skip: NO_NATIVE }, () => {
  let s = 12345;
  const gauss = () => {
    const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), (s + 0.5) / 2 ** 32);
    return Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  };
  let intMissed = 0;
  for (const c of CASES) {
    const pm = quantizeRtn(Float32Array.from({ length: c.n * c.k }, () => 0.02 * gauss()), c.n, c.k, { bits: c.bits, group: c.group, symmetric: c.symmetric });
    const x = Float32Array.from({ length: c.m * c.k }, (_, i) => (i % 61 === 7 ? 30 * gauss() : gauss()));
    const bias = Float32Array.from({ length: c.n }, () => gauss());
    const residual = Float32Array.from({ length: c.m * c.n }, () => gauss());
    const weight: WeightDesc = { format: c.bits === 8 ? Q8 : Q4, rows: c.n, cols: c.k, data: pm.quants, scales: pm.scales, mins: pm.mins, group: c.group };
    const w = new Float64Array(c.n * c.k);
    for (let j = 0; j < c.n; j++) for (let k = 0; k < c.k; k++) w[j * c.k + k] = dequantized(pm, j, k);
    for (const threads of [1, 2]) {
      addon!.setThreads(threads);
      const what = `${c.bits}-bit g${c.group} ${c.symmetric ? 'sym' : 'asym'} ${c.m}x${c.n}x${c.k}, ${threads} thread(s)`;
      const yFloat = Float32Array.from(residual), yInt = Float32Array.from(residual);
      addon!.linear({ x, m: c.m, weight: { ...weight, floatProducts: true }, bias, y: yFloat, accumulate: true });
      addon!.linear({ x, m: c.m, weight, bias, y: yInt, accumulate: true });
      for (let r = 0; r < c.m; r++) {
        for (let j = 0; j < c.n; j++) {
          let sum = 0, abs = Math.abs(bias[j]) + Math.abs(residual[r * c.n + j]);
          for (let k = 0; k < c.k; k++) {
            sum += x[r * c.k + k] * w[j * c.k + k];
            abs += Math.abs(x[r * c.k + k] * w[j * c.k + k]);
          }
          const want = residual[r * c.n + j] + sum + bias[j], o = r * c.n + j;
          // float32 sums of k terms: within 2^-16 of Σ|terms| (k ≤ 4096 terms, float32's 2^-24 each)
          assert.ok(Math.abs(yFloat[o] - want) <= 2 ** -16 * abs, `${what}: y[${r}][${j}] = ${yFloat[o]}, float64 ${want}`);
          if (Math.abs(yInt[o] - want) > 2 ** -16 * abs) intMissed++;
        }
      }
    }
  }
  addon!.setThreads(addon!.info().procs);
  assert.ok(intMissed > 0, 'the integer kernels round the activations, so some of their products miss the float64 ones');
});

test('the addon refuses a weight that asks for both per-token int8 activations and float products', { skip: NO_NATIVE }, () => {
  const pm = quantizeRtn(new Float32Array(64 * 32).fill(0.5), 32, 64, { bits: 8, group: 32, symmetric: true });
  assert.throws(() => addon!.linear({
    x: new Float32Array(64), m: 1, y: new Float32Array(32),
    weight: { format: Q8, rows: 32, cols: 64, data: pm.quants, scales: pm.scales, mins: null, group: 32, perToken: true, floatProducts: true },
  }), /exclude each other/);
});

let model: string;
before(async () => {
  model = join(scratchDir('packed-float'), 'demo-q4');
  await makePackedDemo('models/demo', model, 'rtn:w4g32-asym');
});

test('a packed model: the native backend\'s logits under auto and float32 are the JS fallback\'s (dequantized blocks, float32 products); int8\'s are not', { skip: NO_NATIVE }, async () => {
  const ids = [1, 210, 77, 5, 9, 33, 120, 7, 64, 300, 12, 18];
  const diff = (a: number[][], b: number[][]) => Math.max(...a.map((row, i) => Math.max(...row.map((v, j) => Math.abs(v - b[i][j])))));
  await initBackend('wasm');
  assert.match(packedPath(), /JS fallback/);
  const fallback = await runForward({ model, ids, logits: 'all' });
  for (const compute of ['auto', 'float32'] as const) {
    await initBackend('native', { compute });
    assert.match(packedPath(), /native float32 products/);
    const n0 = tf.memory().numTensors;
    const native = await runForward({ model, ids, logits: 'all' });
    assert.equal(tf.memory().numTensors, n0);
    assert.ok(diff(native.logits!, fallback.logits!) < 1e-4, `${compute}: max |native − fallback| = ${diff(native.logits!, fallback.logits!)}`);
  }
  await initBackend('native', { compute: 'int8' });
  assert.match(packedPath(), /native integer kernels/);
  const integer = await runForward({ model, ids, logits: 'all' });
  assert.ok(diff(integer.logits!, fallback.logits!) > 1e-3, 'the integer kernels round the activations: their logits are further away');
  await assert.rejects(initBackend('wasm', { compute: 'int8' }), /--compute int8: the wasm backend has no integer kernels/);
  await initBackend('native');
});

test('results of a packed model are keyed by how its weights multiply: resuming with the other --compute is refused, not mixed', { skip: NO_NATIVE }, async () => {
  const dir = scratchDir('packed-float-key');
  const text = join(dir, 'corpus.txt');
  writeFileSync(text, 'What is 12 - 1?\nA. 9\nB. 13\nC. 11\nD. 10\nAnswer: C\n'.repeat(20));
  const out = join(dir, 'ppl');
  const run = (compute: string) => runCliInProcess(['eval', 'ppl', '--model', model, '--text', text, '--seq-len', '64', '--out', out, '--compute', compute, '--quiet']);
  const first = await run('auto');
  assert.equal((await run('float32')).status, 0, 'auto and float32 are the same products');
  assert.equal(first.status, 0, first.stderr);
  const again = await run('auto');
  assert.equal(again.status, 0, again.stderr);
  const other = await run('int8');
  assert.equal(other.status, 1, other.stderr);
  assert.match(other.stderr, /run-key\.json/);
});
