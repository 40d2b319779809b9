/**
 * The Hugging Face export: round trips through mka's own loader, bfloat16 rounding, sharding with an
 * index, a merged model computed on the fly, and streaming (one tensor read at a time, memory bounded
 * by a tensor and a shard, not by the model).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel, modelFromTensors, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { expectedTensors, parseConfig, readConfig, splitLayerName } from '../src/model/config.ts';
import { openCheckpoint } from '../src/io/checkpoint.ts';
import { exportHf } from '../src/export/hf.ts';
import { writeHfModel } from '../src/weights/hf-writer.ts';
import { writeGraphModel } from '../src/export/graph-model.ts';
import { checkpointSource, type TensorSource } from '../src/weights/source.ts';
import { maxAbsDiff, NO_SHARED, SHARED } from './helpers.ts';
import { tinyConfigJson, writeRandomModel } from './random-model.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('export-hf');
const TINY = SHARED ? join(SHARED, 'fixtures/hf-tiny') : '';
const IDS = [[1, 17, 33, 5, 9, 41, 77, 12], [3, 4, 5, 6, 7, 8, 9, 10]];

function logitsOf(model: LlamaModel, ids = IDS): number[][][] {
  const r = forward(model, ids);
  const v = r.logits!.arraySync() as number[][][];
  r.logits!.dispose();
  return v;
}

function logitsOfDir(dir: string): number[][][] {
  const m = loadModel(dir);
  try {
    return logitsOf(m);
  } finally {
    disposeModel(m);
  }
}

const roundTripCases: { name: string; prepare: () => Promise<string>; skip: string | false }[] = [
  { name: 'random llama with biases', skip: false, prepare: async () => { const d = join(TMP, 'rand'); await writeRandomModel(d, { attention_bias: true, mlp_bias: true }, 5); return d; } },
  ...(SHARED ? readdirSync(TINY).sort() : []).map((c) => ({ name: `hf-tiny ${c}`, skip: false as const, prepare: async () => join(TINY, c) })),
];

if (NO_SHARED) test('hf-tiny round trips', { skip: NO_SHARED });

for (const c of roundTripCases) {
  test(`export hf → reload gives identical logits: ${c.name}`, async () => {
    await initBackend('wasm');
    const src = await c.prepare();
    const out = join(TMP, `rt-${c.name.replace(/\W+/g, '_')}`);
    const r = await exportHf({ model: src, out, dtype: 'float32' });
    assert.deepEqual(r.files.filter((f) => f.endsWith('.safetensors')), ['model.safetensors']);
    assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype, 'float32');
    for (const f of ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model']) {
      assert.equal(existsSync(join(out, f)), existsSync(join(src, f)), `${f} copied exactly when present`);
    }
    const a = logitsOfDir(src), b = logitsOfDir(out);
    assert.equal(maxAbsDiff(a, b), 0);
    // the default dtype is the source's own: stored values are identical
    const same = join(TMP, `rt-same-${c.name.replace(/\W+/g, '_')}`);
    await exportHf({ model: src, out: same });
    const s = openCheckpoint(src), o = openCheckpoint(same);
    try {
      for (const name of expectedTensors(readConfig(src)).keys()) {
        assert.equal(o.info(name)!.dtype, s.info(name)!.dtype);
        assert.deepEqual(o.read(name), s.read(name));
      }
    } finally {
      s.close();
      o.close();
    }
  });
}

test('bfloat16 export: every weight within bf16 rounding, logits close, config says bfloat16', async (t) => {
  await initBackend('wasm');
  const src = join(TMP, 'rand-bf16-src');
  await writeRandomModel(src, {}, 9);
  const out = join(TMP, 'rand-bf16');
  await exportHf({ model: src, out, dtype: 'bfloat16' });
  assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).torch_dtype, 'bfloat16');
  const s = openCheckpoint(src), o = openCheckpoint(out);
  let worst = 0;
  try {
    for (const name of s.names()) {
      assert.equal(o.info(name)!.dtype, 'BF16');
      const w = s.read(name), r = o.read(name);
      const bits = new Uint32Array(r.buffer);
      for (let i = 0; i < w.length; i++) {
        assert.equal(bits[i] & 0xffff, 0, `${name}[${i}] is not a bfloat16 value`);
        const rel = Math.abs(r[i] - w[i]) / Math.abs(w[i]);
        assert.ok(Math.abs(r[i] - w[i]) <= 2 ** -8 * Math.abs(w[i]), `${name}[${i}]: ${w[i]} → ${r[i]}`);
        if (w[i] !== 0) worst = Math.max(worst, rel);
      }
    }
  } finally {
    s.close();
    o.close();
  }
  const d = maxAbsDiff(logitsOfDir(src), logitsOfDir(out));
  t.diagnostic(`largest relative weight rounding ${worst.toExponential(2)} (bound 2^-8 = 3.91e-3); largest logit change ${d.toExponential(2)}`);
  assert.ok(d > 0 && d < 0.1, `bf16 logits moved by ${d}`);
});

test('a small --shard-mb writes shards and an index that mka reloads', async () => {
  await initBackend('wasm');
  const src = join(TMP, 'rand-shard-src');
  await writeRandomModel(src, {}, 10);
  const out = join(TMP, 'rand-sharded');
  const r = await exportHf({ model: src, out, dtype: 'float16', shardMb: 0.02 });
  const shards = r.files.filter((f) => f.endsWith('.safetensors'));
  assert.ok(shards.length > 2, `${shards.length} shards`);
  assert.match(shards[0], /^model-00001-of-000\d\d\.safetensors$/);
  const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'));
  assert.equal(index.metadata.total_size, r.bytes);
  assert.deepEqual(new Set(Object.values(index.weight_map)), new Set(shards));
  assert.deepEqual(Object.keys(index.weight_map).sort(), [...expectedTensors(readConfig(src)).keys()].sort());
  for (const f of shards) {
    const ck = openCheckpoint(out);
    const names = Object.entries(index.weight_map).filter(([, s]) => s === f).map(([n]) => n);
    const bytes = names.reduce((a, n) => a + (ck.info(n)!.end - ck.info(n)!.begin), 0);
    ck.close();
    assert.ok(bytes <= 0.02e6 || names.length === 1, `${f} holds ${bytes} bytes in ${names.length} tensors`);
  }
  assert.ok(maxAbsDiff(logitsOfDir(src), logitsOfDir(out)) < 0.1);
});

/** A merged model computed on the fly: layers i and i+1 averaged into one, as a merge would supply them. */
function mergedSource(base: TensorSource & { close(): void }, i: number): TensorSource {
  const c = base.config;
  const config = { ...c, num_hidden_layers: c.num_hidden_layers - 1 };
  const names = [...expectedTensors(config).keys()];
  const origin = (name: string): string[] => {
    const m = splitLayerName(name);
    if (!m || m.layer < i) return [name];
    if (m.layer === i) return [name, `model.layers.${i + 1}.${m.suffix}`];
    return [`model.layers.${m.layer + 1}.${m.suffix}`];
  };
  return {
    config,
    names,
    shape: (n) => base.shape(origin(n)[0]),
    read: async (n) => {
      const parts = await Promise.all(origin(n).map((o) => base.read(o)));
      return parts.length === 1 ? parts[0] : parts[0].map((v, k) => (v + parts[1][k]) / 2);
    },
  };
}

