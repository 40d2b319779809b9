/**
 * mka never deletes or replaces what it did not write: every command with an output directory refuses
 * a directory holding other files, a regular file, the input model (or a path inside it, or a symlink
 * to it) and another kind of mka output; it replaces its own earlier output, and --force overrides.
 * The CLI runs in this process (src/cli/run.ts) but where a real process's working and home directory matter.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { MARKER_FILE } from '../src/io/output-dir.ts';
import { assertUserError, leftovers, runAllInProcess, runCli, runCliInProcess as mka, tree } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('guard');
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
  'export gguf': (out) => ['export', 'gguf', '--model', M, '--out', out],
  quantize: (out) => ['quantize', '--model', M, '--method', 'rtn', '--bits', '8', '--out', out],
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
  const results = await runAllInProcess(cases.map((c) => [...c.args, '--quiet']));
  results.forEach((r, i) => assertUserError(r, cases[i].needle, '--out'));
  assert.deepEqual(tree(root), before, 'nothing was created, changed or deleted');
  assert.equal(readFileSync(join(USER, 'important', 'thesis.txt'), 'utf8'), 'years of work\n');
});

test('an earlier output of the same kind is replaced; another kind is refused; --force overrides', async () => {
  const hf = join(root, 'out-hf'), tfjs = join(root, 'out-tfjs');
  for (const args of [WRITERS['export hf'](hf), WRITERS['export hf'](hf), WRITERS['export tfjs'](tfjs)]) {
    const r = await mka([...args, '--quiet']);
    assert.equal(r.status, 0, r.stderr);
  }
  assert.deepEqual(JSON.parse(readFileSync(join(hf, MARKER_FILE), 'utf8')), { kind: 'hf-model', version: 1 });
  assert.equal(JSON.parse(readFileSync(join(tfjs, MARKER_FILE), 'utf8')).kind, 'tfjs-model');
  // compress writes the same kind as export hf
  const c = await mka([...WRITERS.compress(hf), '--quiet']);
  assert.equal(c.status, 0, c.stderr);
  assert.equal(JSON.parse(readFileSync(join(hf, 'config.json'), 'utf8')).num_hidden_layers, 7);
  const [toTfjs, toHf] = await runAllInProcess([[...WRITERS['export hf'](tfjs), '--quiet'], [...WRITERS['export tfjs'](hf), '--quiet']]);
  assertUserError(toTfjs, tfjs, 'tfjs model');
  assertUserError(toHf, hf, 'Hugging Face model');
  const forced = await mka([...WRITERS['export hf'](USER), '--force', '--quiet']);
  assert.equal(forced.status, 0, forced.stderr);
  assert.ok(existsSync(join(USER, 'config.json')) && !existsSync(join(USER, 'important')));
  assert.deepEqual(leftovers(root), []);
});

test('--force never replaces the working directory, the home directory or a directory holding either', async () => {
  // real processes: their working directory and home directory are the point
  const work = join(root, 'work'), home = join(root, 'home');
  mkdirSync(join(work, 'sub'), { recursive: true });
  mkdirSync(home);
  writeFileSync(join(home, '.bashrc'), 'alias ll="ls -l"\n');
  const before = tree(root);
  const env = { ...process.env, HOME: home };
  const hf = (out: string) => ['export', 'hf', '--model', M, '--out', out, '--force', '--quiet'];
  assertUserError(await runCli(hf(work), { cwd: join(work, 'sub') }), work, 'working directory');
  assertUserError(await runCli(hf('.'), { cwd: work }), 'working directory');
  assertUserError(await runCli(hf(home), { env }), home, 'home directory');
  assertUserError(await runCli(hf(root), { env }), root);
  assert.deepEqual(tree(root), before, 'nothing was created, changed or deleted');
  // an empty directory below the home directory is still an ordinary --out
  const r = await runCli(hf(join(home, 'out')), { env });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(home, 'out', 'config.json')) && existsSync(join(home, '.bashrc')));
});

test('eval TASK writes into a directory given with --force and --fresh removes only what a run wrote', async () => {
  const dir = join(root, 'user-tasks');
  mkdirSync(join(dir, 'boolq', 'shards'), { recursive: true });
  writeFileSync(join(dir, 'boolq', 'shards', 'my-notes.json'), '{"mine": true}\n');
  writeFileSync(join(dir, 'thesis.txt'), 'years of work\n');
  const boolq = (...more: string[]) => ['eval', 'boolq', '--model', M, '--data', 'test/fixtures/tasks/boolq.jsonl', '--limit', '2', '--out', dir, '--quiet', ...more];
  assertUserError(await mka(boolq()), dir, 'write into');
  for (const more of [['--force'], ['--force', '--fresh'], ['--fresh']]) {
    const r = await mka(boolq(...more));
    assert.equal(r.status, 0, `${more.join(' ')}: ${r.stderr}`);
  }
  assert.equal(readFileSync(join(dir, 'boolq', 'shards', 'my-notes.json'), 'utf8'), '{"mine": true}\n');
  assert.equal(readFileSync(join(dir, 'thesis.txt'), 'utf8'), 'years of work\n');
  assert.ok(readdirSync(join(dir, 'boolq', 'shards')).some((f) => /^.+-\d{5}\.json$/.test(f)), 'the run wrote its shards');
});

test('eval mmlu and sweep resume into their own earlier output', async () => {
  for (const name of ['eval mmlu', 'sweep']) {
    const out = join(root, `resume-${name.replace(' ', '-')}`);
    const first = await mka([...WRITERS[name](out), '--quiet']);
    assert.equal(first.status, 0, first.stderr);
    const again = await mka([...WRITERS[name](out), '--quiet']);
    assert.equal(again.status, 0, again.stderr);
    assert.equal(first.stdout, again.stdout);
    assert.equal(JSON.parse(readFileSync(join(out, MARKER_FILE), 'utf8')).kind, name === 'sweep' ? 'sweep' : 'mmlu-results');
  }
  assert.deepEqual(leftovers(root), []);
});

test('file outputs replace only what mka wrote; no output is ever an input, the root or a dangling link', async () => {
  const dir = join(root, 'files');
  mkdirSync(dir);
  const T = join(dir, 'corpus.txt');
  writeFileSync(T, 'Once upon a time there was a little model. '.repeat(20));
  const A = join(dir, 'acts.json');
  writeFileSync(A, JSON.stringify({ activations: [[[1, 2]], [[3, 4]]] }));
  const mine = join(dir, 'mine.txt');
  writeFileSync(mine, 'the user\'s notes\n');
  const csv = join(D, 'test', `${SUBJECT}_test.csv`);
  const dangling = join(dir, 'dangling');
  symlinkSync(join(dir, 'nowhere'), dangling);
  const pplDir = join(dir, 'user-ppl');
  mkdirSync(join(pplDir, 'windows'), { recursive: true });
  for (const f of ['ppl.json', 'run.json', join('windows', '0.json')]) writeFileSync(join(pplDir, f), '{"mine": true}\n');
  const ppl = (out: string, ...more: string[]) => ['eval', 'ppl', '--model', M, '--text', T, '--seq-len', '64', '--out', out, ...more];
  const fwd = (out: string, ...more: string[]) => ['forward', '--model', M, '--ids', '1,2', '--out', out, ...more];
  const dump = (file: string, ...more: string[]) => ['eval', 'mmlu', '--model', M, '--data', D, '--subjects', SUBJECT, '--limit', '2', '--dry-run', '--dump-prompts', file, ...more];
  const before = tree(root);
  const cases: [string[], ...string[]][] = [
    [ppl(USER), USER, '--out'], [ppl(M), M], [ppl(FILE), FILE], [ppl(dir), 'contains the input'], [ppl(pplDir, '--force', '--fresh'), pplDir],
    [dump(csv), csv, 'input'], [dump(mine), mine, 'did not write'], [dump(D), D],
    [fwd(mine), mine, 'did not write'], [fwd(join(M, 'f.json')), 'inside the input'], [fwd(dangling), dangling, 'symbolic link'],
    [['similarity', '--activations', A, '--out', A], A, 'input'], [['similarity', '--activations', A, '--out', mine], mine],
    [['compress', '--model', M, '--data', D, '--method', 'reverse', '--remove', '1', '--out', D, '--force'], D, 'input'],
    [['compress', '--model', M, '--calibration', T, '--method', 'reverse', '--remove', '1', '--out', dir, '--force'], 'contains the input'],
    [['export', 'hf', '--model', M, '--out', '/', '--force'], '/', 'root'],
    [['export', 'hf', '--model', M, '--out', dangling], dangling, 'symbolic link'],
    [['eval', 'mmlu', '--model', M, '--data', D, '--out', '--dry-run'], '--out'],
  ];
  const results = await runAllInProcess(cases.map(([args]) => [...args, '--quiet']));
  results.forEach((r, i) => assertUserError(r, ...cases[i].slice(1) as string[]));
  assert.deepEqual(tree(root), before, 'nothing was created, changed or deleted');

  // what mka wrote it replaces; --force replaces a user's file (never an input)
  const f = join(dir, 'f.json'), p = join(dir, 'prompts.jsonl'), o = join(dir, 'ppl');
  for (const args of [fwd(f), fwd(f), dump(p), dump(p), dump(mine, '--force'), ppl(o), ppl(o, '--fresh')]) {
    const r = await mka([...args, '--quiet']);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  assert.equal(JSON.parse(readFileSync(join(o, MARKER_FILE), 'utf8')).kind, 'ppl-results');
  assert.match(readFileSync(mine, 'utf8'), /^\{"subject":/);
  assert.deepEqual(leftovers(root), []);
});
