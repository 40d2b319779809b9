/**
 * `mka eval ppl --data org/name`: a text dataset on the loopback hub look-alike (two subsets, parquet
 * with a "text" column) gives the perplexity of its split's rows joined by blank lines, as
 * `--text` on that file does; the subset must be named when several have the split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { runCliInProcess } from './cli-run.ts';
import { startFakeHub } from './hub-server.ts';
import { resolveTextDataset } from '../src/hub/text.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('hub-text');

const ROWS = ['', ' = Valkyria Chronicles III = ', '', ' Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ playing game . ', ''];
const parquet = (rows: string[]) => Buffer.from(parquetWriteBuffer({ columnData: [{ name: 'text', data: rows, type: 'STRING' }] }));

const run = (args: string[], env: NodeJS.ProcessEnv) => runCliInProcess(args, { env }); // in this process: the fake hub answers on its loop

test('eval ppl --data: a hub text dataset split, joined as the WikiText-2 recipe, gives the same perplexity as --text', async () => {
  const hub = await startFakeHub([{
    type: 'dataset', name: 'acme/wikitext', sha: 'c'.repeat(40), lfs: () => true,
    files: {
      'wikitext-2-raw-v1/test-00000-of-00001.parquet': parquet(ROWS), 'wikitext-2-raw-v1/train-00000-of-00001.parquet': parquet(['train']),
      'wikitext-103-raw-v1/test-00000-of-00001.parquet': parquet(['other subset']),
    },
  }]);
  try {
    const env = { ...process.env, HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(TMP, 'cache'), HF_TOKEN: '' };
    await assert.rejects(resolveTextDataset('acme/wikitext', { env, quiet: true }), /several subsets have a test split \(wikitext-103-raw-v1, wikitext-2-raw-v1\): choose one with --subset/);
    const file = await resolveTextDataset('acme/wikitext', { env, quiet: true, subset: 'wikitext-2-raw-v1' });
    assert.equal(readFileSync(file, 'utf8'), ROWS.join('\n\n'));

    const local = join(TMP, 'wiki.txt');
    writeFileSync(local, ROWS.join('\n\n'));
    const common = ['eval', 'ppl', '--model', 'models/demo', '--seq-len', '32', '--stride', '16', '--backend', 'cpu', '--json', '--quiet'];
    const a = await run([...common, '--data', 'acme/wikitext', '--subset', 'wikitext-2-raw-v1', '--out', join(TMP, 'a')], env);
    assert.equal(a.status, 0, a.stderr);
    const b = await run([...common, '--text', local, '--out', join(TMP, 'b')], env);
    assert.equal(b.status, 0, b.stderr);
    assert.deepEqual(JSON.parse(a.stdout), JSON.parse(b.stdout));
  } finally {
    await hub.close();
  }
});