test('a merged model computed on the fly exports (config num_hidden_layers, merge.json kept) and reloads', async () => {
  await initBackend('wasm');
  const src = join(TMP, 'rand-merge-src');
  await writeRandomModel(src, {}, 12);
  const base = checkpointSource(src);
  const merged = mergedSource(base, 1);
  // the expected model, built in memory from the same tensors
  const tensors = new Map<string, tf.Tensor>();
  for (const n of merged.names) tensors.set(n, tf.tensor(await merged.read(n), merged.shape(n)));
  const expected = modelFromTensors(merged.config, tensors);
  const want = logitsOf(expected);
  disposeModel(expected);
  const mergedDir = join(TMP, 'rand-merged');
  const record = {
    method: 'average', original_layers: 3, merged: [[1, 2]],
    layer_sources: [{ sources: [{ layer: 0, weight: 1 }], norms_from: 0 }, { sources: [{ layer: 1, weight: 0.5 }, { layer: 2, weight: 0.5 }], norms_from: 1 }],
  };
  await writeHfModel(merged, mergedDir, { dtype: 'float32', copyFrom: src, extraFiles: { 'merge.json': JSON.stringify(record) } });
  base.close();
  assert.equal(readConfig(mergedDir).num_hidden_layers, 2);
  assert.equal(maxAbsDiff(logitsOfDir(mergedDir), want), 0);
  // exporting the merged model again keeps its merge record
  const again = join(TMP, 'rand-merged-again');
  await exportHf({ model: mergedDir, out: again, dtype: 'bfloat16' });
  assert.deepEqual(JSON.parse(readFileSync(join(again, 'merge.json'), 'utf8')).merged, [[1, 2]]);
  assert.equal(readConfig(again).num_hidden_layers, 2);
  assert.match(readFileSync(join(again, 'README.md'), 'utf8'), /layer_sources|average/, 'the card carries the merge');
  // a merge record that does not fit its schema is refused before anything is written, naming the file and the fix
  writeFileSync(join(mergedDir, 'merge.json'), JSON.stringify({ ...record, layer_sources: 'all' }));
  const third = join(TMP, 'rand-merged-third');
  await assert.rejects(exportHf({ model: mergedDir, out: third, dtype: 'bfloat16' }),
    (e: Error) => e.message === `${join(mergedDir, 'merge.json')}: not a valid merge.json of mka compress (layer_sources must be an array, not "all"); restore the file mka compress wrote, or delete it (the model then records no merge)`);
  assert.equal(existsSync(third), false);
});

