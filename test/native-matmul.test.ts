import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { NO_SHARED, SHARED, maxAbsDiff } from './helpers.ts';
import { broadcastBatchIndex, installNativeMatMul, nativeMatMulInstalled, uninstallNativeMatMul } from '../src/runtime/native-matmul.ts';
import { DEFAULT_ADDON_PATH, loadNativeAddon, newerSource } from '../src/runtime/native-addon.ts';
import { scratchDir } from './scratch.ts';

// the addon mka loads: MKA_NATIVE_ADDON names another (a missing file forces the WebAssembly fallback)
const NOT_BUILT = !existsSync(process.env.MKA_NATIVE_ADDON || DEFAULT_ADDON_PATH) && 'native addon not built (npm run build:native needs a C compiler and make)';
const ROOT = join(import.meta.dirname, '..');

/** Deterministic pseudo-random values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) | 0;
    out[i] = (x >>> 8) / 2 ** 23 - 1;
  }
  return out;
}

function randomTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(values(shape.reduce((p, d) => p * d, 1), seed), shape);
}

/** max |x - y| <= tol * max |y| (norm-relative, so sums near zero do not dominate). */
function assertClose(x: tf.Tensor, y: tf.Tensor, tol: number, what: string): void {
  assert.deepEqual(x.shape, y.shape, `${what}: shape`);
  const a = x.dataSync(), b = y.dataSync();
  let err = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  assert.ok(err <= tol * Math.max(scale, 1e-30), `${what}: max error ${err} vs scale ${scale}`);
}

/** Runs `fn` with an environment variable set (or removed), restoring it afterwards. */
async function withEnv<T>(name: string, value: string | undefined, fn: () => Promise<T> | T): Promise<T> {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

test('broadcastBatchIndex pairs each output batch with its a and b batches', () => {
  // a batch dims [2, 1], b batch dims [3]: output [2, 3]
  assert.deepEqual([...broadcastBatchIndex([2, 3], [2, 1], [3])], [0, 0, 0, 1, 0, 2, 1, 0, 1, 1, 1, 2]);
  // a has no batch dims: always a[0]
  assert.deepEqual([...broadcastBatchIndex([2], [], [2])], [0, 0, 0, 1]);
});

test('native BatchMatMul equals plain wasm (transposes, batch broadcast, memory growth)', { skip: NOT_BUILT }, async () => {
  await initBackend('wasm');
  const cases: [number[], number[], boolean, boolean][] = [
    [[37, 53], [53, 29], false, false],
    [[64, 300], [129, 300], false, true], // x W^T with HF [out, in] weights
    [[53, 37], [53, 29], true, false],
    [[53, 37], [29, 53], true, true],
    [[3, 17, 33], [3, 33, 9], false, false],
    [[2, 4, 19, 16], [2, 4, 23, 16], false, true], // attention scores
    [[3, 17, 33], [33, 9], false, false], // b broadcast over a's batch
    [[17, 33], [2, 3, 9, 33], false, true], // a broadcast over b's batch
    [[1, 6, 8], [4, 8, 5], false, false],
  ];
  const tensors = cases.map(([sa, sb], i) => [randomTensor(sa, 2 * i + 1), randomTensor(sb, 2 * i + 2)]);
  const plain = cases.map(([, , ta, tb], i) => tf.matMul(tensors[i][0], tensors[i][1], ta, tb));
  assert.equal(installNativeMatMul().ok, true);
  try {
    for (const [i, [sa, sb, ta, tb]] of cases.entries()) {
      const before = tf.memory().numTensors;
      const native = tf.matMul(tensors[i][0], tensors[i][1], ta, tb);
      assert.equal(tf.memory().numTensors, before + 1, 'one output tensor, nothing else');
      assertClose(native, plain[i], 1e-4, `[${sa}] x [${sb}] ta=${ta} tb=${tb}`);
      native.dispose();
    }
    // Both sides broadcast: tfjs's own kernels size this output wrongly, so compare per batch pair.
    const a = randomTensor([2, 1, 5, 7], 81), b = randomTensor([1, 3, 7, 4], 82);
    const both = tf.matMul(a, b);
    assert.deepEqual(both.shape, [2, 3, 5, 4]);
    uninstallNativeMatMul();
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 3; j++) {
        tf.tidy(() => {
          const want = tf.matMul(tf.slice(a, [i, 0, 0, 0], [1, 1, 5, 7]).reshape([5, 7]), tf.slice(b, [0, j, 0, 0], [1, 1, 7, 4]).reshape([7, 4]));
          assertClose(tf.slice(both, [i, j, 0, 0], [1, 1, 5, 4]).reshape([5, 4]), want, 1e-4, `broadcast pair ${i},${j}`);
        });
      }
    }
    installNativeMatMul();
    tf.dispose([a, b, both]);
    // An output larger than the whole initial heap makes wasm memory grow while the kernel runs.
    const x = randomTensor([1024, 64], 91), w = randomTensor([8192, 64], 92);
    const big = tf.matMul(x, w, false, true);
    const rows = tf.matMul(tf.slice(x, [1000, 0], [3, 64]), w, false, true);
    assertClose(tf.slice(big, [1000, 0], [3, 8192]), rows, 1e-4, 'after memory growth');
    tf.dispose([x, w, big, rows]);
  } finally {
    uninstallNativeMatMul();
    tf.dispose([...tensors.flat(), ...plain]);
  }
});

