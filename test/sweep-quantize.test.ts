/**
 * The sweep's quantize axis (#24 items 2 and 4): `mka sweep --quantize none,rtn:w4g32,gptq:w4g32` crosses
 * layers removed with quantization; every point carries its bytes and the share of the original's 16-bit
 * bytes saved beside the layer ratio (results.csv/json, summary.md, accuracy-size.png); a rerun redoes
 * nothing, a quantization added later computes only its points, and each quantized evaluation's run key
 * names its quantization; with --keep-models a quantized point is written as the packed model directory
 * `mka quantize` writes, which evaluated alone scores what the sweep recorded; a kept model an interrupted
 * run left is written again, a directory mka did not write is refused. Kept small (2 questions per
 * subject, 2 calibration questions per subject).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { tf } from '../src/runtime/tf.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { MARKER_FILE } from '../src/io/output-dir.ts';
import { runCliInProcess as runCli } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('sweep-quantize');

// The demo's tensors as `mka quantize` / `compress` write them (docs/quantization.md, measured on the
// written files): 16-bit floats, and packed 4-bit groups of 32 with the embedding and lm_head at 8 bits.
const BYTES: Record<string, Record<number, number>> = {
  none: { 0: 870_528, 2: 685_696 },
  'rtn:w4g32': { 0: 285_952, 2: 231_936 },
  'gptq:w4g32': { 0: 285_952, 2: 231_936 },
};

test('sweep --quantize crosses layers removed with quantization, with bytes beside the layer ratio, and resumes', async () => {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'sweep');
  const args = (quantize: string) => ['sweep', '--model', 'models/demo', '--data', data, '--methods', 'reverse', '--remove', '0,2', '--quantize', quantize,
    '--limit', '2', '--per-subject', '2', '--out', out, '--quiet'];
  const first = await runCli(args('none,rtn:w4g32'));
  assert.equal(first.status, 0, first.stderr);

  // no field of these rows holds a comma or a quote
  const [head, ...lines] = readFileSync(join(out, 'results.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  const rows = lines.map((l) => Object.fromEntries(head.map((c, i) => [c, l[i]])));
  const header = Object.keys(rows[0]);
  assert.deepEqual(header.slice(0, 7), ['method', 'layers_removed', 'layers', 'compression_ratio', 'quantize', 'bytes', 'byte_compression_ratio']);
  assert.equal(rows.length, 1 + 2 * 2); // the original, then reverse at 0 and 2 for each quantization
  for (const q of ['none', 'rtn:w4g32']) {
    for (const k of [0, 2]) {
      const row = rows.find((r) => r.method === 'reverse' && r.quantize === q && Number(r.layers_removed) === k);
      assert.ok(row, `reverse −${k} ${q} in results.csv`);
      assert.equal(Number(row.bytes), BYTES[q][k], `bytes of reverse −${k} ${q}`);
      assert.ok(Math.abs(Number(row.byte_compression_ratio) - (1 - BYTES[q][k] / BYTES.none[0])) < 1e-12);
      assert.equal(Number(row.compression_ratio), k / 8);
      assert.ok(Number(row.mmlu) >= 0 && Number(row.mmlu) <= 1);
    }
  }
  const json = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as { points: { quantize: string; bytes: number; agreement: number }[] };
  assert.ok(json.points.some((p) => p.quantize === 'rtn:w4g32' && p.bytes === BYTES['rtn:w4g32'][2]));
  const summary = readFileSync(join(out, 'summary.md'), 'utf8');
  assert.match(summary, /\| reverse \| 2 \| 6 \| 25\.0% \| rtn:w4g32 \| 0\.232 \| 73\.4% \|/);
  assert.ok(existsSync(join(out, 'accuracy-size.png')), 'the chart of accuracy against bytes');
  // the quantized evaluation's run key names its quantization; the plan is shared with the unquantized point
  assert.match(readFileSync(join(out, 'eval', 'reverse-2-quantize-rtn-w4g32', 'run-key.json'), 'utf8'), /rtn/);
  assert.deepEqual(readdirSync(join(out, 'plans')), ['reverse-2.json']);

  // a rerun computes nothing; a quantization added later computes only its own points (and, with --keep-models, writes their models)
  const before = new Map(readdirSync(join(out, 'points')).map((f) => [f, statSync(join(out, 'points', f)).mtimeMs]));
  const tensors = tf.memory().numTensors;
  const again = await runCli([...args('none,rtn:w4g32,gptq:w4g32'), '--keep-models']);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(tf.memory().numTensors, tensors, 'the sweep (its kept quantized models too) leaves no tensors');
  for (const [f, t] of before) assert.equal(statSync(join(out, 'points', f)).mtimeMs, t, `${f} was not computed again`);
  const after = readdirSync(join(out, 'points')).filter((f) => !before.has(f)).sort();
  assert.deepEqual(after, ['original-quantize-gptq-w4g32.json', 'reverse-2-quantize-gptq-w4g32.json']);
  const gptq = JSON.parse(readFileSync(join(out, 'points', 'reverse-2-quantize-gptq-w4g32.json'), 'utf8'));
  assert.equal(gptq.quantize, 'gptq:w4g32');
  assert.equal(gptq.bytes, BYTES['gptq:w4g32'][2]);
  assert.ok(gptq.agreement > 0 && gptq.agreement <= 1, 'a quantized point is compared with the original model');

  // a kept quantized point is the packed model directory mka quantize writes, merge.json beside it; evaluated alone it scores what the sweep recorded
  assert.deepEqual(readdirSync(join(out, 'models')).sort(), ['original-quantize-gptq-w4g32', 'reverse-2-quantize-gptq-w4g32']);
  const kept = join(out, 'models', 'reverse-2-quantize-gptq-w4g32');
  const config = JSON.parse(readFileSync(join(kept, 'config.json'), 'utf8'));
  assert.equal(config.num_hidden_layers, 6);
  assert.deepEqual([config.quantization_config.method, config.quantization_config.bits, config.quantization_config.group_size], ['gptq', 4, 32]);
  assert.equal(JSON.parse(readFileSync(join(kept, 'merge.json'), 'utf8')).method, 'reverse');
  assert.equal(JSON.parse(readFileSync(join(kept, 'quantize.json'), 'utf8')).quantization, 'gptq:w4g32');
  const ev = await runCli(['eval', 'mmlu', '--model', kept, '--data', data, '--limit', '2', '--out', join(root, 'kept-eval'), '--quiet']);
  assert.equal(ev.status, 0, ev.stderr);
  const overall = JSON.parse(readFileSync(join(root, 'kept-eval', 'summary.json'), 'utf8')).overall;
  assert.deepEqual([overall.questions, overall.accuracy, overall.perplexity], [gptq.metrics.mmlu.acc.n, gptq.mmlu, gptq.perplexity]);

  // one point by its label, as --list-points prints it
  const list = await runCli([...args('none,rtn:w4g32,gptq:w4g32'), '--list-points']);
  assert.equal(list.status, 0, list.stderr);
  assert.ok(list.stdout.split('\n').includes('reverse:2:quantize=gptq:w4g32'), list.stdout);
  const one = await runCli([...args('none,rtn:w4g32,gptq:w4g32'), '--point', 'reverse:2:quantize=gptq:w4g32', '--json']);
  assert.equal(one.status, 0, one.stderr);
  assert.equal(JSON.parse(one.stdout).quantize, 'gptq:w4g32');
  const bad = await runCli([...args('none,rtn:w4g32'), '--point', 'reverse:2:quantize=awq:w4g32']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--quantize/);

  // a point stored before the embedding's bits were recorded had a 4-bit embedding: not taken for today's default
  const file = join(out, 'points', 'reverse-2-quantize-gptq-w4g32.json');
  const { embedding_bits: bits, ...older } = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(bits, 8);
  writeFileSync(file, JSON.stringify(older));
  const stale = await runCli([...args('none,rtn:w4g32,gptq:w4g32'), '--point', 'reverse:2:quantize=gptq:w4g32']);
  assert.equal(stale.status, 1);
  assert.match(stale.stderr, /reverse-2-quantize-gptq-w4g32\.json: was computed with a 4-bit embedding, and gptq:w4g32 now stores it at 8 bits; delete it/);
});

test('sweep --quantize refuses a malformed quantization before any work', async () => {
  const out = join(root, 'bad');
  const r = await runCli(['sweep', '--model', 'models/demo', '--data', join(root, 'demo-mmlu'), '--methods', 'reverse', '--remove', '0,2', '--quantize', 'none,gptq:w3', '--out', out]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--quantize gptq:w3/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
});

test('sweep --keep-models rewrites what an interrupted run left and a kept model of other settings or another plan, keeps a finished one, and refuses a directory mka did not write', async () => {
  const data = join(root, 'demo-mmlu');
  await ensureBenchmark(data);
  const out = join(root, 'kept');
  const sweep = ['sweep', '--model', 'models/demo', '--data', data, '--methods', 'reverse', '--remove', '0,2', '--quantize', 'none,rtn:w4g32',
    '--limit', '2', '--per-subject', '2', '--keep-models', '--out', out, '--quiet'];
  const first = await runCli(sweep);
  assert.equal(first.status, 0, first.stderr);
  const models = join(out, 'models');
  assert.deepEqual(readdirSync(models).sort(), ['original-quantize-rtn-w4g32', 'reverse-2', 'reverse-2-quantize-rtn-w4g32']);
  const recompute = (name: string) => rmSync(join(out, 'points', `${name}.json`));

  // a run killed while writing reverse-2's quantized model left only its temporary sibling (models/NAME appears whole, by a rename)
  const name = 'reverse-2-quantize-rtn-w4g32';
  const bytes = readFileSync(join(models, name, 'model.safetensors'));
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  const temp = join(models, `.${name}.tmp-${dead}-0123456789ab`);
  renameSync(join(models, name), temp);
  rmSync(join(temp, MARKER_FILE));
  truncateSync(join(temp, 'model.safetensors'), 1000);
  recompute(name);
  // the original's quantized model as an older version wrote it (a 4-bit embedding): mka's, but not this point's
  const older = join(models, 'original-quantize-rtn-w4g32', 'config.json');
  const config = JSON.parse(readFileSync(older, 'utf8'));
  config.quantization_config.tables['model.embed_tokens.weight'].bits = 4;
  writeFileSync(older, JSON.stringify(config));
  recompute('original-quantize-rtn-w4g32');
  // reverse-2's model is finished and is the point's: computing the point again does not write it again
  const finished = statSync(join(models, 'reverse-2', 'model.safetensors')).mtimeMs;
  recompute('reverse-2');

  const again = await runCli(sweep);
  assert.equal(again.status, 0, again.stderr);
  assert.ok(!existsSync(temp), 'the dead run\'s temporary directory is removed');
  assert.ok(readFileSync(join(models, name, 'model.safetensors')).equals(bytes), 'the interrupted model is written whole');
  assert.equal(JSON.parse(readFileSync(older, 'utf8')).quantization_config.tables['model.embed_tokens.weight'].bits, 8, 'the older kept model is rewritten');
  assert.equal(statSync(join(models, 'reverse-2', 'model.safetensors')).mtimeMs, finished);
  assert.deepEqual(readdirSync(models).sort(), ['original-quantize-rtn-w4g32', 'reverse-2', 'reverse-2-quantize-rtn-w4g32']);

  // a kept model of another plan with the same layer count (a run with other settings): mka's, but not this point's
  const mergeFile = join(models, 'reverse-2', 'merge.json');
  const merge = readFileSync(mergeFile, 'utf8');
  const record = JSON.parse(merge);
  record.layer_sources = [...record.layer_sources].reverse();
  writeFileSync(mergeFile, JSON.stringify(record));
  recompute('reverse-2');
  const replanned = await runCli(sweep);
  assert.equal(replanned.status, 0, replanned.stderr);
  assert.equal(readFileSync(mergeFile, 'utf8'), merge, 'the kept model of another plan is rewritten');

  // where a point's model goes, a directory mka did not write is refused before any work, and left as it is
  rmSync(join(models, name), { recursive: true });
  mkdirSync(join(models, name));
  writeFileSync(join(models, name, 'notes.txt'), 'mine');
  recompute(name);
  const refused = await runCli(sweep);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^mka: \S+models\/reverse-2-quantize-rtn-w4g32: holds files mka did not write \(no \.mka-output\.json of a model directory\), where --keep-models writes the model of point reverse-2-quantize-rtn-w4g32; move that directory away and rerun\n$/);
  assert.deepEqual(readdirSync(join(models, name)), ['notes.txt']);
  assert.ok(!existsSync(join(out, 'points', `${name}.json`)), 'nothing computed');
});
