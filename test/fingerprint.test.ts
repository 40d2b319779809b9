/**
 * Results are never reused for other weights: the fingerprint covers every byte of a weight file (an
 * edit in the middle of a large file, with its mtime put back, is seen), large files' digests are
 * cached by size, mtime, ctime and inode, and eval ppl, eval mmlu and sweep refuse to resume with
 * weights that changed at the same path. A sweep accepts the same paths spelled differently.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, copyFileSync, openSync, readFileSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileSha256 } from '../src/io/fingerprint.ts';
import { SafetensorsFile } from '../src/io/safetensors.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { writeRandomModel } from './random-model.ts';
import { assertUserError, runCliInProcess } from './cli-run.ts';
import { scratchDir } from './scratch.ts';

const root = scratchDir('fingerprint');
const env = { ...process.env, XDG_CACHE_HOME: join(root, 'cache') };

/** Overwrites `bytes` at `offset` of `file` and puts its mtime back, as a careless in-place edit would leave it. */
function editInPlace(file: string, offset: number, bytes: Buffer): void {
  const { atime, mtime } = statSync(file);
  const fd = openSync(file, 'r+');
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
  utimesSync(file, atime, mtime);
}

test('the fingerprint is the sha256 of the whole file, cached for large files by size, mtime, ctime and inode', () => {
  const small = join(root, 'small.bin'), large = join(root, 'large.bin');
  writeFileSync(small, Buffer.alloc(3 * 2 ** 20, 7));
  writeFileSync(large, Buffer.alloc(80 * 2 ** 20, 3));
  const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
  assert.equal(fileSha256(small, env), sha(small));
  assert.equal(fileSha256(large, env), sha(large));
  // the cache is used: a forged entry for the unchanged file is what comes back
  const cacheFile = join(root, 'cache', 'mka', 'fingerprints.json');
  const cache = JSON.parse(readFileSync(cacheFile, 'utf8'));
  const key = Object.keys(cache).find((k) => k.endsWith('large.bin'))!;
  writeFileSync(cacheFile, JSON.stringify({ [key]: { ...cache[key], sha256: 'f'.repeat(64) } }));
  assert.equal(fileSha256(large, env), 'f'.repeat(64));
  // a middle edit with the mtime put back changes the ctime: hashed again
  for (const f of [small, large]) {
    const before = fileSha256(f, env);
    editInPlace(f, Math.floor(statSync(f).size / 2), Buffer.from([1]));
    assert.notEqual(fileSha256(f, env), before, f);
    assert.equal(fileSha256(f, env), sha(f), f);
  }
});

test('eval ppl, eval mmlu and sweep refuse to resume after the weights changed in the middle of their file', async () => {
  const model = join(root, 'model');
  // 4 layers at hidden 256: a 16 MB weight file, so its middle is far from its first and last MiB
  await writeRandomModel(model, { vocab_size: 512, hidden_size: 256, intermediate_size: 1024, num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 256 });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join('models/demo', f), join(model, f));
  const data = join(root, 'data');
  await ensureBenchmark(data);
  const text = join(root, 'corpus.txt');
  writeFileSync(text, 'Once upon a time there was a model that merged its layers. '.repeat(30));
  const subject = 'demo_facts';
  const runs = {
    ppl: ['eval', 'ppl', '--model', model, '--text', text, '--seq-len', '64', '--out', join(root, 'ppl')],
    mmlu: ['eval', 'mmlu', '--model', model, '--data', data, '--subjects', subject, '--limit', '2', '--out', join(root, 'mmlu')],
    sweep: ['sweep', '--model', model, '--data', data, '--methods', 'reverse', '--remove', '0', '--eval-subjects', subject, '--limit', '1', '--out', join(root, 'sweep')],
  };
  for (const args of Object.values(runs)) {
    const r = await runCliInProcess([...args, '--quiet'], { env });
    assert.equal(r.status, 0, r.stderr);
  }
  // the same sweep with the model path spelled differently resumes
  const respelled = await runCliInProcess([...runs.sweep.map((a) => (a === model ? `${root}/./model/` : a)), '--quiet'], { env });
  assert.equal(respelled.status, 0, respelled.stderr);

  const file = join(model, 'model.safetensors');
  const st = new SafetensorsFile(file);
  const t = st.tensors.get('model.layers.2.mlp.up_proj.weight')!;
  st.close();
  assert.ok(t.begin > 2 ** 20 && t.end < statSync(file).size - 2 ** 20, 'the edit is in the middle of the file');
  editInPlace(file, t.begin + 64, Buffer.from(new Float32Array([0.5]).buffer));
  const [ppl, mmlu, sweep] = await Promise.all(Object.values(runs).map((args) => runCliInProcess([...args, '--quiet'], { env })));
  assertUserError(ppl, 'different run', 'model');
  assertUserError(mmlu, 'different run', 'model');
  assertUserError(sweep, 'other weights');
});
