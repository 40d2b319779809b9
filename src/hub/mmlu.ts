/**
 * `--data org/name`: MMLU from the hub (cais/mmlu's layout). The parquet files of each subject's dev,
 * test and validation splits are fetched into the hub cache like a model's files, read into MMLU
 * questions, and written once per commit as the Hendrycks CSV layout beside the snapshot
 * (datasets--org--name/mka-csv/<commit>/{dev,test,val}/), which every command then reads as a local
 * MMLU directory. test/mmlu-parquet.test.ts checks that every prompt equals the CSV original's.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { atomicWriteDir } from '../io/atomic.ts';
import { openParquetReader } from '../io/parquet.ts';
import { UserError } from '../runtime/errors.ts';
import type { MmluQuestion, MmluSplit } from '../eval/mmlu/data.ts';
import { HUB_ID, type ResolveOptions } from './model.ts';
import { snapshot, type HubFile } from './snapshot.ts';
import { flag } from '../runtime/options.ts';
import { MMLU_DATA } from '../eval/mmlu/options.ts';

const FILE = /^([^/]+)\/(dev|test|validation)-(\d+)-of-\d+\.parquet$/;
const NOT_SUBJECTS = new Set(['all', 'auxiliary_train']);
const SPLIT_DIR: Record<string, MmluSplit> = { dev: 'dev', test: 'test', validation: 'val' };

function selectMmluFiles(name: string, files: HubFile[]): string[] {
  const wanted = files.map((f) => f.path).filter((p) => FILE.test(p) && !NOT_SUBJECTS.has(FILE.exec(p)![1]));
  if (!wanted.length) throw new UserError(`${name}: no <subject>/{dev,test}-*.parquet files; ${flag(MMLU_DATA)} from the hub expects cais/mmlu's layout`);
  return wanted.sort();
}

/** Writes the Hendrycks CSV layout of a parquet snapshot into `out`. */
async function convertSnapshot(snap: string, out: string): Promise<void> {
  const { mmluCsvText, readMmluParquet } = await import('../eval/mmlu/parquet.ts');
  const reader = openParquetReader();
  try {
    await atomicWriteDir(out, async (tmp) => {
      const bySubjectSplit = new Map<string, string[]>();
      for (const subject of readdirSync(snap).filter((s) => !NOT_SUBJECTS.has(s)).sort()) {
        for (const f of readdirSync(join(snap, subject)).sort()) {
          const m = FILE.exec(`${subject}/${f}`);
          if (!m) continue;
          const key = `${subject}\n${SPLIT_DIR[m[2]]}`;
          bySubjectSplit.set(key, [...(bySubjectSplit.get(key) ?? []), join(snap, subject, f)]);
        }
      }
      for (const [key, shards] of bySubjectSplit) {
        const [subject, split] = key.split('\n') as [string, MmluSplit];
        const questions: MmluQuestion[] = [];
        for (const shard of shards) questions.push(...(await readMmluParquet(reader, shard, subject, split)));
        mkdirSync(join(tmp, split), { recursive: true });
        writeFileSync(join(tmp, split, `${subject}_${split}.csv`), mmluCsvText(questions));
      }
    });
  } finally {
    await reader.close();
  }
}

/** An MMLU directory for `--data`: the path itself when it exists, else the hub dataset (main) converted in the cache. */
export async function resolveMmluData(arg: string, opts: ResolveOptions = {}): Promise<string> {
  if (existsSync(arg) || !HUB_ID.test(arg)) return arg;
  const snap = await snapshot({
    repo: { type: 'dataset', name: arg }, env: opts.env, quiet: opts.quiet, log: opts.log,
    select: async (files) => selectMmluFiles(arg, files),
  });
  const out = join(dirname(dirname(snap)), 'mka-csv', basename(snap));
  if (!existsSync(join(out, 'test'))) await convertSnapshot(snap, out);
  return out;
}
