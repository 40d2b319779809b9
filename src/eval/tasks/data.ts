/**
 * A task's documents from `--data`: a parquet or JSON Lines file (the evaluated split), a directory
 * holding the splits as files (`<split>.jsonl`, `<split>-00000-of-00001.parquet`, in the configuration's
 * folder or `data/` as the hub lays them out), or a hub dataset id, whose split files are fetched into
 * the hub cache (src/hub/dataset.ts) and read from there. Parquet is read with hyparquet; 64-bit
 * integers become numbers. Every document is checked for the fields its task needs, with the file and
 * row named when one is missing or of the wrong type.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, relative } from 'node:path';
import { firstLine, parseJsonText, readTextFile, showJson } from '../../io/read.ts';
import { openParquetReader, type ParquetReader, readParquetFile } from '../../io/parquet.ts';
import { UserError } from '../../runtime/errors.ts';
import type { Doc, FieldType, TaskDefinition } from './task.ts';

/** Whether a file name holds the given split: `<split>.jsonl`, `<split>-00000-of-00002[-hash].parquet`, `<split>/0000.parquet`. */
export function splitFilePattern(split: string): RegExp {
  const s = split.replace(/[^\w-]/g, '');
  return new RegExp(`(?:^|/)(?:${s}(?:-\\d+-of-\\d+(?:-[0-9a-f]+)?)?\\.(?:parquet|jsonl|json)|${s}/\\d+\\.parquet)$`);
}

/** Plain values from parquet: bigint → number (when exact), nested lists and structs as they are. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Date) return v.toISOString();
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** The documents of one parquet file, in row order, read with `reader` (default: a reader for this file alone). */
export async function readParquetDocs(file: string, reader?: ParquetReader): Promise<Doc[]> {
  const own = reader ? null : openParquetReader();
  try {
    const rows = await readParquetFile(reader ?? own!, file, { what: 'parquet data file', fix: 'replace it with an intact copy (one in the hub cache is downloaded again once deleted)' });
    return rows.map((r) => plain(r) as Doc);
  } finally {
    await own?.close();
  }
}

/** The documents of a JSON Lines file (one object a line; blank lines skipped) or a JSON array. */
export function readJsonDocs(file: string): Doc[] {
  const text = readTextFile(file, 'data file');
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    const v = parseJsonText(text, file, 'data file');
    if (!Array.isArray(v) || v.some((d) => !d || typeof d !== 'object' || Array.isArray(d))) throw new UserError(`${file}: expected a JSON array of objects (or JSON Lines, one object a line)`);
    return v as Doc[];
  }
  const docs: Doc[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new UserError(`${file}:${i + 1}: not a JSON object (${firstLine((e as Error).message)}); JSON Lines files hold one object a line`);
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UserError(`${file}:${i + 1}: expected a JSON object a line`);
    docs.push(v as Doc);
  });
  return docs;
}

/** The documents of one data file, by its extension (parquet read with `reader`). */
export async function readDocsFile(file: string, reader: ParquetReader): Promise<Doc[]> {
  const ext = extname(file).toLowerCase();
  if (ext === '.parquet') return readParquetDocs(file, reader);
  if (ext === '.jsonl' || ext === '.json') return readJsonDocs(file);
  throw new UserError(`${file}: unknown data file type; give a .parquet, .jsonl or .json file, or a directory of them`);
}

/** Every file under dir (relative paths, sorted). */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p).split('\\').join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * The files of a split among a dataset's files, in order: those in the configuration's folder when the
 * task has one and the folder exists, else those outside any other configuration's folder (the root,
 * data/, default/). Throws naming what is there when none or several folders match.
 */
export function selectSplitFiles(files: readonly string[], split: string, config: string | null, where: string): string[] {
  const pattern = splitFilePattern(split);
  const matches = files.filter((f) => pattern.test(f));
  const folderOf = (f: string) => {
    const parts = f.split('/');
    const i = parts.length - (/^\d+\.parquet$/.test(parts[parts.length - 1]) ? 3 : 2);
    return i >= 0 ? parts.slice(0, i + 1).join('/') : '';
  };
  const folders = [...new Set(matches.map(folderOf))];
  let chosen: string | undefined;
  if (config !== null) chosen = folders.find((f) => f === config || f.endsWith(`/${config}`));
  if (chosen === undefined) {
    const generic = folders.filter((f) => ['', 'data', 'default'].includes(f) || (config !== null && f === `data/${config}`));
    if (generic.length === 1) chosen = generic[0];
    else if (folders.length === 1 && config === null) chosen = folders[0];
  }
  if (chosen === undefined) {
    const hint = folders.length ? `found ${split} files in ${folders.map((f) => f || '.').join(', ')}` : `no ${split}.jsonl or ${split}-*.parquet files`;
    throw new UserError(`${where}: cannot tell which files hold the ${split} split${config ? ` of ${config}` : ''} (${hint}); give the file itself`);
  }
  return matches.filter((f) => folderOf(f) === chosen);
}

/** Reads a split from a directory of data files (or from a single file, which is taken as the split), parquet with `reader`. */
export async function readSplit(path: string, split: string, config: string | null, reader: ParquetReader): Promise<{ docs: Doc[]; files: string[] }> {
  if (!existsSync(path)) throw new UserError(`${path}: data file or directory not found`);
  if (!statSync(path).isDirectory()) return { docs: await readDocsFile(path, reader), files: [path] };
  const files = selectSplitFiles(listFiles(path), split, config, path).map((f) => join(path, f));
  const docs: Doc[] = [];
  for (const f of files) docs.push(...(await readDocsFile(f, reader)));
  return { docs, files };
}

const isInteger = (v: unknown) => (typeof v === 'number' && Number.isInteger(v)) || (typeof v === 'string' && /^\d+$/.test(v));

function fieldOk(v: unknown, type: FieldType): boolean {
  switch (type) {
    case 'string': return typeof v === 'string';
    case 'integer': return isInteger(v);
    case 'string[]': return Array.isArray(v) && v.every((x) => typeof x === 'string');
    case 'choices': {
      const c = v as { text?: unknown; label?: unknown } | null;
      return !!c && typeof c === 'object' && Array.isArray(c.text) && Array.isArray(c.label) && c.text.length === c.label.length
        && c.text.every((x) => typeof x === 'string') && c.label.every((x) => typeof x === 'string');
    }
  }
}

const TYPE_WORDS: Record<FieldType, string> = { string: 'a string', integer: 'an integer', 'string[]': 'a list of strings', choices: 'a {text: [...], label: [...]} struct of equal-length string lists' };

/** Checks that every document has the task's fields with their types. */
export function checkDocs(task: TaskDefinition, docs: readonly Doc[], source: string): void {
  if (docs.length === 0) throw new UserError(`${source}: no documents for ${task.name}`);
  docs.forEach((doc, i) => {
    for (const [field, type] of Object.entries(task.fields)) {
      if (!(field in doc)) throw new UserError(`${source}: document ${i} has no "${field}" field, which ${task.name} needs (fields: ${Object.keys(task.fields).join(', ')}); is this ${task.dataset.path}${task.dataset.name ? ` (${task.dataset.name})` : ''}?`);
      if (!fieldOk(doc[field], type)) throw new UserError(`${source}: document ${i}: "${field}" is ${showJson(doc[field])}, expected ${TYPE_WORDS[type]}`);
    }
  });
}

/** A short name for a data source in messages and results. */
export function sourceName(path: string): string {
  return basename(path);
}
