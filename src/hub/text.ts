/**
 * `mka eval ppl --data org/name`: a text corpus from a hub dataset, as the perplexity recipes build it
 * (WikiText-2: `"\n\n".join(test["text"])`). The split's parquet files of one subset (e.g.
 * Salesforce/wikitext, wikitext-2-raw-v1/test-*.parquet) are fetched into the hub cache, their `text`
 * column joined with blank lines and written once per commit beside the snapshot
 * (datasets--org--name/mka-text/<commit>/<subset>-<split>.txt), the file `--text` then reads.
 */
import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { atomicWriteText } from '../io/atomic.ts';
import { joinInside } from '../io/paths.ts';
import { openParquetReader, readParquetFile, REFETCH } from '../io/parquet.ts';
import { UserError } from '../runtime/errors.ts';
import { HUB_ID, type ResolveOptions } from './model.ts';
import { snapshot } from './snapshot.ts';
import { flag } from '../runtime/options.ts';
import { PPL_DATASET, PPL_SPLIT, PPL_SUBSET, PPL_TEXT } from '../eval/ppl/options.ts';

export interface TextDatasetOptions extends ResolveOptions {
  /** The dataset's subset (configuration) folder, e.g. wikitext-2-raw-v1; needed when it has several. */
  subset?: string;
  /** Default test. */
  split?: string;
}

/** The corpus file of a hub dataset split (downloaded and joined if needed). */
export async function resolveTextDataset(name: string, opts: TextDatasetOptions = {}): Promise<string> {
  if (!HUB_ID.test(name)) throw new UserError(`${flag(PPL_DATASET)} ${name}: expected a hub dataset id such as Salesforce/wikitext (a local file goes in ${flag(PPL_TEXT)})`);
  const split = opts.split ?? PPL_SPLIT.default;
  if (!/^[\w-]+$/.test(split)) throw new UserError(`${flag(PPL_SPLIT)} ${split}: a split is a name of letters, digits, '_' and '-' (e.g. test)`);
  const shard = new RegExp(`^(?:(.+)/)?${split.replace(/[^\w-]/g, '')}-\\d+-of-\\d+\\.parquet$`);
  let subset = opts.subset ?? '';
  const snap = await snapshot({
    repo: { type: 'dataset', name }, env: opts.env, quiet: opts.quiet, log: opts.log,
    select: async (files) => {
      const matches = files.map((f) => f.path).filter((p) => shard.test(p));
      const subsets = [...new Set(matches.map((p) => shard.exec(p)![1] ?? ''))].sort();
      if (!opts.subset) {
        if (subsets.length !== 1) throw new UserError(`${name}: ${subsets.length ? `several subsets have a ${split} split (${subsets.join(', ')}): choose one with ${flag(PPL_SUBSET)}` : `no ${split}-*.parquet files (choose ${flag(PPL_SPLIT)})`}`);
        subset = subsets[0];
      } else if (!subsets.includes(subset)) {
        throw new UserError(`${name}: no ${split} split in subset ${subset}${subsets.length ? ` (subsets with one: ${subsets.join(', ')})` : ''}`);
      }
      return matches.filter((p) => (shard.exec(p)![1] ?? '') === subset).sort();
    },
  });
  const out = joinInside(join(dirname(dirname(snap)), 'mka-text', basename(snap)), `${subset || 'default'}-${split}.txt`, flag(PPL_SUBSET));
  if (existsSync(out)) return out;
  const rows: string[] = [];
  const dir = subset ? joinInside(snap, subset, flag(PPL_SUBSET)) : snap;
  const reader = openParquetReader();
  try {
    for (const f of readdirSync(dir).filter((f) => shard.test(subset ? `${subset}/${f}` : f)).sort()) {
      const table = await readParquetFile(reader, join(dir, f), { what: 'parquet file of the hub cache', columns: ['text'], fix: REFETCH });
      for (const r of table) {
        if (typeof r.text !== 'string') throw new UserError(`${join(dir, f)}: no string "text" column; ${flag(PPL_DATASET)} needs a text dataset such as Salesforce/wikitext`);
        rows.push(r.text);
      }
    }
  } finally {
    await reader.close();
  }
  atomicWriteText(out, rows.join('\n\n'));
  return out;
}
