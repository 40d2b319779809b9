/**
 * `mka compress --plan merge.json`: a recorded plan replayed on the original model gives the same
 * safetensors bytes as the compress run that recorded it (JSON and YAML plans), without calibrating;
 * plans for another model and malformed plans are refused in one line naming the file, and --plan
 * refuses the options that make a plan. Plans written by mka 0.1.0 (test/fixtures/plans/) replay to the
 * bytes 0.1.0 wrote. mergekit.yaml and the model card beside merge.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import YAML from 'yaml';
import { initBackend } from '../src/runtime/backend.ts';
import { compressModel, replayPlan } from '../src/pipeline/compress.ts';
import { readPlanFile } from '../src/compress/plan-file.ts';
import { UserError } from '../src/runtime/errors.ts';
import { writeRandomModel } from './random-model.ts';
import { assertUserError, runAllInProcess } from './cli-run.ts';
import { readSafetensors } from './helpers.ts';
import { passthroughSlices } from '../src/compress/mergekit.ts';
import { exportHf } from '../src/export/hf.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('plan');
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
  const results = await runAllInProcess([
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

/** sha256 of the model.safetensors mka 0.1.0 wrote for each fixture plan (test/fixtures/plans/) on models/demo. */
const V010 = {
  'mka-3-v0.1.0.json': '1290148faa218484fbecbaee3135016edc3fff784ac535ffe8477ce15602d593',
  'shortgpt-2-v0.1.0.json': '709ea5b656f335c2fde462e147afa509b38284fcbb2a05d754fbdb4855ce32dc',
};

test('plans written by mka 0.1.0 replay to the same bytes, and those bytes are Σ w·θ of the original layers', async () => {
  await initBackend('wasm');
  const orig = readSafetensors(join(DEMO, 'model.safetensors'));
  for (const [file, sha] of Object.entries(V010)) {
    const plan = join('test', 'fixtures', 'plans', file);
    const out = join(root, `v010-${file}`);
    await replayPlan({ model: DEMO, plan, out });
    const bytes = readFileSync(join(out, 'model.safetensors'));
    assert.equal(createHash('sha256').update(bytes).digest('hex'), sha, `${file}: the replay's bytes differ from mka 0.1.0's`);
    // and independently of any earlier output: each layer is the weighted sum its layer_sources say
    const record = JSON.parse(readFileSync(plan, 'utf8'));
    const got = readSafetensors(join(out, 'model.safetensors'));
    record.layer_sources.forEach((l: { sources: { layer: number; weight: number }[]; norms_from: number }, k: number) => {
      for (const s of ['self_attn.q_proj.weight', 'mlp.down_proj.weight', 'input_layernorm.weight']) {
        const m = got.get(`model.layers.${k}.${s}`)!;
        const from = s.endsWith('norm.weight') ? [{ layer: l.norms_from, weight: 1 }] : l.sources;
        for (let e = 0; e < m.length; e++) {
          const want = Math.fround(from.reduce((acc, x) => acc + x.weight * orig.get(`model.layers.${x.layer}.${s}`)![e], 0));
          assert.ok(Math.abs(m[e] - want) <= 1e-7 * Math.max(1, Math.abs(want)), `${file} layer ${k} ${s}[${e}]: ${m[e]} != ${want}`);
        }
      }
    });
  }
});

test('mergekit.yaml: a removal plan is passthrough slices of exactly the layers kept; a merge plan says why mergekit cannot express it; README.md is its model card', async () => {
  await initBackend('wasm');
  const prompts = join(root, 'card-prompts.txt');
  writeFileSync(prompts, Array.from({ length: 6 }, (_, i) => `Question ${i}: what is ${i} plus ${i + 3}? Answer:`).join('\n'));
  // shortgpt drops by block influence: not simply the last layers, so the slices have a gap
  const out = join(root, 'card-shortgpt');
  const plan = await compressModel({ model: DEMO, out, method: 'shortgpt', remove: 3, calibrationFile: prompts, quiet: true });
  const kept = plan.layers.map((l) => l.sources[0].layer);
  const config = YAML.parse(readFileSync(join(out, 'mergekit.yaml'), 'utf8'));
  assert.equal(config.merge_method, 'passthrough');
  assert.equal(config.dtype, 'float32');
  const fromSlices = (config.slices as { sources: { model: string; layer_range: [number, number] }[] }[]).flatMap((s) => {
    assert.equal(s.sources.length, 1);
    assert.equal(s.sources[0].model, DEMO);
    const [a, b] = s.sources[0].layer_range;
    return Array.from({ length: b - a }, (_, i) => a + i);
  });
  assert.deepEqual(fromSlices, kept);
  assert.equal(kept.length, 5);
  assert.ok(config.slices.length >= 2 || kept.join() === '0,1,2,3,4', `slices ${JSON.stringify(config.slices)}`);
  assert.deepEqual(passthroughSlices({ ...plan, layers: [0, 1, 3, 4, 7].map((layer) => ({ sources: [{ layer, weight: 1 }], normsFrom: layer })) }), [[0, 2], [3, 5], [7, 8]]);

  const card = readFileSync(join(out, 'README.md'), 'utf8');
  const front = YAML.parse(card.split('---')[1]);
  assert.deepEqual(front.base_model, [DEMO]);
  assert.ok(front.tags.includes('layer-pruning'));
  const dropped = Array.from({ length: 8 }, (_, i) => i).filter((i) => !kept.includes(i));
  assert.match(card, new RegExp(`original layers dropped: ${dropped.join(', ')}`));
  assert.match(card, /decoder layers: 8 → 5 \(3 removed/);
  assert.match(card, /6 prompts/);

  // the 0.1.0 mka plan merges: no config, a comment naming the reason and each merged layer's weights
  const merged = join(root, 'card-mka');
  await replayPlan({ model: DEMO, plan: join('test', 'fixtures', 'plans', 'mka-3-v0.1.0.json'), out: merged });
  const text = readFileSync(join(merged, 'mergekit.yaml'), 'utf8');
  assert.equal(YAML.parse(text), null, 'only comments');
  assert.match(text, /cannot express this plan/);
  assert.match(text, /#   4 <- 0\.623343 × 4 \+ 0\.235848 × 5 \+ 0\.087443 × 6 \+ 0\.053366 × 7 \(norms from 4\)/);
  const mcard = readFileSync(join(merged, 'README.md'), 'utf8');
  assert.ok(YAML.parse(mcard.split('---')[1]).tags.includes('layer-merging'));
  for (const lambda of ['0.6210', '0.6262', '0.6233']) assert.ok(mcard.includes(`| ${lambda} |`), `λ ${lambda} in the card`);
  assert.match(mcard, /replayed from the recorded plan/);

  // export hf writes a card too, carrying the compression it exports
  const exported = join(root, 'card-export');
  await exportHf({ model: merged, out: exported });
  const ecard = readFileSync(join(exported, 'README.md'), 'utf8');
  assert.deepEqual(YAML.parse(ecard.split('---')[1]).base_model, [merged]);
  assert.match(ecard, /decoder layers: 8 → 5/);
  assert.match(ecard, /mka compress --model models\/demo --plan merge.json/, 'the recorded plan replays on its own base model');
});
