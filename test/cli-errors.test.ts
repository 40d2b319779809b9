/**
 * Every user mistake exits 1 with one stderr line naming the option or file, and writes nothing:
 * tables of bad options, --config files, checkpoints, configs and MMLU files, run through the CLI (in this
 * process: src/cli/run.ts, as bin/mka.mjs runs it), and special files and an empty command line through
 * the real CLI process.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { assertUserError, leftovers, runAllCli, runAllInProcess, runCli, runCliInProcess, tree, type CliResult } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('cli-errors');
const M = join(root, 'model');
cpSync('models/demo', M, { recursive: true });
const D = join(root, 'data');
await ensureBenchmark(D);
const SUBJECT = readdirSync(join(D, 'test'))[0].replace(/_test\.csv$/, '');
const F = join(root, 'file.txt');
writeFileSync(F, 'x\n');
const DIR = join(root, 'adir');
mkdirSync(DIR);
const CAL = join(root, 'prompts.txt');
writeFileSync(CAL, 'one prompt\nanother prompt\n');
const O = join(root, 'out');
const before = tree(root);

type Case = [args: string[], ...needles: string[]];

/** Runs every case (in this process unless `run` says otherwise) and checks each is a user error naming its needles, and nothing was written. */
async function expectAll(cases: Case[], run: (c: string[][]) => Promise<CliResult[]> = runAllInProcess): Promise<void> {
  const results = await run(cases.map(([args]) => [...args, '--quiet']));
  results.forEach((r, i) => assertUserError(r, ...cases[i].slice(1) as string[]));
  assert.ok(!existsSync(O), 'no output was written');
  assert.deepEqual(leftovers(root), [], 'no temporaries or locks left');
}

test('bad numbers, empty or repeated options, impossible combinations', async () => {
  const compress = ['compress', '--model', M, '--data', D, '--out', O];
  const sweep = ['sweep', '--model', M, '--data', D, '--out', O];
  const evalMmlu = ['eval', 'mmlu', '--model', M, '--data', D, '--dry-run'];
  await expectAll([
    [['forward', '--model', M, '--ids', '1', '--threads', 'abc'], '--threads abc'],
    [['forward', '--model', M, '--ids', '1', '--threads', '0'], '--threads 0'],
    [['forward', '--model', M, '--ids', '1', '--threads', '1.5'], '--threads 1.5'],
    [[...compress, '--remove='], '--remove'],
    [[...compress, '--remove', '-1'], '--remove -1'],
    [[...compress, '--remove', '2', '--max-positions', '-5'], '--max-positions -5'],
    [[...compress, '--remove', '2', '--micro-batch', '0'], '--micro-batch 0'],
    [[...compress, '--remove', '2', '--calib-subjects', '0'], '--calib-subjects 0'],
    [[...compress, '--remove', '2', '--subjects', '0'], '--subjects 0'],
    [[...compress, '--remove', '2', '--sigma', '0'], '--sigma 0'],
    [[...compress, '--remove', '2', '--alpha', '2'], '--alpha 2'],
    [[...compress, '--remove', '2', '--dims', '0'], '--dims 0'],
    [[...compress, '--remove', '2', '--k-mi', '-3'], '--k-mi -3'],
    [[...compress, '--remove', '2', '--calibration', CAL], 'data', 'calibration'],
    [[...compress, '--remove', '2', '--out', O], '--out'],
    [['compress', '--model', M, '--data', D, '--remove', '2', '--out='], '--out'],
    [['generate', '--model', M, '--max-new-tokens', '-1'], '--max-new-tokens -1'],
    [['generate', '--model', M, '--temperature', '-1'], '--temperature -1'],
    [['generate', '--model', M, '--temperature', 'Infinity'], '--temperature'],
    [[...sweep, '--chosen', 'foo:9'], '--chosen foo:9'],
    [[...sweep, '--remove', '0,1', '--chosen', 'mka:9'], '--chosen mka:9'],
    [[...sweep, '--chosen', 'mka'], '--chosen mka'],
    [[...sweep, '--remove', '0,x'], '--remove 0,x'],
    [[...sweep, '--remove='], '--remove'],
    [['forward', '--model', M, '--ids', '1,99999'], '--ids', '99999'],
    [[...evalMmlu, '--ntrain', '-1'], '--ntrain -1'],
    [[...evalMmlu, '--limit', '0'], '--limit 0'],
    [[...evalMmlu, '--batch-size', '0'], '--batch-size 0'],
    [['export', 'tfjs', '--model', M, '--out', O, '--shard-mb', '0'], '--shard-mb 0'],
    [['export', 'tfjs', '--model', M, '--out', O, '--max-seq', '0'], '--max-seq 0'],
    [['export', 'hf', '--model', M, '--model', M, '--out', O], '--model'],
  ]);
});

