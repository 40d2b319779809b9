/**
 * The tfjs GraphModel export, loaded as a browser would load it: model.json and its shards fetched
 * by stock `tf.loadGraphModel` from a loopback HTTP server (the loading side uses nothing but
 * @tensorflow/tfjs). Its logits are compared with mka's own forward pass, computed first: within
 * 1e-4 of the float32 model for the float32 export, and, for float16 and uint8 exports, within 1e-4
 * of the model whose weights mka rounded the same way (`quantizeModelWeights`, what
 * `eval --quantize` runs), with the same arg-max token at every position.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { initBackend } from '../src/runtime/backend.ts';
import { disposeModel, loadModel, type LlamaModel } from '../src/model/model.ts';
import { forward } from '../src/model/forward.ts';
import { exportTfjs } from '../src/export/graph-model.ts';
import { type QuantScheme, quantizeModelWeights } from '../src/weights/quantize.ts';
import { mulberry32 } from '../src/runtime/random.ts';
import { NO_SHARED, SHARED } from './helpers.ts';
import { serveDir } from './export-fixtures.ts';
import { writeRandomModel } from './random-model.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('export-graph');

const TINY = SHARED ? join(SHARED, 'fixtures/hf-tiny') : '';
const STORIES = SHARED ? join(SHARED, 'models/stories260K') : '';
const llama2c = await import('../src/convert/llama2c.ts').catch(() => null);

interface Case {
  name: string;
  skip: string | false;
  prepare(): Promise<string>;
}

const cases: Case[] = [
  {
    name: 'random llama (GQA 4/2, attention and mlp biases)',
    skip: false,
    prepare: async () => {
      const d = join(TMP, 'random-llama');
      await writeRandomModel(d, { attention_bias: true, mlp_bias: true }, 7);
      return d;
    },
  },
  {
    name: 'random mistral (sliding window 3, 4/1 heads, tied embeddings)',
    skip: false,
    prepare: async () => {
      const d = join(TMP, 'random-mistral');
      await writeRandomModel(d, { model_type: 'mistral', architectures: ['MistralForCausalLM'], sliding_window: 3, num_key_value_heads: 1, tie_word_embeddings: true }, 8);
      return d;
    },
  },
  ...(SHARED ? readdirSync(TINY).sort() : []).map((c): Case => ({ name: `hf-tiny ${c}`, skip: false, prepare: async () => join(TINY, c) })),
  {
    name: 'stories260K (converted from llama2.c)',
    skip: NO_SHARED || (!llama2c && 'src/convert/llama2c.ts (convertLlama2c) is not available yet'),
    prepare: async () => {
      const d = join(TMP, 'stories260K');
      await llama2c!.convertLlama2c({ checkpoint: join(STORIES, 'stories260K.bin'), tokenizer: join(STORIES, 'tok512.bin'), out: d });
      return d;
    },
  },
];

if (NO_SHARED) test('hf-tiny and stories260K cases', { skip: NO_SHARED });

/** Loads and runs the exported model with stock tfjs only; returns logits per input batch. */
async function runWithTfjs(url: string, batches: number[][][]): Promise<{ logits: number[][][][]; metadata: Record<string, unknown> }> {
  const before = tf.memory().numTensors;
  const model = await tf.loadGraphModel(url);
  let logits: number[][][][];
  try {
    logits = batches.map((ids) => tf.tidy(() => (model.predict(tf.tensor2d(ids, [ids.length, ids[0].length], 'int32')) as tf.Tensor).arraySync() as number[][][]));
  } finally {
    model.dispose();
  }
  const metadata = model.metadata as Record<string, unknown>;
  assert.equal(tf.memory().numTensors, before, 'loading and running the GraphModel leaks tensors');
  return { logits, metadata };
}

function logitsOf(model: LlamaModel, ids: number[][]): number[][][] {
  const r = forward(model, ids);
  const v = r.logits!.arraySync() as number[][][];
  r.logits!.dispose();
  return v;
}

/** Largest |a - b| and the share of positions whose arg-max agrees. */
function compare(a: number[][][][], b: number[][][][]): { maxErr: number; argmaxAgree: number; positions: number } {
  let maxErr = 0, agree = 0, positions = 0;
  const argmax = (v: number[]) => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);
  a.forEach((batch, i) => batch.forEach((row, r) => row.forEach((pos, t) => {
    const ref = b[i][r][t];
    for (let k = 0; k < pos.length; k++) maxErr = Math.max(maxErr, Math.abs(pos[k] - ref[k]));
    positions++;
    if (argmax(pos) === argmax(ref)) agree++;
  })));
  return { maxErr, argmaxAgree: agree / positions, positions };
}

