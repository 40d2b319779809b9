/**
 * Every compression method on the demo model against goldens from an independent PyTorch + transformers
 * implementation of its paper and reference code, in float64 (test/goldens/methods/make.py,
 * run in the reference venv; scores.json is what it wrote): magnitude+ and Taylor+ block scores and the
 * blocks they drop, SLEB's candidate losses at every step, LaCo's candidate similarities, automatic
 * threshold and merged layers (C = 4 and C = 2), MKA's λ one-shot and --iterative (linear CKA), and
 * --fit-lambda's errors and fitted λ. The calibration prompts are test/goldens/methods/calibration.txt,
 * tokenized by mka and checked against the reference's token ids first.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { identityPlan, mergeStep } from '../src/compress/merge-plan.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { fitLambdas } from '../src/pipeline/fit-lambda.ts';
import { scratchDir } from './scratch.ts';

const FIXTURES = join(import.meta.dirname, 'goldens', 'methods');
const CALIBRATION = join(FIXTURES, 'calibration.txt');
const golden = JSON.parse(readFileSync(join(FIXTURES, 'scores.json'), 'utf8'));
const root = scratchDir('methods-golden');
const MODEL = 'models/demo';

type Sources = { sources: { layer: number; weight: number }[]; norms_from: number }[];

/** |got − want| ≤ rel·|want| + abs, element by element. */
function close(got: number[], want: number[], rel: number, what: string, abs = 0): void {
  assert.equal(got.length, want.length, `${what}: ${got.length} values, want ${want.length}`);
  got.forEach((v, k) => assert.ok(Math.abs(v - want[k]) <= rel * Math.abs(want[k]) + abs, `${what}[${k}]: ${v} vs ${want[k]}`));
}

/** The original layers merge.json's layer_sources keep (a removal plan), in order. */
function keptOf(sources: Sources): number[] {
  return sources.map((l) => {
    assert.equal(l.sources.length, 1);
    return l.sources[0].layer;
  });
}

/** Compresses the demo model on the fixture's prompts and returns its merge.json. */
async function compress(name: string, method: string, remove: number, extra: Record<string, unknown> = {}): Promise<Record<string, any>> {
  const out = join(root, name);
  await compressModel({ model: MODEL, out, method, remove, calibrationFile: CALIBRATION, quiet: true, ...extra });
  return JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
}

test('the fixture\'s prompts tokenize to the reference\'s ids', async () => {
  const tok = await loadTokenizer(MODEL);
  const lines = readFileSync(CALIBRATION, 'utf8').split('\n').filter((l) => l.trim());
  assert.deepEqual(lines.map((l) => tok.encode(l)), golden.ids);
});

test('magnitude+: block scores Σ|W| and the blocks dropped equal the reference\'s', async () => {
  await initBackend('wasm');
  const merge = await compress('magnitude', 'magnitude', 2);
  close(merge.block_scores, golden.magnitude.block_scores, 1e-9, 'block score');
  assert.deepEqual([merge.kept_first, merge.kept_last], [golden.magnitude.keep_first, golden.magnitude.keep_last]);
  const dropped = merge.steps.map((s: { originalLayers: number[] }) => s.originalLayers[0]).sort();
  assert.deepEqual(dropped, golden.magnitude.dropped_2);
});

test('Taylor+: the calibration loss and the block scores Σ|W·∂L/∂W| equal the reference\'s (float64 PyTorch autograd)', async () => {
  await initBackend('wasm');
  const merge = await compress('taylor', 'taylor', 2);
  assert.ok(Math.abs(merge.calibration_loss - golden.taylor.loss) < 1e-6 * golden.taylor.loss, `loss ${merge.calibration_loss} vs ${golden.taylor.loss}`);
  assert.equal(merge.predicted_tokens, golden.ids.reduce((a: number, r: number[]) => a + r.length - 1, 0));
  close(merge.block_scores, golden.taylor.block_scores, 1e-4, 'block score');
  const dropped = merge.steps.map((s: { originalLayers: number[] }) => s.originalLayers[0]).sort();
  assert.deepEqual(dropped, golden.taylor.dropped_2);
});

