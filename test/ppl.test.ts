/**
 * `mka eval ppl`: the windows against a literal transcription of transformers' strided recipe (label
 * masks and shift), the NLL against the loss transformers' own logits give (hf-tiny golden.json, float32
 * tolerance), later windows against the decoder's full logits, resuming, memory, and the CLI's errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCliInProcess } from './cli-run.ts';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadModel, disposeModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { slidingWindows } from '../src/eval/ppl/windows.ts';
import { evaluatePerplexity, PplInterrupted, windowNll } from '../src/eval/ppl/evaluate.ts';
import { runSweep } from '../src/sweep/sweep.ts';
import { runPerplexityEval } from '../src/eval/ppl/run.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const TINY = SHARED ? join(SHARED, 'fixtures/hf-tiny') : '';
const TMP = scratchDir('ppl');

/**
 * transformers' recipe, transcribed: for each window, target_ids[:, :-trg_len] = -100, and the model's
 * loss shifts labels left by one. Returns, per window, the absolute positions whose tokens its loss scores.
 */
function recipeScoredPositions(n: number, maxLength: number, stride: number): number[][] {
  const out: number[][] = [];
  let prevEnd = 0;
  for (let begin = 0; begin < n; begin += stride) {
    const end = Math.min(begin + maxLength, n);
    const trgLen = end - prevEnd;
    const target = Array.from({ length: end - begin }, (_, i) => begin + i);
    for (let i = 0; i < target.length - trgLen; i++) target[i] = -100;
    out.push(target.slice(1).filter((p) => p !== -100)); // labels[1:] against logits[:-1]
    prevEnd = end;
    if (end === n) break;
  }
  return out;
}

/** −log softmax(logits)[target] in float64. */
function nllOf(logits: readonly number[], target: number): number {
  const m = Math.max(...logits);
  const lse = m + Math.log(logits.reduce((s, x) => s + Math.exp(x - m), 0));
  return lse - logits[target];
}

test('windows score exactly the tokens transformers\' recipe scores', () => {
  assert.deepEqual(slidingWindows(19, 8, 4), [
    { begin: 0, end: 8, scoredFrom: 1 }, { begin: 4, end: 12, scoredFrom: 8 }, { begin: 8, end: 16, scoredFrom: 12 }, { begin: 12, end: 19, scoredFrom: 16 },
  ]);
  for (const n of [2, 3, 7, 19, 64, 100]) {
    for (const L of [2, 5, 8, 16, 128]) {
      for (const S of [1, 2, 3, Math.max(1, L >> 1), L]) {
        if (S > L) continue;
        const ours = slidingWindows(n, L, S).map((w) => Array.from({ length: w.end - w.scoredFrom }, (_, i) => w.scoredFrom + i));
        assert.deepEqual(ours, recipeScoredPositions(n, L, S), `n ${n} seq-len ${L} stride ${S}`);
        if (S < L || L >= n) assert.deepEqual(ours.flat(), Array.from({ length: n - 1 }, (_, i) => i + 1), 'every token but the first is scored once');
      }
    }
  }
  assert.throws(() => slidingWindows(10, 8, 9), /--stride 9/);
  assert.throws(() => slidingWindows(10, 1, 1), /--seq-len 1/);
  assert.throws(() => slidingWindows(1, 8, 4), /at least 2/);
});

if (NO_SHARED) test('transformers golden cases (hf-tiny)', { skip: NO_SHARED });

for (const name of SHARED ? readdirSync(TINY).sort() : []) {
  test(`${name}: NLL equals the loss of transformers' logits (float32 tolerance), strided windows equal the decoder's logits`, async () => {
    await initBackend('wasm');
    const g = JSON.parse(readFileSync(join(TINY, name, 'golden.json'), 'utf8')) as { sequences: { input_ids: number[]; logits: number[][] }[] };
    const model = loadModel(join(TINY, name));
    const before = tf.memory().numTensors;
    try {
      for (const { input_ids: ids, logits } of g.sequences) {
        const n = ids.length;
        // One window over the whole sequence: transformers' loss = mean over t ≥ 1 of −log p(ids[t] | logits[t − 1]).
        const ref = ids.slice(1).reduce((s, t, i) => s + nllOf(logits[i], t), 0);
        const whole = windowNll(model, ids, { begin: 0, end: n, scoredFrom: 1 });
        assert.equal(whole.tokens, n - 1);
        assert.ok(Math.abs(whole.nll - ref) / (n - 1) < 2e-5, `mean NLL ${whole.nll / (n - 1)} vs transformers ${ref / (n - 1)}`);
        const r = await evaluatePerplexity({ model, ids, seqLen: n, stride: n });
        assert.ok(Math.abs(Math.log(r.summary.ppl) - ref / (n - 1)) < 2e-5, `ppl ${r.summary.ppl} vs exp(transformers loss) ${Math.exp(ref / (n - 1))}`);

        // Strided: the first window's logits are transformers' (causal, starts at 0); later windows start
        // mid-sequence, so compare them with the decoder's own full logits of that window.
        const strided = await evaluatePerplexity({ model, ids, seqLen: 8, stride: 3 });
        let want = 0;
        for (const w of slidingWindows(n, 8, 3)) {
          let wl: number[][];
          if (w.begin === 0) wl = logits;
          else {
            const out = forward(model, [ids.slice(w.begin, w.end)]);
            wl = (out.logits!.arraySync() as number[][][])[0];
            out.logits!.dispose();
          }
          for (let p = w.scoredFrom; p < w.end; p++) want += nllOf(wl[p - 1 - w.begin], ids[p]);
        }
        assert.equal(strided.summary.tokens_scored, n - 1);
        assert.ok(Math.abs(strided.summary.mean_nll - want / (n - 1)) < 2e-5, `strided mean NLL ${strided.summary.mean_nll} vs ${want / (n - 1)}`);
      }
      assert.equal(tf.memory().numTensors, before, 'tensors leaked');
    } finally {
      disposeModel(model);
    }
  });
}

