/**
 * mka never deletes or replaces what it did not write: every command with an output directory refuses
 * a directory holding other files, a regular file, the input model (or a path inside it, or a symlink
 * to it) and another kind of mka output; it replaces its own earlier output, and --force overrides.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { MARKER_FILE } from '../src/io/output-dir.ts';
import { assertUserError, leftovers, runAllCli, runCli, tree } from './cli-run.ts';

const root = mkdtempSync(join(tmpdir(), 'mka-guard-'));
const M = join(root, 'model');
cpSync('models/demo', M, { recursive: true });
const D = join(root, 'data');
await ensureBenchmark(D);
const SUBJECT = readdirSync(join(D, 'test'))[0].replace(/_test\.csv$/, '');

const USER = join(root, 'user');
mkdirSync(join(USER, 'important'), { recursive: true });
writeFileSync(join(USER, 'important', 'thesis.txt'), 'years of work\n');
const FILE = join(root, 'notes.txt');
writeFileSync(FILE, 'not a directory\n');
const LINK = join(root, 'link-to-model');
symlinkSync(M, LINK);

/** The writers and how to run each with a given --out. */
const WRITERS: Record<string, (out: string) => string[]> = {
  compress: (out) => ['compress', '--model', M, '--data', D, '--method', 'reverse', '--remove', '1', '--out', out],
  'export tfjs': (out) => ['export', 'tfjs', '--model', M, '--out', out],
  'export hf': (out) => ['export', 'hf', '--model', M, '--out', out],
  'eval mmlu': (out) => ['eval', 'mmlu', '--model', M, '--data', D, '--subjects', SUBJECT, '--limit', '2', '--out', out],
  sweep: (out) => ['sweep', '--model', M, '--data', D, '--methods', 'reverse', '--remove', '0,1', '--eval-subjects', SUBJECT, '--limit', '2', '--out', out],
  'convert-llama2c': (out) => ['convert-llama2c', '--checkpoint', FILE, '--tokenizer', FILE, '--out', out],
};

test('every writer refuses a user directory, a file, the input model, inside it or a symlink to it', async () => {
  const before = tree(root);
  const cases: { args: string[]; needle: string }[] = [];
  for (const [name, args] of Object.entries(WRITERS)) {
    cases.push({ args: args(USER), needle: USER }, { args: args(FILE), needle: FILE });
    if (name === 'convert-llama2c') continue;
    cases.push({ args: args(M), needle: M }, { args: args(join(M, 'sub')), needle: join(M, 'sub') }, { args: args(LINK), needle: LINK });
  }
  // replacing a directory that contains the model would delete it
  cases.push({ args: WRITERS['export hf'](root), needle: root });
  const results = await runAllCli(cases.map((c) => [...c.args, '--quiet']));
  results.forEach((r, i) => assertUserError(r, cases[i].needle, '--out'));
  assert.deepEqual(tree(root), before, 'nothing was created, changed or deleted');
  assert.equal(readFileSync(join(USER, 'important', 'thesis.txt'), 'utf8'), 'years of work\n');
});

test('an earlier output of the same kind is replaced; another kind is refused; --force overrides', async () => {
  const hf = join(root, 'out-hf'), tfjs = join(root, 'out-tfjs');
  for (const args of [WRITERS['export hf'](hf), WRITERS['export hf'](hf), WRITERS['export tfjs'](tfjs)]) {
    const r = await runCli([...args, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
  }
  assert.deepEqual(JSON.parse(readFileSync(join(hf, MARKER_FILE), 'utf8')), { kind: 'hf-model', version: 1 });
  assert.equal(JSON.parse(readFileSync(join(tfjs, MARKER_FILE), 'utf8')).kind, 'tfjs-model');
  // compress writes the same kind as export hf
  const c = await runCli([...WRITERS.compress(hf), '--quiet']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')).num_hidden_layers, 7);
  const [toTfjs, toHf] = await runAllCli([[...WRITERS['export hf'](tfjs), '--quiet'], [...WRITERS['export tfjs'](hf), '--quiet']]);
  assertUserError(toTfjs, tfjs, 'tfjs model');
  assertUserError(toHf, hf, 'Hugging Face model');
  const forced = await runCli([...WRITERS['export hf'](USER), '--force', '--quiet']);
  assert.equal(forced.status, 0, forced.stderr);
  assert.ok(existsSync(join(USER, 'config.json')) && !existsSync(join(USER, 'important')));
  assert.deepEqual(leftovers(root), []);
});

test('eval mmlu and sweep resume into their own earlier output', async () => {
  for (const name of ['eval mmlu', 'sweep']) {
    const out = join(root, `resume-${name.replace(' ', '-')}`);
    const first = await runCli([...WRITERS[name](out), '--quiet']);
    assert.equal(first.status, 0, first.stderr);
    const again = await runCli([...WRITERS[name](out), '--quiet']);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(first.stdout, again.stdout);
    assert.equal(JSON.parse(readFileSync(join(out, MARKER_FILE), 'utf8')).kind, name === 'sweep' ? 'sweep' : 'mmlu-results');
  }
  assert.deepEqual(leftovers(root), []);
});