const SCHEMES: QuantScheme[] = ['none', 'float16', 'uint8'];

for (const c of cases) {
  test(`GraphModel of ${c.name} over HTTP matches mka forward (float32, float16, uint8)`, { skip: c.skip }, async (t) => {
    await initBackend('wasm');
    const dir = await c.prepare();
    const model = loadModel(dir);
    const { vocab_size: V, max_position_embeddings: P } = model.config;
    const rand = mulberry32(11);
    const ids = (rows: number, len: number) => Array.from({ length: rows }, () => Array.from({ length: len }, () => Math.floor(rand() * V)));
    const batches = [ids(2, Math.min(7, P)), ids(1, Math.min(13, P))]; // batch of 2, then another length
    const refs = new Map<QuantScheme, number[][][][]>();
    for (const s of SCHEMES) {
      const m = s === 'none' ? model : quantizeModelWeights(model, s);
      refs.set(s, batches.map((b) => logitsOf(m, b)));
      if (m !== model) disposeModel(m);
    }
    disposeModel(model);
    const { url, server } = await serveDir(TMP);
    try {
      for (const s of SCHEMES) {
        const out = join(TMP, `${basename(dir)}-tfjs-${s}`);
        const r = await exportTfjs({ model: dir, out, quantize: s, shardMb: 0.1 });
        const shardBytes = r.files.filter((f) => f.endsWith('.bin')).reduce((a, f) => a + statSync(join(out, f)).size, 0);
        assert.equal(shardBytes, r.weightBytes);
        const manifest = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')).weightsManifest[0];
        assert.equal(manifest.paths.length, r.files.length - 1);
        const q = manifest.weights.find((w: { name: string }) => w.name === 'model.layers.0.self_attn.q_proj.weight');
        assert.equal(q?.quantization?.dtype, s === 'none' ? undefined : s);

        const { logits, metadata } = await runWithTfjs(`${url}/${basename(out)}/model.json`, batches);
        assert.equal(metadata.quantization, s);
        assert.equal(metadata.source_model, dir);
        assert.equal(typeof metadata.mka_version, 'string');
        const vsSame = compare(logits, refs.get(s)!);
        const vsFloat = compare(logits, refs.get('none')!);
        t.diagnostic(`${c.name} ${s}: ${(r.float32Bytes / 1024).toFixed(1)} KiB → ${(r.weightBytes / 1024).toFixed(1)} KiB in ${manifest.paths.length} shards; ` +
          `max |logit error| ${vsSame.maxErr.toExponential(2)} vs mka with the same weights, ${vsFloat.maxErr.toExponential(2)} vs float32; ` +
          `arg-max agrees with float32 at ${(100 * vsFloat.argmaxAgree).toFixed(1)}% of ${vsFloat.positions} positions`);
        assert.ok(vsSame.maxErr < 1e-4, `${s}: logits differ from mka's by ${vsSame.maxErr}`);
        assert.equal(vsSame.argmaxAgree, 1, `${s}: arg-max differs from mka's at some position`);
      }
    } finally {
      server.close();
    }
  });
}

test('export tfjs refuses a --max-seq beyond the context and a bad --shard-mb', async () => {
  const dir = join(TMP, 'random-small');
  await writeRandomModel(dir, { num_hidden_layers: 1 }, 3);
  await assert.rejects(exportTfjs({ model: dir, out: join(TMP, 'x'), maxSeq: 65 }), /max-seq 65/);
  await assert.rejects(exportTfjs({ model: dir, out: join(TMP, 'x'), shardMb: 0 }), /shard-mb/);
  assert.ok(!existsSync(join(TMP, 'x')));
});

test('a GraphModel exported with --max-seq accepts that many tokens', async () => {
  await initBackend('wasm');
  const dir = join(TMP, 'random-maxseq');
  await writeRandomModel(dir, { num_hidden_layers: 1 }, 4);
  const out = join(TMP, 'random-maxseq-tfjs');
  await exportTfjs({ model: dir, out, maxSeq: 5 });
  const model = loadModel(dir);
  const ref = logitsOf(model, [[1, 2, 3, 4, 5]]);
  disposeModel(model);
  const { url, server } = await serveDir(TMP);
  try {
    const { logits, metadata } = await runWithTfjs(`${url}/${basename(out)}/model.json`, [[[1, 2, 3, 4, 5]]]);
    assert.ok(compare(logits, [ref]).maxErr < 1e-4);
    assert.equal(metadata.max_seq, 5);
  } finally {
    server.close();
  }
});
