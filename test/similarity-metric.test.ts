/**
 * --metric: the pipeline computes the similarity the registry names. On a small random model, the
 * sim.json matrix of --metric cka equals linear CKA of Gram matrices built here from the model's
 * hidden states (forward with hidden states, one prompt at a time, not the calibration pass), and
 * compress --metric cka merges by that matrix and records it in merge.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { UserError } from '../src/runtime/errors.ts';
import { parseConfig } from '../src/model/config.ts';
import { disposeModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { linearCka } from '../src/compress/similarity/cka.ts';
import { fusionRatio, getSimilarityMetric } from '../src/compress/similarity/index.ts';
import { similarityHeatmapSpec } from '../src/report/charts.ts';
import { compressModel, modelSimilarity } from '../src/pipeline/compress.ts';
import { planFromStored } from '../src/pipeline/plan-targets.ts';
import { sweepKey } from '../src/sweep/context.ts';
import { randomModel, tinyConfigJson, writeRandomModel } from './random-model.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('metric');
const MODEL = join(root, 'model');
const PROMPTS = join(root, 'prompts.txt');
const L = 3;
const lines = ['the cat sat on the mat', 'a b c d e f g', 'one two three', 'hello world, this is a longer prompt than the others', 'x y', 'last line here'];

async function setUp(): Promise<void> {
  await initBackend('cpu');
  await writeRandomModel(MODEL, { vocab_size: 512, num_hidden_layers: L }, 5);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join('models/demo', f), join(MODEL, f));
  writeFileSync(PROMPTS, lines.join('\n') + '\n');
}

/**
 * Gram matrices of the blocks' outputs for the `padded` representation (each prompt's hidden states
 * flattened, zero past its length): G[a][b] = Σ_t h_a[t]·h_b[t] over the positions both have. The
 * model here has one layer more with the same seeded weights, so its hidden_states[l + 1] is block l's
 * output before any final norm for every l < L.
 */
function referenceGrams(ids: number[][]): Float64Array[] {
  const model = randomModel(parseConfig(tinyConfigJson({ vocab_size: 512, num_hidden_layers: L + 1 })), 5);
  try {
    const states = ids.map((row) => {
      const r = forward(model, [row], { hiddenStates: true, logits: 'none' });
      const hs = r.hiddenStates!.map((h) => (h.arraySync() as number[][][])[0]); // [L+2][T][H]
      r.hiddenStates!.forEach((h) => h.dispose());
      return hs;
    });
    const n = ids.length;
    return Array.from({ length: L }, (_, l) => {
      const T = Math.max(...ids.map((r) => r.length));
      const H = states[0][0][0].length;
      const R = new Float32Array(n * T * H); // [n, T*H]: the layer's states, zero-padded
      states.forEach((hs, a) => hs[l + 1].forEach((v, t) => R.set(v, (a * T + t) * H)));
      // float32 product as the calibration takes it (its Gram entries are float32 dot products)
      return Float64Array.from(tf.tidy(() => {
        const r = tf.tensor2d(R, [n, T * H]);
        return tf.matMul(r, r, false, true).dataSync();
      }));
    });
  } finally {
    disposeModel(model);
  }
}