test('exportHf with configOverride and tensorSource writes the new layer count', async () => {
  const src = join(TMP, 'rand-override-src');
  await writeRandomModel(src, {}, 13);
  const base = checkpointSource(src);
  const merged = mergedSource(base, 0);
  const out = join(TMP, 'rand-override');
  await exportHf({ model: src, out, tensorSource: { ...merged, config: base.config }, configOverride: { num_hidden_layers: 2 } });
  base.close();
  assert.equal(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_hidden_layers, 2);
  const m = loadModel(out);
  disposeModel(m);
});

test('a failed export leaves no output directory', async () => {
  const src = join(TMP, 'rand-fail-src');
  await writeRandomModel(src, {}, 14);
  const base = checkpointSource(src);
  const broken: TensorSource = { config: base.config, names: base.names, shape: base.shape, read: (n) => (n.includes('layers.1') ? Promise.reject(new Error('disk on fire')) : base.read(n)) };
  await assert.rejects(writeHfModel(broken, join(TMP, 'never'), { dtype: 'float32' }), /disk on fire/);
  await assert.rejects(writeGraphModel(broken, join(TMP, 'never-tfjs')), /disk on fire/);
  base.close();
  assert.ok(!existsSync(join(TMP, 'never')) && !existsSync(join(TMP, 'never-tfjs')));
  assert.deepEqual(readdirSync(TMP).filter((f) => f.includes('never')), []);
});

/** A synthetic model whose tensors are computed on read, counting reads in flight. */
function syntheticSource(overrides: Record<string, unknown>, onRead: () => void) {
  const config = parseConfig(tinyConfigJson(overrides));
  const shapes = expectedTensors(config);
  const stats = { live: 0, maxLive: 0, reads: 0 };
  const source: TensorSource = {
    config,
    names: [...shapes.keys()],
    shape: (n) => shapes.get(n)!,
    read: async (n) => {
      stats.live++;
      stats.maxLive = Math.max(stats.maxLive, stats.live);
      stats.reads++;
      onRead();
      await new Promise((ok) => setTimeout(ok, 1));
      const out = new Float32Array(shapes.get(n)!.reduce((a, b) => a * b, 1)).fill(0.01 * (stats.reads % 7));
      stats.live--;
      return out;
    },
  };
  return { source, stats, shapes };
}

