/**
 * `mka compress --plan merge.json`: a recorded plan replayed on the original model gives the same
 * safetensors bytes as the compress run that recorded it (JSON and YAML plans), without calibrating;
 * plans for another model and malformed plans are refused in one line naming the file, and --plan
 * refuses the options that make a plan.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import YAML from 'yaml';
import { initBackend } from '../src/runtime/backend.ts';
import { compressModel, replayPlan } from '../src/pipeline/compress.ts';
import { readPlanFile } from '../src/pipeline/plan-file.ts';
import { UserError } from '../src/runtime/errors.ts';
import { writeRandomModel } from './random-model.ts';
import { assertUserError, runAllCli } from './cli-run.ts';

const root = mkdtempSync(join(tmpdir(), 'mka-plan-'));
const DEMO = 'models/demo';

/** A random 5-layer model with the demo model's tokenizer. */
async function model(dir: string, overrides: Record<string, unknown> = {}): Promise<string> {
  await writeRandomModel(dir, { vocab_size: 512, num_hidden_layers: 5, ...overrides }, 7);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(DEMO, f), join(dir, f));
  return dir;
}

const safetensors = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();

/** Asserts a UserError whose one-line message holds every needle. */
function refused(f: () => unknown, ...needles: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof UserError, String(e));
    assert.ok(!e.message.includes('\n'), e.message);
    for (const n of needles) assert.ok(e.message.includes(n), `${JSON.stringify(n)} not in: ${e.message}`);
    return true;
  });
}

test('a plan replayed from merge.json (or YAML) gives the recorded run\'s safetensors byte for byte; plans that cannot apply are refused naming the file', async () => {
  await initBackend('wasm');
  const M = await model(join(root, 'model'));
  const prompts = join(root, 'prompts.txt');
  writeFileSync(prompts, Array.from({ length: 12 }, (_, i) => `Question ${i}: what is ${i} plus ${2 * i + 1}? Answer:`).join('\n'));
  const first = join(root, 'mka-2');
  await compressModel({ model: M, out: first, method: 'mka', remove: 2, calibrationFile: prompts, dtype: 'bfloat16', quiet: true });
  const record = JSON.parse(readFileSync(join(first, 'merge.json'), 'utf8'));
  assert.equal(record.dtype, 'bfloat16');
  assert.match(record.source_config_sha256, /^[0-9a-f]{64}$/);
  assert.ok(record.layer_sources.some((l: { sources: unknown[] }) => l.sources.length > 1), 'the plan merges layers');

  const yamlPlan = join(root, 'plan.yaml');
  writeFileSync(yamlPlan, YAML.stringify(record));
  for (const [plan, out] of [[join(first, 'merge.json'), join(root, 'again')], [yamlPlan, join(root, 'again-yaml')]]) {
    await replayPlan({ model: M, plan, out });
    assert.deepEqual(safetensors(out), safetensors(first));
    for (const f of safetensors(first)) assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(first, f))), `${out}/${f} differs from the recorded run's`);
    const replayed = JSON.parse(readFileSync(join(out, 'merge.json'), 'utf8'));
    assert.deepEqual(replayed.layer_sources, record.layer_sources);
    assert.equal(replayed.replayed_from, plan);
    assert.equal(readFileSync(join(out, 'config.json'), 'utf8'), readFileSync(join(first, 'config.json'), 'utf8'));
  }

  const plan = join(first, 'merge.json');
  const six = await model(join(root, 'six'), { num_hidden_layers: 6 });
  const other = await model(join(root, 'other'), { rope_theta: 500000 });
  refused(() => readPlanFile(plan, six), plan, 'for a model with 5 layers', 'has 6 (num_hidden_layers)');
  refused(() => readPlanFile(plan, other), plan, 'another model', 'source_config_sha256');
  const write = (name: string, text: string) => {
    writeFileSync(join(root, name), text);
    return join(root, name);
  };
  const broken = write('broken.json', '{"original_layers": 5, "layer_sources": [');
  refused(() => readPlanFile(broken, M), broken, 'not valid JSON');
  const weights = write('weights.json', JSON.stringify({ ...record, layer_sources: [{ sources: [{ layer: 0, weight: 0.5 }], norms_from: 0 }] }));
  refused(() => readPlanFile(weights, M), weights, 'sum to 0.5');
  const layer = write('layer.json', JSON.stringify({ ...record, layer_sources: [{ sources: [{ layer: 5, weight: 1 }], norms_from: 0 }] }));
  refused(() => readPlanFile(layer, M), layer, 'sources[0]', '0..4');
  const count = write('count.json', JSON.stringify({ ...record, layers: 4 }));
  refused(() => readPlanFile(count, M), count, '"layers" is 4');
  const badYaml = write('bad.yaml', 'original_layers: [5\n');
  refused(() => readPlanFile(badYaml, M), badYaml, 'not valid YAML');
});

test('compress --plan refuses the options that make a plan, before any work; --subjects for calibration is a deprecated --calib-subjects', async () => {
  const outOf = (name: string) => join(root, `refused-${name}`);
  const results = await runAllCli([
    ['compress', '--model', DEMO, '--plan', 'no-such-plan.json', '--remove', '2', '--out', outOf('remove')],
    ['compress', '--model', DEMO, '--plan', 'no-such-plan.json', '--method', 'reverse', '--data', 'models', '--out', outOf('method')],
    ['compress', '--model', DEMO, '--out', outOf('none')],
    ['compress', '--model', DEMO, '--method', 'reverse', '--remove', '1', '--subjects', '2', '--out', join(root, 'deprecated')],
  ]);
  assertUserError(results[0], '--plan', '--remove');
  assertUserError(results[1], '--plan', '--method', '--data');
  assertUserError(results[2], '--remove', '--plan');
  assert.equal(results[3].status, 0, results[3].stderr);
  assert.match(results[3].stderr, /^mka: --subjects is deprecated here \(it counts calibration subjects\); use --calib-subjects$/m);
  for (const name of ['remove', 'method', 'none']) assert.ok(!existsSync(outOf(name)), `nothing written for ${name}`);
});
