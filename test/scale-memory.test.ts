/**
 * The RAM estimate made before loading (src/model/memory-estimate.ts): its figures for the
 * Llama-3-8B shape against sums worked out by hand from the architecture, the option it suggests,
 * and the refusal through the CLI on a directory that holds only config.json and a tokenizer (with a
 * reference model for eval mmlu, whose weights are resident beside the model's).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig } from '../src/model/config.ts';
import { assertFits, availableMemory, backendProfile, estimateMemory, estimateMemoryOfModels, RUNTIME_OVERHEAD, type FitRequest } from '../src/model/memory-estimate.ts';
import { calibrationWorkload } from '../src/compress/calibration.ts';
import { mmluWorkload } from '../src/eval/mmlu/evaluate.ts';
import { sequenceWorkload } from '../src/model/inspect.ts';
import { offHeapBackend } from '../src/runtime/backend.ts';
import { loadNativeAddon } from '../src/runtime/native-addon.ts';
import { UserError } from '../src/runtime/errors.ts';
import { PAPER_SHAPES } from '../scripts/make-paper-model.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { scratchDir } from './scratch.ts';

const llama3 = parseConfig(PAPER_SHAPES['llama3-8b']);
const bf16 = () => 2;
/** Plain float32 weights and whole score matrices, so every term is a closed form below. */
const cpu = { ...backendProfile('cpu'), keeps16Bit: false, blockedAttention: false };
/** The paper's calibration: 57 prompts (one per MMLU subject), cut to 512 tokens, micro-batches of 8. */
const similarity = (streaming: boolean) => calibrationWorkload(Array.from({ length: 57 }, (_, i) => 300 + 10 * i), { streaming });

test('Llama-3-8B: parameters, streamed and resident weights, activations as computed by hand', () => {
  // Per layer: q 4096², k and v 1024·4096, o 4096², gate/up/down 14336·4096, two norms of 4096.
  const perLayer = 2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096 + 2 * 4096;
  assert.equal(perLayer, 218_112_000);
  const outside = 2 * 128256 * 4096 + 4096; // embed_tokens, lm_head, final norm
  assert.equal(32 * perLayer + outside, 8_030_261_248); // the 8.03B of Llama-3-8B

  const s = estimateMemory(llama3, bf16, cpu, similarity(true));
  assert.equal(s.parts.weights, 4 * outside); // float32 embeddings and lm_head: 4.20 GB
  assert.equal(s.parts.layer, 4 * perLayer); // one float32 layer: 0.87 GB
  assert.equal(s.parts.reading, 128256 * 4096 * (2 + 4)); // the embedding's BF16 bytes and its float32 copy
  // Layer boundary: 3·57·512·4096 (input, output and the calibration callback's copy); inside a micro-batch of 8: 8·512·(2·4096 + 2·1024 + 2·4096) for q,
  // attention out, k, v, residual, norm, 8·512·3·14336 for the MLP, 2·8·32·512² scores and softmax.
  const acts = 4 * (3 * 57 * 512 * 4096 + 8 * 512 * (8192 + 2048 + 8192) + 8 * 512 * 3 * 14336 + 2 * 8 * 32 * 512 * 512);
  assert.equal(s.parts.activations, acts);
  assert.equal(acts, 2_977_955_840);
  assert.equal(s.parts.cache, 0);
  assert.equal(s.parts.logits, 0);
  assert.equal(s.total, 11_624_562_688);

  const r = estimateMemory(llama3, bf16, cpu, similarity(false));
  assert.equal(r.parts.weights, 4 * 8_030_261_248);
  assert.equal(r.total, 4 * 8_030_261_248 + 3_152_019_456 + acts + RUNTIME_OVERHEAD);

  const kept = estimateMemory(llama3, bf16, { ...cpu, keeps16Bit: true, blockedAttention: true }, similarity(true));
  assert.equal(kept.parts.weights, 2 * outside);
  assert.equal(kept.parts.layer, 2 * perLayer);
  assert.equal(kept.parts.reading, 2 * 128256 * 4096);
  assert.equal(kept.parts.activations, acts - 4 * 2 * 8 * 32 * 512 * 512 + 4 * 2 * 2 ** 24); // one 64 MB score block and its softmax

  // MMLU: 16 questions of 256 tokens on a 1,536-token prefix; K and V of every layer for the prefix
  // (and its copy extended by the batch), logits of the last position only.
  const e = estimateMemory(llama3, bf16, cpu, mmluWorkload({ streaming: true }));
  assert.equal(e.parts.cache, 4 * 2 * 32 * 8 * 128 * 1536 * 2);
  assert.equal(e.parts.logits, 4 * 16 * 128256);
});