test('exports stream: one tensor read at a time, memory bounded by a tensor and a shard, not the model', async (t) => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (opts?: { type: 'minor' | 'major' }) => void;
  const SHARD = 4 * 2 ** 20;
  let peak = 0, base = 0, bound = 0, collectAbove = 0;
  // Live array buffers at each read: a cheap young-generation collection first, a full one only when
  // more than a tensor and a shard remain (garbage promoted to the old generation).
  const sample = () => {
    gc({ type: 'minor' });
    let used = process.memoryUsage().arrayBuffers;
    if (used - base > collectAbove) {
      gc();
      used = process.memoryUsage().arrayBuffers;
    }
    peak = Math.max(peak, used);
  };
  const dims = { vocab_size: 4096, hidden_size: 256, intermediate_size: 688, num_hidden_layers: 24, num_attention_heads: 8, num_key_value_heads: 4, max_position_embeddings: 256 };
  for (const kind of ['hf', 'tfjs'] as const) {
    const { source, stats, shapes } = syntheticSource(dims, sample);
    const total = [...shapes.values()].reduce((a, s) => a + 4 * s.reduce((x, y) => x * y, 1), 0);
    const largest = Math.max(...[...shapes.values()].map((s) => 4 * s.reduce((x, y) => x * y, 1)));
    gc();
    base = peak = process.memoryUsage().arrayBuffers;
    collectAbove = largest + SHARD;
    bound = 2 * largest + SHARD + 2 ** 20;
    const out = join(TMP, `stream-${kind}`);
    if (kind === 'hf') await writeHfModel(source, out, { dtype: 'float32', shardMb: 20 });
    else await writeGraphModel(source, out, { quantize: 'none', shardMb: SHARD / 2 ** 20 });
    sample();
    const written = readdirSync(out).reduce((a, f) => a + statSync(join(out, f)).size, 0);
    t.diagnostic(`${kind}: ${(total / 2 ** 20).toFixed(1)} MiB of weights in ${stats.reads} reads (at most ${stats.maxLive} in flight), ` +
      `${(written / 2 ** 20).toFixed(1)} MiB written; peak extra memory ${((peak - base) / 2 ** 20).toFixed(1)} MiB (largest tensor ${(largest / 2 ** 20).toFixed(1)} MiB)`);
    assert.equal(stats.maxLive, 1);
    assert.equal(stats.reads, shapes.size);
    assert.ok(written >= total);
    assert.ok(peak - base <= bound, `peak ${peak - base} bytes`);
    assert.ok(peak - base < total / 4, 'the writer holds a fraction of the model');
    rmSync(out, { recursive: true, force: true });
  }
});

test('the MKA-merged stories260K exports to hf (identical logits on reload) and to tfjs (merge recorded)', { skip: NO_SHARED }, async (t) => {
  await initBackend('wasm');
  const llama2c = await import('../src/convert/llama2c.ts').catch(() => null);
  const compress = await import('../src/pipeline/compress.ts').catch(() => null);
  if (!llama2c || !compress) {
    t.skip('src/convert/llama2c.ts or src/pipeline/compress.ts is not available');
    return;
  }
  const base = join(TMP, 'stories260K');
  const src = join(SHARED!, 'models/stories260K');
  await llama2c.convertLlama2c({ checkpoint: join(src, 'stories260K.bin'), tokenizer: join(src, 'tok512.bin'), out: base });
  const merged = join(TMP, 'stories260K-mka1');
  const prompts = join(TMP, 'calibration.txt');
  writeFileSync(prompts, ['Once upon a time there was a cat.', 'The sun was warm and the sky was blue.', 'Tom found a red ball in the park.',
    'Lily liked to sing with her mom.', 'The dog ran fast to the big tree.', 'One day a little bird flew home.',
    'Sam and Anna built a tall tower.', 'The old man smiled at the kind girl.'].join('\n'));
  await compress.compressModel({ model: base, out: merged, method: 'mka', remove: 1, calibrationFile: prompts, quiet: true });
  const record = JSON.parse(readFileSync(join(merged, 'merge.json'), 'utf8'));
  const hf = join(TMP, 'stories260K-mka1-hf');
  await exportHf({ model: merged, out: hf });
  assert.equal(readConfig(hf).num_hidden_layers, 4);
  assert.ok(existsSync(join(hf, 'tokenizer.json')));
  assert.deepEqual(JSON.parse(readFileSync(join(hf, 'merge.json'), 'utf8')), record);
  assert.equal(maxAbsDiff(logitsOfDir(hf), logitsOfDir(merged)), 0);
  const web = join(TMP, 'stories260K-mka1-tfjs');
  const source = checkpointSource(merged);
  await writeGraphModel(source, web, { sourceDir: merged, quantize: 'float16' });
  source.close();
  const meta = JSON.parse(readFileSync(join(web, 'model.json'), 'utf8')).userDefinedMetadata;
  assert.deepEqual(meta.merge, record);
  assert.equal(meta.num_hidden_layers, 4);
  t.diagnostic(`merge record: ${JSON.stringify(record).slice(0, 200)}…`);
});
