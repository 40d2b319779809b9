/**
 * The committed demo model (models/demo): it loads, matches its model card, and its 5-shot accuracy on
 * the demo benchmark, recomputed here through the project's evaluator, is what the card states and
 * drops as layers are removed. Runs on the default backend (native when built: the evaluation is the
 * same code on every backend, and 1,250 five-shot questions take several times longer on plain wasm).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { DEMO_SUBJECTS, ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { dropLayers, scoreModel } from '../scripts/demo-training/score.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { cardArchitecture } from '../scripts/demo-training/model-card.ts';
import { scratchDir } from './scratch.ts';

const MODEL_DIR = 'models/demo';

await initBackend('auto');
const DATA_DIR = join(scratchDir('demo-model'), 'demo-mmlu');
await ensureBenchmark(DATA_DIR);

test('committed model: loads, matches its card; 5-shot accuracy recomputed here is >= 60% and drops as layers are removed', async () => {
  assert.ok(existsSync(join(MODEL_DIR, 'model.safetensors')), 'models/demo is committed');
  const before = tf.memory().numTensors;
  const model = loadModel(MODEL_DIR);
  const card = readFileSync(join(MODEL_DIR, 'README.md'), 'utf8');
  const block = /```json\n([\s\S]*?)\n```/.exec(card);
  assert.ok(block, 'the card has an architecture block');
  assert.deepEqual(JSON.parse(block![1]), cardArchitecture(model.config));
  const log = JSON.parse(readFileSync(join(MODEL_DIR, 'training-log.json'), 'utf8'));
  assert.ok(card.includes(`${(100 * log.accuracy.accuracy).toFixed(1)}%`), 'the card states the logged accuracy');

  // The whole committed test set through the project's evaluator (the log was written on whatever
  // backend trained the model: float sums differ, so a near-tie question may flip).
  const tokenizer = await loadTokenizer(MODEL_DIR);
  const data = loadMmlu(DATA_DIR);
  const full = await scoreModel(model, tokenizer, data);
  assert.ok(full.accuracy >= 0.6, `5-shot accuracy ${full.accuracy} (chance 0.25)`);
  assert.ok(Math.abs(full.accuracy - log.accuracy.accuracy) <= 0.01, `accuracy ${full.accuracy}, logged ${log.accuracy.accuracy}`);
  for (const s of DEMO_SUBJECTS) assert.ok(full.subjects[s].accuracy >= 0.35, `${s}: ${full.subjects[s].accuracy}`);

  // Graded (on the first 50 questions per subject): removing the last 2 layers costs little, the last 4
  // much more, and the first layer cannot be spared.
  const L = model.config.num_hidden_layers;
  const without = async (drop: number[]) => (await scoreModel(dropLayers(model, drop), tokenizer, data, { limit: 50 })).accuracy;
  const last2 = await without([L - 2, L - 1]), last4 = await without([L - 4, L - 3, L - 2, L - 1]), first = await without([0]);
  assert.ok(last2 > 0.9 && last4 < last2 - 0.05 && last4 > 0.5 && first < last4, `-2 last: ${last2}, -4 last: ${last4}, -layer 0: ${first}`);
  disposeModel(model);
  assert.equal(tf.memory().numTensors, before);
});