const request = (over: Partial<FitRequest>): FitRequest => ({
  command: 'similarity', config: llama3, stored: bf16, profile: cpu, work: similarity(false), ...over,
});

test('a run that cannot fit names the figure, the memory available and the option that fits', () => {
  assert.ok(assertFits(request({ available: 64e9 })));
  assert.equal(assertFits(request({ available: null }))?.total, 38_670_450_688); // check off: the estimate only
  assert.throws(() => assertFits(request({ available: 20e9 })),
    (e: Error) => e instanceof UserError && /^similarity needs about 38\.7 GB of RAM \(.*\) but 20\.0 GB is available; rerun with --streaming \(about 11\.6 GB\)$/.test(e.message));
  // Streaming already, 10 GB: not even micro-batches of 1 fit; the floor keeps the 57 prompts (it said 8.9 GB, the figure of one prompt).
  assert.throws(() => assertFits(request({ work: similarity(true), available: 10e9 })), /even streaming one layer at a time with batches of 1 needs about 10\.3 GB: use a machine with more memory$/);
  // Streaming already, 10.5 GB: micro-batches of 2 fit (10,466,934,784 bytes: scores and MLP shrink with it).
  assert.throws(() => assertFits(request({ work: similarity(true), available: 10.5e9 })), /rerun with --micro-batch 2 \(about 10\.5 GB\)$/);
  // The wasm heap: the same run fits in RAM only off the heap.
  const wasm = backendProfile('wasm');
  assert.throws(() => assertFits(request({ profile: wasm, work: similarity(true), available: 20e9, ramBackend: { backend: 'cpu', profile: cpu } })),
    /needs \d+\.\d GB of tensors in the wasm heap \(limit 4\.3 GB\).*rerun with --backend cpu/);
  assert.throws(() => assertFits(request({ available: 4e9 })), /even streaming one layer at a time with batches of 1 needs about \d+\.\d GB: use a machine with more memory$/);
  // forward and generate have no --streaming (their workload says so): nothing to suggest but more memory.
  assert.throws(() => assertFits(request({ work: { ...similarity(false), streamable: false, batch: undefined }, available: 20e9 })), /but 20\.0 GB is available; use a machine with more memory \(this command holds every layer\)$/);
  assert.equal(sequenceWorkload(10, 'last').streamable, false, 'forward and generate hold every layer');
  // the backend suggested off the wasm heap is native only where its addon loads
  assert.equal(offHeapBackend().backend, loadNativeAddon().addon ? 'native' : 'cpu');
  const saved = process.env.MKA_NATIVE_ADDON;
  process.env.MKA_NATIVE_ADDON = '/nonexistent/mka_native.node';
  try {
    assert.equal(offHeapBackend().backend, 'cpu');
  } finally {
    if (saved === undefined) delete process.env.MKA_NATIVE_ADDON;
    else process.env.MKA_NATIVE_ADDON = saved;
  }
  for (const bad of ['lots', '12X']) assert.throws(() => availableMemory({ MKA_MEMORY_LIMIT: bad }), /MKA_MEMORY_LIMIT/);
  assert.equal(availableMemory({ MKA_MEMORY_LIMIT: '20G' }), 20 * 2 ** 30);
  assert.equal(availableMemory({ MKA_MEMORY_LIMIT: 'off' }), null);
});

