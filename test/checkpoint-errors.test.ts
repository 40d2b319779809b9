/**
 * Bad checkpoints and configs get a one-line UserError naming the file and the problem, and the
 * reader never allocates a header the file cannot hold. Built from a small random model made here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, expectedTensors } from '../src/model/config.ts';
import { toFloat32, fromFloat32 } from '../src/io/safetensors.ts';
import { loadModel, disposeModel } from '../src/model/model.ts';
import { UserError } from '../src/runtime/errors.ts';
import { writeRandomModel } from './random-model.ts';
import { scratchDir } from './scratch.ts';

const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 24,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
  rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};

const makeModel = (dir: string) => writeRandomModel(dir, CONFIG, 3);

function expectUserError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected UserError, got ${e}`);
    assert.ok(!e.message.includes('\n'), 'error message must be one line');
    for (const p of parts) assert.match(e.message, typeof p === 'string' ? new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : p);
    return true;
  });
}

const root = scratchDir('ckpt');

test('a valid model loads', async () => {
  const dir = join(root, 'ok');
  await makeModel(dir);
  const model = loadModel(dir);
  try {
    assert.equal(model.config.num_hidden_layers, CONFIG.num_hidden_layers);
    assert.deepEqual([...expectedTensors(model.config).keys()].filter((k) => !model.tensors.has(k) && !model.packed?.has(k)), [], 'every expected tensor is loaded');
  } finally {
    disposeModel(model);
  }
});

test('truncated safetensors is refused, naming the file', async () => {
  const dir = join(root, 'trunc');
  await makeModel(dir);
  const f = join(dir, 'model.safetensors');
  truncateSync(f, statSync(f).size - 100);
  expectUserError(() => loadModel(dir), f, 'past the end');
});

test('a header length larger than the file is refused without allocating it', async () => {
  const dir = join(root, 'hdr');
  await makeModel(dir);
  const f = join(dir, 'model.safetensors');
  const buf = readFileSync(f);
  buf.writeBigUInt64LE(2n ** 60n, 0);
  writeFileSync(f, buf);
  expectUserError(() => loadModel(dir), f, 'header length');
});

function editHeader(f: string, edit: (h: Record<string, any>) => void): void {
  const buf = readFileSync(f);
  const n = Number(buf.readBigUInt64LE(0));
  const h = JSON.parse(buf.subarray(8, 8 + n).toString());
  edit(h);
  const hb = Buffer.from(JSON.stringify(h));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  writeFileSync(f, Buffer.concat([len, hb, buf.subarray(8 + n)]));
}

test('unknown dtype and offsets past the end are refused', async () => {
  const dir = join(root, 'dtype');
  await makeModel(dir);
  const f = join(dir, 'model.safetensors');
  editHeader(f, (h) => { h['model.norm.weight'].dtype = 'Q4'; });
  expectUserError(() => loadModel(dir), f, 'unknown dtype', 'model.norm.weight');
  const dir2 = join(root, 'offsets');
  await makeModel(dir2);
  const f2 = join(dir2, 'model.safetensors');
  editHeader(f2, (h) => {
    const o = h['model.norm.weight'].data_offsets;
    h['model.norm.weight'].data_offsets = [o[0] + 1e6, o[1] + 1e6];
  });
  expectUserError(() => loadModel(dir2), f2, 'past the end');
});

test('sharded index: missing shard and a shard path leaving the directory are refused', async () => {
  const dir = join(root, 'shards');
  await makeModel(dir);
  const names = [...expectedTensors(parseConfig(CONFIG)).keys()];
  const index = (shard: string) => JSON.stringify({ weight_map: Object.fromEntries(names.map((n) => [n, shard])) });
  writeFileSync(join(dir, 'model.safetensors.index.json'), index('model-00001-of-00002.safetensors'));
  expectUserError(() => loadModel(dir), 'model.safetensors.index.json', 'missing');
  writeFileSync(join(dir, 'model.safetensors.index.json'), index('../../etc/passwd'));
  expectUserError(() => loadModel(dir), 'leaves the model directory');
});

test('missing or contradictory config fields and shape mismatches are refused', async () => {
  const { num_attention_heads: _, ...noHeads } = CONFIG;
  expectUserError(() => parseConfig(noHeads, 'x/config.json'), 'x/config.json', 'num_attention_heads');
  expectUserError(() => parseConfig({ ...CONFIG, num_key_value_heads: 3 }, 'c.json'), 'multiple of num_key_value_heads');
  expectUserError(() => parseConfig({ ...CONFIG, model_type: 'gpt2' }), 'gpt2', 'supported: llama, mistral, qwen2');
  expectUserError(() => parseConfig({ ...CONFIG, architectures: ['Qwen2ForCausalLM'] }), 'contradict');
  // a list in a message: each value as showJson shows it (quoted once, cut), the rest counted
  expectUserError(() => parseConfig({ ...CONFIG, architectures: ['Qwen2"ForCausalLM', 5, 'x'.repeat(100), ...Array(8).fill('M')] }),
    `architectures ["Qwen2\\"ForCausalLM", 5, "${'x'.repeat(37)}...", "M", "M", "M", "M", "M", ... (11 in all)] contradict model_type "llama"`);
  const { getTask } = await import('../src/eval/tasks/registry.ts');
  assert.throws(() => getTask('arc_easy').docToTarget({ question: 'q', answerKey: 'E', choices: { text: ['a', 'b'], label: ['A', 'B"'] } }),
    (e: Error) => e instanceof UserError && e.message === 'answerKey "E" is not one of the choice labels ["A", "B\\""]');
  const dir = join(root, 'shape');
  await makeModel(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...CONFIG, intermediate_size: 20 }));
  expectUserError(() => loadModel(dir), 'mlp.gate_proj.weight', 'shape');
});

test('rms_norm_eps and rope_theta outside what models use are refused naming the file, the field and the range; real values load', () => {
  for (const [field, v] of [['rms_norm_eps', 1e30], ['rms_norm_eps', 0.5], ['rms_norm_eps', 1e-300], ['rope_theta', 1e300], ['rope_theta', 1e13], ['rope_theta', 1], ['rope_theta', 0.5]] as const) {
    expectUserError(() => parseConfig({ ...CONFIG, [field]: v }, 'm/config.json'), new RegExp(`^m/config\\.json: "${field}" is ${String(v).replace('+', '\\+')}, outside [0-9e.-]+ to [0-9e.+-]+ \\(models use .*\\); fix the field$`));
  }
  for (const [field, v] of [['rms_norm_eps', 0], ['rms_norm_eps', -1e-5], ['rope_theta', 0], ['rope_theta', -10000], ['rope_theta', '10000']] as const) {
    expectUserError(() => parseConfig({ ...CONFIG, [field]: v }, 'm/config.json'), new RegExp(`^m/config\\.json: "${field}" must be a positive number from [0-9e.-]+ to [0-9e.+-]+, got `));
  }
  // Llama 2, Llama 3 (and 3.1), Qwen2 / Mistral, Llama-3-8B-Gradient-1048k's 3580165449; BERT-style 1e-12
  for (const theta of [10000, 500000, 1e6, 3580165449]) assert.equal(parseConfig({ ...CONFIG, rope_theta: theta }).rope_theta, theta);
  for (const eps of [1e-5, 1e-6, 1e-12]) assert.equal(parseConfig({ ...CONFIG, rms_norm_eps: eps }).rms_norm_eps, eps);
});

test('F16 and BF16 conversions round to nearest and invert exactly on representable values', () => {
  const xs = Float32Array.from([0, -0, 1, -2.5, 65504, 6.1035156e-5, 5.9604645e-8, 1 / 3, 1e-3, -7.25]);
  for (const dt of ['F16', 'BF16'] as const) {
    const once = toFloat32(fromFloat32(xs, dt), dt);
    const twice = toFloat32(fromFloat32(once, dt), dt);
    assert.deepEqual(Array.from(twice), Array.from(once), `${dt} rounding is not idempotent`);
    for (let i = 0; i < xs.length; i++) {
      const rel = Math.abs(once[i] - xs[i]) / Math.max(Math.abs(xs[i]), 1e-30);
      assert.ok(rel <= (dt === 'F16' ? 2 ** -11 : 2 ** -8) || Math.abs(once[i] - xs[i]) < 6e-8, `${dt} ${xs[i]} -> ${once[i]}`);
    }
  }
  assert.equal(toFloat32(fromFloat32(Float32Array.from([1 / 3]), 'F16'), 'F16')[0], 0.333251953125);
  assert.equal(toFloat32(fromFloat32(Float32Array.from([1 / 3]), 'BF16'), 'BF16')[0], 0.333984375);
});
