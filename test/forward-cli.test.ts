/**
 * `mka forward`: by default the top-k next tokens of the last position only (no [T, vocab] logits);
 * `--logits last|all` adds logits rows, `--hidden-states` the HF hidden states. The top-k is checked
 * against a sort of the full logits row, the 'last' row against the 'all' path's last row.
 * Commands that compute nothing with tfjs (export, info, convert-llama2c, serve, queue) do not take --backend/--threads.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { runForward, topTokens } from '../src/model/inspect.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { UserError } from '../src/runtime/errors.ts';
import { assertUserError, runAllInProcess, runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const MODEL = 'models/demo';
const TEXT = 'Question: What is 2 + 3?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:';

before(() => initBackend('wasm'));

test('topTokens: the k largest by a full sort (ties: lower id first), probabilities of the softmax over the whole row', () => {
  const row = [0.5, 3, -1, 3, 2, 7, 2, 0];
  const sorted = row.map((v, id) => ({ v, id })).sort((a, b) => b.v - a.v || a.id - b.id);
  const z = row.reduce((s, v) => s + Math.exp(v), 0);
  for (const k of [1, 3, 5, 8]) {
    const t = topTokens(row, k);
    assert.deepEqual(t.map((x) => x.id), sorted.slice(0, k).map((x) => x.id), `k=${k}`);
    t.forEach((x) => assert.ok(Math.abs(x.prob - Math.exp(x.logit) / z) < 1e-12));
  }
});

test('by default only top_k of the last position; --logits last equals the last row of --logits all', async () => {
  const n0 = tf.memory().numTensors;
  const tok = await loadTokenizer(MODEL);
  const top = await runForward({ model: MODEL, text: TEXT });
  assert.deepEqual(Object.keys(top), ['input_ids', 'top_k']);
  assert.deepEqual(top.input_ids, tok.encode(TEXT));
  const all = await runForward({ model: MODEL, text: TEXT, logits: 'all', topK: 3 });
  const T = top.input_ids.length;
  assert.equal(all.logits!.length, T);
  assert.equal(all.logits![0].length, 512);
  assert.deepEqual(all.logits_positions, Array.from({ length: T }, (_, t) => t));
  const lastRow = all.logits![T - 1];
  assert.deepEqual(top.top_k.map((t) => t.id), topTokens(lastRow, 10).map((t) => t.id));
  assert.deepEqual(all.top_k, top.top_k.slice(0, 3));
  for (const t of top.top_k) {
    assert.equal(t.token, tok.decode([t.id]));
    assert.ok(Math.abs(t.logit - lastRow[t.id]) < 1e-5);
  }
  const last = await runForward({ model: MODEL, text: TEXT, logits: 'last', hiddenStates: true });
  assert.deepEqual(last.logits_positions, [T - 1]);
  assert.ok(Math.max(...last.logits![0].map((v, i) => Math.abs(v - lastRow[i]))) < 1e-4, 'last-position logits = row T-1 of all');
  assert.equal(last.hidden_states!.length, 9);
  assert.equal(last.hidden_states![0].length, T);
  assert.equal(tf.memory().numTensors, n0);
  await assert.rejects(runForward({ model: MODEL, ids: [1], topK: 0 }), (e: Error) => e instanceof UserError && /--top-k 0/.test(e.message));
});

test('CLI: stdout holds the top 10 only; --top-k and --logits; a model without a tokenizer lists ids', async () => {
  const [dflt, full] = await Promise.all([
    runCliInProcess(['forward', '--model', MODEL, '--text', TEXT, '--backend', 'wasm', '--quiet']),
    runCliInProcess(['forward', '--model', MODEL, '--ids', '1,5,9', '--top-k', '2', '--logits', 'all', '--backend', 'wasm', '--quiet']),
  ]);
  assert.equal(dflt.status, 0, dflt.stderr);
  const j = JSON.parse(dflt.stdout);
  assert.equal(j.top_k.length, 10);
  assert.equal(j.logits, undefined);
  assert.ok(dflt.stdout.length < 2000, `${dflt.stdout.length} bytes`);
  assert.equal(full.status, 0, full.stderr);
  const f = JSON.parse(full.stdout);
  assert.equal(f.top_k.length, 2);
  assert.equal(f.logits.length, 3);

  const bare = scratchDir('forward');
  try {
    for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(MODEL, f), join(bare, f));
    const ids = await runForward({ model: bare, ids: [1, 5, 9], topK: 2 });
    assert.deepEqual(ids.top_k.map((t) => t.id), f.top_k.map((t: { id: number }) => t.id));
    assert.equal(ids.top_k[0].token, undefined);
  } finally {
    rmSync(bare, { recursive: true, force: true });
  }
});

test('commands that compute nothing with tfjs do not take --backend or --threads, on the command line or in a --config file', async () => {
  const dir = scratchDir('nocompute');
  try {
    const config = join(dir, 'config.yaml');
    writeFileSync(config, 'backend: wasm\nthreads: 1\n');
    const cases = [
      ['export', 'hf', '--model', MODEL, '--out', join(dir, 'hf'), '--backend', 'wasm'],
      ['export', 'tfjs', '--model', MODEL, '--out', join(dir, 'tfjs'), '--threads=2'],
      ['info', '--model', MODEL, '--backend=native'],
      ['export', 'hf', '--model', MODEL, '--out', join(dir, 'hf'), '--config', config, '--quiet'],
      ['info', '--model', MODEL, '--config', config],
    ];
    const [hf, tfjs, info, hfConfig, infoConfig] = await runAllInProcess(cases);
    assertUserError(hf, 'Unknown argument: backend', 'only commands that run a model take --backend and --threads');
    assertUserError(tfjs, 'Unknown argument: threads', 'export tfjs');
    assertUserError(info, 'Unknown argument: backend', 'info');
    assertUserError(hfConfig, config, 'keys backend, threads are not options of mka export hf', 'only commands that run a model take --backend and --threads');
    assertUserError(infoConfig, config, 'keys backend, threads are not options of mka info');
    assert.ok(!existsSync(join(dir, 'tfjs')) && !existsSync(join(dir, 'hf')), 'nothing written');
    // the commands that compute take them from a --config file as from the command line
    const [fwd] = await runAllInProcess([['forward', '--model', MODEL, '--ids', '1,5', '--config', config, '--json', '--quiet']]);
    assert.equal(fwd.status, 0, fwd.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
