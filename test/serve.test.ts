/**
 * `mka serve` in a real browser: headless Chromium opens the page for the demo model's tfjs export,
 * which tokenizes the prompt in the browser, generates greedily with the GraphModel and posts the
 * token ids; they must equal `mka generate`'s greedy output. Also: the server's routes and errors.
 * Skips the browser part where Chromium is not installed (Debian: apt-get install chromium).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { runGenerate } from '../src/model/inspect.ts';
import { exportTfjs } from '../src/export/graph-model.ts';
import { startServe } from '../src/serve/server.ts';
import { NO_CHROMIUM, runInChromium } from './chromium.ts';

const TMP = mkdtempSync(join(tmpdir(), 'mka-serve-'));
after(() => rmSync(TMP, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }));
const EXPORT = join(TMP, 'demo-tfjs');
const PROMPT = 'The following are multiple choice questions';
const N = 12;

test('the served page generates mka generate\'s greedy tokens in headless Chromium', { skip: NO_CHROMIUM }, async (t) => {
  await initBackend('wasm');
  await exportTfjs({ model: 'models/demo', out: EXPORT });
  const want = await runGenerate({ model: 'models/demo', prompt: PROMPT, maxNewTokens: N });
  let report: (r: Record<string, unknown>) => void = () => {};
  const posted = new Promise<Record<string, unknown>>((ok) => (report = ok));
  const s = await startServe({ model: EXPORT, port: 0, onResult: (r) => report(r) });
  try {
    const result = await runInChromium(`${s.url}/?prompt=${encodeURIComponent(PROMPT)}&max_new_tokens=${N}&report=1`, posted, TMP);
    assert.equal(result.error, undefined, String(result.error));
    t.diagnostic(`Chromium (tfjs ${result.backend}): ${JSON.stringify(result.text)}; mka generate: ${JSON.stringify(want.text)}`);
    assert.deepEqual(result.ids, want.output_ids.slice(0, (result.ids as number[]).length), 'a prefix of mka generate\'s tokens');
    assert.ok((result.ids as number[]).length === want.output_ids.length || want.output_ids.length < N, 'as many tokens, unless EOS came first');
  } finally {
    await s.close();
  }
});

test('the server serves the page, tfjs, the tokenizer and the model, and nothing outside the export', async () => {
  if (!existsSync(join(EXPORT, 'model.json'))) {
    await initBackend('wasm');
    await exportTfjs({ model: 'models/demo', out: EXPORT });
  }
  const s = await startServe({ model: EXPORT, port: 0 });
  try {
    const get = (p: string) => fetch(s.url + p);
    assert.match(await (await get('/')).text(), /<title>mka serve<\/title>/);
    for (const p of ['/tf.min.js', '/tokenizers.mjs', '/tokenizer/tokenizer.json', '/model/model.json']) assert.equal((await get(p)).status, 200, p);
    const cfg = await (await get('/api/config')).json();
    assert.deepEqual({ bos: cfg.bos, addBos: cfg.addBos, maxSeq: cfg.maxSeq }, { bos: 1, addBos: true, maxSeq: 1024 });
    assert.equal((await get('/model/%2e%2e/%2e%2e/package.json')).status, 404);
    assert.equal((await fetch(s.url + '/api/result', { method: 'POST', body: '{}' })).status, 405, 'no result route without a listener');
  } finally {
    await s.close();
  }
  await assert.rejects(startServe({ model: TMP, port: 0 }), /model\.json: not found or not JSON/);
});
