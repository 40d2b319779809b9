/**
 * The paper's comparison in one command: `mka sweep --methods mka,laco,sleb,shortgpt,reverse,angular,
 * taylor,magnitude` on the demo model trained without LayerDrop and on stories260K (converted with
 * `mka convert-llama2c`), each point's plan removing what it says and the report listing every method.
 * Kept small (few questions per point); the full demo tables are in docs/results.md.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { runCliInProcess } from './cli-run.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const ALL = ['mka', 'laco', 'sleb', 'shortgpt', 'reverse', 'angular', 'taylor', 'magnitude'];
const root = scratchDir('sweep-methods');

/** Checks a finished sweep directory: every method at every count in results.csv, every plan of the right size. */
function checkSweep(out: string, layers: number, remove: number[]): void {
  const rows = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')).points as Record<string, unknown>[];
  for (const method of ALL) {
    for (const k of remove) {
      const row = rows.find((r) => r.method === method && Number(r.layers_removed) === k);
      assert.ok(row, `${method} −${k} in results.json`);
      assert.equal(Number(row.layers), layers - k);
      assert.ok(Number(row.mmlu) >= 0 && Number(row.mmlu) <= 1);
      if (k === 0) continue;
      const plan = JSON.parse(readFileSync(join(out, 'plans', `${method}-${k}.json`), 'utf8'));
      assert.equal(plan.method, method);
      assert.equal(plan.layers.length, layers - k, `${method}-${k} plan`);
    }
  }
  assert.deepEqual(readdirSync(join(out, 'points')).length, 1 + ALL.length * remove.filter((k) => k > 0).length);
  const summary = readFileSync(join(out, 'summary.md'), 'utf8');
  for (const method of ALL) assert.match(summary, new RegExp(`\\| ${method} \\| ${remove.at(-1)} \\|`));
}

test('sweep --methods (all eight) on the demo model trained without LayerDrop', async () => {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'demo');
  const r = await runCliInProcess(['sweep', '--model', 'models/demo-nolayerdrop', '--data', data, '--methods', ALL.join(','), '--remove', '0,2', '--limit', '2', '--per-subject', '3', '--out', out, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  checkSweep(out, 8, [0, 2]);
  const taylor = JSON.parse(readFileSync(join(out, 'plans', 'taylor-2.json'), 'utf8'));
  assert.equal(taylor.details.gradients_backend === 'wasm' || taylor.details.gradients_backend === 'cpu', true);
});

test('sweep --methods (all eight) on stories260K converted with mka convert-llama2c', { skip: NO_SHARED }, async () => {
  const base = join(root, 'stories260K');
  const conv = await runCliInProcess(['convert-llama2c', '--checkpoint', join(SHARED!, 'models/stories260K/stories260K.bin'), '--tokenizer', join(SHARED!, 'models/stories260K/tok512.bin'), '--out', base, '--quiet']);
  assert.equal(conv.status, 0, conv.stderr);
  const out = join(root, 'stories');
  const r = await runCliInProcess(['sweep', '--model', base, '--data', join(SHARED!, 'data/mmlu'), '--methods', ALL.join(','), '--remove', '0,1,2',
    '--calib-subjects', '6', '--per-subject', '1', '--limit', '1', '--eval-subjects', 'abstract_algebra,anatomy', '--out', out, '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  checkSweep(out, 5, [0, 1, 2]);
});
