/**
 * PythonRandom against CPython's random (test/goldens/python-random/seeds.json, from make.py beside it):
 * random(), getrandbits(32) and random.sample after random.seed(n) for seeds of one 32-bit word and of
 * two (2^32, 2^40 + 3, 2^53 − 1), so --protocol released takes every seed up to 2^53 − 1 and draws the
 * released code's rows for each; mka's own draw, whose generator is 32-bit, refuses a larger seed with
 * the range and the way out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PythonRandom } from '../src/runtime/python-random.ts';
import { releasedCalibrationPrompts } from '../src/compress/protocol.ts';
import { sampleCalibrationPrompts } from '../src/compress/calibration-prompts.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { loadMmlu } from '../src/eval/mmlu/data.ts';
import { OptionError } from '../src/runtime/options.ts';
import { scratchDir } from './scratch.ts';

interface Golden { seed: number; random: number[]; getrandbits32: number[]; sample_250_11: number[] }
const GOLDEN = (JSON.parse(readFileSync(join(process.cwd(), 'test', 'goldens', 'python-random', 'seeds.json'), 'utf8')) as { seeds: Golden[] }).seeds;

test('PythonRandom seeded past 32 bits draws as CPython\'s random.seed(n): random(), getrandbits(32), sample', () => {
  assert.deepEqual(GOLDEN.map((g) => g.seed), [1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, 2 ** 53 - 1]);
  for (const g of GOLDEN) {
    let r = new PythonRandom(g.seed);
    assert.deepEqual(g.random.map(() => r.random()), g.random, `random() after seed ${g.seed}`); // exact: 53 bits each
    r = new PythonRandom(g.seed);
    assert.deepEqual(g.getrandbits32.map(() => r.getrandbits(32)), g.getrandbits32, `getrandbits(32) after seed ${g.seed}`);
    r = new PythonRandom(g.seed);
    assert.deepEqual(r.sample(250, 11), g.sample_250_11, `sample(range(250), 11) after seed ${g.seed}`);
    // random.seed(-n) is random.seed(n)
    assert.equal(new PythonRandom(-g.seed).random(), g.random[0]);
  }
  // distinct draws where the seeds differ only above bit 31
  const zero = new PythonRandom(0);
  assert.notDeepEqual(GOLDEN[2].getrandbits32, GOLDEN[2].getrandbits32.map(() => zero.getrandbits(32)));
  assert.throws(() => new PythonRandom(2 ** 53), /must be a safe integer/);
});

test('--protocol released draws with any seed up to 2^53 − 1; mka\'s 32-bit draw refuses a larger one naming both', async () => {
  const TMP = scratchDir('python-random');
  await ensureBenchmark(TMP);
  const data = loadMmlu(TMP);
  const subjects = [...data.subjects].sort().slice(0, 2);
  const big = 2 ** 40 + 3;
  const drawn = releasedCalibrationPrompts(data, { subjects: 2, perSubject: 3, seed: big });
  // as the released code: one generator seeded with --seed, random.sample(range(rows), 3) per sorted subject
  const r = new PythonRandom(big);
  assert.deepEqual(drawn.map((p) => `${p.subject}#${p.index}`), subjects.flatMap((s) => {
    const rows = data.test.get(s)!;
    return r.sample(rows.length, 3).map((i) => `${s}#${rows[i].index}`);
  }));
  assert.notDeepEqual(drawn, releasedCalibrationPrompts(data, { subjects: 2, perSubject: 3, seed: big % 2 ** 32 }));
  assert.equal(releasedCalibrationPrompts(data, { subjects: 1, seed: 2 ** 53 - 1 }).length, 1);
  assert.throws(() => releasedCalibrationPrompts(data, { subjects: 1, seed: 2 ** 53 }), /^OptionError: --seed 9007199254740992: must be an integer >= 0 up to 9007199254740991$/);
  assert.equal(sampleCalibrationPrompts(data, { subjects: 1, seed: 2 ** 32 - 1 }).length, 1);
  assert.throws(() => sampleCalibrationPrompts(data, { subjects: 1, seed: 2 ** 32 }), (e: Error) => e instanceof OptionError
    && /^--seed 4294967296: must be an integer from 0 to 4294967295 for mka's calibration draw, whose generator takes a 32-bit seed \(--protocol released draws with Python's generator, which takes up to 9007199254740991\)$/.test(e.message));
});

test('CLI: similarity --protocol released takes --seed 2^40 + 3; without it, one line naming the 32-bit range and --protocol released, no output, with --data or a --calibration file', async () => {
  const { runCliInProcess, assertUserError } = await import('./cli-run.ts');
  const { writeLlama3Tiny } = await import('./llama3-tiny.ts');
  const TMP = scratchDir('python-random-cli');
  const model = join(TMP, 'tiny'), data = join(TMP, 'mmlu');
  await writeLlama3Tiny(model);
  await ensureBenchmark(data);
  const base = ['similarity', '--model', model, '--data', data, '--calib-subjects', '2', '--per-subject', '4', '--metric', 'cka', '--backend', 'wasm', '--quiet'];
  const out = join(TMP, 'sim.json');
  const ok = await runCliInProcess([...base, '--protocol', 'released', '--seed', String(2 ** 40 + 3), '--out', out]);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(existsSync(out), true);
  const bad = join(TMP, 'sim2.json');
  assertUserError(await runCliInProcess([...base, '--seed', String(2 ** 32), '--out', bad]), '--seed 4294967296: must be an integer from 0 to 4294967295', '--protocol released');
  assert.equal(existsSync(bad), false);
  assertUserError(await runCliInProcess([...base, '--protocol', 'released', '--seed', String(2 ** 53), '--out', bad]), '--seed 9007199254740992: must be an integer >= 0 up to 9007199254740991');
  // prompts from a --calibration file: the seed's range is still the protocol's (it was taken past 2^32 − 1 there)
  const file = join(TMP, 'prompts.txt');
  writeFileSync(file, 'The capital of France is Paris.\nQuestion: What is 7 + 5?\nAnswer: 12\nThe quick brown fox jumps over the lazy dog.\n');
  const fromFile = ['similarity', '--model', model, '--calibration', file, '--metric', 'cka', '--backend', 'wasm', '--quiet'];
  assertUserError(await runCliInProcess([...fromFile, '--seed', String(2 ** 32), '--out', bad]), '--seed 4294967296: must be an integer from 0 to 4294967295', '--protocol released');
  assert.equal(existsSync(bad), false);
  const released = await runCliInProcess([...fromFile, '--protocol', 'released', '--seed', String(2 ** 32), '--out', bad]);
  assert.equal(released.status, 0, released.stderr);
  assert.equal(existsSync(bad), true);
});