test('path options of the wrong kind: missing, a file for a directory, a directory for a file', async () => {
  await expectAll([
    [['info', '--model', F], F, '--model'],
    [['info', '--model', join(root, 'nope')], '--model', 'not found'],
    [['eval', 'mmlu', '--model', M, '--data', F, '--dry-run'], F, '--data'],
    [['eval', 'mmlu', '--model', M, '--data', D, '--out', F], F, '--out'],
    [['eval', 'mmlu', '--model', M, '--data', D, '--dry-run', '--dump-prompts', DIR], DIR, '--dump-prompts'],
    [['eval', 'mmlu', '--model', M, '--data', D, '--reference-model', F, '--dry-run'], F, '--reference-model'],
    [['forward', '--model', M, '--ids', '1', '--out', DIR], DIR, '--out'],
    [['forward', '--model', M, '--ids', '1', '--out', join(F, 'x.json')], F],
    [['similarity', '--model', M, '--calibration', DIR], DIR, '--calibration'],
    [['similarity', '--activations', DIR], DIR, '--activations'],
    [['convert-llama2c', '--checkpoint', DIR, '--tokenizer', F, '--out', O], DIR, '--checkpoint'],
    [['convert-llama2c', '--checkpoint', F, '--tokenizer', DIR, '--out', O], DIR, '--tokenizer'],
  ]);
  // nothing was written next to the directories given as files (the old failure left a temporary file)
  assert.deepEqual(tree(root).filter((p) => !p.startsWith('model/') && !p.startsWith('data/')), before.filter((p) => !p.startsWith('model/') && !p.startsWith('data/')));
});

test('bad --config files: missing, a directory, invalid, not a mapping, empty, binary', async () => {
  const cfg = (name: string, content: string | Buffer) => {
    const p = join(root, 'configs', name);
    mkdirSync(join(root, 'configs'), { recursive: true });
    writeFileSync(p, content);
    return p;
  };
  const files = [
    join(root, 'configs-missing.yaml'), DIR,
    cfg('bad.yaml', 'model: [\n'), cfg('bad.json', '{"model": '), cfg('list.yaml', '- a\n- b\n'), cfg('list.json', '[1, 2]'),
    cfg('empty.yaml', ''), cfg('empty.json', ''), cfg('scalar.yaml', '42\n'), cfg('null.json', 'null'),
    cfg('binary.yaml', Buffer.from([0x6d, 0x3a, 0x20, 0xff, 0xfe, 0x00, 0x01])),
  ];
  await expectAll([
    ...files.map((f): Case => [['info', '--model', M, '--config', f], f]),
    [['info', '--model', M, '--config'], '--config'],
    [['info', '--model', M, '--config='], '--config'],
    [['forward', '--config', cfg('threads.yaml', 'threads: abc\n'), '--model', M, '--ids', '1'], '--threads'],
    [['info', '--config', cfg('unknown.yaml', 'colour: blue\n'), '--model', M], 'colour'],
    // a misspelt key of a required option is reported as the typo, not as the option missing
    [['export', 'hf', '--out', O, '--config', cfg('typo.yaml', `modle: ${M}\n`)], cfg('typo.yaml', `modle: ${M}\n`), 'modle (did you mean model?)'],
    // values of the wrong type
    [['info', '--config', cfg('number-path.yaml', 'model: 5\n')], '--model'],
    [['info', '--config', cfg('null-path.yaml', 'model: null\n')], '--model'],
    [['info', '--config', cfg('object-path.json', '{"model": {"a": 1}}')], '--model'],
    [['forward', '--model', M, '--ids', '1', '--config', cfg('list-number.yaml', 'threads: [1, 2]\n')], '--threads'],
  ]);
});

