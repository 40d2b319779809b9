/**
 * scripts/make-paper-model.ts and the one-tensor-at-a-time writers at scale: the paper shapes'
 * parameter counts against the published figures, the seeded BF16 generator's distribution, the
 * real Llama 3 tokenizer, and (on the same layout with shrunk dimensions) the sharded directory,
 * compression that copies kept BF16 tensors byte for byte and rounds merged ones once, and the tfjs
 * export's slice-by-slice float16 conversion.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PAPER_SHAPES, llama3TokenizerFiles, makePaperModel, normalTable, paperConfig, randomBf16 } from '../scripts/make-paper-model.ts';
import { parameterCount } from '../src/model/model.ts';
import { tokenizerFromJson } from '../src/tokenizer/tokenizer.ts';
import { checkpointSource } from '../src/weights/source.ts';
import { compressModel } from '../src/pipeline/compress.ts';
import { exportTfjs } from '../src/export/graph-model.ts';
import { dequantize } from '../src/weights/quantize.ts';
import { toFloat32, fromFloat32 } from '../src/io/safetensors.ts';
import { scratchDir } from './scratch.ts';

test('paper shapes have the published parameter counts and config fields', () => {
  assert.equal(parameterCount(paperConfig('llama3-8b')), 8_030_261_248);
  assert.equal(parameterCount(paperConfig('llama2-7b')), 6_738_415_616);
  assert.equal(parameterCount(paperConfig('mistral-7b')), 7_241_732_096);
  // Meta-Llama-3-70B has 80 such layers: 70,553,706,496 parameters.
  assert.equal(parameterCount(paperConfig('llama70b-layer', 80)), 70_553_706_496);
  const l31 = paperConfig('llama3.1-8b');
  assert.deepEqual([l31.rope_scaling?.rope_type, l31.rope_scaling?.factor, l31.max_position_embeddings], ['llama3', 8, 131072]);
  const m = paperConfig('mistral-7b');
  assert.deepEqual([m.sliding_window, m.num_key_value_heads, m.bos_token_id], [4096, 8, 1]);
  assert.deepEqual(Object.keys(PAPER_SHAPES).sort(), ['llama2-7b', 'llama3-8b', 'llama3.1-8b', 'llama70b-layer', 'mistral-7b']);
  assert.throws(() => paperConfig('gpt2'), /--shape gpt2: must be one of/);
});

test('random BF16 weights: N(0, 0.02), seeded per tensor name, norms 1', () => {
  const table = normalTable(0.02);
  const a = toFloat32(Buffer.from(randomBf16('model.layers.0.mlp.up_proj.weight', 200_001, 1, table)), 'BF16');
  let sum = 0, sq = 0, within = 0;
  for (const v of a) {
    sum += v;
    sq += v * v;
    if (Math.abs(v) <= 0.02) within++;
  }
  const mean = sum / a.length, std = Math.sqrt(sq / a.length - mean * mean);
  assert.ok(Math.abs(mean) < 2e-4, `mean ${mean}`);
  assert.ok(Math.abs(std - 0.02) < 2e-4, `std ${std}`);
  assert.ok(Math.abs(within / a.length - 0.6827) < 0.005, `P(|x| <= σ) = ${within / a.length}`);
  assert.deepEqual(randomBf16('x.weight', 1000, 1, table), randomBf16('x.weight', 1000, 1, table));
  assert.notDeepEqual(randomBf16('x.weight', 1000, 1, table), randomBf16('y.weight', 1000, 1, table));
  assert.notDeepEqual(randomBf16('x.weight', 1000, 1, table), randomBf16('x.weight', 1000, 2, table));
  assert.ok(toFloat32(Buffer.from(randomBf16('model.norm.weight', 8, 1, table)), 'BF16').every((v) => v === 1));
});

test('the Llama 3 tokenizer written into Llama-3 shapes encodes as transformers does', () => {
  const files = llama3TokenizerFiles();
  const tok = tokenizerFromJson(JSON.parse(files['tokenizer.json']), JSON.parse(files['tokenizer_config.json']));
  assert.deepEqual(tok.encode('Hello world'), [128000, 9906, 1917]);
  assert.deepEqual(tok.encode('Answer: A', { addBos: false }), [16533, 25, 362]);
  assert.equal(tok.vocabSize, 128256);
  assert.equal(tok.decode([128000, 9906, 1917]), '<|begin_of_text|>Hello world');
});

test('a shrunk paper layout: shards and index, BF16 kept by compress and converted slice by slice by export tfjs', async () => {
  const root = scratchDir('scale-paper');
  try {
    const dir = join(root, 'model');
    // Llama-2's layout (and the demo tokenizer, quick to load) with GQA and small dimensions.
    const small = { hidden_size: 64, intermediate_size: 96, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, vocab_size: 4096 };
    const r = await makePaperModel({ shape: 'llama2-7b', layers: 3, out: dir, shardMb: 0.5, overrides: small, quiet: true });
    assert.ok(r.files.includes('model.safetensors.index.json') && r.files.filter((f) => f.endsWith('.safetensors')).length >= 2, r.files.join());
    assert.deepEqual(readdirSync(root), ['model']); // no temporary left behind
    await assert.rejects(makePaperModel({ shape: 'llama2-7b', layers: 1, out: dir, overrides: small, quiet: true }), /exists and is not empty/);
    const src = checkpointSource(dir);

    // reverse: no model loaded, the kept layers and embeddings copied as stored.
    const rev = join(root, 'rev');
    await compressModel({ model: dir, out: rev, method: 'reverse', remove: 1, quiet: true });
    const out = checkpointSource(rev);
    assert.equal(out.config.torch_dtype, 'bfloat16');
    for (const name of ['model.embed_tokens.weight', 'model.layers.1.mlp.down_proj.weight', 'lm_head.weight']) {
      assert.deepEqual(out.readRaw(name)!.bytes, src.readRaw(name)!.bytes, name);
    }
    assert.ok(!out.names.includes('model.layers.2.mlp.down_proj.weight'));
    out.close();

    // mka merges the last two layers: the merged weight is λ·W1 + (1−λ)·W2 rounded once to BF16.
    const prompts = join(root, 'prompts.txt');
    writeFileSync(prompts, ['The capital of France is', 'Water boils at', 'Two plus two equals', 'The largest planet is'].join('\n'));
    const mka = join(root, 'mka');
    const plan = await compressModel({ model: dir, out: mka, method: 'mka', remove: 1, calibrationFile: prompts, quiet: true, similarity: { kMi: 1, kEntropy: 1, dims: 2 } });
    const merged = plan.layers.find((l) => l.sources.length === 2)!;
    const name = (l: number) => `model.layers.${l}.self_attn.q_proj.weight`;
    const got = checkpointSource(mka);
    const k = plan.layers.indexOf(merged);
    const [a, b] = merged.sources;
    const wa = src.read(name(a.layer)), wb = src.read(name(b.layer));
    const want = fromFloat32(Float32Array.from(wa, (v, i) => a.weight * v + b.weight * wb[i]), 'BF16');
    assert.deepEqual(Buffer.from(got.readRaw(name(k))!.bytes), want);
    got.close();

    // adjacent recalibrates after each merge: streamed, the partly merged model is written to a
    // scratch directory (BF16, as the output) and streamed back; in memory it is float32. Same choices.
    const adj = (streaming: boolean) => compressModel({ model: dir, out: join(root, `adj-${streaming}`), method: 'mka', params: { mka: { strategy: 'adjacent' } }, remove: 2, streaming, calibrationFile: prompts, quiet: true, similarity: { kMi: 1, kEntropy: 1, dims: 2 } });
    const [ps, pm] = [await adj(true), await adj(false)];
    assert.deepEqual(ps.steps.map((st) => st.layers), pm.steps.map((st) => st.layers));
    ps.steps.forEach((st, i) => assert.ok(Math.abs(st.lambda! - pm.steps[i].lambda!) < 1e-2, `λ ${st.lambda} vs ${pm.steps[i].lambda}`));
    assert.deepEqual(readdirSync(tmpdir()).filter((f) => f.startsWith('mka-recalibrate-')), []);

    // tfjs float16 from BF16: every value is the float16 rounding of the stored BF16 value.
    const web = join(root, 'web');
    await exportTfjs({ model: dir, out: web, quantize: 'float16', maxSeq: 16 });
    const manifest = JSON.parse(readFileSync(join(web, 'model.json'), 'utf8')).weightsManifest[0];
    const bytes = Buffer.concat(manifest.paths.map((p: string) => readFileSync(join(web, p))));
    let off = 0;
    for (const w of manifest.weights as { name: string; shape: number[]; dtype: string; quantization?: { dtype: string } }[]) {
      const n = w.shape.reduce((x: number, y: number) => x * y, 1);
      const size = n * (w.quantization ? 2 : 4);
      if (w.name === 'model.embed_tokens.weight') {
        const expect = toFloat32(fromFloat32(src.read(w.name), 'F16'), 'F16');
        assert.deepEqual(dequantize(new Uint8Array(bytes.subarray(off, off + size)), w.quantization as never, n), expect);
      }
      off += size;
    }
    assert.equal(off, bytes.length);
    src.close();
    assert.ok(!existsSync(join(root, 'never')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
