/**
 * MMLU's records and summary are bit-identical to what the evaluator wrote before it ran on the shared
 * loglikelihood scorer (src/eval/scoring/): for each option set of test/fixtures/mmlu-records/make.ts
 * (prefix-cached batches, the naive path, a reference model without BOS, a streamed pass, stories260K's
 * cut prompts on real MMLU), every file of the results directory but run.json equals the committed
 * one byte for byte but the weights' fingerprints, on the plain-JS cpu backend (the same bits on every machine).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../src/runtime/backend.ts';
import { MMLU_RECORD_CASES, placeholders, runMmluRecordCases } from './fixtures/mmlu-records/make.ts';
import { SHARED } from './helpers.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('mmlu-records');
const FIXTURES = join(process.cwd(), 'test', 'fixtures', 'mmlu-records');

/**
 * The text with the weights' fingerprints (run-key.json's model and reference) and the run-key stamp
 * of the subject files blanked: how weight files are hashed is src/io/fingerprint.ts's business and
 * tested there; every other byte, the records above all, must stay.
 */
function withoutFingerprints(text: string): string {
  return text.replace(/("(?:model|reference)": )"[0-9a-f]{32}"/g, '$1"FINGERPRINT"').replace(/"runKey":"[0-9a-f]{16}"/g, '"runKey":"STAMP"');
}

test('eval mmlu writes the records, summary.json and mmlu.csv it wrote before, byte for byte', async () => {
  await initBackend('cpu');
  const ran = await runMmluRecordCases(TMP, SHARED);
  assert.equal(ran.length, MMLU_RECORD_CASES.length - (SHARED ? 0 : 1));
  for (const name of ran) {
    const files = (dir: string) => [...readdirSync(dir).filter((f) => f.endsWith('.json') || f.endsWith('.csv')), ...readdirSync(join(dir, 'subjects')).map((f) => `subjects/${f}`)]
      .filter((f) => f !== 'run.json' && f !== 'lm_eval_results.json').sort();
    const want = join(FIXTURES, name), got = join(TMP, name);
    assert.deepEqual(files(got), files(want), `${name}: files`);
    for (const f of files(want)) {
      let text = readFileSync(join(got, f), 'utf8');
      if (f === 'summary.json') text = placeholders(text, process.cwd(), TMP, SHARED ?? '\0');
      assert.equal(withoutFingerprints(text), withoutFingerprints(readFileSync(join(want, f), 'utf8')), `${name}/${f}`);
    }
  }
});
