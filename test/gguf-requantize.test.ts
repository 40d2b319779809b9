/**
 * `mka export gguf` of packed models that a GGUF cannot hold block for block (#24 item 5), on the demo:
 *
 * - 8-bit asymmetric weights (a min per group): no ggml type holds them, so at q8_0 each becomes Q8_0
 *   from its dequantized values (within Q8_0's rounding of them), a 176-wide down projection F16 as any
 *   other, norms F32; the export says how many, and the result lists them;
 * - `--type f32` of a 4-bit model: every tensor F32 holding exactly the packed weights' values, and
 *   `mka forward` on the file gives the packed directory's logits (both float products: wasm);
 * - a SmoothQuant W8A8 model: its per-token activation rule has no place in GGUF, which the export says.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { exportGguf } from '../src/export/gguf.ts';
import { GgufFile } from '../src/gguf/reader.ts';
import { GgmlType } from '../src/gguf/format.ts';
import { ggufName } from '../src/gguf/tensor-names.ts';
import { openModelDir } from '../src/model/model.ts';
import { expectedTensors } from '../src/model/config.ts';
import { runForward } from '../src/model/inspect.ts';
import { quantizeModel } from '../src/pipeline/quantize.ts';
import { parseQuantization } from '../src/quant/registry.ts';
import { roundHalf } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const DEMO = 'models/demo';
let dir: string;
before(async () => {
  await initBackend('wasm');
  dir = scratchDir('gguf-requant');
});

/** Exports `model` as `type` into dir, returning the result and the lines it logged. */
async function exportLogged(model: string, type: 'q8_0' | 'q4_0' | 'f32', name: string) {
  const lines: string[] = [];
  const out = join(dir, `${name}.gguf`);
  const result = await exportGguf({ model, out, type, quiet: true, log: (m) => lines.push(m) });
  return { out, result, lines };
}

test('8-bit asymmetric weights export as Q8_0 quantized again from their values (rows of 176: F16), said with counts', async () => {
  const model = join(dir, 'w8-asym');
  await quantizeModel({ model: DEMO, out: model, quantization: parseQuantization('rtn:w8g32-asym')!, quiet: true });
  const { out, result, lines } = await exportLogged(model, 'q8_0', 'w8-asym');
  const { config, ckpt } = openModelDir(model);
  const g = new GgufFile(out), back = openModelDir(out).ckpt;
  try {
    const shapes = expectedTensors(config);
    const packed = [...shapes.keys()].filter((n) => ckpt.packedInfo(n));
    const layers = packed.filter((n) => n.startsWith('model.layers.')), tables = packed.filter((n) => !n.startsWith('model.layers.'));
    assert.equal(layers.length, 8 * 7);
    for (const n of layers) assert.deepEqual({ bits: ckpt.packedInfo(n)!.spec.bits, symmetric: ckpt.packedInfo(n)!.spec.symmetric }, { bits: 8, symmetric: false }, n);
    // the embedding and lm_head are quantized as llama.cpp keeps them (symmetric, groups of 32): Q8_0 blocks as they are
    for (const n of tables) assert.deepEqual({ bits: ckpt.packedInfo(n)!.spec.bits, symmetric: ckpt.packedInfo(n)!.spec.symmetric }, { bits: 8, symmetric: true }, n);
    const wide = layers.filter((n) => shapes.get(n)![1] % 32 !== 0), whole = layers.filter((n) => shapes.get(n)![1] % 32 === 0);
    assert.equal(wide.length, 8, 'the down projections, 176 inputs');
    for (const [hf, shape] of shapes) {
      const t = g.tensors.get(ggufName(hf)!)!;
      const want = shape.length === 1 ? GgmlType.F32 : wide.includes(hf) ? GgmlType.F16 : GgmlType.Q8_0;
      assert.equal(t.type, want, `${hf}: ${GgmlType[t.type]}`);
    }
    assert.deepEqual([...result.requantized].sort(), [...whole].sort());
    assert.deepEqual([...result.fallback].sort(), [...wide].sort());
    assert.equal(result.packedKept, tables.length);
    assert.ok(lines.some((l) => l.includes(`${whole.length} packed weights have no GGUF block type (8-bit with a min per group)`) && l.includes('quantized again as q8_0')), lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('8 of') && l.includes('fall back to F16')), lines.join('\n'));
    // each Q8_0 block holds the packed weight's values to within its rounding: the values are rounded to steps of d =
    // max|w|/127 (half a step), and the file keeps d as a half, which moves a quant q by |d − half(d)|·|q| ≤ 127·|d − half(d)|
    for (const n of whole) {
      const a = ckpt.read(n), b = back.read(n);
      let worst = -Infinity, at = -1; // the largest error beyond its block's bound
      for (let s = 0; s < a.length; s += 32) {
        let amax = 0;
        for (let i = s; i < s + 32; i++) amax = Math.max(amax, Math.abs(a[i]));
        const d = amax / 127, bound = d / 2 + 127 * Math.abs(d - roundHalf(d)) + 1e-9 * amax;
        for (let i = s; i < s + 32; i++) if (Math.abs(a[i] - b[i]) - bound > worst) [worst, at] = [Math.abs(a[i] - b[i]) - bound, i];
      }
      assert.ok(worst <= 0, `${n}[${at}]: ${b[at]} for ${a[at]}, ${worst} past its block's rounding`);
    }
    for (const n of wide) assert.deepEqual(back.read(n), Float32Array.from(ckpt.read(n), (v) => roundHalf(v)), `${n}: F16 of the dequantized values`);
  } finally {
    g.close();
    back.close();
    ckpt.close();
  }
});