test('--metric cka: sim.json holds linear CKA of the layers\' Gram matrices; compress merges by it and records it', async () => {
  await setUp();
  const before = tf.memory().numTensors;
  const sim = await modelSimilarity({ model: MODEL, calibrationFile: PROMPTS, metric: 'cka', quiet: true });
  assert.equal(tf.memory().numTensors, before);
  assert.equal(sim.metric, 'cka');
  assert.equal(sim.npib, undefined);
  assert.equal(sim.fusion_ratio, undefined);
  const got = sim.cka as number[][];
  const tok = await loadTokenizer(MODEL);
  const want = linearCka(referenceGrams(lines.map((t) => tok.encode(t))), lines.length);
  assert.equal(got.length, L);
  for (let i = 0; i < L; i++) {
    for (let j = 0; j < L; j++) assert.ok(Math.abs(got[i][j] - want[i][j]!) < 1e-9, `CKA(${i}, ${j}) ${got[i][j]} vs ${want[i][j]}`);
  }
  assert.ok(got[0][L - 1] < 0.999, 'the layers differ, so the test can tell them apart');
  const spec = JSON.stringify(similarityHeatmapSpec(got, 'Layer similarity (CKA)', getSimilarityMetric('cka').scale));
  assert.ok(spec.includes('linear CKA (0–1)') && !spec.includes('NPIB'), 'the heatmap names its metric\'s scale');

  const out = join(root, 'cka-1');
  const plan = await compressModel({ model: MODEL, out, method: 'mka', remove: 1, calibrationFile: PROMPTS, metric: 'cka', quiet: true });
  const merge = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
  assert.equal(merge.metric, 'cka');
  assert.deepEqual(merge.similarity_options, { beta: 1 }, 'NPIB\'s kernel options are not recorded for CKA');
  assert.ok(Math.abs(plan.steps[0].lambda! - fusionRatio(got, L - 2, L - 1)) < 1e-12, `λ ${plan.steps[0].lambda}`);
  assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers, L - 1);
});

test('--metric npib stays the default and an unknown metric is a UserError', async () => {
  await setUp();
  const sim = await modelSimilarity({ model: MODEL, calibrationFile: PROMPTS, similarity: { kEntropy: 3, kMi: 2, dims: 2 }, quiet: true });
  assert.equal(sim.metric, 'npib');
  assert.equal((sim.npib as unknown[]).length, L);
  assert.ok(sim.kernel && sim.fusion_ratio);
  await assert.rejects(modelSimilarity({ model: MODEL, calibrationFile: PROMPTS, metric: 'nope', quiet: true }), (e: unknown) => e instanceof UserError && /cka/.test(e.message));
});

test('a sweep\'s key names a non-default metric, and an analysis of another metric is not planned from', async () => {
  const base = { model: 'm', data: 'd', methods: ['mka'], remove: [2], ntrain: 5, out: 'o' };
  assert.equal(sweepKey({ ...base, metric: 'npib' }), sweepKey(base)); // sweeps from before --metric resume
  assert.notEqual(sweepKey({ ...base, metric: 'cka' }), sweepKey(base));
  // NPIB's kernel options do not change a CKA sweep; β (MKA's fusion ratio) does
  assert.equal(sweepKey({ ...base, metric: 'cka', similarity: { sigma: 3, beta: 1 } }), sweepKey({ ...base, metric: 'cka', similarity: { sigma: 8, beta: 1 } }));
  assert.notEqual(sweepKey({ ...base, metric: 'cka', similarity: { beta: 2 } }), sweepKey({ ...base, metric: 'cka', similarity: { beta: 1 } }));
  const config = parseConfig(tinyConfigJson({ num_hidden_layers: 3 }));
  const S = [[1, 0.5, 0.2], [0.5, 1, 0.6], [0.2, 0.6, 1]];
  const stored = { samples: 6, metric: 'npib', matrix: S, blockInfluence: [0.1, 0.2, 0.3] };
  assert.equal(await planFromStored(config, [{ method: 'mka', removed: 1 }], stored, { metric: 'cka' }), null);
  const plans = await planFromStored(config, [{ method: 'mka', removed: 1 }], { ...stored, metric: 'cka' }, { metric: 'cka' });
  assert.equal(plans?.[0].details.metric, 'cka');
  assert.ok(Math.abs(plans![0].steps[0].lambda! - fusionRatio(S, 1, 2)) < 1e-12);
});

test('mka similarity --metric: the choices come from the registry', async () => {
  await setUp();
  const out = join(root, 'cli-cka.json');
  const ok = await runCliInProcess(['similarity', '--model', MODEL, '--calibration', PROMPTS, '--metric', 'cka', '--out', out, '--backend', 'cpu', '--quiet']);
  assert.equal(ok.status, 0, ok.stderr);
  const sim = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(sim.metric, 'cka');
  assert.equal(sim.cka.length, L);
  const bad = await runCliInProcess(['similarity', '--model', MODEL, '--calibration', PROMPTS, '--metric', 'nope', '--backend', 'cpu']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /metric.*npib.*cka|npib.*cka.*metric/s);
});