test('mka similarity and eval ppl on an 8B config they cannot hold exit 1 with one line naming --streaming', () => {
  const dir = scratchDir('scale-memory');
  try {
    writeFileSync(join(dir, 'config.json'), JSON.stringify(PAPER_SHAPES['llama3-8b']));
    copyFileSync('models/demo/tokenizer.json', join(dir, 'tokenizer.json'));
    writeFileSync(join(dir, 'prompts.txt'), 'The capital of France is Paris.\nWater boils at 100 degrees Celsius.\n');
    const r = spawnSync(process.execPath, ['bin/mka.mjs', 'similarity', '--model', dir, '--calibration', join(dir, 'prompts.txt'), '--backend', 'cpu', '--quiet'], {
      encoding: 'utf8', env: { ...process.env, MKA_MEMORY_LIMIT: '12G' },
    });
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /similarity needs about 3\d\.\d GB of RAM .* but 12\.9 GB is available; rerun with --streaming \(about \d+\.\d GB\)/);
    // eval ppl checks too, with its default 2048-token windows
    const ppl = spawnSync(process.execPath, ['bin/mka.mjs', 'eval', 'ppl', '--model', dir, '--text', join(dir, 'prompts.txt'), '--backend', 'cpu', '--quiet'], {
      encoding: 'utf8', env: { ...process.env, MKA_MEMORY_LIMIT: '12G' },
    });
    assert.equal(ppl.status, 1, ppl.stderr);
    assert.match(ppl.stderr, /^mka: eval ppl needs about 3\d\.\d GB of RAM .* but 12\.9 GB is available; rerun with --streaming \(about \d+\.\d GB\)\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('eval mmlu with a reference model counts both models\' weights, and the larger run of the two', () => {
  const mmlu = mmluWorkload({ streaming: false });
  const one = estimateMemory(llama3, bf16, cpu, mmlu);
  const both = estimateMemoryOfModels({ config: llama3, stored: bf16 }, [{ config: llama3, stored: bf16 }], cpu, mmlu);
  assert.equal(one.parts.reference, 0);
  assert.equal(both.parts.reference, 4 * 8_030_261_248);
  assert.equal(both.total, one.total + 4 * 8_030_261_248, 'the runs follow each other: activations, cache and logits once');
  // A reference larger than the model (the uncompressed original of a 24-layer merge): its KV cache is the larger one.
  const merged = { ...llama3, num_hidden_layers: 24 };
  const m = estimateMemoryOfModels({ config: merged, stored: bf16 }, [{ config: llama3, stored: bf16 }], cpu, mmlu);
  assert.equal(m.parts.cache, one.parts.cache);
  assert.equal(m.parts.weights + m.parts.reference, estimateMemory(merged, bf16, cpu, mmlu).parts.weights + one.parts.weights);
  // 40 GB holds one float32 8B model but not two: the check refuses and names the reference and --streaming.
  const req = request({ command: 'eval mmlu', work: mmlu, available: 40e9 });
  assert.ok(assertFits(req));
  assert.throws(() => assertFits({ ...req, others: [{ config: llama3, stored: bf16 }] }),
    /eval mmlu needs about \d+\.\d GB of RAM \(weights 32\.1 GB, reference model 32\.1 GB, .*\) but 40\.0 GB is available; rerun with --streaming \(about \d+\.\d GB\)$/);
});

test('mka eval mmlu --reference-model on 8B configs it cannot hold together exits 1 naming the reference and --streaming', async () => {
  const dir = scratchDir('scale-memory');
  try {
    for (const m of ['model', 'reference']) {
      mkdirSync(join(dir, m));
      writeFileSync(join(dir, m, 'config.json'), JSON.stringify(PAPER_SHAPES['llama3-8b']));
      copyFileSync('models/demo/tokenizer.json', join(dir, m, 'tokenizer.json'));
    }
    await ensureBenchmark(join(dir, 'mmlu'));
    const run = (...extra: string[]) => spawnSync(process.execPath, [
      'bin/mka.mjs', 'eval', 'mmlu', '--model', join(dir, 'model'), '--data', join(dir, 'mmlu'), '--out', join(dir, 'out'), '--backend', 'cpu', '--quiet', ...extra,
    ], { encoding: 'utf8', env: { ...process.env, MKA_MEMORY_LIMIT: '40G' } });
    const r = run('--reference-model', join(dir, 'reference'));
    assert.equal(r.status, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /eval mmlu needs about \d+\.\d GB of RAM \(weights 32\.1 GB, reference model 32\.1 GB, .*\) but 42\.9 GB is available; rerun with --streaming/);
    // Alone the model passes the check (and then fails on its missing weights).
    const alone = run();
    assert.equal(alone.status, 1);
    assert.doesNotMatch(alone.stderr, /needs about/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