test('--type f32 of a 4-bit model writes every packed weight dequantized exactly, and mka forward on it gives the packed model\'s logits', async () => {
  const model = join(dir, 'w4');
  await quantizeModel({ model: DEMO, out: model, quantization: parseQuantization('rtn:w4g32')!, quiet: true });
  const { out, result, lines } = await exportLogged(model, 'f32', 'w4-f32');
  const { config, ckpt } = openModelDir(model);
  const g = new GgufFile(out), back = openModelDir(out).ckpt;
  try {
    const packed = [...expectedTensors(config).keys()].filter((n) => ckpt.packedInfo(n));
    assert.ok(packed.length >= 50);
    for (const t of g.tensors.values()) assert.equal(t.type, GgmlType.F32, t.name);
    for (const n of packed) assert.deepEqual(back.read(n), ckpt.read(n), `${n}: the packed weight's values`);
    assert.equal(back.packedInfo(packed[0]), null, 'an F32 file has no packed weights');
    assert.deepEqual(result.requantized, []);
    assert.ok(lines.some((l) => l.includes(`${packed.length} packed weights are written dequantized, as f32 values`)), lines.join('\n'));
  } finally {
    g.close();
    back.close();
    ckpt.close();
  }
  const ids = [1, 3, 53, 89, 292, 258, 30, 3, 59, 76, 238, 230];
  const a = await runForward({ model: out, ids, logits: 'all' });
  const b = await runForward({ model, ids, logits: 'all' });
  const d = Math.max(...a.logits!.map((row, p) => row.reduce((m, x, j) => Math.max(m, Math.abs(x - b.logits![p][j])), 0)));
  assert.ok(d < 1e-4, `max |logits of the f32 GGUF − the packed directory's| = ${d}`);
});

test('a SmoothQuant W8A8 model exports its weights as Q8_0 and says that GGUF has no per-token activations', async () => {
  const calib = join(dir, 'calib.txt');
  writeFileSync(calib, ['Question: What is 7 + 5?\nAnswer: 12', 'Question: Which letter comes after C?\nAnswer: D', 'Question: What is 3 + 4?\nAnswer: 7', 'The alphabet: A B C D E F G'].join('\n'));
  const model = join(dir, 'w8a8');
  await quantizeModel({ model: DEMO, out: model, quantization: parseQuantization('smoothquant:w8a8')!, calibrationFile: calib, quiet: true });
  const q8 = await exportLogged(model, 'q8_0', 'w8a8-q8');
  assert.equal(q8.result.perTokenActivations, true);
  assert.ok(q8.result.packedKept >= 50, 'the int8 per-channel weights keep their blocks');
  assert.ok(q8.lines.some((l) => /int8 per token \(W8A8\).*per block of 32/.test(l)), q8.lines.join('\n'));
  const f16 = await exportLogged(model, 'f32', 'w8a8-f32');
  assert.ok(f16.lines.some((l) => /int8 per token \(W8A8\).*float activations/.test(l)), f16.lines.join('\n'));
  const plain = await exportLogged(DEMO, 'q8_0', 'demo-q8');
  assert.equal(plain.result.perTokenActivations, false);
  assert.ok(!plain.lines.some((l) => l.includes('per token')), plain.lines.join('\n'));
});