test('an unknown option is named once, as typed', async () => {
  const r = await runCliInProcess(['info', '--model', M, '--top-p', '0.9']);
  assertUserError(r, 'Unknown argument: top-p');
  assert.doesNotMatch(r.stderr, /topP/);
});

/** A safetensors file with the given header object (or raw header bytes) and data bytes. */
function safetensors(header: unknown, dataBytes = 0): Buffer {
  const h = Buffer.isBuffer(header) ? header : Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, Buffer.alloc(dataBytes)]);
}

/** A copy of the demo model with `files` replaced (null: deleted; 'dir': a directory). */
function badModel(name: string, files: Record<string, string | Buffer | null | 'dir'>): string {
  const dir = join(root, 'bad-models', name);
  cpSync(M, dir, { recursive: true });
  for (const [f, content] of Object.entries(files)) {
    rmSync(join(dir, f), { force: true, recursive: true });
    if (content === 'dir') mkdirSync(join(dir, f));
    else if (content !== null) writeFileSync(join(dir, f), content);
  }
  return dir;
}

test('bad checkpoints and configs are refused naming the file', async () => {
  const INDEX = 'model.safetensors.index.json', ST = 'model.safetensors';
  const config = JSON.parse(readFileSync(join(M, 'config.json'), 'utf8'));
  const cases: [string, Record<string, string | Buffer | null | 'dir'>, string, ...string[]][] = [
    ['wm-number', { [INDEX]: JSON.stringify({ weight_map: { 'lm_head.weight': 5 } }) }, INDEX, 'lm_head.weight'],
    ['wm-null-shard', { [INDEX]: JSON.stringify({ weight_map: { 'lm_head.weight': null } }) }, INDEX],
    ['index-null', { [INDEX]: 'null' }, INDEX],
    ['index-list', { [INDEX]: '[]' }, INDEX],
    ['index-empty', { [INDEX]: '' }, INDEX],
    ['index-no-map', { [INDEX]: '{}' }, INDEX, 'weight_map'],
    ['index-map-null', { [INDEX]: '{"weight_map": null}' }, INDEX, 'weight_map'],
    ['index-binary', { [INDEX]: Buffer.from([0x7b, 0xff, 0x7d]) }, INDEX],
    ['shard-dir', { [INDEX]: JSON.stringify({ weight_map: { 'lm_head.weight': 'shard' } }), shard: 'dir' }, 'shard'],
    ['header-null-entry', { [ST]: safetensors({ 'lm_head.weight': null }) }, ST, 'lm_head.weight'],
    ['header-number-entry', { [ST]: safetensors({ 'lm_head.weight': 3 }) }, ST, 'lm_head.weight'],
    ['header-null', { [ST]: safetensors(null) }, ST],
    ['header-bad-metadata', { [ST]: safetensors({ __metadata__: [1] }) }, ST, '__metadata__'],
    ['header-binary', { [ST]: safetensors(Buffer.from([0x7b, 0xff, 0x7d])) }, ST],
    ['overlap', { [ST]: safetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12) }, ST, 'overlap'],
    ['weights-dir', { [ST]: 'dir' }, ST],
    ['pickle-only', { [ST]: null, 'pytorch_model.bin': 'PK' }, 'pytorch_model.bin', 'safetensors'],
    ['config-null', { 'config.json': 'null' }, 'config.json'],
    ['config-binary', { 'config.json': Buffer.from([0xff, 0xfe]) }, 'config.json'],
    ['config-dir', { 'config.json': 'dir' }, 'config.json'],
    ['config-fewer-layers', { 'config.json': JSON.stringify({ ...config, num_hidden_layers: config.num_hidden_layers - 2 }) }, 'config.json', 'num_hidden_layers'],
  ];
  const dirs = cases.map(([name, files]) => badModel(name, files));
  await expectAll(cases.map(([, , ...needles], i): Case => [['forward', '--model', dirs[i], '--ids', '1,2'], ...needles]));
});

