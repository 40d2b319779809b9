/**
 * Where a quantizer's calibration prompts come from: `mka quantize` draws at least the GPTQ/AWQ papers'
 * 128 questions by default (spread over the subjects); `compress --quantize` calibrates the quantizer on
 * the questions the merge drew (one draw), each after its dev examples, or with `--quantize-shots 0` on
 * the merge's own token ids (one tokenization).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { loadTokenizer } from '../src/tokenizer/tokenizer.ts';
import { calibrationPrompts } from '../src/pipeline/analyse.ts';
import { buildPrompt } from '../src/eval/mmlu/prompt.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { runCliInProcess as runCli } from './cli-run.ts';
import { quantCalibration } from '../src/pipeline/quantize.ts';
import { parseQuantization } from '../src/quant/registry.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('quant-calibration');
const json = (f: string) => JSON.parse(readFileSync(f, 'utf8'));

test('a quantizer calibrates on at least 128 questions by default, spread over the subjects', async () => {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const { prompts, info } = await quantCalibration('models/demo', parseQuantization('gptq:w4g32')!, { data });
  assert.equal(info.per_subject, 26); // ⌈128 / 5 subjects⌉
  assert.equal(prompts!.length, 130);
  assert.equal(info.shots, 5);
  const two = await quantCalibration('models/demo', parseQuantization('gptq:w4g32')!, { data, subjects: 2 });
  assert.equal(two.prompts!.length, 128);
  assert.equal((await quantCalibration('models/demo', parseQuantization('rtn:w4g32')!, { data })).prompts, null, 'round to nearest needs none');
});

test('compress --quantize calibrates the quantizer on the merge\'s questions, or with --quantize-shots 0 on its token ids', async () => {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const args = (out: string, extra: string[]) => ['compress', '--model', 'models/demo', '--method', 'shortgpt', '--remove', '2', '--data', data, '--per-subject', '3',
    '--quantize', 'smoothquant:w8a8', ...extra, '--out', out, '--quiet'];
  const five = join(root, 'five');
  const r5 = await runCli(args(five, []));
  assert.equal(r5.status, 0, r5.stderr);
  const merge5 = json(join(five, 'merge.json')).calibration;
  const quant5 = json(join(five, 'quantize.json')).calibration;
  assert.equal(merge5.prompts, 15);
  assert.equal(quant5.prompts, 15, 'the merge\'s 15 questions, not a draw of its own');
  assert.match(quant5.shared_with_merge, /questions/);
  // each of those questions after its 5 dev examples, as an independent build of the same prompts gives
  const tokenizer = await loadTokenizer('models/demo');
  const drawn = calibrationPrompts(tokenizer, { data, perSubject: 3 });
  const mmlu = loadMmlu(data);
  const expected = drawn.labels.map((l) => {
    const [subject, index] = l.split('#');
    return tokenizer.encode(buildPrompt(mmlu, mmlu.test.get(subject)!.find((q) => q.index === Number(index))!, 5)).length;
  }).reduce((a, b) => a + b, 0);
  assert.equal(quant5.tokens, expected);

  const zero = join(root, 'zero');
  const r0 = await runCli(args(zero, ['--quantize-shots', '0']));
  assert.equal(r0.status, 0, r0.stderr);
  const merge0 = json(join(zero, 'merge.json')).calibration;
  const quant0 = json(join(zero, 'quantize.json')).calibration;
  assert.equal(quant0.prompts, merge0.prompts);
  assert.equal(quant0.tokens, merge0.tokens, 'the merge\'s own prompts');
  assert.match(quant0.shared_with_merge, /same token ids/);
});
