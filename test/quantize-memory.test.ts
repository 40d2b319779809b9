/**
 * The quantizers' memory estimate (src/quant/memory.ts, each method's QuantMethod.memory): its figures
 * for the Llama-3-8B shape against sums worked out by hand from the architecture and from what the code
 * holds at once, the fix it names, and the refusal before any work by `mka quantize`, `compress
 * --quantize` and a sweep with a quantize axis, on a directory that holds only config.json and a tokenizer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { parseConfig } from '../src/model/config.ts';
import { backendProfile, RUNTIME_OVERHEAD } from '../src/model/memory-estimate.ts';
import { assertQuantizeFits, estimateQuantize, paddedBatches, type QuantizeWork } from '../src/quant/memory.ts';
import { parseQuantization } from '../src/quant/registry.ts';
import { calibrationBatches, calibrationTokenCap } from '../src/quant/calibration.ts';
import { checkSweepQuantizeFits } from '../src/sweep/context.ts';
import { loadNativeAddon } from '../src/runtime/native-addon.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { PAPER_SHAPES } from '../scripts/make-paper-model.ts';
import { MICRO_BATCH, PER_SUBJECT } from '../src/compress/options.ts';
import { runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const llama3 = parseConfig(PAPER_SHAPES['llama3-8b']);
const bf16 = () => 2;
/** Whole score matrices, so the forward pass is a closed form below. */
const cpu = { ...backendProfile('cpu'), keeps16Bit: false, blockedAttention: false };
const work = (spec: string, prompts: number[] | null): QuantizeWork => ({ quantization: parseQuantization(spec)!, prompts });
const H = 4096, I = 14336;
/** One layer's tensors as float32: q 4096², k and v 1024·4096, o 4096², gate/up/down 14336·4096, two norms. */
const layerF32 = 4 * (2 * H * H + 2 * 1024 * H + 3 * I * H + 2 * H);
/** A [rows, cols] matrix at 4 bits in groups of 128: half a byte per weight and a float32 scale per 128. */
const w4g128 = (rows: number, cols: number) => rows * (cols / 2 + (cols / 128) * 4);
/** Float32 activations of a micro-batch of b prompts of T tokens through a layer: input and output, q/attn/k/v/residual/norm, the MLP's three, scores and softmax. */
const forward = (b: number, T: number) => 4 * (2 * b * T * H + b * T * (2 * H + 2 * 1024 + 2 * H) + b * T * 3 * I + 2 * b * 32 * T * T);

