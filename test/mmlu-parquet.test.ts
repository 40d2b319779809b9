/**
 * `--data org/name` (MMLU from the hub): CSV subjects converted to parquet in cais/mmlu's layout
 * (written with hyparquet-writer, one subject's test split in two shards, an `all/` folder that must be
 * ignored) and served by the loopback hub look-alike come back with every field and every 5-shot
 * prompt equal to the CSV original's: the demo benchmark always, three subjects of the real MMLU
 * (quotes, code, long passages) when MKA_SHARED is set.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { loadMmlu, ANSWER_LETTERS, type MmluData, type MmluQuestion } from '../src/eval/mmlu/data.ts';
import { buildPrompt } from '../src/eval/mmlu/prompt.ts';
import { ensureBenchmark } from '../src/eval/mmlu/demo-benchmark.ts';
import { resolveMmluData } from '../src/hub/mmlu.ts';
import { startFakeHub } from './hub-server.ts';
import { SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('mmlu-parquet');

/** A parquet file with cais/mmlu's columns. */
function toParquet(qs: readonly MmluQuestion[]): Buffer {
  const ab = parquetWriteBuffer({
    columnData: [
      { name: 'question', data: qs.map((q) => q.question) },
      { name: 'subject', data: qs.map((q) => q.subject) },
      { name: 'choices', data: qs.map((q) => [...q.choices]) },
      { name: 'answer', data: qs.map((q) => BigInt(ANSWER_LETTERS.indexOf(q.answer))) },
    ],
    schema: [
      { name: 'root', num_children: 4 },
      { name: 'question', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'subject', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'choices', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'answer', type: 'INT64', repetition_type: 'OPTIONAL' },
    ],
  });
  return Buffer.from(ab);
}

function datasetFiles(data: MmluData): Record<string, Buffer> {
  const files: Record<string, Buffer> = { 'README.md': Buffer.from('# mmlu\n') };
  data.subjects.forEach((s, i) => {
    const test = data.test.get(s)!;
    if (i === 0 && test.length > 1) { // two shards, concatenated in order
      const half = Math.floor(test.length / 2);
      files[`${s}/test-00000-of-00002.parquet`] = toParquet(test.slice(0, half));
      files[`${s}/test-00001-of-00002.parquet`] = toParquet(test.slice(half));
    } else files[`${s}/test-00000-of-00001.parquet`] = toParquet(test);
    files[`${s}/dev-00000-of-00001.parquet`] = toParquet(data.dev.get(s)!);
    const val = data.val.get(s);
    if (val) files[`${s}/validation-00000-of-00001.parquet`] = toParquet(val);
  });
  files['all/test-00000-of-00001.parquet'] = toParquet(data.test.get(data.subjects[0])!.slice(0, 1));
  return files;
}

async function checkRoundTrip(csvDir: string, subjects: string[] | undefined, name: string) {
  const csv = loadMmlu(csvDir, { subjects });
  const hub = await startFakeHub([{ type: 'dataset', name, sha: 'b'.repeat(40), files: datasetFiles(csv), lfs: (p) => p.endsWith('.parquet') }]);
  try {
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(TMP, 'cache'), HF_TOKEN: '' };
    const dir = await resolveMmluData(name, { env, quiet: true });
    const fromHub = loadMmlu(dir);
    assert.deepEqual(fromHub.subjects, csv.subjects, 'the same subjects (all/ ignored)');
    let prompts = 0;
    for (const s of csv.subjects) {
      for (const split of ['dev', 'test', 'val'] as const) {
        const a = csv[split].get(s), b = fromHub[split].get(s);
        assert.equal(b?.length, a?.length, `${s} ${split}: question count`);
        a?.forEach((q, i) => assert.deepEqual({ ...b![i], line: 0 }, { ...q, line: 0 }, `${s} ${split} question ${i}`));
      }
      for (const [i, q] of csv.test.get(s)!.entries()) {
        assert.equal(buildPrompt(fromHub, fromHub.test.get(s)![i], 5), buildPrompt(csv, q, 5), `${s} test ${i}: prompt`);
        prompts++;
      }
    }
    assert.ok(prompts > 0);
    assert.equal(await resolveMmluData(name, { env: { ...env, HF_HUB_OFFLINE: '1' }, quiet: true }), dir, 'offline: from the cache');
  } finally {
    await hub.close();
  }
}

test('the demo benchmark through parquet on the hub gives every prompt of its CSVs', async () => {
  const dir = join(TMP, 'demo-mmlu');
  await ensureBenchmark(dir);
  await checkRoundTrip(dir, undefined, 'acme/demo-mmlu');
});

test('real MMLU subjects through parquet on the hub give every prompt of the CSVs', { skip: SHARED ? false : 'MKA_SHARED is not set: shared data tests skipped (set MKA_SHARED=../shared)' }, async () => {
  await checkRoundTrip(join(SHARED!, 'data/mmlu'), ['college_computer_science', 'high_school_european_history', 'abstract_algebra'], 'cais/mmlu');
});