test('native _FusedMatMul (bias, relu/relu6/none) equals plain wasm matMul + add + activation', { skip: NOT_BUILT }, async () => {
  await initBackend('wasm');
  const cases: [number[], number[], boolean, boolean, 'linear' | 'relu' | 'relu6', number][] = [
    [[31, 40], [40, 23], false, false, 'relu', 23],
    [[31, 40], [23, 40], false, true, 'linear', 23],
    [[2, 40, 31], [2, 40, 23], true, false, 'relu6', 1],
    [[2, 31, 40], [2, 23, 40], false, true, 'relu', 0],
  ];
  for (const [i, [sa, sb, ta, tb, activation, biasLen]] of cases.entries()) {
    const a = randomTensor(sa, 10 + i), b = randomTensor(sb, 20 + i);
    const bias = biasLen ? tf.mul(randomTensor([biasLen], 30 + i), 3) : undefined;
    const expected = tf.tidy(() => {
      const y = tf.matMul(a, b, ta, tb);
      const yb = bias ? tf.add(y, bias) : y;
      return activation === 'relu' ? tf.relu(yb) : activation === 'relu6' ? tf.relu6(yb) : yb;
    });
    assert.equal(installNativeMatMul().ok, true);
    try {
      const before = tf.memory().numTensors;
      const got = tf.fused.matMul({ a, b, transposeA: ta, transposeB: tb, bias, activation });
      assert.equal(tf.memory().numTensors, before + 1);
      assertClose(got, expected, 1e-4, `fused [${sa}] x [${sb}] ${activation} bias ${biasLen}`);
      got.dispose();
    } finally {
      uninstallNativeMatMul();
    }
    tf.dispose([a, b, expected, ...(bias ? [bias] : [])]);
  }
});

test('cases the native kernels do not take go to the wasm kernels', { skip: NOT_BUILT }, async () => {
  await initBackend('wasm');
  const a = randomTensor([5, 6], 1), b = randomTensor([6, 4], 2);
  const plain = tf.fused.matMul({ a, b, activation: 'sigmoid' });
  const empty = tf.zeros([0, 6]);
  assert.equal(installNativeMatMul({ threads: 1 }).ok, true);
  try {
    tf.tidy(() => {
      assertClose(tf.fused.matMul({ a, b, activation: 'sigmoid' }), plain, 0, 'sigmoid falls back');
      assert.deepEqual(tf.matMul(empty, b).shape, [0, 4]);
      assert.throws(() => tf.matMul(tf.cast(a, 'int32'), tf.cast(b, 'int32')), /float32/);
    });
  } finally {
    uninstallNativeMatMul();
  }
  tf.dispose([a, b, plain, empty]);
});

test('initBackend auto takes the native kernels (wasm + native matmul when gradients are asked for), --threads reaches the addon; on wasm they take the products until wasm or MKA_NATIVE=0 removes them', { skip: NOT_BUILT }, async (t) => {
  const info = await initBackend('auto', { threads: 1 });
  if (info.name === 'tensorflow') return t.skip(`${info.description} took precedence over the native kernels`);
  assert.equal(info.name, 'native');
  assert.equal(info.nativeMatMul, true);
  assert.match(info.description, /^native \(cpu tensors \+ mka_native (avx512|avx2|generic) \(bf16 products: [^,]+, int8: [^)]+\) on .+, 1 thread\)$/);
  // with gradients asked for, auto never resolves to the native backend (its fused kernels have none): wasm + native matmul
  const train = await initBackend('auto', { threads: 1, gradients: true });
  assert.equal(train.name, 'wasm');
  assert.equal(train.nativeMatMul, true);
  assert.match(train.description, /wasm \+ native matmul \(mka_native (avx512|avx2|generic)\b.* on .+, 1 thread\)/);
  assert.equal(loadNativeAddon().addon?.info().threads, 1);
  await initBackend('wasm');
  assert.equal(nativeMatMulInstalled(), false);
  const installed = installNativeMatMul({ threads: 1 });
  assert.equal(installed.ok, true);
  assert.match(installed.reason, /^mka_native (avx512|avx2|generic) \(.+\) on .+, 1 thread$/);
  assert.equal(nativeMatMulInstalled(), true);
  const plain = await initBackend('wasm');
  assert.equal(plain.nativeMatMul, false);
  assert.equal(nativeMatMulInstalled(), false);
  const off = await withEnv('MKA_NATIVE', '0', () => initBackend('auto'));
  assert.equal(off.nativeMatMul, false);
  assert.notEqual(off.name, 'native');
  assert.equal(nativeMatMulInstalled(), false);
});