test('SLEB: every step\'s candidates, their calibration losses and the block removed equal the reference\'s', async () => {
  await initBackend('wasm');
  const merge = await compress('sleb', 'sleb', golden.sleb.removed);
  const steps = merge.candidate_losses as { blocks: number[]; losses: number[] }[];
  assert.equal(steps.length, golden.sleb.steps.length);
  steps.forEach((s, k) => {
    const want = golden.sleb.steps[k];
    assert.deepEqual(s.blocks, want.blocks, `step ${k + 1}: candidates`);
    close(s.losses, want.losses, 2e-6, `step ${k + 1} loss`);
    assert.equal(merge.steps[k].originalLayers[0], want.removed, `step ${k + 1}: removed`);
  });
  assert.deepEqual(keptOf(merge.layer_sources), golden.sleb.kept);
});

for (const want of golden.laco as { removed: number; merge_layers: number; threshold: number; candidates: { layer: number; merged: number[]; similarity: number; accepted: boolean }[]; layer_sources: Sources }[]) {
  test(`LaCo (C = ${want.merge_layers}): candidate similarities, the automatic threshold and the merged layers equal the reference's`, async () => {
    await initBackend('wasm');
    const merge = await compress(`laco-${want.merge_layers}`, 'laco', want.removed, { params: { laco: { mergeLayers: want.merge_layers } } });
    const got = merge.candidates as typeof want.candidates;
    assert.deepEqual(got.map((c) => [c.layer, c.merged, c.accepted]), want.candidates.map((c) => [c.layer, c.merged, c.accepted]));
    close(got.map((c) => c.similarity), want.candidates.map((c) => c.similarity), 1e-5, 'similarity');
    assert.ok(Math.abs(merge.threshold - want.threshold) < 1e-5, `threshold ${merge.threshold} vs ${want.threshold}`);
    assert.deepEqual(merge.layer_sources, want.layer_sources);
  });
}

test('MKA with linear CKA: λ of every merge, one-shot and --iterative, equal the reference\'s (and differ from each other)', async () => {
  await initBackend('wasm');
  for (const want of golden.mka as { removed: number; iterative: boolean; lambdas: number[]; layer_sources: Sources }[]) {
    const merge = await compress(`mka-${want.iterative}`, 'mka', want.removed, { metric: 'cka', params: { mka: { iterative: want.iterative } } });
    close(merge.steps.map((s: { lambda: number }) => s.lambda), want.lambdas, 0, `λ (iterative ${want.iterative})`, 2e-6);
    close(merge.layer_sources.flatMap((l: Sources[number]) => l.sources.map((s) => s.weight)), want.layer_sources.flatMap((l) => l.sources.map((s) => s.weight)), 0, 'source weight', 4e-6);
  }
  const [once, iterative] = golden.mka as { lambdas: number[] }[];
  assert.ok(Math.abs(once.lambdas[1] - iterative.lambdas[1]) > 1e-4, 'the reference\'s iterative λ differs from the one-shot one by more than the tolerance');
});

test('--fit-lambda: the merged block\'s relative errors and the fitted λ of two successive merges equal the reference\'s', async () => {
  await initBackend('wasm');
  const model = loadModel(MODEL);
  try {
    let plan = identityPlan('mka', model.config.num_hidden_layers);
    for (const [i, j, lambda] of golden.fit_lambda.planned as [number, number, number][]) plan = mergeStep(plan, i, j, lambda);
    const fitted = fitLambdas(model, plan, golden.ids);
    const merges = fitted.steps.filter((s) => s.action === 'merge');
    assert.equal(merges.length, golden.fit_lambda.merges.length);
    merges.forEach((s, k) => {
      const want = golden.fit_lambda.merges[k];
      assert.deepEqual([s.layers, s.originalLayers], [want.layers, want.original_layers]);
      assert.equal(s.fit!.lambdaPlanned, want.lambda_planned);
      close([s.fit!.errorPlanned, s.fit!.error], [want.error_planned, want.error], 1e-5, `merge ${k + 1}: errors at the planned and fitted λ`);
      assert.ok(Math.abs(s.lambda! - want.lambda) < 1e-4, `merge ${k + 1}: λ ${s.lambda} vs ${want.lambda}`);
    });
  } finally {
    disposeModel(model);
  }
});
