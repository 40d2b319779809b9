/**
 * The parquet reader's sharing and messages: the layout check reads a file's bytes where they lie (a view
 * inside a larger buffer, as Node's pool gives small files), one decoder process serves every parquet
 * file a task load or a run of several tasks reads, and every caller refuses an undecodable file with the
 * same one-line message naming the file and the fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import childProcess from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { checkParquetLayout, openParquetReader, ParquetError, REFETCH } from '../src/io/parquet.ts';
import { readParquetDocs } from '../src/eval/tasks/data.ts';
import { loadTask } from '../src/eval/tasks/load.ts';
import { getTask } from '../src/eval/tasks/registry.ts';
import { loadSweepTasks } from '../src/sweep/tasks.ts';
import { readMmluParquet } from '../src/eval/mmlu/parquet.ts';
import { UserError } from '../src/runtime/errors.ts';
import { scratchDir } from './scratch.ts';

const TMP = scratchDir('parquet-reader');
const FIX = join(process.cwd(), 'test', 'fixtures', 'tasks');

/** Counts the child processes `fn` spawns (parquet.ts's named import of spawn follows the patched builtin). */
async function countSpawns(fn: () => Promise<unknown>): Promise<number> {
  const original = childProcess.spawn;
  let n = 0;
  childProcess.spawn = ((...args: Parameters<typeof original>) => {
    n++;
    return original(...args);
  }) as typeof original;
  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    childProcess.spawn = original;
    syncBuiltinESMExports();
  }
  return n;
}

test('the layout check reads a view in place: the same verdicts with the file at an odd offset inside garbage', async () => {
  const good = new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'text', data: ['a', 'bb', 'ccc'], type: 'STRING' }] }));
  const embed = (bytes: Uint8Array) => {
    const big = new Uint8Array(bytes.length + 37).fill(0xff);
    big.set(bytes, 13);
    return big.subarray(13, 13 + bytes.length);
  };
  await checkParquetLayout(good);
  await checkParquetLayout(embed(good));
  const bad = Uint8Array.from(good);
  bad[4] = 0xff; // the first page header's type
  await assert.rejects(checkParquetLayout(bad), ParquetError);
  await assert.rejects(checkParquetLayout(embed(bad)), ParquetError);
  // the bytes around the view are never read: a view of the page region alone is no parquet file
  await assert.rejects(checkParquetLayout(embed(good).subarray(0, good.length - 1)), ParquetError);
});

test('one decoder serves every parquet file of a task load, and of a run of several tasks', async () => {
  const dir = join(TMP, 'hellaswag');
  mkdirSync(join(dir, 'data'), { recursive: true });
  copyFileSync(join(FIX, 'hellaswag.parquet'), join(dir, 'data', 'validation-00000-of-00002.parquet'));
  copyFileSync(join(FIX, 'hellaswag.parquet'), join(dir, 'data', 'validation-00001-of-00002.parquet'));
  copyFileSync(join(FIX, 'hellaswag.parquet'), join(dir, 'data', 'train-00000-of-00001.parquet'));
  let docs = 0;
  // three files: two shards of the evaluated split and the few-shot split
  assert.equal(await countSpawns(async () => {
    const input = await loadTask(getTask('hellaswag'), dir, { shots: 1 });
    docs = input.subtasks[0].docs.length;
  }), 1);
  assert.equal(docs, 2 * (await readParquetDocs(join(FIX, 'hellaswag.parquet'))).length);
  // two tasks of one sweep
  const spawns = await countSpawns(() => loadSweepTasks({
    tasks: ['hellaswag', 'arc_easy'], taskData: { hellaswag: dir, arc_easy: join(FIX, 'arc_easy.parquet') }, numFewshot: 0,
  } as unknown as Parameters<typeof loadSweepTasks>[0]));
  assert.equal(spawns, 1);
  // JSON Lines alone starts none
  assert.equal(await countSpawns(() => loadTask(getTask('boolq'), join(FIX, 'boolq.jsonl'), { shots: 0 })), 0);
  rmSync(dir, { recursive: true });
});

test('every caller refuses an undecodable file with one line: the file, why, and the fix', async () => {
  const file = join(TMP, 'broken.parquet');
  writeFileSync(file, Buffer.from('PAR1 not a parquet file PAR1'));
  const oneLine = (fix: string) => (e: Error) => e instanceof UserError && !/[\r\n]/.test(e.message)
    && e.message.startsWith(`${file}: not a readable parquet file (`) && e.message.endsWith(`); ${fix}`);
  await assert.rejects(readParquetDocs(file), oneLine('replace it with an intact copy (one in the hub cache is downloaded again once deleted)'));
  const reader = openParquetReader();
  try {
    await assert.rejects(readMmluParquet(reader, file, 'anatomy', 'test'), oneLine(REFETCH));
    // the reader goes on with the next file
    assert.equal((await readParquetDocs(join(FIX, 'arc_easy.parquet'), reader)).length > 0, true);
  } finally {
    await reader.close();
  }
  // a missing file is the reader's own message (what the file is)
  await assert.rejects(readParquetDocs(join(TMP, 'none.parquet')), /none\.parquet: cannot open parquet data file \(not found\)$/);
  rmSync(file);
});
