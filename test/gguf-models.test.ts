/**
 * GGUF export and `--model F.gguf` beyond the demo model, against llama.cpp's and the Python
 * references' goldens (test/goldens/gguf/, test/goldens/gguf/make.ts):
 *
 * - stories260K converted from llama2.c (SentencePiece vocabulary with byte fallback), f32 and q8_0;
 * - a tiny model with the real Llama 3 tokenizer (gpt2 / llama-bpe, 128,256 tokens), Llama 3.1's
 *   llama3 RoPE scaling (the rope_freqs tensor) and its chat template;
 * - the hf-tiny fixtures: Llama, llama3 RoPE scaling, tied F16, Mistral and Qwen2 with biases, whose
 *   F32 GGUF gives llama.cpp's logits and transformers' (golden.json) and, for the one whose rows all
 *   divide into blocks of 32, the Q8_0/Q4_0 bytes of llama.cpp's own llama-quantize.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { runForward } from '../src/model/inspect.ts';
import { readConfig } from '../src/model/config.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { generate } from '../src/model/generate.ts';
import { exportGguf, type GgufOutType } from '../src/export/gguf.ts';
import { exportHf } from '../src/export/hf.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { HF_TINY, STORIES_TYPES, convertStories, makeLlama3Tiny, tensorShas } from './goldens/gguf/cases.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const golden = (name: string) => JSON.parse(readFileSync(`test/goldens/gguf/${name}`, 'utf8'));
const maxDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

let dir: string;
before(async () => {
  await initBackend('wasm');
  dir = scratchDir('gguf-models');
});

async function exportTo(model: string, type: GgufOutType, name: string): Promise<string> {
  const out = join(dir, `${name}-${type}.gguf`);
  await exportGguf({ model, out, type, quiet: true });
  return out;
}

/** mka's greedy tokens after `ids` (KV cache, no stop at EOS). */
function greedy(model: string, ids: number[], n: number): number[] {
  const m = loadModel(model);
  try {
    return generate(m, ids, { maxNewTokens: n, stopIds: [] });
  } finally {
    disposeModel(m);
  }
}

test('stories260K (llama2.c, byte-fallback vocabulary): llama.cpp\'s ids for every text, its logits and greedy tokens, the converter\'s bytes', { skip: NO_SHARED }, async () => {
  const g = golden('stories260K.json');
  const model = join(dir, 'stories260K');
  await convertStories(SHARED!, model);
  for (const t of STORIES_TYPES) {
    const file = await exportTo(model, t, 'stories');
    const shas = tensorShas(file);
    for (const [name, want] of Object.entries(g.types[t].reference_sha256 as Record<string, string>)) assert.equal(shas[name], want, `${t} ${name}`);
    const tok = await loadTokenizer(file);
    if (t === 'f32') g.tokenize.texts.forEach((text: string, i: number) => assert.deepEqual(tok.encode(text), g.tokenize.llamacpp_ids[i], JSON.stringify(text)));
    const direct = g.types[t].llamacpp;
    assert.deepEqual(tok.encode(g.prompt), direct.ids);
    const exact = g.types[t].llamacpp_f32 ?? direct;
    const r = await runForward({ model: file, ids: direct.ids, logits: 'all' });
    exact.positions.forEach((p: number, k: number) => assert.ok(maxDiff(exact.logits[k], r.logits![p]) < 1e-4, `${t} position ${p}`));
    assert.deepEqual(greedy(file, direct.ids, exact.greedy.length), exact.greedy, `${t}: greedy`);
    direct.positions.forEach((p: number, k: number) => assert.ok(maxDiff(direct.logits[k], r.logits![p]) < (t === 'f32' ? 1e-4 : 0.5), `${t} position ${p} (llama.cpp's own products)`));
  }
});