test('GPTQ at the Llama-3-8B shape: down_proj\'s Hessian\'s lower triangle in float64 while it accumulates, beside the linears done (packed and dequantized for the forward pass), down_proj\'s weights and the calibration states', () => {
  const prompts = Array.from({ length: 16 }, () => 512);
  // micro-batches of 6, 6 and 4 prompts: 6·512 = 3072 padded tokens are within the cap of 3,373 (below), 7·512 = 3584 are not
  assert.deepEqual(paddedBatches(llama3, prompts, 8), { batches: [{ rows: 6, T: 512 }, { rows: 6, T: 512 }, { rows: 4, T: 512 }], tokens: 16 * 512, largest: 6 * 512 });
  const e = estimateQuantize(llama3, bf16, cpu, work('gptq:w4g128', prompts));
  const states = 4 * 16 * 512 * (H + 1); // hidden states and masks
  // q, k, v, o, gate, up are done when down_proj's Hessian accumulates: packed, their float32 weights released,
  // and their values dequantized again for the forward pass that feeds the Hessian
  const done = [[H, H], [1024, H], [1024, H], [H, H], [I, H], [I, H]];
  const packed = done.reduce((a, [r, c]) => a + w4g128(r, c), 0);
  const values = done.reduce((a, [r, c]) => a + 4 * r * c, 0);
  const n = I;
  // while the layer's passes run, only the Hessian's lower triangle (diagonal included) is summed, float64, packed at the start of its
  // n×n array: n·(n+1)/2 values; the rest of the array is written (and takes memory) once the passes are done
  const summing = 8 * (n * (n + 1)) / 2;
  assert.equal(summing, 822_140_928);
  const hessian = 8 * n * n; // whole, for the solve
  assert.equal(hessian, 1_644_167_168);
  const tiles = 3 * 4 * 2 ** 22; // one product's float32 tiles: an input slice, masked, and the result (16 MB each)
  const accumulating = packed + values + summing + forward(6, 512) + tiles;
  assert.match(e.parts[0].what, /gptq's Hessians of mlp\.down_proj \(14336 inputs\)/);
  assert.equal(e.parts[0].bytes, accumulating);
  // its solve holds less: the whole Hessian, factorised in place, then GPTQ's and round to nearest's values [4096, 14336],
  // the latter packed, the layer objective's error and its float32 tiles (three of 16 MB)
  const solve = hessian + 3 * 4 * H * n + w4g128(H, n) + 3 * 4 * 2 ** 22;
  assert.ok(packed + solve < accumulating);
  // of the layer's float32 weights only down_proj's and the two norms are left then
  assert.deepEqual(e.parts.find((p) => p.what === 'layer weights (float32)')?.bytes, 4 * H * I + 2 * 4 * H);
  assert.equal(e.total, RUNTIME_OVERHEAD + 4 * H * I + 2 * 4 * H + states + accumulating);
  assert.equal(e.total, 3_641_565_184);
});

test('calibration micro-batches: at most 8 prompts and, at the Llama-3-8B shape, 3,373 padded tokens, so one micro-batch\'s pass through a layer stays within 1 GiB', () => {
  // per padded token the pass holds the layer's input and output (2·4096) and its intermediates (q 4096, attention output 4096, k and v
  // 1024 each, residual and norm 4096 each, gate/up/act 14,336 each), float32; beside them at most two blocks of 2^24 attention scores
  const perToken = 4 * (2 * H + 4096 + 4096 + 2 * 1024 + 2 * H + 3 * I);
  assert.equal(perToken, 278_528);
  assert.equal(calibrationTokenCap(llama3), Math.floor((2 ** 30 - 4 * 2 * 2 ** 24) / perToken));
  assert.equal(calibrationTokenCap(llama3), 3373);
  const rows = (lengths: number[], micro?: number) => calibrationBatches(lengths, llama3, micro).map((b) => b.map((i) => lengths[i]));
  // sorted by length (ties by index); a micro-batch takes the next prompt while it has fewer than 8 and rows × its longest stay within the cap
  assert.deepEqual(rows([2048, 900, 900, 900, 900, 900, 900, 900, 900, 1000, 2048, 2048, 2048]),
    [[900, 900, 900], [900, 900, 900], [900, 900, 1000], [2048], [2048], [2048], [2048]]); // 3·900 = 2700, 4·900 = 3600 > 3373; 3·1000 = 3000; 2·2048 = 4096 > 3373
  assert.deepEqual(calibrationBatches([5, 3, 5, 3], llama3, 2), [[1, 3], [0, 2]]);
  // --micro-batch caps the prompts; the cap on tokens stays: 16 prompts of 256 tokens are two micro-batches of 8 by default, and at
  // --micro-batch 16 still two (16·256 = 4096 > 3373: 13·256 = 3328 is the most); 16 of 512 are 6, 6 and 4 whatever --micro-batch above 6
  assert.deepEqual(rows(Array(16).fill(256)).map((b) => b.length), [8, 8]);
  assert.deepEqual(rows(Array(16).fill(256), 16).map((b) => b.length), [13, 3]);
  assert.deepEqual(rows(Array(16).fill(512), 16).map((b) => b.length), [6, 6, 4]);
  assert.deepEqual(rows(Array(8).fill(1024), 2).map((b) => b.length), [2, 2, 2, 2]);
  // a prompt longer than half the cap is a micro-batch of its own, and so is one longer than the cap
  assert.deepEqual(rows(Array(3).fill(2048)).map((b) => b.length), [1, 1, 1]);
  assert.deepEqual(calibrationBatches([9000, 8000], llama3), [[1], [0]]);
  // small models are never capped: the demo's micro-batches of 8 prompts up to its 1024 positions are far below its cap
  const demo = parseConfig(JSON.parse(readFileSync('models/demo/config.json', 'utf8')));
  assert.ok(calibrationTokenCap(demo) > 8 * demo.max_position_embeddings * 25, String(calibrationTokenCap(demo)));
});

test('GPTQ at the Llama-3-8B shape on 8 prompts of 1,024 tokens: micro-batches of 3, 3 and 2 prompts, the pass of 3 beside down_proj\'s Hessian\'s lower triangle', () => {
  const prompts = Array(8).fill(1024);
  const blocked = backendProfile('cpu'); // attention in blocks of 2^24 scores, as on every backend
  const e = estimateQuantize(llama3, bf16, blocked, work('gptq:w4g128', prompts));
  assert.equal(paddedBatches(llama3, prompts, 8).tokens, 8 * 1024);
  assert.equal(paddedBatches(llama3, prompts, 8).largest, 3 * 1024);
  // one micro-batch of 3 through the layer: per token its input, output and intermediates (278,528 bytes), and two blocks of scores
  const pass = (rows: number) => rows * 1024 * 278_528 + 4 * 2 * 2 ** 24;
  assert.ok(pass(3) <= 2 ** 30 && pass(4) > 2 ** 30);
  const done = [[H, H], [1024, H], [1024, H], [H, H], [I, H], [I, H]];
  const packed = done.reduce((a, [r, c]) => a + w4g128(r, c), 0);
  const values = done.reduce((a, [r, c]) => a + 4 * r * c, 0);
  const accumulating = packed + values + 4 * I * (I + 1) + pass(3) + 3 * 4 * 2 ** 22; // the Hessian's lower triangle, float64
  assert.match(e.parts[0].what, /gptq's Hessians of mlp\.down_proj/);
  assert.equal(e.parts[0].bytes, accumulating);
  const states = 4 * 8 * 1024 * (H + 1);
  const below = RUNTIME_OVERHEAD + 4 * H * I + 2 * 4 * H + states; // down_proj's float32 weights and the norms, the states
  assert.equal(e.total, below + accumulating);
  assert.equal(e.total, 3_373_129_728);
  // down_proj's solve: the whole Hessian (float64 n×n), GPTQ's and round to nearest's values, the latter packed, the objective's tiles
  const solve = packed + 8 * I * I + 3 * 4 * H * I + w4g128(H, I) + 3 * 4 * 2 ** 22;
  assert.equal(below + solve, 3_303_604_224);
  // --micro-batch 2 holds the pass of two (0.29 GB less), and the accumulation falls below the solve, which is then the peak
  const two = estimateQuantize(llama3, bf16, blocked, { ...work('gptq:w4g128', prompts), microBatch: 2 });
  assert.ok(below + accumulating - (pass(3) - pass(2)) < below + solve);
  assert.equal(two.total, below + solve);
  assert.match(two.parts[0].what, /gptq's Hessian and solver of mlp\.down_proj/);
  // so where 3.35 GB is available the check names --micro-batch 2, which keeps every prompt, before fewer questions (--micro-batch 4
  // is the same micro-batches of 3, 3 and 2)
  const req = { command: 'quantize', config: llama3, stored: bf16, profile: blocked, work: work('gptq:w4g128', prompts), perSubject: { option: PER_SUBJECT, value: 8 }, available: 3.35e9 };
  assert.throws(() => assertQuantizeFits({ ...req, microBatch: MICRO_BATCH }), /but 3\.4 GB is available; rerun with --micro-batch 2 \(about 3\.3 GB\)$/);
  // without --micro-batch (a sweep's point) fewer questions: 4 of the 8 are micro-batches of 3 and 1, half the states
  assert.equal(estimateQuantize(llama3, bf16, blocked, work('gptq:w4g128', prompts.slice(0, 4))).total, e.total - states / 2);
  assert.throws(() => assertQuantizeFits(req), /but 3\.4 GB is available; rerun with --per-subject 4 \(about 3\.3 GB\)$/);
});

test('AWQ, SmoothQuant and round to nearest at the Llama-3-8B shape, each at its own peak', () => {
  // AWQ on 128 prompts of 640 tokens: its search holds one micro-batch (5 prompts, 3200 rows: 6·640 = 3840 padded tokens are above the cap
  // of 3,373) at a time, and gate/up's site is its peak:
  // the site's 4096 inputs and the MLP's outputs twice (float, candidate) on those rows, the forward pass, gate's and up's candidate values,
  // the 20 exponents' scales (float64)
  const long = Array.from({ length: 128 }, () => 640);
  const rows = 128 * 640, batch = 5 * 640;
  assert.equal(paddedBatches(llama3, [...Array(8).fill(600), 640], 8).largest, 3000, 'the largest micro-batch (5·600), not the last (4·640)');
  const awq = estimateQuantize(llama3, bf16, cpu, work('awq:w4g128', long));
  const site = 4 * batch * (H + 2 * H) + forward(5, 640) + 2 * 4 * I * H + 8 * 20 * H;
  // down_proj's site (14336 inputs, one linear's candidate) and the pass measuring the sites' inputs (one projection's |x| and its masked copy) hold less
  assert.ok(4 * batch * (I + 2 * H) + forward(5, 640) + 4 * H * I + 8 * 20 * I < site && forward(5, 640) + 2 * 4 * batch * I < site);
  assert.match(awq.parts[0].what, /awq's search at mlp\.gate_proj \(its 4096 inputs on a micro-batch of 3200 rows\)/);
  assert.equal(awq.parts[0].bytes, site);
  assert.equal(awq.total, RUNTIME_OVERHEAD + layerF32 + 4 * rows * (H + 1) + site);
  assert.equal(awq.total, 4_677_664_768); // it held every row's down_proj inputs before: 12.8 GB

  // SmoothQuant W8A8 on 16 prompts of 512: computing the next layer's inputs is its peak (the states, each micro-batch's replaced by its
  // output as it is computed, the forward pass of the largest micro-batch, 6 prompts, and the packed layer)
  const short = Array.from({ length: 16 }, () => 512);
  const w8 = (r: number, c: number) => r * (c + 4); // a byte per weight and one float32 scale per row
  const packed = w8(H, H) + 2 * w8(1024, H) + w8(H, H) + 2 * w8(I, H) + w8(H, I);
  const sq = estimateQuantize(llama3, bf16, cpu, work('smoothquant:w8a8', short));
  assert.equal(sq.total, RUNTIME_OVERHEAD + layerF32 + 4 * 16 * 512 * (H + 1) + forward(6, 512) + packed);

  // from a float32 checkpoint on one short prompt, making layer 0's inputs is SmoothQuant's peak: the prompt's embedding rows are read
  // from the whole table as stored (128,256 · 4096 float32: 2.1 GB), beside the layer's float32 weights and the states
  const f32 = estimateQuantize(llama3, () => 4, cpu, work('smoothquant:w8a8', [16]));
  assert.equal(f32.parts[0].what, 'embedding read for the calibration prompts');
  assert.equal(f32.total, RUNTIME_OVERHEAD + 128256 * H * 4 + layerF32 + 4 * 16 * (H + 1));
  // a table read whole holds no more than that: its stored bytes beside its packed form
  assert.ok(128256 * H * 4 + 128256 * (H + (H / 32) * 4) + 4 * 2 ** 22 < 128256 * H * 4 + layerF32);

  // round to nearest needs no calibration: lm_head read as stored (BF16) beside its packed 8-bit groups of 32 (and a 16 MB float32 block) is the peak
  const rtn = estimateQuantize(llama3, bf16, cpu, work('rtn:w4g128', null));
  assert.equal(rtn.total, RUNTIME_OVERHEAD + 128256 * H * 2 + 128256 * (H + (H / 32) * 4) + 4 * 2 ** 22);
  assert.equal(rtn.parts.length, 2);
  for (const p of rtn.parts) assert.match(p.what, /^(lm_head|model\.embed_tokens) (read|packed)$/);
  // with --keep-embeddings the tables are only copied: a layer's float32 weights and the tensor being read are the peak
  const kept = estimateQuantize(llama3, bf16, cpu, { ...work('rtn:w4g128', null), keepEmbeddings: true });
  assert.equal(kept.total, RUNTIME_OVERHEAD + layerF32 + 8 * I * H);
});

test('the check names the fix: smaller micro-batches, fewer calibration questions, a backend outside the wasm heap, or more memory', () => {
  const long = Array.from({ length: 128 }, () => 640);
  const req = { command: 'quantize', config: llama3, stored: bf16, profile: cpu, work: work('awq:w4g128', long), perSubject: { option: PER_SUBJECT, value: 64 }, available: 6e9 };
  assert.throws(() => assertQuantizeFits({ ...req, available: 4.5e9 }), (e: Error) => {
    const m = /^quantize needs about 4\.7 GB of RAM \(awq's search at mlp\.gate_proj .*\) but 4\.5 GB is available; rerun with --per-subject (\d+) \(about \d\.\d GB\)$/.exec(e.message);
    assert.ok(m, e.message);
    // the count named fits (k of each subject's 64 prompts) and twice as many does not
    const k = Number(m[1]);
    const kept = (per: number) => estimateQuantize(llama3, bf16, cpu, work('awq:w4g128', long.filter((_, i) => i % 64 < per))).total;
    assert.ok(kept(k) <= 4.5e9 && kept(2 * k) > 4.5e9, `${k}: ${kept(k)} ${kept(2 * k)}`);
    return true;
  });
  // GPTQ's Hessian, the layer's float32 values and the linears done do not shrink with the calibration: below them no count of questions fits
  assert.throws(() => assertQuantizeFits({ ...req, work: work('gptq:w4g128', long.slice(0, 16)), available: 3e9 }),
    /quantize needs about \d\.\d GB of RAM \(gptq's Hessians of mlp\.down_proj \(14336 inputs\) \d\.\d GB, .*\) but 3\.0 GB is available; use a machine with more memory/);
  // on wasm the tensors must fit the heap: another backend holds them in RAM (256 prompts of 640: their states alone are 2.7 GB of tensors)
  assert.throws(() => assertQuantizeFits({ ...req, work: work('awq:w4g128', [...long, ...long]), profile: backendProfile('wasm'), available: 40e9 }),
    /quantize needs \d+\.\d GB of tensors in the wasm heap \(limit 4\.3 GB\) .*; rerun with --backend (native|cpu) \(about \d+\.\d GB\)$/);
  assert.ok(assertQuantizeFits({ ...req, available: 40e9 }));
  assert.equal(assertQuantizeFits({ ...req, available: null })!.total, estimateQuantize(llama3, bf16, cpu, req.work).total);
});

test('mka quantize, compress --quantize and a sweep\'s quantized points refuse a config they cannot quantize before any work, in one line', async () => {
  const dir = scratchDir('quantize-memory');
  const model = join(dir, 'llama3-8b');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(model);
  writeFileSync(join(model, 'config.json'), JSON.stringify(PAPER_SHAPES['llama3-8b']));
  copyFileSync('models/demo/tokenizer.json', join(model, 'tokenizer.json'));
  const data = join(dir, 'mmlu');
  await ensureBenchmark(data);
  const env = { ...process.env, MKA_MEMORY_LIMIT: '2.5G' };
  const tensors = tf.memory().numTensors;

  const q = await runCliInProcess(['quantize', '--model', model, '--method', 'gptq', '--data', data, '--out', join(dir, 'q'), '--backend', 'cpu', '--quiet'], { env });
  assert.equal(q.status, 1, q.stderr);
  // down_proj's solve (its whole Hessian, 1.6 GB, beside GPTQ's and round to nearest's values) is above 2.7 GB with any count of questions
  assert.match(q.stderr, /^mka: quantize needs about \d\.\d GB of RAM \(gptq's Hessian and solver of mlp\.down_proj \(14336 inputs\) \d\.\d GB, .*\) but 2\.7 GB is available; use a machine with more memory \(the model is already quantized one layer at a time\)\n$/);
  assert.ok(!existsSync(join(dir, 'q')), 'nothing written');
  // round to nearest fits: the run goes on to find no weights
  const rtn = await runCliInProcess(['quantize', '--model', model, '--method', 'rtn', '--out', join(dir, 'r'), '--backend', 'cpu', '--quiet'], { env });
  assert.equal(rtn.status, 1);
  assert.match(rtn.stderr, /no model\.safetensors/);

  if (loadNativeAddon().addon) {
    // at this shape GPTQ fits where compress's own streamed 16-bit calibration fits: past both checks, the run finds no weights
    const fits = await runCliInProcess(['compress', '--model', model, '--method', 'mka', '--remove', '2', '--data', data, '--quantize', 'gptq:w4g128', '--streaming',
      '--out', join(dir, 'c'), '--backend', 'native', '--quiet'], { env: { ...env, MKA_MEMORY_LIMIT: '4G' } });
    assert.match(fits.stderr, /^mka: .*no model\.safetensors/);
    // at the Llama-3-70B layer shape (4 layers) the streamed calibration fits in 10 GB and GPTQ's solve of down_proj (its Hessian of 28,672 inputs, 6.6 GB)
    // does not: the quantizer after it says so in one line, before the merge's pass loads anything
    const big = join(dir, 'llama70b');
    mkdirSync(big);
    writeFileSync(join(big, 'config.json'), JSON.stringify({ ...PAPER_SHAPES['llama70b-layer'], num_hidden_layers: 4 }));
    copyFileSync('models/demo/tokenizer.json', join(big, 'tokenizer.json'));
    const c = await runCliInProcess(['compress', '--model', big, '--method', 'mka', '--remove', '2', '--data', data, '--quantize', 'gptq:w4g128', '--streaming',
      '--out', join(dir, 'c'), '--backend', 'native', '--quiet'], { env: { ...env, MKA_MEMORY_LIMIT: '10G' } });
    assert.equal(c.status, 1, c.stderr);
    assert.match(c.stderr, /^mka: compress needs about 1\d\.\d GB of RAM \(gptq's Hessian and solver of mlp\.down_proj \(28672 inputs\) .* but 10\.7 GB is available; use a machine with more memory/);
    assert.equal(c.stderr.trim().split('\n').length, 1, c.stderr);
    const alone = await runCliInProcess(['compress', '--model', big, '--method', 'mka', '--remove', '2', '--data', data, '--streaming', '--out', join(dir, 'c'), '--backend', 'native', '--quiet'],
      { env: { ...env, MKA_MEMORY_LIMIT: '10G' } });
    assert.match(alone.stderr, /^mka: .*no model\.safetensors/);
  }

  // a sweep holds its original beside each quantization: checked before the original is loaded
  const saved = process.env.MKA_MEMORY_LIMIT;
  process.env.MKA_MEMORY_LIMIT = '20G';
  try {
    const opts = { model, data, out: join(dir, 's'), methods: ['reverse'], remove: [0], quantize: ['none', 'gptq:w4g128'], ntrain: 5 };
    await assert.rejects(checkSweepQuantizeFits(opts), (e: Error) => {
      // the original's weights as this backend holds them (16-bit on native, float32 on cpu), GPTQ's solve, the 4-bit model being built
      assert.match(e.message, /^sweep needs about \d+\.\d GB of RAM \(original model (16\.1|32\.1) GB, quantized model 4\.\d GB, gptq's Hessian and solver of mlp\.down_proj \(14336 inputs\) \d\.\d GB, .*\) but 21\.5 GB is available; use a machine with more memory/);
      return true;
    });
    process.env.MKA_MEMORY_LIMIT = '60G';
    await checkSweepQuantizeFits(opts);
  } finally {
    if (saved === undefined) delete process.env.MKA_MEMORY_LIMIT;
    else process.env.MKA_MEMORY_LIMIT = saved;
  }
  assert.equal(tf.memory().numTensors, tensors, 'the checks leave no tensors');
});