test('native path: every hf-tiny model matches transformers\' golden logits and hidden states within 1e-4', { skip: NOT_BUILT || NO_SHARED }, async () => {
  const tiny = join(SHARED!, 'fixtures/hf-tiny');
  await initBackend('wasm');
  assert.equal(installNativeMatMul().ok, true);
  try {
    for (const name of readdirSync(tiny).sort()) {
      const golden = JSON.parse(readFileSync(join(tiny, name, 'golden.json'), 'utf8')) as {
        sequences: { input_ids: number[]; logits: number[][]; hidden_states: number[][][] }[];
      };
      const model = loadModel(join(tiny, name));
      try {
        for (const s of golden.sequences) {
          const before = tf.memory().numTensors;
          const r = forward(model, [s.input_ids], { hiddenStates: true });
          const logits = (r.logits!.arraySync() as number[][][])[0];
          const hidden = r.hiddenStates!.map((h) => (h.arraySync() as number[][][])[0]);
          tf.dispose([r.logits!, ...r.hiddenStates!]);
          assert.equal(tf.memory().numTensors, before);
          const el = maxAbsDiff(logits, s.logits), eh = maxAbsDiff(hidden, s.hidden_states);
          assert.ok(el < 1e-4 && eh < 1e-4, `${name}: logits differ by ${el}, hidden states by ${eh}`);
        }
      } finally {
        disposeModel(model);
      }
    }
  } finally {
    uninstallNativeMatMul();
  }
});

test('without the addon, initBackend reports why and every op stays in wasm', async () => {
  const missing = join(tmpdir(), 'mka-no-such-dir', 'mka_native.node');
  await withEnv('MKA_NATIVE_ADDON', missing, async () => {
    assert.equal(loadNativeAddon().addon, null);
    const info = await initBackend('auto');
    if (info.name !== 'wasm') return;
    assert.equal(info.nativeMatMul, false);
    assert.match(info.description, /^wasm \(native kernels unavailable, so the slower WebAssembly ones run: native addon not built \(.+ missing; needs a C compiler at npm ci, or npm run build:native\)\)$/);
    assert.equal(nativeMatMulInstalled(), false);
    const y = tf.tidy(() => tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5, 6], [7, 8]]), false, true));
    assert.deepEqual([...y.dataSync()], [17, 23, 39, 53]);
    y.dispose();
  });
});

test('an install with MKA_NO_NATIVE=1 or without a working compiler builds no addon and still exits 0', async () => {
  const dir = scratchDir('native');
  try {
    cpSync(join(ROOT, 'scripts', 'build-native.mjs'), join(dir, 'scripts', 'build-native.mjs'));
    for (const f of readdirSync(join(ROOT, 'native')).filter((f) => /\.(c|h|gyp)$/.test(f))) {
      cpSync(join(ROOT, 'native', f), join(dir, 'native', f));
    }
    const script = join(dir, 'scripts', 'build-native.mjs');
    const addon = join(dir, 'native', 'build', 'Release', 'mka_native.node');
    const skipped = spawnSync(process.execPath, [script], { env: { ...process.env, MKA_NO_NATIVE: '1' }, encoding: 'utf8' });
    assert.equal(skipped.status, 0);
    assert.match(skipped.stdout, /^mka: native kernels not built \(MKA_NO_NATIVE=1\); mka uses WebAssembly/);
    assert.equal(existsSync(addon), false);
    const noCompiler = spawnSync(process.execPath, [script], { env: { ...process.env, CC: '/bin/false', MKA_NO_NATIVE: '' }, encoding: 'utf8' });
    assert.equal(noCompiler.status, 0);
    assert.equal(noCompiler.stdout.trim().split('\n').length, 1, noCompiler.stdout);
    assert.match(noCompiler.stdout, /^mka: native kernels not built \(/);
    assert.equal(existsSync(addon), false);
    const loaded = await withEnv('MKA_NATIVE_ADDON', addon, () => loadNativeAddon());
    assert.equal(loaded.addon, null);
    assert.match(loaded.reason, /native addon not built/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an addon built before a change to its C sources is named stale, so a checkout updated without npm run build:native is not run on it', () => {
  const dir = scratchDir('stale-addon');
  try {
    const addon = join(dir, 'mka_native.node');
    for (const f of ['mka_native.node', 'gemm.c', 'kern.h', 'binding.gyp', 'README.md']) writeFileSync(join(dir, f), '');
    const at = (f: string, s: number) => utimesSync(join(dir, f), s, s);
    at('gemm.c', 1000); at('kern.h', 1000); at('binding.gyp', 1000); at('mka_native.node', 2000); at('README.md', 3000);
    assert.equal(newerSource(addon, dir), null, 'sources older than the addon (a newer README does not count)');
    at('kern.h', 3000);
    assert.equal(newerSource(addon, dir), 'kern.h');
    at('kern.h', 1000); at('binding.gyp', 2500);
    assert.equal(newerSource(addon, dir), 'binding.gyp');
    assert.equal(newerSource(addon, join(dir, 'absent')), null, 'an installed addon without its sources beside it is not judged');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
