/**
 * stories260K (a real trained llama2.c model) converted and run through mka: the known greedy ids and
 * logits after BOS, and llama2.c's greedy continuation of "Once upon a time" through the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { loadModel, disposeModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { generate } from '../src/model/generate.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const KNOWN_IDS = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337];
const BOS_LOGITS = [-6.2229, 8.4043, -6.2237, -6.2225, -6.2220];

test('stories260K: logits after BOS, greedy ids from BOS, and "Once upon a time" through the CLI', { skip: NO_SHARED }, async () => {
  const dir = join(scratchDir('stories'), 'stories260K');
  const conv = await runCliInProcess(['convert-llama2c', '--checkpoint', join(SHARED!, 'models/stories260K/stories260K.bin'),
    '--tokenizer', join(SHARED!, 'models/stories260K/tok512.bin'), '--out', dir, '--quiet']);
  assert.equal(conv.status, 0, conv.stderr);
  for (const backend of ['wasm', 'cpu'] as const) {
    await initBackend(backend);
    const model = loadModel(dir);
    const r = forward(model, [[1]], { logits: 'last' });
    const logits = Array.from(r.logits!.dataSync()).slice(0, 5);
    r.logits!.dispose();
    logits.forEach((v, i) => assert.ok(Math.abs(v - BOS_LOGITS[i]) <= 1e-3, `${backend}: logit ${i} = ${v}, want ${BOS_LOGITS[i]}`));
    assert.deepEqual(generate(model, [1], { maxNewTokens: KNOWN_IDS.length }), KNOWN_IDS, backend);
    disposeModel(model);
  }
  const gen = await runCliInProcess(['generate', '--model', dir, '--prompt', 'Once upon a time', '--max-new-tokens', '32', '--json', '--backend', 'wasm', '--quiet']);
  assert.equal(gen.status, 0, gen.stderr);
  const out = JSON.parse(gen.stdout);
  assert.equal(out.input_ids[0], 1, 'BOS first');
  assert.ok(out.text.startsWith(', there was a little girl named Lily. She loved to play outside in the park.'), out.text);
  const fwd = await runCliInProcess(['forward', '--model', dir, '--ids', '1,403', '--logits', 'all', '--hidden-states', '--backend', 'wasm', '--quiet']);
  assert.equal(fwd.status, 0, fwd.stderr);
  const f = JSON.parse(fwd.stdout);
  assert.equal(f.hidden_states.length, 6);
  assert.equal(f.logits.length, 2);
  assert.ok(Math.abs(f.logits[0][1] - BOS_LOGITS[1]) <= 1e-3);
});
