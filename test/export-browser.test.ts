/**
 * The exported GraphModel in a real browser: headless Chromium opens a page served on loopback that
 * loads @tensorflow/tfjs (its dist bundle) and the exported models, predicts the next token of a
 * prompt, and posts the prediction back. It must equal the first token `mka generate` produces.
 * Skips with a message where Chromium is not installed (Debian: `apt-get install chromium`).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { generate } from '../src/model/generate.ts';
import { runGenerate } from '../src/model/inspect.ts';
import { exportTfjs } from '../src/export/graph-model.ts';
import { quantizeModelWeights, type QuantScheme } from '../src/weights/quantize.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { serveDir } from './export-fixtures.ts';
import { writeRandomModel } from './random-model.ts';
import { NO_CHROMIUM, runInChromium } from './chromium.ts';
import { scratchDir } from './scratch.ts';

const TF_BUNDLE = fileURLToPath(new URL('../node_modules/@tensorflow/tfjs/dist/tf.min.js', import.meta.url));
const TMP = scratchDir('export-browser');

/** The page: loads each model with stock tfjs, predicts the next token after its ids, posts the results. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>mka export check</title><script src="/tf.min.js"></script></head>
<body><pre id="out">running</pre>
<script>
(async () => {
  const jobs = JSON.parse(new URLSearchParams(location.search).get('jobs')); // [{url, ids}]
  const results = { next: [] };
  try {
    await tf.setBackend('cpu'); // headless Chromium has no GPU: WebGL, the default, would run on a software rasterizer
    await tf.ready();
    for (const { url, ids } of jobs) {
      const model = await tf.loadGraphModel(url);
      results.next.push(tf.tidy(() => {
        const logits = model.predict(tf.tensor2d([ids], [1, ids.length], 'int32')); // [1, T, V]
        return logits.slice([0, ids.length - 1, 0], [1, 1, -1]).reshape([-1]).argMax().dataSync()[0];
      }));
      model.dispose();
    }
    results.backend = tf.getBackend();
  } catch (e) {
    results.error = String(e && e.stack || e);
  }
  document.getElementById('out').textContent = JSON.stringify(results);
  await fetch('/result', { method: 'POST', body: JSON.stringify(results) });
})();
</script></body></html>`;

/** Opens `url` in headless Chromium and resolves with what the page posts to /result. */
function pageResult(url: string, server: import('node:http').Server): Promise<Record<string, unknown>> {
  const posted = new Promise<Record<string, unknown>>((resolve) => {
    server.prependListener('request', (req, res) => {
      if (req.method !== 'POST' || req.url !== '/result') return;
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => resolve(JSON.parse(body)));
    });
  });
  return runInChromium(url, posted, TMP, 90_000);
}

test('headless Chromium runs the exported GraphModel and predicts mka generate\'s first token', { skip: NO_CHROMIUM }, async (t) => {
  await initBackend('wasm');
  const models: { label: string; dir: string; ids: number[]; want: Map<QuantScheme, number> }[] = [];

  const rand = join(TMP, 'random');
  await writeRandomModel(rand, { num_key_value_heads: 1 }, 21);
  const randIds = [1, 40, 7, 63, 12, 5];
  models.push({ label: 'random llama', dir: rand, ids: randIds, want: new Map() });
  if (SHARED) {
    const llama2c = await import('../src/convert/llama2c.ts').catch(() => null);
    if (llama2c) {
      const dir = join(TMP, 'stories260K');
      const src = join(SHARED, 'models/stories260K');
      await llama2c.convertLlama2c({ checkpoint: join(src, 'stories260K.bin'), tokenizer: join(src, 'tok512.bin'), out: dir });
      const g = await runGenerate({ model: dir, prompt: 'Once upon a time, there was a little', maxNewTokens: 1 });
      models.push({ label: 'stories260K', dir, ids: g.input_ids, want: new Map([['none', g.output_ids[0]]]) });
    } else t.diagnostic('stories260K skipped: src/convert/llama2c.ts is not available');
  } else t.diagnostic(`stories260K skipped: ${NO_SHARED}`);

  const schemes: QuantScheme[] = ['none', 'uint8'];
  for (const m of models) {
    const model = loadModel(m.dir);
    for (const s of schemes) {
      const q = s === 'none' ? model : quantizeModelWeights(model, s);
      const first = generate(q, m.ids, { maxNewTokens: 1 })[0];
      if (m.want.has(s)) assert.equal(first, m.want.get(s), 'mka generate (CLI path) and generate() agree');
      m.want.set(s, first);
      if (q !== model) disposeModel(q);
    }
    disposeModel(model);
  }

  for (const m of models) {
    for (const s of schemes) await exportTfjs({ model: m.dir, out: join(TMP, 'www', `${m.label.replace(/\W+/g, '_')}-${s}`), quantize: s });
  }
  writeFileSync(join(TMP, 'www', 'index.html'), PAGE);
  const { url, server, requests } = await serveDir(join(TMP, 'www'), { '/tf.min.js': TF_BUNDLE });
  try {
    const jobs = models.flatMap((m) => schemes.map((s) => ({ label: `${m.label} (${s})`, want: m.want.get(s)!, url: `${url}/${m.label.replace(/\W+/g, '_')}-${s}/model.json`, ids: m.ids })));
    const result = await pageResult(`${url}/index.html?jobs=${encodeURIComponent(JSON.stringify(jobs.map(({ url, ids }) => ({ url, ids }))))}`, server);
    assert.equal(result.error, undefined, String(result.error));
    const next = result.next as number[];
    jobs.forEach((j, i) => t.diagnostic(`${j.label} in Chromium [tfjs backend ${result.backend}]: next token ${next[i]}, mka generate: ${j.want}`));
    assert.deepEqual(next, jobs.map((j) => j.want));
    assert.equal(result.backend, 'cpu');
    assert.ok(requests.includes('/tf.min.js') && requests.some((r) => r.endsWith('.bin')), 'the page fetched tfjs and the weight shards over HTTP');
  } finally {
    server.close();
  }
});
