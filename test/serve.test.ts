/**
 * `mka serve` in a real browser: headless Chromium opens the page for the demo model's tfjs export,
 * which tokenizes the prompt in the browser, generates greedily with the GraphModel and posts the
 * token ids; they must equal `mka generate`'s greedy output. Also: the server's routes and errors.
 * Skips the browser part where Chromium is not installed (Debian: apt-get install chromium).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { runGenerate } from '../src/model/inspect.ts';
import { exportTfjs } from '../src/export/graph-model.ts';
import { startServe } from '../src/serve/server.ts';
import { NO_CHROMIUM, runInChromium } from './chromium.ts';
import { UserError } from '../src/runtime/errors.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('serve');
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
    // tfjs's cpu backend: headless Chromium has no GPU, and its default, WebGL, would run on a software rasterizer
    // (15 CPU-s in Chromium's processes, against about 1)
    const result = await runInChromium(`${s.url}/?prompt=${encodeURIComponent(PROMPT)}&max_new_tokens=${N}&report=1&backend=cpu`, posted, TMP);
    assert.equal(result.error, undefined, String(result.error));
    assert.equal(result.backend, 'cpu', '?backend= picks the page\'s tfjs backend');
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
  await assert.rejects(startServe({ model: TMP, port: 0 }), /model\.json: not found; --model must be a directory written by `mka export tfjs`$/);
});

/** Sends raw request bytes and returns the status code of the answer (null when the connection closed without one). */
function rawStatus(url: string, request: string): Promise<number | null> {
  const { port } = new URL(url);
  return new Promise((ok, fail) => {
    const sock = connect(Number(port), '127.0.0.1', () => sock.end(request));
    let got = '';
    sock.on('data', (d) => (got += d));
    sock.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? ok(null) : fail(e)));
    sock.on('close', () => ok(/^HTTP\/1\.[01] (\d{3})/.exec(got) ? Number(/^HTTP\/1\.[01] (\d{3})/.exec(got)![1]) : null));
  });
}

test('the server survives malformed and traversal URLs, symlinks out of the export, huge headers and many requests at once', async () => {
  if (!existsSync(join(EXPORT, 'model.json'))) {
    await initBackend('wasm');
    await exportTfjs({ model: 'models/demo', out: EXPORT });
  }
  const outside = join(TMP, 'secret.txt');
  writeFileSync(outside, 'secret\n');
  symlinkSync(outside, join(EXPORT, 'secret.txt'));
  symlinkSync(TMP, join(EXPORT, 'up'));
  const s = await startServe({ model: EXPORT, port: 0 });
  try {
    const get = (path: string) => rawStatus(s.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    for (const bad of ['/%E0%A4%A', '/%ff', '/model/%E0%A4%A', '//[', '/model/%00', '/model/..%2f..%2fpackage.json']) {
      const status = await get(bad);
      assert.ok(status === 400 || status === 404, `${bad}: ${status}`);
    }
    for (const path of ['/model/secret.txt', '/model/up/secret.txt', '/model/%2e%2e/secret.txt']) {
      assert.equal(await get(path), 404, `${path} is outside the export`);
    }
    assert.equal(await rawStatus(s.url, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`), 431);
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => fetch(`${s.url}/model/model.json?${i}`).then(async (r) => (await r.arrayBuffer(), r.status))));
    assert.deepEqual([...new Set(many)], [200]);
    const after = await fetch(`${s.url}/model/model.json`);
    assert.equal(after.status, 200);
    assert.equal((await after.json()).format, 'graph-model', 'a normal request still answers');
  } finally {
    await s.close();
    rmSync(join(EXPORT, 'secret.txt'));
    rmSync(join(EXPORT, 'up'));
  }
});

test('serve refuses impossible ports and unknown hosts with one line', async () => {
  for (const port of [-1, 70000, 1.5]) await assert.rejects(startServe({ model: EXPORT, port }), (e: Error) => e instanceof UserError && /--port/.test(e.message));
  await assert.rejects(startServe({ model: EXPORT, port: 0, host: 'no-such-host.invalid' }), (e: Error) => e instanceof UserError && /--host no-such-host\.invalid/.test(e.message));
  await assert.rejects(startServe({ model: EXPORT, port: 0, host: '203.0.113.7' }), (e: Error) => e instanceof UserError && /--host 203\.0\.113\.7/.test(e.message));
});

test('serve reads model.json through its schema: another format or edited metadata is one line naming the file and the fix', async () => {
  const dir = mkdtempSync(join(TMP, 'bad-export-'));
  const file = join(dir, 'model.json');
  const fix = '--model must be a directory written by `mka export tfjs`';
  await assert.rejects(startServe({ model: dir, port: 0 }), (e: Error) => e instanceof UserError && e.message === `${file}: not found; ${fix}`);
  writeFileSync(file, JSON.stringify({ format: 'layers-model' }));
  await assert.rejects(startServe({ model: dir, port: 0 }), (e: Error) => e instanceof UserError
    && e.message === `${file}: not a valid tfjs GraphModel of mka export tfjs (format must be "graph-model", not "layers-model"); ${fix}`);
  writeFileSync(file, JSON.stringify({ format: 'graph-model', userDefinedMetadata: { max_seq: '64' } }));
  await assert.rejects(startServe({ model: dir, port: 0 }), (e: Error) => e instanceof UserError && /userDefinedMetadata\.max_seq must be an integer, not "64"/.test(e.message));
});
