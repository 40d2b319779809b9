/**
 * Loading the MMLU benchmark from the Hendrycks CSV layout:
 *   <dir>/dev/<subject>_dev.csv, <dir>/test/<subject>_test.csv, optionally <dir>/val/<subject>_val.csv;
 * no header row; columns: question, choices A–D, answer letter.
 *
 * Subjects are the names of the test files (as in Hendrycks' evaluate.py). Every subject needs its dev
 * file. Fields are kept exactly as stored (leading spaces, embedded `\r\n`); the answer letter may carry
 * surrounding whitespace, which is dropped. Unlike pandas (which the paper's code reads the files with),
 * a choice that reads "None" stays the text "None" instead of becoming NaN ("nan" in the prompt); this
 * affects 10 test questions of the standard data.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../runtime/errors.ts';
import { parseCsv } from './csv.ts';
import { readTextFile, showJson } from '../../io/read.ts';
import { flag } from '../../runtime/options.ts';
import { NTRAIN } from './options.ts';

export type MmluSplit = 'dev' | 'test' | 'val';
export type AnswerLetter = 'A' | 'B' | 'C' | 'D';
export const ANSWER_LETTERS: readonly AnswerLetter[] = ['A', 'B', 'C', 'D'];

/** One multiple-choice question. `index` is its 0-based row in the file; `line` the line the row starts on. */
export interface MmluQuestion {
  subject: string;
  split: MmluSplit;
  index: number;
  line: number;
  question: string;
  choices: [string, string, string, string];
  answer: AnswerLetter;
}

/** The loaded benchmark; each map goes from subject to its questions in file order. */
export interface MmluData {
  dir: string;
  /** Sorted subject names. */
  subjects: string[];
  dev: Map<string, MmluQuestion[]>;
  test: Map<string, MmluQuestion[]>;
  /** Empty when the directory has no val/ folder; a subject without a val file has no entry. */
  val: Map<string, MmluQuestion[]>;
}

const LAYOUT_HINT = 'expected the Hendrycks MMLU layout dev/<subject>_dev.csv and test/<subject>_test.csv';

/** Parses and validates one MMLU CSV file. */
export function readMmluFile(file: string, subject: string, split: MmluSplit): MmluQuestion[] {
  const rows = parseCsv(readTextFile(file, 'MMLU CSV file'), file);
  if (rows.length === 0) {
    throw new UserError(`${file}: no questions in the file; restore it from the MMLU release or remove the subject`);
  }
  return rows.map(({ line, fields }, index) => {
    if (fields.length !== 6) {
      throw new UserError(`${file}:${line}: expected 6 fields (question, 4 choices, answer), got ${fields.length}; `
        + 'a field that contains a comma must be in double quotes');
    }
    const answer = fields[5].trim();
    if (!(ANSWER_LETTERS as readonly string[]).includes(answer)) {
      throw new UserError(`${file}:${line}: answer ${showJson(fields[5])} is not one of A, B, C, D; `
        + 'the sixth field must be the letter of the correct choice');
    }
    if (fields[0].trim() === '') {
      throw new UserError(`${file}:${line}: the question (first field) is empty; fill it in or delete the row`);
    }
    return {
      subject, split, index, line,
      question: fields[0],
      choices: [fields[1], fields[2], fields[3], fields[4]],
      answer: answer as AnswerLetter,
    };
  });
}

/** Edit distance between two strings (for suggesting subject names). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

/** Up to 3 subjects close to `name`: containing it, or within a few edits. */
export function closeSubjects(name: string, subjects: readonly string[]): string[] {
  const lower = name.toLowerCase().replace(/[\s-]+/g, '_');
  return subjects
    .map((s) => ({ s, d: s.includes(lower) || lower.includes(s) ? 0 : editDistance(lower, s) }))
    .filter(({ s, d }) => d <= Math.max(2, Math.floor(s.length / 4)))
    .sort((x, y) => x.d - y.d || (x.s < y.s ? -1 : 1))
    .slice(0, 3)
    .map(({ s }) => s);
}

/** Sorted subject names found in `<dir>/test` (files named `<subject>_test.csv`). */
export function listMmluSubjects(dir: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UserError(`${dir}: MMLU data directory not found; ${LAYOUT_HINT}`);
  }
  const testDir = join(dir, 'test');
  if (!existsSync(testDir) || !statSync(testDir).isDirectory()) {
    throw new UserError(`${testDir}: missing test/ folder in the MMLU data directory; ${LAYOUT_HINT}`);
  }
  const subjects = readdirSync(testDir)
    .filter((f) => f.endsWith('_test.csv') && f.length > '_test.csv'.length)
    .map((f) => f.slice(0, -'_test.csv'.length))
    .sort();
  if (subjects.length === 0) {
    throw new UserError(`${testDir}: no <subject>_test.csv files; ${LAYOUT_HINT}`);
  }
  return subjects;
}

/**
 * Loads and validates MMLU from `dir`, optionally only the named subjects. Every problem is a UserError
 * naming the file (and line): wrong field count, an answer that is not A–D, a test file without its dev
 * file, an empty or missing directory, an unknown subject.
 */
export function loadMmlu(dir: string, opts: { subjects?: readonly string[] } = {}): MmluData {
  const available = listMmluSubjects(dir);
  let subjects = available;
  if (opts.subjects !== undefined) {
    if (opts.subjects.length === 0) throw new UserError(`${dir}: the list of MMLU subjects to load is empty; name at least one`);
    for (const s of opts.subjects) {
      if (available.includes(s)) continue;
      const close = closeSubjects(s, available);
      throw new UserError(`${join(dir, 'test', `${s}_test.csv`)}: unknown MMLU subject "${s}"; `
        + (close.length ? `did you mean ${close.join(', ')}?` : `subjects look like ${available.slice(0, 3).join(', ')} (${available.length} in ${join(dir, 'test')})`));
    }
    subjects = [...new Set(opts.subjects)].sort();
  }
  const valDir = join(dir, 'val');
  const hasVal = existsSync(valDir) && statSync(valDir).isDirectory();
  const data: MmluData = { dir, subjects, dev: new Map(), test: new Map(), val: new Map() };
  for (const subject of subjects) {
    const testFile = join(dir, 'test', `${subject}_test.csv`);
    const devFile = join(dir, 'dev', `${subject}_dev.csv`);
    if (!existsSync(devFile)) {
      throw new UserError(`${devFile}: missing, but ${testFile} exists; every subject needs its dev file `
        + `(the few-shot examples come from it), even with ${flag(NTRAIN)} 0: restore it from the MMLU release, `
        + `or leave "${subject}" out of the subjects to evaluate`);
    }
    data.dev.set(subject, readMmluFile(devFile, subject, 'dev'));
    data.test.set(subject, readMmluFile(testFile, subject, 'test'));
    const valFile = join(valDir, `${subject}_val.csv`);
    if (hasVal && existsSync(valFile)) data.val.set(subject, readMmluFile(valFile, subject, 'val'));
  }
  return data;
}