test('bad MMLU files: not UTF-8, a directory where a CSV belongs', async () => {
  const bad = (name: string, edit: (dir: string) => void) => {
    const dir = join(root, 'bad-data', name);
    cpSync(D, dir, { recursive: true });
    edit(dir);
    return dir;
  };
  const testCsv = (dir: string) => join(dir, 'test', `${SUBJECT}_test.csv`);
  const devCsv = (dir: string) => join(dir, 'dev', `${SUBJECT}_dev.csv`);
  const latin1 = bad('latin1', (d) => writeFileSync(testCsv(d), Buffer.concat([Buffer.from('Caf'), Buffer.from([0xe9]), Buffer.from(' au lait?,a,b,c,d,A\n')])));
  const testDir = bad('test-dir', (d) => { rmSync(testCsv(d)); mkdirSync(testCsv(d)); });
  const devDir = bad('dev-dir', (d) => { rmSync(devCsv(d)); mkdirSync(devCsv(d)); });
  const run = (data: string) => ['eval', 'mmlu', '--model', M, '--data', data, '--dry-run'];
  await expectAll([
    [run(latin1), testCsv(latin1), 'UTF-8'],
    [run(testDir), testCsv(testDir), 'directory'],
    [run(devDir), devCsv(devDir), 'directory'],
    [['compress', '--model', M, '--data', latin1, '--remove', '1', '--out', O], testCsv(latin1), 'UTF-8'],
  ]);
});

test('silent accepts and garbled messages: lists, booleans, ids, activations, ports, memory budgets', async () => {
  const cfg = (name: string, content: string) => {
    mkdirSync(join(root, 'configs2'), { recursive: true });
    writeFileSync(join(root, 'configs2', name), content);
    return join(root, 'configs2', name);
  };
  const acts = (name: string, a: unknown) => cfg(name, JSON.stringify({ activations: a }));
  const sweep = ['sweep', '--model', M, '--data', D, '--out', O];
  await expectAll([
    [['forward', '--model', M], 'forward', '--text', '--ids'],
    [['forward', '--model', M, '--ids', '1,,2'], '--ids'],
    [['forward', '--model', M, '--ids', '0x10'], '--ids'],
    [['forward', '--model', M, '--ids', '1', '--hidden-states=maybe'], '--hidden-states=maybe'],
    [['forward', '--model', M, '--ids', '1', '--config', cfg('yes.yaml', 'hidden-states: yes\n')], '--hidden-states', 'yes'],
    [[...sweep, '--methods', ','], '--methods ,'],
    [[...sweep, '--methods', 'mka,,reverse'], '--methods'],
    [[...sweep, '--methods', 'nope'], '--methods nope', 'must be one of mka, laco, reverse, shortgpt, angular, sleb, taylor, magnitude'],
    [[...sweep, '--remove', '0,,2'], '--remove'],
    [['similarity', '--model', M, '--data', D, '--config', cfg('inf.yaml', 'sigma: 1e400\n')], '--sigma Infinity'],
    [['similarity', '--activations', acts('ragged.json', [[[1, 2], [3]], [[1, 2], [3, 4]]])], 'activations[0][1]'],
    [['similarity', '--activations', acts('strings.json', [[['a', 2]], [[1, 2]]])], 'activations[0][0][0]', '"a"'],
    [['similarity', '--activations', acts('flat.json', [1, 2])], '"activations" must be'],
    [['serve', '--model', M, '--port', '-1'], '--port -1'],
    [['serve', '--model', M, '--port', '70000'], '--port 70000'],
    [['serve', '--model', M, '--port', '1.5'], '--port 1.5'],
    [['serve', '--model', M, '--tokenizer', M, '--port', '0'], 'model.json'], // --tokenizer takes the directory
    [['info'], '--model is required'],
    [[], 'name a command'],
  ]);
  const [zero, tiny, none] = await Promise.all([
    runCliInProcess(['forward', '--model', M, '--ids', '1', '--quiet'], { env: { ...process.env, MKA_MEMORY_LIMIT: '0' } }),
    runCliInProcess(['forward', '--model', M, '--ids', '1', '--quiet'], { env: { ...process.env, MKA_MEMORY_LIMIT: '1K' } }),
    runCli([]), // the real process, as a user meets it
  ]);
  assertUserError(zero, 'MKA_MEMORY_LIMIT=0', 'off');
  assertUserError(tiny, 'forward needs');
  assert.doesNotMatch(tiny.stderr, /\(\)|0\.0 GB/, tiny.stderr);
  assert.equal(none.stderr.match(/see --help/g)?.length, 1, none.stderr);
});

