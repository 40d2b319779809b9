/**
 * The decoder against Hugging Face transformers' own outputs (golden.json of each hf-tiny case), its
 * cache, batching and streaming paths against the plain pass, and its memory discipline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadModel, disposeModel, type LlamaModel } from '../src/model/model.ts';
import { forward, forwardInTurn, forwardMany, disposeCache } from '../src/model/forward.ts';
import { generate } from '../src/model/generate.ts';
import { inverseFrequencies } from '../src/model/rope.ts';
import { softmaxRows } from '../src/runtime/cpu-softmax.ts';
import { maxAbsDiff, NO_SHARED, SHARED } from './helpers.ts';
import { loadNativeAddon } from '../src/runtime/native-addon.ts';

const NO_NATIVE = loadNativeAddon().addon ? false : 'native addon not built: native backend tests skipped';

const TINY = SHARED ? join(SHARED, 'fixtures/hf-tiny') : '';
const cases = SHARED ? readdirSync(TINY).sort() : [];

interface Golden {
  sequences: { input_ids: number[]; logits: number[][]; hidden_states: number[][][]; greedy_continuation: number[] }[];
}

function goldenCheck(backend: 'wasm' | 'cpu' | 'native', only?: string[]) {
  for (const name of cases.filter((c) => !only || only.includes(c))) {
    test(`${backend}: ${name} logits and every hidden state match transformers within 1e-4`, { skip: backend === 'native' && NO_NATIVE }, async () => {
      await initBackend(backend, { compute: 'float32' }); // bf16 products: bf16.test.ts
      const g: Golden = JSON.parse(readFileSync(join(TINY, name, 'golden.json'), 'utf8'));
      const model = loadModel(join(TINY, name));
      try {
        // on the native backend 16-bit checkpoints stay 16-bit in memory
        const stored = model.packed?.size ? [...model.packed.values()][0].dtype : 'float32';
        if (backend === 'native' && /bf16/.test(name)) assert.equal(stored, 'bfloat16');
        if (backend === 'native' && /f16/.test(name) && !/bf16/.test(name)) assert.equal(stored, 'float16');
        if (backend !== 'native') assert.equal(stored, 'float32');
        for (const s of g.sequences) {
          const r = forward(model, [s.input_ids], { hiddenStates: true });
          const logits = (r.logits!.arraySync() as number[][][])[0];
          const hs = r.hiddenStates!.map((h) => (h.arraySync() as number[][][])[0]);
          r.logits!.dispose();
          r.hiddenStates!.forEach((h) => h.dispose());
          assert.equal(hs.length, model.config.num_hidden_layers + 1);
          const el = maxAbsDiff(logits, s.logits), eh = maxAbsDiff(hs, s.hidden_states);
          assert.ok(el < 1e-4, `logits differ by ${el}`);
          assert.ok(eh < 1e-4, `hidden states differ by ${eh}`);
          const gen = generate(model, s.input_ids, { maxNewTokens: s.greedy_continuation.length, stopIds: [] });
          assert.deepEqual(gen, s.greedy_continuation);
        }
      } finally {
        disposeModel(model);
      }
    });
  }
}

if (NO_SHARED) test('transformers golden cases (hf-tiny)', { skip: NO_SHARED });
goldenCheck('wasm');
goldenCheck('cpu', ['a_llama2', 'b_llama3_gqa_bf16_sharded']);
goldenCheck('native');

test('llama3 rope scaling gives the inverse frequencies transformers computes', { skip: NO_SHARED }, async () => {
  const model = loadModel(join(TINY, 'b_llama3_gqa_bf16_sharded'), { streaming: true });
  const inv = inverseFrequencies(model.config);
  disposeModel(model);
  const want = [0.5761, 4.7008e-3, 1.7678e-4, 6.6479e-6];
  inv.forEach((f, i) => assert.ok(Math.abs(f - want[i]) / want[i] < 1e-4, `inv_freq[${i}] = ${f}, want ${want[i]}`));
});

function logitsOf(model: LlamaModel, ids: number[][], opts = {}): number[][][] {
  const r = forward(model, ids, opts);
  const v = r.logits!.arraySync() as number[][][];
  r.logits!.dispose();
  return v;
}

for (const backend of ['wasm', 'native'] as const) test(`${backend}: KV cache, right padding, micro-batches, logits positions and streaming give the plain pass's logits`, { skip: NO_SHARED || (backend === 'native' && NO_NATIVE) }, async () => {
  await initBackend(backend);
  const dir = join(TINY, 'b_llama3_gqa_bf16_sharded');
  const model = loadModel(dir);
  const before = tf.memory().numTensors;
  const a = [1, 17, 33, 200, 5, 9, 41, 77, 12];
  const b = [1, 17, 33, 200, 90, 91];
  const full = logitsOf(model, [a])[0];
  // prefix cache, then the rest
  const pre = forward(model, [a.slice(0, 4)], { returnCache: true, logits: 'none' });
  const rest = logitsOf(model, [a.slice(4)], { cache: pre.cache })[0];
  assert.ok(maxAbsDiff(rest, full.slice(4)) < 1e-4);
  // one cached prefix broadcast to a right-padded batch of two continuations, logits at the last real token
  const r = forward(model, [a.slice(4), [...b.slice(4), 0, 0, 0]], { cache: pre.cache, logits: 'last', lastIndex: [4, 1], microBatch: 1 });
  const last = r.logits!.arraySync() as number[][];
  r.logits!.dispose();
  disposeCache(pre.cache!);
  assert.ok(maxAbsDiff(last[0], full[8]) < 1e-4);
  assert.ok(maxAbsDiff(last[1], logitsOf(model, [b])[0][5]) < 1e-4);
  // logits at chosen flat positions, taken in chunks or as one tensor
  const chunks: number[][] = [];
  const none = forward(model, [a, [...b, 0, 0, 0]], { logits: 'positions', positions: [8, 9 + 5, 2], onLogits: (i0, l) => chunks.push(...(l.arraySync() as number[][])) });
  assert.equal(none.logits, undefined);
  assert.ok(maxAbsDiff(chunks, [full[8], logitsOf(model, [b])[0][5], full[2]]) < 1e-4);
  assert.equal(tf.memory().numTensors, before, 'forward leaks tensors');
  // streamed layers give the same numbers and load each layer once per pass
  const streamed = loadModel(dir, { streaming: true });
  assert.ok(maxAbsDiff(logitsOf(streamed, [a])[0], full) < 1e-6);
  assert.equal(streamed.stats.layerLoads, streamed.config.num_hidden_layers);
  disposeModel(streamed);
  disposeModel(model);
});

for (const backend of ['wasm', 'native'] as const) test(`${backend}: forwardMany and forwardInTurn give each job forward()'s result bit for bit; forwardMany reads each streamed layer once`, { skip: NO_SHARED || (backend === 'native' && NO_NATIVE) }, async () => {
  await initBackend(backend);
  const model = loadModel(join(TINY, 'b_llama3_gqa_bf16_sharded'), { streaming: true });
  const before = tf.memory().numTensors;
  const a = [1, 17, 33, 200, 5, 9, 41, 77, 12];
  const b = [1, 17, 33, 200, 90, 91];
  const exact = (x: tf.Tensor | undefined, y: tf.Tensor | undefined) => {
    assert.deepEqual(x!.dataSync(), y!.dataSync());
    x!.dispose();
    y!.dispose();
  };
  const jobs = (returnCache: boolean) => [
    { inputIds: [a.slice(0, 4)], returnCache, logits: 'none' as const },
    { inputIds: [a.slice(4), [...b.slice(4), 0, 0, 0]], after: 0, logits: 'last' as const, lastIndex: [4, 1], microBatch: 1 },
    { inputIds: [b], hiddenStates: true },
  ];
  for (const [name, run] of [['forwardMany', forwardMany], ['forwardInTurn', forwardInTurn]] as const) {
    for (const returnCache of [true, false]) {
      // one at a time: a prefix and its cache, a padded batch after it, an unrelated row with hidden states
      const pre = forward(model, [a.slice(0, 4)], { returnCache: true, logits: 'none' });
      const cont = forward(model, [a.slice(4), [...b.slice(4), 0, 0, 0]], { cache: pre.cache, logits: 'last', lastIndex: [4, 1], microBatch: 1 });
      const alone = forward(model, [b], { hiddenStates: true });
      const loads = model.stats.layerLoads;
      const [p2, c2, a2] = await run(model, jobs(returnCache));
      const L = model.config.num_hidden_layers;
      assert.equal(model.stats.layerLoads - loads, name === 'forwardMany' ? L : 3 * L, `${name}: layer reads`);
      exact(cont.logits, c2.logits);
      exact(alone.logits, a2.logits);
      alone.hiddenStates!.forEach((h, i) => exact(h, a2.hiddenStates![i]));
      if (returnCache) {
        pre.cache!.keys.forEach((k, i) => exact(k, p2.cache!.keys[i]));
        pre.cache!.values.forEach((v, i) => exact(v, p2.cache!.values[i]));
      } else {
        assert.equal(p2.cache, undefined, `${name}: a cache not asked for is not returned`);
        disposeCache(pre.cache!);
      }
      assert.equal(tf.memory().numTensors, before, `${name} leaks tensors`);
    }
  }
  await assert.rejects(forwardInTurn(model, jobs(false), (j) => {
    if (j === 1) throw new Error('stop');
  }), /stop/);
  assert.equal(tf.memory().numTensors, before, 'a stopped forwardInTurn leaks tensors');
  // stopping between layers frees everything made so far
  await assert.rejects(forwardMany(model, [{ inputIds: [a], returnCache: true, hiddenStates: true }, { inputIds: [b], after: 0 }], (i) => {
    if (i === 1) throw new Error('stop');
  }), /stop/);
  assert.equal(tf.memory().numTensors, before, 'a stopped forwardMany leaks tensors');
  // between(layer, job) is awaited after each job's part of a layer but the layer's last, so a stop need not wait for the layer
  const calls: string[] = [], ran: string[] = [];
  const three = [0, 1, 2].map((k) => ({ inputIds: [k === 1 ? b : a], logits: 'none' as const, onBlockOutput: (i: number) => void ran.push(`${i}.${k}`) }));
  await forwardMany(model, three, (i) => void calls.push(`layer ${i}`), (i, j) => void calls.push(`${i}.${j}`));
  const L = model.config.num_hidden_layers;
  assert.deepEqual(calls, Array.from({ length: L }, (_, i) => [`${i}.0`, `${i}.1`, `layer ${i}`]).flat());
  ran.length = 0;
  await assert.rejects(forwardMany(model, three, undefined, (i, j) => {
    if (i === 0 && j === 0) throw new Error('stop');
  }), /stop/);
  assert.deepEqual(ran, ['0.0'], 'the stop comes before the layer\'s next job');
  assert.equal(tf.memory().numTensors, before, 'a forwardMany stopped inside a layer leaks tensors');
  await assert.rejects(forwardMany(model, [{ inputIds: [a], after: 0 }]), /not an earlier job/);
  await assert.rejects(forwardMany(model, [{ inputIds: [a, a] }, { inputIds: [b, b, b], after: 0 }]), /batch 3 but follows job 0 of batch 2/);
  assert.equal(tf.memory().numTensors, before);
  disposeModel(model);
});

for (const backend of ['wasm', 'native'] as const) test(`${backend}: repeated forward passes leave tf.memory().numTensors unchanged`, { skip: NO_SHARED || (backend === 'native' && NO_NATIVE) }, async () => {
  await initBackend(backend);
  const model = loadModel(join(TINY, 'e_qwen2_bias'));
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    const r = forward(model, [[1, 2, 3, 4], [5, 6, 7, 8]], { hiddenStates: true, returnCache: true });
    r.logits!.dispose();
    r.hiddenStates!.forEach((t) => t.dispose());
    disposeCache(r.cache!);
    generate(model, [1, 2, 3], { maxNewTokens: 3 });
  }
  assert.equal(tf.memory().numTensors, before);
  disposeModel(model);
});

test('cpu: Softmax a row at a time (runtime/cpu-softmax.ts) gives every bit of tfjs\'s own max, sub, exp, sum and div', async () => {
  await initBackend('cpu');
  const before = tf.memory().numTensors;
  let seed = 7;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const cases: [number[], number[]][] = [
    [[3, 2, 5, 17], Array.from({ length: 3 * 2 * 5 * 17 }, () => (rand() - 0.5) * 40)],
    [[2, 6], [0, -1e9, -1e9, 1, 2, 3, 5, 5, 5, 5, 5, 5]], // masked keys; ties
    [[4, 3], [1, Infinity, 2, -Infinity, 0, 1, NaN, 1, 2, -Infinity, -Infinity, -Infinity]],
    [[5, 1], [1, -2, 300, -0, NaN]],
    [[9], Array.from({ length: 9 }, () => rand() * 1e-30)],
  ];
  for (const [shape, values] of cases) {
    const x = tf.tensor(values, shape, 'float32');
    for (const dim of [-1, shape.length - 1]) {
      const got = tf.softmax(x, dim);
      // tfjs's cpu Softmax: Max, Sub (broadcast), Exp, Sum, RealDiv (broadcast)
      const want = tf.tidy(() => {
        const e = tf.exp(tf.sub(x, tf.max(x, -1, true)));
        return tf.div(e, tf.sum(e, -1, true));
      });
      assert.deepEqual(got.dataSync(), want.dataSync(), `[${shape}] dim ${dim}`);
      assert.deepEqual(softmaxRows(new Float32Array(values), shape[shape.length - 1]), want.dataSync(), `[${shape}] softmaxRows`);
      tf.dispose([got, want]);
    }
    x.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});
