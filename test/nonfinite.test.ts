/**
 * A NaN or infinite weight is refused when a checkpoint is read (exit 1 naming the file and tensor),
 * by every command that reads weights, unless --allow-nonfinite; in float32, float16 and bfloat16.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, cpSync, existsSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { firstNonFinite, SafetensorsFile } from '../src/io/safetensors.ts';
import { assertUserError, runAllInProcess, runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('nonfinite');
const D = join(root, 'data');
await ensureBenchmark(D);
const TENSOR = 'model.layers.3.mlp.up_proj.weight';
writeFileSync(join(root, 'corpus.txt'), 'Once upon a time there was a model. '.repeat(40));

/** A copy of the demo model with `value` written over element 7 of TENSOR (float32 on disk). */
function poisoned(name: string, value: number): string {
  const dir = join(root, name);
  cpSync('models/demo', dir, { recursive: true });
  const file = join(dir, 'model.safetensors');
  const st = new SafetensorsFile(file, { allowNonFinite: true });
  const { begin } = st.tensors.get(TENSOR)!;
  st.close();
  const fd = openSync(file, 'r+');
  writeSync(fd, Buffer.from(new Float32Array([value]).buffer), 0, 4, begin + 7 * 4);
  closeSync(fd);
  return dir;
}

test('firstNonFinite finds NaN and ±Infinity in F32, F16 and BF16 words, and nothing in finite ones', () => {
  const f32 = new Float32Array([1, -2, 3.4e38, 0, Number.NaN]);
  assert.equal(firstNonFinite(new Uint8Array(f32.buffer), 'F32'), 4);
  assert.equal(firstNonFinite(new Uint8Array(f32.buffer, 0, 16), 'F32'), -1);
  const words = (xs: number[]) => new Uint8Array(new Uint16Array(xs).buffer);
  // F16: 0x7bff is the largest finite (65504), 0x7c00 +Inf, 0xfc00 -Inf, 0x7e00 NaN
  assert.equal(firstNonFinite(words([0x3c00, 0x7bff, 0xfbff]), 'F16'), -1);
  assert.equal(firstNonFinite(words([0x3c00, 0xfc00]), 'F16'), 1);
  assert.equal(firstNonFinite(words([0x7e00]), 'F16'), 0);
  // BF16: 0x7f7f is the largest finite, 0x7f80 +Inf, 0xffc0 NaN
  assert.equal(firstNonFinite(words([0x3f80, 0x7f7f, 0xff7f]), 'BF16'), -1);
  assert.equal(firstNonFinite(words([0x3f80, 0x3f80, 0x7f80]), 'BF16'), 2);
  assert.equal(firstNonFinite(words([0xffc0]), 'BF16'), 0);
});

test('every command that reads weights refuses a NaN or Infinity naming the tensor; --allow-nonfinite reads it', async () => {
  const nan = poisoned('nan', Number.NaN), inf = poisoned('inf', -Infinity);
  const out = (n: string) => join(root, `out-${n}`);
  const cases: [string[], ...string[]][] = [
    [['forward', '--model', nan, '--ids', '1,2'], TENSOR, 'NaN', '--allow-nonfinite'],
    [['eval', 'ppl', '--model', inf, '--text', join(root, 'corpus.txt'), '--streaming', '--out', out('ppl')], TENSOR, '-Infinity'],
    [['eval', 'mmlu', '--model', nan, '--data', D, '--limit', '1', '--out', out('eval')], TENSOR],
    [['export', 'hf', '--model', nan, '--out', out('hf')], TENSOR],
    [['export', 'tfjs', '--model', inf, '--out', out('tfjs')], TENSOR],
    [['compress', '--model', nan, '--data', D, '--method', 'reverse', '--remove', '1', '--out', out('compress')], TENSOR],
  ];
  const results = await runAllInProcess(cases.map(([args]) => [...args, '--quiet']));
  results.forEach((r, i) => assertUserError(r, ...cases[i].slice(1) as string[]));
  for (const n of ['eval', 'hf', 'tfjs', 'compress']) assert.ok(!existsSync(out(n)), `${n}: nothing written`);
  // a streamed run meets the layer only in its pass, after its results directory was begun: it goes, holding no result
  assert.ok(!existsSync(out('ppl')), 'ppl: nothing left');

  // allowed: the bfloat16 export keeps the NaN, and reading that export is refused in turn (the 16-bit path)
  const bf16 = out('bf16');
  const allowed = await runCliInProcess(['export', 'hf', '--model', nan, '--out', bf16, '--dtype', 'bfloat16', '--allow-nonfinite', '--quiet']);
  assert.equal(allowed.status, 0, allowed.stderr);
  assertUserError(await runCliInProcess(['forward', '--model', bf16, '--ids', '1', '--quiet']), join(bf16, 'model.safetensors'), TENSOR);
  const forced = await runCliInProcess(['forward', '--model', bf16, '--ids', '1', '--allow-nonfinite', '--quiet']);
  assert.equal(forced.status, 0, forced.stderr);
});