test('Llama 3 tokenizer, llama3 RoPE scaling and chat template: llama.cpp\'s ids, logits and greedy tokens; the config comes back', async () => {
  const g = golden('llama3-tiny.json');
  const model = join(dir, 'llama3-tiny');
  await makeLlama3Tiny(model);
  const file = await exportTo(model, 'f32', 'llama3-tiny');
  const shas = tensorShas(file);
  for (const [name, want] of Object.entries(g.types.f32.reference_sha256 as Record<string, string>)) assert.equal(shas[name], want, name);
  assert.ok('rope_freqs.weight' in shas, 'llama3 scaling is stored as llama.cpp reads it');
  const tok = await loadTokenizer(file);
  const hf = await loadTokenizer(model);
  g.tokenize.texts.forEach((text: string, i: number) => {
    assert.deepEqual(tok.encode(text), g.tokenize.llamacpp_ids[i], JSON.stringify(text));
    assert.deepEqual(hf.encode(text), g.tokenize.llamacpp_ids[i], `tokenizer.json: ${JSON.stringify(text)}`);
  });
  assert.equal(tok.decode(tok.encode('Hello world'), { skipSpecial: true }), 'Hello world');
  const L = g.types.f32.llamacpp;
  assert.deepEqual(tok.encode(g.prompt), L.ids);
  const r = await runForward({ model: file, ids: L.ids, logits: 'all' });
  L.positions.forEach((p: number, k: number) => {
    for (const [id, logit] of L.logits[k] as [number, number][]) assert.ok(Math.abs(r.logits![p][id] - logit) < 1e-4, `position ${p} id ${id}: ${r.logits![p][id]} vs ${logit}`);
  });
  assert.deepEqual(greedy(file, L.ids, L.greedy.length), L.greedy);
  const { extra: _a, torch_dtype: _b, ...want } = readConfig(model);
  const { extra: _c, torch_dtype: _d, ...got } = readConfig(file);
  assert.deepEqual(got, want);
  const meta = new GgufFile(file);
  try {
    assert.equal(meta.string('tokenizer.chat_template'), JSON.parse(readFileSync(join(model, 'tokenizer_config.json'), 'utf8')).chat_template);
    assert.equal(meta.string('tokenizer.ggml.pre'), 'llama-bpe');
  } finally {
    meta.close();
  }
  // back to Hugging Face files: the same ids and chat template
  const hfDir = join(dir, 'llama3-from-gguf');
  await exportHf({ model: file, out: hfDir });
  const back = await loadTokenizer(hfDir);
  g.tokenize.texts.forEach((text: string, i: number) => assert.deepEqual(back.encode(text), g.tokenize.llamacpp_ids[i], JSON.stringify(text)));
  assert.equal(JSON.parse(readFileSync(join(hfDir, 'tokenizer_config.json'), 'utf8')).chat_template, JSON.parse(readFileSync(join(model, 'tokenizer_config.json'), 'utf8')).chat_template);
});

test('hf-tiny (Llama, llama3 RoPE, tied F16, Mistral, Qwen2 biases): F32 GGUF gives HF\'s forward exactly, llama.cpp\'s and transformers\' logits', { skip: NO_SHARED }, async () => {
  const g = golden('hf-tiny.json');
  for (const name of HF_TINY) {
    const src = join(SHARED!, 'fixtures', 'hf-tiny', name);
    const c = g.cases[name];
    const file = await exportTo(src, 'f32', name);
    const shas = tensorShas(file);
    for (const [t, want] of Object.entries(c.reference_sha256 as Record<string, string>)) assert.equal(shas[t], want, `${name} ${t}`);
    const L = c.llamacpp;
    const r = await runForward({ model: file, ids: L.ids, logits: 'all' });
    const d = Math.max(...L.positions.map((p: number, k: number) => maxDiff(L.logits[k], r.logits![p])));
    assert.ok(d < 1e-4, `${name}: max |mka − llama.cpp| = ${d}`);
    assert.deepEqual(greedy(file, L.ids, L.greedy.length), L.greedy, `${name}: greedy`);
    const hf = await runForward({ model: src, ids: L.ids, logits: 'all' });
    assert.deepEqual(r.logits, hf.logits, `${name}: the GGUF's forward is the checkpoint's`);
    const tr = JSON.parse(readFileSync(join(src, 'golden.json'), 'utf8')).sequences[0];
    assert.ok(Math.max(...tr.logits.map((row: number[], p: number) => maxDiff(row, r.logits![p]))) < 1e-4, `${name}: transformers`);
    const { extra: _a, torch_dtype: _b, ...want } = readConfig(src);
    const { extra: _c, torch_dtype: _d, ...got } = readConfig(file);
    assert.deepEqual(got, want, `${name}: config`);
    for (const [t, shasWant] of Object.entries((c.llama_quantize_sha256 ?? {}) as Record<string, Record<string, string>>)) {
      assert.deepEqual(tensorShas(await exportTo(src, t as GgufOutType, name)), shasWant, `${name} ${t}: llama-quantize's bytes`);
    }
  }
});