test('an interrupted run resumes from its saved windows to the same result', async () => {
  await initBackend('wasm');
  const model = loadModel('models/demo');
  try {
    const ids = Array.from({ length: 300 }, (_, i) => (i * 37 + 11) % model.config.vocab_size);
    const plain = await evaluatePerplexity({ model, ids, seqLen: 64, stride: 32 });
    assert.equal(plain.summary.windows, 9);
    const out = join(TMP, 'resume');
    const controller = new AbortController();
    await assert.rejects(evaluatePerplexity({
      model, ids, seqLen: 64, stride: 32, out, signal: controller.signal,
      onProgress: (p) => { if (p.windows === 3) controller.abort(); },
    }), PplInterrupted);
    assert.equal(readdirSync(join(out, 'windows')).length, 3);
    const resumed = await evaluatePerplexity({ model, ids, seqLen: 64, stride: 32, out });
    assert.equal(resumed.resumedWindows, 3);
    assert.equal(resumed.summary.ppl, plain.summary.ppl);
    assert.deepEqual(JSON.parse(readFileSync(join(out, 'ppl.json'), 'utf8')), plain.summary);
    await assert.rejects(evaluatePerplexity({ model, ids, seqLen: 64, stride: 16, out }), /different run \(stride differ\)/);
  } finally {
    disposeModel(model);
  }
});

test('a streamed model scores every window in one pass over its layers, with the resident model\'s numbers', async () => {
  await initBackend('wasm');
  const model = loadModel('models/demo');
  const streamed = loadModel('models/demo', { streaming: true });
  const before = tf.memory().numTensors;
  try {
    const ids = Array.from({ length: 300 }, (_, i) => (i * 37 + 11) % model.config.vocab_size);
    const resident = await evaluatePerplexity({ model, ids, seqLen: 64, stride: 32 });
    const windows: number[] = [];
    const r = await evaluatePerplexity({ model: streamed, ids, seqLen: 64, stride: 32, onProgress: (p) => windows.push(p.windows) });
    assert.equal(streamed.stats.layerLoads, streamed.config.num_hidden_layers, 'each layer read once for the 9 windows');
    assert.deepEqual(r.summary, resident.summary);
    assert.deepEqual(windows, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.equal(tf.memory().numTensors, before);
  } finally {
    disposeModel(model);
    disposeModel(streamed);
  }
});

test('mka eval ppl: bad options and files are one-line user errors', async () => {
  const text = join(TMP, 'text.txt');
  writeFileSync(text, 'Once upon a time there was a small model.\n');
  const run = (...args: string[]) => runCliInProcess(['eval', 'ppl', '--model', 'models/demo', '--backend', 'cpu', '--out', join(TMP, 'cli'), ...args]);
  for (const [args, pattern] of [
    [['--text', join(TMP, 'missing.txt')], /missing\.txt: --text not found; give an existing file/],
    [['--text', text, '--stride', '0'], /--stride 0/],
    [['--text', text, '--seq-len', '4096'], /--seq-len 4096: longer than the model's context/],
  ] as [string[], RegExp][]) {
    const r = await run(...args);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').filter((l) => l.startsWith('mka:')).length, 1, r.stderr);
  }
  const ok = await run('--text', text, '--json', '--quiet');
  assert.equal(ok.status, 0, ok.stderr);
  const s = JSON.parse(ok.stdout);
  assert.ok(s.ppl > 1 && Number.isFinite(s.ppl));
});

test('a sweep given a text corpus has a ppl column equal to mka eval ppl of each model', async () => {
  await initBackend('wasm');
  const data = join(TMP, 'demo-mmlu');
  await ensureBenchmark(data);
  const text = join(TMP, 'corpus.txt');
  writeFileSync(text, readFileSync('models/demo/README.md', 'utf8').slice(0, 1500));
  const out = join(TMP, 'sweep');
  const points = await runSweep({
    model: 'models/demo', data, methods: ['reverse'], remove: [0, 2], ntrain: 5, limit: 2, evalSubjects: ['demo_arithmetic'], perSubject: 2,
    out, quiet: true, keepModels: true, ppl: { text, seqLen: 128, stride: 64 },
  });
  const csv = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  const col = csv[0].indexOf('text_ppl');
  assert.ok(col >= 0, `no text_ppl column in results.csv: ${csv[0].join(',')}`);
  assert.match(readFileSync(join(out, 'summary.md'), 'utf8'), /\| text ppl \|/);
  const direct = async (model: string, name: string) => (await runPerplexityEval({ model, text, seqLen: 128, stride: 64, out: join(TMP, name) })).summary.ppl;
  const original = await direct('models/demo', 'ppl-original');
  const removed = await direct(join(out, 'models', 'reverse-2'), 'ppl-reverse-2');
  assert.equal(Number(csv[1][col]), original, 'original row');
  assert.ok(Math.abs(points.find((p) => p.layers_removed === 2)!.ppl! - removed) / removed < 1e-6, 'reverse -2 row vs its saved model');
  assert.notEqual(original, removed);
});