test('FIFOs and other special files are refused as inputs instead of blocking; an absurd --shard-mb is refused', async () => {
  const dir = join(root, 'fifos');
  mkdirSync(dir);
  const fifo = join(dir, 'fifo');
  const model = join(dir, 'model');
  cpSync(M, model, { recursive: true });
  rmSync(join(model, 'model.safetensors'));
  const extra = join(dir, 'model-fifo-extra');
  cpSync(M, extra, { recursive: true });
  for (const f of [fifo, join(model, 'model.safetensors'), join(extra, 'tokenizer.model')]) assert.equal(spawnSync('mkfifo', [f]).status, 0);
  await expectAll([
    [['forward', '--model', model, '--ids', '1'], join(model, 'model.safetensors'), 'not a regular file'],
    [['info', '--model', model], join(model, 'model.safetensors'), 'not a regular file'],
    [['similarity', '--activations', fifo], fifo, 'not a regular file'],
    [['similarity', '--model', M, '--calibration', fifo], fifo, 'not a regular file'],
    // distinct outputs: runs claiming one --out at once would meet each other's lock
    [['eval', 'ppl', '--model', M, '--text', fifo, '--out', join(dir, 'out-ppl')], fifo, 'not a regular file'],
    [['export', 'tfjs', '--model', M, '--out', join(dir, 'out-tfjs'), '--shard-mb', '1e-9'], '--shard-mb 1e-9', 'weight files'],
    [['export', 'hf', '--model', extra, '--out', join(dir, 'out-hf')], join(extra, 'tokenizer.model'), 'not a regular file'],
  ], runAllCli); // real processes: a regression that opens a FIFO blocks its process, not this one
  for (const o of ['out-ppl', 'out-tfjs', 'out-hf']) assert.ok(!existsSync(join(dir, o)), `${o}: nothing written`);
});

test('a tokenizer that maps text to <unk> only is refused; a prompt longer than the context is an error, a capped generation says so', async () => {
  const model = join(root, 'unk-tokenizer');
  cpSync(M, model, { recursive: true });
  const tj = JSON.parse(readFileSync(join(M, 'tokenizer.json'), 'utf8'));
  tj.model.vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  tj.model.merges = [];
  writeFileSync(join(model, 'tokenizer.json'), JSON.stringify(tj));
  const long = 'one two three four five six seven eight nine ten '.repeat(120);
  await expectAll([
    [['forward', '--model', model, '--text', 'The capital of France is'], join(model, 'tokenizer.json'), 'unknown token'],
    [['generate', '--model', M, '--prompt', long], '--prompt is', 'context is 1024'],
  ]);
  const near = await runCliInProcess(['generate', '--model', M, '--prompt', 'one two three four five six seven eight nine ten '.repeat(33), '--max-new-tokens', '64']);
  assert.equal(near.status, 0, near.stderr);
  assert.match(near.stderr, /generate: at most \d+ new tokens, not 64: the \d+-token prompt leaves that much of the 1024-token context/);
});
