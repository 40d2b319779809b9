/**
 * A compressed model shipped to llama.cpp: the demo merged by a recorded MKA plan (8 → 5 layers,
 * λ-blended weights; `mka compress --plan`), exported with `mka export gguf`, against what llama.cpp
 * made of the same files (test/goldens/gguf/compressed.json, test/goldens/gguf/make.ts):
 *
 * - every tensor's bytes are those llama.cpp's converter rules and gguf-py's quantizers give from the
 *   merged Hugging Face checkpoint, and the gguf package reads the same tensor list;
 * - llama.cpp loads each file, tokenizes the prompt to mka's ids, and its logits and greedy tokens on
 *   the same weights in F32 equal mka's within 1e-4 (its own Q8_0/Q4_0 products round the activations
 *   to 8-bit blocks, which moves this model's logits, up to 14, by up to 0.3: compared within 0.5);
 * - the merged directory and its F32 GGUF give mka the same logits bit for bit, and the GGUF carries
 *   the merge record.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { runForward } from '../src/model/inspect.ts';
import { exportGguf } from '../src/export/gguf.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { disposeModel, loadModel } from '../src/model/model.ts';
import { generate } from '../src/model/generate.ts';
import { MERGED_TYPES, makeMergedDemo, tensorShas } from './goldens/gguf/cases.ts';
import { scratchDir } from './scratch.ts';

const GOLDEN = JSON.parse(readFileSync('test/goldens/gguf/compressed.json', 'utf8'));
const maxDiff = (a: number[], b: number[]) => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

let dir: string;
let merged: string;
const files: Record<string, string> = {};

before(async () => {
  await initBackend('wasm');
  dir = scratchDir('gguf-compressed');
  merged = join(dir, 'merged');
  await makeMergedDemo('.', merged);
  for (const t of MERGED_TYPES) {
    files[t] = join(dir, `merged-${t}.gguf`);
    await exportGguf({ model: merged, out: files[t], type: t, quiet: true });
  }
});

test('the merged model\'s GGUF holds what llama.cpp\'s converter writes from it: 5 blocks, every tensor\'s bytes, the merge record', () => {
  const record = JSON.parse(readFileSync(join(merged, 'merge.json'), 'utf8'));
  for (const t of MERGED_TYPES) {
    const g = new GgufFile(files[t]);
    try {
      assert.equal(g.int('llama.block_count'), 5);
      assert.deepEqual(tensorShas(files[t]), GOLDEN.types[t].reference_sha256, `${t}: tensor bytes`);
      assert.deepEqual([...g.tensors.values()].map((x) => ({ name: x.name, type: x.type, shape: x.dims })), GOLDEN.types[t].gguf_py.tensors, `${t}: tensor list`);
      assert.deepEqual(JSON.parse(g.string('mka.merge')).steps, record.steps, `${t}: mka.merge`);
    } finally {
      g.close();
    }
  }
});

test('llama.cpp runs the merged model\'s GGUF as mka does: the same ids, logits within 1e-4 on F32 products, the same greedy tokens', async () => {
  const n0 = tf.memory().numTensors;
  const fromDir = await runForward({ model: merged, ids: GOLDEN.types.f32.llamacpp.ids, logits: 'all' });
  for (const t of MERGED_TYPES) {
    const direct = GOLDEN.types[t].llamacpp;
    assert.deepEqual((await loadTokenizer(files[t])).encode(GOLDEN.prompt), direct.ids, `${t}: prompt ids`);
    const r = await runForward({ model: files[t], ids: direct.ids, logits: 'all' });
    if (t === 'f32') assert.deepEqual(r.logits, fromDir.logits, 'the F32 GGUF gives the merged directory\'s logits exactly');
    // llama.cpp's F32 products of the same weights (q8_0/q4_0: mka's f32 re-export of the file)
    const exact = GOLDEN.types[t].llamacpp_f32 ?? direct;
    exact.positions.forEach((p: number, k: number) => {
      const d = maxDiff(exact.logits[k], r.logits![p]);
      assert.ok(d < 1e-4, `${t}: position ${p}: max |mka − llama.cpp (F32 products)| = ${d}`);
    });
    const m = loadModel(files[t]);
    try {
      assert.deepEqual(generate(m, direct.ids, { maxNewTokens: exact.greedy.length, stopIds: [] }), exact.greedy, `${t}: greedy tokens`);
    } finally {
      disposeModel(m);
    }
    // llama.cpp's own Q8_0/Q4_0 products quantize the activations to 8-bit blocks: close, not equal
    direct.positions.forEach((p: number, k: number) => {
      const d = maxDiff(direct.logits[k], r.logits![p]);
      assert.ok(d < (t === 'f32' ? 1e-4 : 0.5), `${t}: position ${p}: max |mka − llama.cpp| = ${d}`);
    });
  }
  assert.equal(tf.memory().numTensors, n0);
});
